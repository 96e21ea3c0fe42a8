"""The training step: SGD written out, the step of each batch shape, CUDA-graph capture.

A step is an index gather from the resident data, forward, backward, the SGD update and the
loss/accuracy bookkeeping, all on the device. With `micro_batch` (part of the spec, never chosen by
the machine) a batch larger than it is run in fixed chunks of that many images whose gradients add up
to the batch's: the same update up to float rounding, at a fraction of the memory traffic (very large
batches fall out of the CPU's caches). Models with batch normalisation or dropout are refused it by
the config check: their outputs depend on how a batch is cut.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .devices import TrainingError


class SGD:
    """torch.optim.SGD's update (weight decay, momentum; no dampening, no Nesterov) in at most four
    multi-tensor ops. Written out because torch.optim's first call imports torch._dynamo, about
    1 s of every job's start-up, and so the momentum buffers exist before a CUDA graph is captured.
    A zero buffer makes the first step equal to torch's (which starts the buffer at the gradient).
    With `lr_on_device` the rate lives in a device tensor that a captured graph reads at each replay,
    so warm-up (a new rate every step) replays the graph too; otherwise it is a Python float, which
    keeps the CPU update bit-identical to torch.optim.SGD's."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 lr_on_device: bool = False):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers = [torch.zeros_like(p) for p in self.params] if momentum else []
        self.neg_lr = torch.tensor(-lr, device=self.params[0].device) if lr_on_device else None

    def set_lr(self, lr: float) -> None:
        """A new rate for the next steps (on the device: queued on the current stream, no sync)."""
        self.lr = lr
        if self.neg_lr is not None:
            self.neg_lr.fill_(-lr)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if self.weight_decay:
            grads = torch._foreach_add(grads, self.params, alpha=self.weight_decay)
        if self.momentum:
            torch._foreach_mul_(self.buffers, self.momentum)
            torch._foreach_add_(self.buffers, grads)
            grads = self.buffers
        if self.neg_lr is None:
            torch._foreach_add_(self.params, grads, alpha=-self.lr)
        else:
            torch._foreach_add_(self.params, torch._foreach_mul(grads, self.neg_lr))


def snapshot(model, opt: SGD, device: torch.device) -> dict:
    """Copies of everything a warm-up step changes: weights, buffers (batch-norm statistics),
    momentum and the device's RNG state."""
    rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    return {"tensors": [t.detach().clone() for t in (*model.parameters(), *model.buffers())],
            "momentum": [b.clone() for b in opt.buffers], "rng": rng}


@torch.no_grad()
def restore(state: dict, model, opt: SGD, device: torch.device) -> None:
    """Put back what `snapshot` saved, in place (a captured graph keeps pointing at the same tensors)."""
    for t, s in zip((*model.parameters(), *model.buffers()), state["tensors"]):
        t.copy_(s)
    for b, s in zip(opt.buffers, state["momentum"]):
        b.copy_(s)
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"], device)
    else:
        torch.set_rng_state(state["rng"])


# Every CUDA graph this process captures, kept until it exits. Destroying a graph frees its stream's
# cuBLAS workspace, which live graphs captured on the same pooled stream still use, and empty_cache
# would then hand that memory back: wrong results or an illegal address. Jobs are one process each.
KEPT_GRAPHS: list = []


def capture(step: Callable, reset: Callable, model, opt: SGD, device, stream: torch.cuda.Stream) -> torch.cuda.CUDAGraph:
    """Record `step` as a CUDA graph, warmed up and captured on `stream`, the seed's own: cuBLAS picks
    its workspace per stream at capture, so graphs of seeds replayed side by side never share one.
    Warm-up steps (required before capture) would move the weights, so model, optimiser and RNG state
    are restored afterwards (on `stream` too), also when capture fails: the graph run (or the eager
    fallback) starts from exactly the state the eager run starts from."""
    stream.wait_stream(torch.cuda.current_stream(device))  # the model and data set-up come first
    with torch.cuda.stream(stream):
        state = snapshot(model, opt, device)
        try:
            for _ in range(3):
                reset()  # keeps the step counter in range: an epoch may hold a single step
                opt.zero_grad()
                step()
            graph = torch.cuda.CUDAGraph()
            KEPT_GRAPHS.append(graph)  # never destroyed while another graph may share its stream's workspace
            opt.zero_grad()  # grads are then allocated, and overwritten, inside the graph
            with torch.cuda.graph(graph, stream=stream):
                step()
        finally:
            restore(state, model, opt, device)
    return graph


class Steps:
    """An epoch's steps of one seed: ceil(n / batch) of them, the last one on the remainder, each
    batch an index gather through this epoch's permutation (`order`) at the device-side step counter
    `k`, so that one function (and one CUDA graph) serves every full batch. Losses and the count of
    correct predictions stay on the device until the epoch is read back."""

    def __init__(self, model, opt: SGD, d, batch_size: int, micro_batch: int | None, device: torch.device):
        self.model, self.opt, self.d = model, opt, d
        self.n, self.batch_size = len(d.x_train), batch_size
        # Chunks only where a batch is larger than one: smaller batches run the plain step unchanged.
        self.chunk = micro_batch if micro_batch and micro_batch < batch_size else None
        self.full, rest = divmod(self.n, batch_size)  # `full` steps of `batch_size` images, then one of `rest`
        self.count = self.full + (rest > 0)
        self.sizes = [batch_size] * self.full + [rest] * (rest > 0)
        self.order = torch.zeros(self.n, dtype=torch.long, device=device)   # this epoch's permutation
        self.offsets = torch.arange(batch_size, device=device)
        self.k = torch.zeros(1, dtype=torch.long, device=device)            # step counter, on the device
        self.losses = torch.zeros(self.count, device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.fns = self._fns()
        self.graphs: list[torch.cuda.CUDAGraph] = []

    def _fns(self) -> list[Callable[[], None]]:
        """The step of each shape: batch k of the epoch, and the remainder (the permutation's last entries)."""
        bs, full = self.batch_size, self.full
        fns = [lambda: self.on(self.order.index_select(0, self.k * bs + self.offsets))]
        return fns + [lambda: self.on(self.order[full * bs:])] if self.count > full else fns

    def on(self, idx: torch.Tensor) -> None:
        """One SGD step on the training images `idx` (whole, or in chunks of `chunk`)."""
        if self.chunk is None:
            loss = self._forward_backward(idx, F.cross_entropy)
        else:
            total = len(idx)
            mean_part = lambda out, y: F.cross_entropy(out, y, reduction="sum") / total  # noqa: E731
            loss = sum(self._forward_backward(idx[i:i + self.chunk], mean_part) for i in range(0, total, self.chunk))
        self.opt.step()
        self.losses.index_copy_(0, self.k, loss.view(1))
        self.k.add_(1)

    def _forward_backward(self, idx: torch.Tensor, loss_fn: Callable) -> torch.Tensor:
        """Forward and backward on `idx` (gradients add up in .grad); the detached loss."""
        d = self.d
        xb, yb = d.normalise(d.x_train.index_select(0, idx)), d.y_train.index_select(0, idx)
        out = self.model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        self.correct.add_((out.argmax(1) == yb).sum())
        return loss.detach()

    def capture(self, stream: torch.cuda.Stream, spec: dict, log: Callable[[str], None]) -> str | None:
        """One CUDA graph per step shape (see `capture`); None, or why the steps run eagerly: an op that
        cannot be captured is an error under `cuda_graphs: on` and a note under `auto`."""
        try:
            self.graphs = [capture(fn, self.k.zero_, self.model, self.opt, self.k.device, stream) for fn in self.fns]
        except torch.cuda.OutOfMemoryError:
            raise  # not an op that cannot be captured: the job says so (train.run_cell)
        except RuntimeError as exc:
            why = str(exc).splitlines()[0]
            if spec["cuda_graphs"] == "on":
                raise TrainingError(f"cell {spec['study']}/{spec['cell']}: CUDA graph capture failed ({why}); "
                                    f"set cuda_graphs: auto or off") from exc
            log(f"CUDA graph capture failed, ran eagerly: {why}")
            return f"capture failed, ran eagerly: {why}"
        return None

    def run(self, shape: int) -> None:
        """A step of `shape` (0: a full batch, 1: the remainder), on the current stream."""
        if self.graphs:
            self.graphs[shape].replay()
        else:
            self.opt.zero_grad()
            self.fns[shape]()
