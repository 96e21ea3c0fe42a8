"""Train one cell: data resident on the device, seeded shuffling, SGD, one CUDA graph per step.

The whole training set lives on the device as uint8; a batch is an index gather. On CUDA the
step (gather, forward, backward, SGD update, loss/accuracy bookkeeping) is captured once in a CUDA
graph and replayed, so a step costs one launch instead of hundreds. The eager path runs the very
same step function, on CPU or as a fallback. The host reads results back once per epoch. The seeds
of a cell share one copy of the data; on CUDA they train together, each on its own stream.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import data, models, provenance
from .checkpoint import Checkpoints
from .files import atomic_write_json, atomic_write_text

MAX_LOSS_POINTS = 2000  # per-iteration losses kept per run, for the loss-evolution figures
# What a run records as it goes, saved with its state after each epoch (see `SeedRun.state`).
RESUMED = ("epoch", "step_count", "images_seen", "history", "iterations", "train_time", "eval_time",
           "diverged_epoch", "epochs_to_target", "steps_to_target", "examples_to_target", "time_to_target",
           "stopped_at_target", "pred_counts")


class TrainingError(RuntimeError):
    """A run that cannot go on (no GPU where one was required, out of memory), said in one line."""


def pick_device(wanted: str) -> tuple[torch.device, str]:
    """`auto` takes CUDA when present, else Apple's MPS (many students' laptops), else CPU (and says
    so); `cuda` without a GPU is an error."""
    if wanted == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda was asked for but no CUDA GPU is visible; "
                            "set device: auto (falls back to CPU) or device: cpu")
    if wanted == "cpu":
        return torch.device("cpu"), "cpu"
    if torch.cuda.is_available():
        return torch.device("cuda"), "cuda"
    mps = getattr(torch.backends, "mps", None)
    if wanted == "auto" and mps is not None and mps.is_available():
        return torch.device("mps"), "mps (Apple GPU, eager: no CUDA graphs)"
    return torch.device("cpu"), "cpu (no CUDA GPU visible)"


def deterministic_kernels(on: bool) -> None:
    """`deterministic: true`: deterministic kernels only (slower on CUDA). Process-wide; the training
    job and the timing pass set it alike."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read by cuBLAS before its first call
        torch.backends.cudnn.benchmark = False
    if on != torch.are_deterministic_algorithms_enabled():  # the first call imports torch._dynamo: seconds
        # warn_only: a few kernels (MobileNetV2's pooling backward) have no deterministic CUDA version
        torch.use_deterministic_algorithms(on, warn_only=True)


def use_graphs(setting: str, device: torch.device) -> bool:
    """CUDA graphs are a CUDA feature: `auto` and `on` use them there, never on CPU or MPS (eager)."""
    return device.type == "cuda" and setting in ("auto", "on")


SUBSET_SEED = 0  # `train_subset` / `test_subset` draw one fixed sample: the same for every run and seed


def to_device(x: np.ndarray, y: np.ndarray, subset: int | None, device: torch.device):
    """uint8 NHWC images -> uint8 NCHW on the device (4x smaller than float), labels int64. `subset`
    keeps a fixed random sample of that many images (`sample_indices`, seed SUBSET_SEED), not the
    first ones: a class-ordered source (CIFAR-10 from an ImageFolder) would give one class."""
    if subset and subset < len(x):
        idx = sample_indices(len(x), subset, SUBSET_SEED).numpy()
        x, y = x[idx], y[idx]
    return (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device),
            torch.from_numpy(y.astype(np.int64)).to(device))


@torch.no_grad()
def evaluate(model, x, y, normalise: Callable, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Mean loss, accuracy, the count of non-finite logits and the count of predictions per class over
    (x, y), in eval mode (dropout off, batch norm on running statistics), in large batches; results stay
    on the device. A model whose logits are NaN has no accuracy: the caller checks the third value
    (argmax of NaN is class 0)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    bad = torch.zeros((), device=x.device, dtype=torch.long)
    predicted = torch.zeros(10, device=x.device, dtype=torch.long)
    for i in range(0, len(x), batch_size):
        out = model(normalise(x[i:i + batch_size]))
        loss_sum += F.cross_entropy(out, y[i:i + batch_size], reduction="sum")
        correct += (out.argmax(1) == y[i:i + batch_size]).sum()
        bad += (~torch.isfinite(out)).sum()
        guess = out.argmax(1)
        predicted.index_add_(0, guess, torch.ones_like(guess))  # bincount would sync with the host
    model.train()
    return loss_sum / len(x), correct.double() / len(x), bad, predicted


def sample_indices(n_total: int, n: int, seed: int) -> torch.Tensor:
    """A fixed, seeded sample of `n` of `n_total` indices, sorted (all of them where n >= n_total): the
    data subsets, and the training images on which training accuracy and loss are measured after each
    epoch, exactly like test accuracy. Drawn on the CPU: the same on every device."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


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


@dataclass
class DeviceData:
    """A cell's data on the device, shared by all of its seeds: uint8 images, int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float, standardised per channel, on the device."""
        return (x.float() / 255 - self.mean) / self.std


def load_data(cache: data.Cache, p: dict, device: torch.device) -> DeviceData:
    """The (sub)sets a cell trains and tests on, moved to the device once."""
    x_train, y_train = to_device(cache.x_train, cache.y_train, p["train_subset"], device)
    x_test, y_test = to_device(cache.x_test, cache.y_test, p["test_subset"], device)
    stats = (torch.tensor(cache.meta[k], device=device).view(1, -1, 1, 1) for k in ("mean", "std"))
    return DeviceData(x_train, y_train, x_test, y_test, *stats)


def effective_lr(p: dict) -> float:
    """`lr`, scaled with the batch size relative to `base_batch_size` when `lr_scaling` asks:
    linear (Goyal et al. 2017) or square root."""
    ratio = p["batch_size"] / p["base_batch_size"] if p["lr_scaling"] != "none" else 1.0
    return p["lr"] * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[p["lr_scaling"]]


def gradient_noise_scale(model, d: DeviceData, sizes: tuple[int, int], draws: int, gen: torch.Generator) -> float:
    """The simple noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018, appendix A), from the
    mean squared norm of mini-batch gradients at two batch sizes: E|G_B|² = |G|² + tr(Σ)/B.
    Batches are drawn with replacement from the training set at the current weights; nothing is
    updated (the caller restores batch-norm statistics and RNG)."""
    mean_sq = []
    for b in sizes:
        total = 0.0
        for _ in range(draws):
            idx = torch.randint(len(d.x_train), (b,), generator=gen, device=d.x_train.device)
            grads = torch.autograd.grad(F.cross_entropy(model(d.normalise(d.x_train[idx])), d.y_train[idx]),
                                        [q for q in model.parameters() if q.requires_grad])
            total += sum(g.pow(2).sum() for g in grads).item()
        mean_sq.append(total / draws)
    return noise_scale_from_norms(sizes, tuple(mean_sq))


def noise_scale_from_norms(sizes: tuple[int, int], mean_sq: tuple[float, float]) -> float:
    """B_simple = tr(Σ) / |G|² from mean squared gradient norms at batch sizes b < B, solving
    E|G_b|² = |G|² + tr(Σ)/b for both sizes; NaN where either estimate is not positive (too few
    draws for the noise: the smaller batch's gradients must be the noisier)."""
    (b_small, b_big), (g_small, g_big) = sizes, mean_sq
    g2 = (b_big * g_big - b_small * g_small) / (b_big - b_small)
    trace = (g_small - g_big) / (1 / b_small - 1 / b_big)
    return trace / g2 if g2 > 0 and trace > 0 else math.nan


def _numpy_rng_state() -> tuple:
    """NumPy's global generator state in types that `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached


def _set_numpy_rng_state(state: tuple) -> None:
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


class SeedRun:
    """One seed of a cell: its model, optimiser, step graphs and records.

    `launch_epoch` queues an epoch's steps (asynchronously on CUDA, on this run's own stream;
    `launch_together` interleaves several seeds step by step); `finish_epoch` reads the epoch back,
    evaluates and records, and says whether the run goes on. `advance` is the one place where a step
    happens. Every epoch trains on every image: ceil(n / batch) steps, the last one on the remainder,
    each step shape its own CUDA graph. `state`/`load_state` save and restore the run between epochs.
    """

    def __init__(self, spec: dict, seed: int, d: DeviceData, device: torch.device, log: Callable[[str], None]):
        p = self.p = spec["params"]
        self.spec, self.seed, self.d, self.device, self.log = spec, seed, d, device, log
        torch.manual_seed(seed)
        np.random.seed(seed)
        fixed = sample_indices(len(d.x_train), len(d.x_test), seed).to(device)
        self.x_train_eval, self.y_train_eval = d.x_train[fixed], d.y_train[fixed]
        options = {k: p[k] for k in ("bn", "pretrained") if k in p}
        self.model, self.weights_note = models.build(spec["model"], tuple(d.x_train.shape[1:]), 10, **options)
        models.initialise(self.model, p["init"])
        # Random draws (dropout of any kind, stochastic depth, F.dropout) come from the device's one
        # generator: seeds replayed side by side would share it. Checked before the model moves.
        self.random_draws = models.random_draws(self.model, tuple(d.x_train.shape[1:]))
        self.has_dropout = bool(self.random_draws)
        self.model.to(device).train()
        self.lr = effective_lr(p)
        self.opt = SGD(self.model.parameters(), lr=self.lr, momentum=p["momentum"], weight_decay=p["weight_decay"],
                       lr_on_device=device.type == "cuda")

        self.n, bs = len(d.x_train), p["batch_size"]
        if bs > self.n:
            raise TrainingError(f"cell {spec['cell']}: batch_size {bs} exceeds the {self.n} training images")
        self.full, rest = divmod(self.n, bs)  # `full` steps of `bs` images, then one of `rest`, if any
        self.steps = self.full + (rest > 0)
        self.sizes = [bs] * self.full + [rest] * (rest > 0)
        self.warmup_steps = round(p["warmup_epochs"] * self.steps)
        self.order = torch.zeros(self.n, dtype=torch.long, device=device)   # this epoch's permutation
        self.offsets = torch.arange(bs, device=device)
        self.k = torch.zeros(1, dtype=torch.long, device=device)            # step counter, on the device
        self.losses = torch.zeros(self.steps, device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.shuffle = torch.Generator(device=device).manual_seed(seed)
        self.probe = torch.Generator(device=device).manual_seed(seed + 1)  # noise-scale batches only
        graphs = use_graphs(spec["cuda_graphs"], device)
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" or graphs else None  # this seed's own

        self.fns = self._step_fns()
        self.graphs, self.graph_note = [], None
        if graphs:
            try:
                self.graphs = [capture(fn, self.k.zero_, self.model, self.opt, device, self.stream) for fn in self.fns]
            except torch.cuda.OutOfMemoryError:
                raise  # not an op that cannot be captured: the job says so (run_cell)
            except RuntimeError as exc:  # an op that cannot be captured: `auto` runs eagerly, `on` says so
                if spec["cuda_graphs"] == "on":
                    raise TrainingError(f"cell {spec['study']}/{spec['cell']}: CUDA graph capture failed "
                                        f"({str(exc).splitlines()[0]}); set cuda_graphs: auto or off") from exc
                self.graphs, self.graph_note = [], f"capture failed, ran eagerly: {str(exc).splitlines()[0]}"
                log(f"CUDA graph {self.graph_note}")
        self.every = max(1, math.ceil(self.steps * p["epochs"] / MAX_LOSS_POINTS))
        self.check_every = math.ceil(self.steps / p["target_checks_per_epoch"])
        self.epoch = self.step_count = self.images_seen = 0
        self.history, self.iterations, self.pred_counts = [], [], []
        self.train_time = self.eval_time = 0.0
        self.diverged_epoch = self.epochs_to_target = self.steps_to_target = None
        self.examples_to_target = self.time_to_target = None
        self.stopped_at_target = False

    def state(self) -> dict:
        """Everything the rest of the run depends on, after a finished epoch: weights and buffers,
        momentum, every random generator, records, counters and target bookkeeping."""
        cuda = self.device.type == "cuda"
        if self.stream is not None:  # work queued on this seed's stream (the noise-scale probe's restore)
            self.stream.synchronize()  # ends before the state is read, on whatever stream reads it
        return {"device_type": self.device.type, "model": self.model.state_dict(),
                "momentum": [b.detach().clone() for b in self.opt.buffers],
                "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(),
                        "cuda": torch.cuda.get_rng_state(self.device) if cuda else None,
                        "shuffle": self.shuffle.get_state(), "probe": self.probe.get_state()},
                "records": {k: getattr(self, k) for k in RESUMED}}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        """Continue from `state()`; tensors are copied in place (captured graphs keep pointing at them)."""
        self.model.load_state_dict(state["model"])
        for b, s in zip(self.opt.buffers, state["momentum"]):
            b.copy_(s)
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        _set_numpy_rng_state(rng["numpy"])
        if rng["cuda"] is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.shuffle.set_state(rng["shuffle"])
        self.probe.set_state(rng["probe"])
        for k, v in state["records"].items():
            setattr(self, k, v)

    def _step_on(self, idx: torch.Tensor) -> None:
        d = self.d
        xb, yb = d.normalise(d.x_train.index_select(0, idx)), d.y_train.index_select(0, idx)
        out = self.model(xb)
        loss = F.cross_entropy(out, yb)
        loss.backward()
        self.opt.step()
        self.losses.index_copy_(0, self.k, loss.detach().view(1))
        self.correct.add_((out.argmax(1) == yb).sum())
        self.k.add_(1)

    def _step_fns(self) -> list[Callable[[], None]]:
        """The step of each shape: batch k of the epoch (an index gather, so one graph serves every k),
        and the remainder (always the permutation's last entries)."""
        bs, full = self.p["batch_size"], self.full
        fns = [lambda: self._step_on(self.order.index_select(0, self.k * bs + self.offsets))]
        return fns + [lambda: self._step_on(self.order[full * bs:])] if self.steps > full else fns

    def advance(self, i: int) -> None:
        """Step i of the epoch, on the current stream: a graph replay, else eagerly. Warm-up raises the
        rate linearly over its steps (a graph reads it from the device tensor)."""
        if self.step_count < self.warmup_steps:
            self.opt.set_lr(self.lr * (self.step_count + 1) / self.warmup_steps)
        elif self.step_count == self.warmup_steps and self.warmup_steps:
            self.opt.set_lr(self.lr)
        shape = int(i >= self.full)
        if self.graphs:
            self.graphs[shape].replay()
        else:
            self.opt.zero_grad()
            self.fns[shape]()
        self.step_count += 1
        self.images_seen += self.sizes[i]

    def on_stream(self):
        """The context that queues work on this seed's stream (a no-op off CUDA)."""
        return torch.cuda.stream(self.stream) if self.stream else contextlib.nullcontext()

    def begin_epoch(self) -> None:
        """Start an epoch: a new permutation, counters zeroed, the clock started."""
        self.epoch += 1
        if self.stream:  # set-up, restores and loaded state were queued on the default stream
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with self.on_stream():
            self.t0 = time.perf_counter()
            self.order.copy_(torch.randperm(self.n, device=self.device, generator=self.shuffle))
            self.k.zero_()
            self.correct.zero_()

    def check_due(self, i: int) -> bool:
        """Whether a mid-epoch target check follows step i (not after the last: the epoch's end checks)."""
        return bool(self.p["target_acc"]) and self.epochs_to_target is None and (i + 1) % self.check_every == 0 \
            and i + 1 < self.steps

    def launch_epoch(self) -> None:
        """Queue one epoch of steps (checking the target mid-epoch where `target_checks_per_epoch` > 1)."""
        self.begin_epoch()
        with self.on_stream():
            for i in range(self.steps):
                self.advance(i)
                if self.check_due(i) and check_targets([self]):
                    break

    def _reached(self, acc: float, elapsed: float) -> bool:
        """Record the first time test accuracy `acc` reaches the target, `elapsed` seconds into this
        epoch's training; True when the run should stop there."""
        if acc < self.p["target_acc"]:
            return False
        self.epochs_to_target, self.steps_to_target = self.epoch, self.step_count
        self.examples_to_target = self.images_seen
        self.time_to_target = self.train_time + elapsed
        self.stopped_at_target = self.p["stop_at_target"]
        return self.p["stop_at_target"]

    def _noise_scale(self) -> float:
        """B_simple at the current weights; batch-norm statistics and RNG are put back afterwards."""
        state = snapshot(self.model, self.opt, self.device)
        value = gradient_noise_scale(self.model, self.d, tuple(self.p["noise_scale_batches"]),
                                     self.p["noise_scale_draws"], self.probe)
        restore(state, self.model, self.opt, self.device)
        return value

    def finish_epoch(self) -> bool:
        """Read the epoch back, evaluate, record; False once the run is over."""
        p, d = self.p, self.d
        with torch.cuda.stream(self.stream) if self.stream else contextlib.nullcontext():
            steps_done = int(self.k.item()) if self.stopped_at_target else self.steps
            epoch_losses = self.losses[:steps_done].cpu()  # the one host sync of the epoch
            t1 = time.perf_counter()
            test = evaluate(self.model, d.x_test, d.y_test, d.normalise, p["eval_batch_size"])
            train = evaluate(self.model, self.x_train_eval, self.y_train_eval, d.normalise, p["eval_batch_size"])
            finite = bool(torch.isfinite(epoch_losses).all()) and all(
                r[2].item() == 0 and math.isfinite(r[0].item()) for r in (test, train))
            measured = lambda v: v.item() if finite else math.nan  # noqa: E731 - NaN logits have no accuracy
            self.train_time += t1 - self.t0
            row = {"epoch": self.epoch, "running_loss": float(epoch_losses.mean()),
                   "running_acc": self.correct.item() / sum(self.sizes[:steps_done]),
                   "train_loss": measured(train[0]), "train_acc": measured(train[1]),
                   "test_loss": measured(test[0]), "test_acc": measured(test[1]),
                   "epoch_time_s": t1 - self.t0, "elapsed_s": self.train_time}
            self.pred_counts = test[3].tolist()
            if p["noise_scale_batches"]:  # the column exists in every row of such a run
                row["noise_scale"] = self._noise_scale() if finite else math.nan
            self.eval_time += time.perf_counter() - t1
        self.history.append(row)
        first = (self.epoch - 1) * self.steps
        self.iterations += [(first + i + 1, self.epoch, float(epoch_losses[i]))
                            for i in range(steps_done) if (first + i) % self.every == 0]
        if not finite:
            self.diverged_epoch = self.epoch
            self.log(f"seed {self.seed} epoch {self.epoch}/{p['epochs']}  diverged: non-finite loss or logits; "
                     f"stopping this run (recorded as a result, not an error)")
            return False
        if p["target_acc"] and self.epochs_to_target is None:
            self._reached(row["test_acc"], 0.0)
        eta = (p["epochs"] - self.epoch) * self.train_time / self.epoch
        self.log(f"seed {self.seed} epoch {self.epoch}/{p['epochs']}  running_loss {row['running_loss']:.4f}  "
                 f"train_acc {100 * row['train_acc']:.2f}%  test_loss {row['test_loss']:.4f}  "
                 f"test_acc {100 * row['test_acc']:.2f}%  epoch {row['epoch_time_s']:.2f}s  ETA {eta:.0f}s")
        return self.epoch < p["epochs"] and not self.stopped_at_target

    def result(self) -> dict:
        """{"metrics", "history", "iterations"} of the finished run."""
        last, done = self.history[-1], self.diverged_epoch is None
        final = lambda v: v if done else None  # noqa: E731 - a diverged run's numbers are not measurements
        labels = torch.bincount(self.d.y_test.cpu(), minlength=10).tolist()
        top = max(range(len(self.pred_counts)), key=self.pred_counts.__getitem__)
        noise = [r["noise_scale"] for r in self.history if math.isfinite(r.get("noise_scale", math.nan))]
        metrics = {
            "status": "ok" if done else "diverged", "diverged": not done, "diverged_epoch": self.diverged_epoch,
            "epochs_run": len(self.history),
            "final_train_loss": final(last["train_loss"]), "final_train_acc": final(last["train_acc"]),
            "final_test_loss": final(last["test_loss"]), "final_test_acc": final(last["test_acc"]),
            "final_running_loss": final(last["running_loss"]), "final_running_acc": final(last["running_acc"]),
            "first_epoch_running_loss": self.history[0]["running_loss"]
            if math.isfinite(self.history[0]["running_loss"]) else None,
            "best_test_acc": max((h["test_acc"] for h in self.history if math.isfinite(h["test_acc"])), default=None),
            "target_acc": self.p["target_acc"], "epochs_to_target": self.epochs_to_target,
            "steps_to_target": self.steps_to_target, "examples_to_target": self.examples_to_target,
            "time_to_target_s": self.time_to_target, "stopped_at_target": self.stopped_at_target,
            "train_time_s": final(self.train_time), "eval_time_s": final(self.eval_time),
            "total_time_s": final(self.train_time + self.eval_time), "mean_epoch_s": final(self.train_time / len(self.history)),
            "time_until_stop_s": self.train_time + self.eval_time,
            "steps_per_epoch": self.steps, "steps_run": self.step_count, "images_per_epoch": self.n,
            "train_eval_images": len(self.x_train_eval),
            "lr_effective": self.lr, "warmup_steps": self.warmup_steps,
            "noise_scale": float(np.median(noise)) if noise else None,
            "test_pred_counts": self.pred_counts if done else None, "test_label_counts": labels,
            "top_pred_class": top if done else None,
            "top_pred_share": final(self.pred_counts[top] / sum(self.pred_counts)),
            "cuda_graphs": bool(self.graphs), "cuda_graphs_note": self.graph_note,
            "n_params": models.n_params(self.model), "weights": self.weights_note,
        }
        return {"metrics": metrics, "history": self.history, "iterations": self.iterations}


def set_up_device(spec: dict) -> tuple[torch.device, str]:
    """The device a cell trains on, and deterministic kernels where the spec asks for them."""
    if spec.get("deterministic"):
        deterministic_kernels(True)
    models.pin_fp32()  # the published runs are CPU fp32: no TF32 on a GPU either
    return pick_device(spec["device"])


def _start(spec: dict, seed: int, d: DeviceData, device: torch.device, log: Callable[[str], None],
           store: Checkpoints | None) -> SeedRun:
    """A seed's run, continued from its checkpoint where the store holds one."""
    run = SeedRun(spec, seed, d, device, log)
    state = store.load(seed, device) if store else None
    if state is not None:
        run.load_state(state)
        log(f"seed {seed}: resumed at epoch {run.epoch} (of {spec['params']['epochs']}) from {store.folder(seed)}")
    return run


def check_targets(runs: list[SeedRun]) -> list[SeedRun]:
    """Mid-epoch target checks of seeds at one point of an epoch: each seed's test accuracy is queued
    on its own stream and read back with one synchronisation, its training clock paused meanwhile.
    Returns the runs that stop here."""
    now = time.perf_counter()
    elapsed = [now - run.t0 for run in runs]
    accs = []
    for run in runs:
        with run.on_stream():
            accs.append(evaluate(run.model, run.d.x_test, run.d.y_test, run.d.normalise, run.p["eval_batch_size"])[1])
    if runs[0].device.type == "cuda":
        torch.cuda.synchronize(runs[0].device)
    stopped = [run for run, acc, e in zip(runs, accs, elapsed) if run._reached(acc.item(), e)]
    for run, e in zip(runs, elapsed):
        run.t0 = time.perf_counter() - e
    return stopped


def launch_together(runs: list[SeedRun]) -> None:
    """Queue one epoch of several seeds side by side, step by step, each on its own stream, so that
    their kernels overlap on the GPU; mid-epoch target checks of all seeds at one point."""
    for run in runs:
        run.begin_epoch()
    stepping = list(runs)
    for i in range(runs[0].steps):
        for run in stepping:
            with run.on_stream():
                run.advance(i)
        due = [run for run in stepping if run.check_due(i)]
        if due:
            stopped = check_targets(due)
            stepping = [run for run in stepping if run not in stopped]
        if not stepping:
            break


def train_seeds(spec: dict, cache: data.Cache, seeds: list[int], log: Callable[[str], None] = print,
                startup: dict | None = None, store: Checkpoints | None = None,
                on_done: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Train the seeds of one cell; returns one `SeedRun.result()` per seed, plus device facts.

    On the CPU the seeds run one after another, each exactly as it would alone. On CUDA they run
    together, step by step, each on its own stream, so that small runs fill the GPU together; models
    with random draws (`models.random_draws`: dropout of any kind, stochastic depth...) train their
    seeds one after another there too (the draws come from the device's one generator, which seeds
    side by side would share).
    With a `store`, each seed saves its state there after every epoch and resumes from it when the
    job is started again; `on_done(seed, result)` is called as each seed finishes.
    """
    startup = {} if startup is None else startup
    device, device_note = set_up_device(spec)
    d = load_data(cache, spec["params"], device)
    startup["data_on_device"] = provenance.process_age_s()  # on CUDA: includes creating the context
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    together = device.type == "cuda" and len(seeds) > 1
    if not seeds:
        return []

    def end_epoch(run: SeedRun) -> bool:
        """After an epoch of `run`: its state saved when the run goes on, its result handed over when it ends."""
        if run.finish_epoch():
            if store:
                store.save(run.seed, run.state())
            return True
        results.append(finish(run))
        return False

    def finish(run: SeedRun) -> dict:
        out = run.result()
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        out["metrics"].update({"first_step_process_age_s": startup["first_step"], "startup_s": startup,
                               "device": str(device), "device_type": device.type, "device_note": device_note,
                               "precision": models.fp32_flags(), "gpu_mem_peak_mb": peak,
                               "seeds_together": len(seeds) if together else 1})
        out["seed"], out["device"], out["model"] = run.seed, device, run.model
        if on_done:
            on_done(run.seed, out)
        return out

    results: list[dict] = []
    start = lambda seed: _start(spec, seed, d, device, log, store)  # noqa: E731
    runs = [start(seeds[0])]
    if together and runs[0].has_dropout:
        together = False
        log(f"this model draws random numbers ({'; '.join(runs[0].random_draws)}), from the device's one "
            "generator: the cell's seeds train one after another")
    runs += [start(s) for s in seeds[1:]] if together else []
    startup["model_ready"] = provenance.process_age_s()
    startup["first_step"] = provenance.process_age_s()
    if together:
        active = list(runs)
        while active:
            launch_together(active)
            active = [run for run in active if end_epoch(run)]
        results.sort(key=lambda out: seeds.index(out["seed"]))
    else:  # one after another, each built just before it trains: exactly as if it ran alone
        for i, seed in enumerate(seeds):
            if i:
                runs.append(start(seed))  # kept: every captured graph lives until the job ends
            runs[-1].launch_epoch()
            while end_epoch(runs[-1]):
                runs[-1].launch_epoch()
    return results


def train(spec: dict, cache: data.Cache, log: Callable[[str], None] = print, startup: dict | None = None) -> dict:
    """Train one seed (`spec["seed"]`) alone: {"metrics", "history", "iterations", "device", "model"}."""
    return train_seeds(spec, cache, [spec["seed"]], log, startup)[0]


def _write_run(out_dir: Path, base: dict, result: dict) -> dict:
    """One seed's history.csv, iterations.csv and, last, metrics.json (atomic writes)."""
    hist = result["history"]
    atomic_write_text(out_dir / "history.csv", ",".join(hist[0]) + "\n" + "".join(
        ",".join(repr(v) for v in row.values()) + "\n" for row in hist))
    atomic_write_text(out_dir / "iterations.csv", "step,epoch,loss\n" + "".join(
        f"{s},{e},{loss!r}\n" for s, e, loss in result["iterations"]))
    metrics = {**base, **result["metrics"], "env": provenance.environment(result["device"])}
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def run_cell(spec: dict, cache_path: Path, out_dir: Path, log: Callable[[str], None] = print,
             checkpoints: Path | None = None) -> list[dict]:
    """Train the seeds of one grid point (`spec["seeds"]`, else the one `spec["seed"]`) and write
    each seed's metrics.json, history.csv and iterations.csv to `out_dir/seed=<n>/` (to `out_dir`
    itself for a one-seed spec without `seeds`). metrics.json is written last: its presence means
    that run finished. With `checkpoints` (a folder outside `out_dir`), every seed's state is saved
    there after each epoch and finished seeds wait there until all are done: a job killed at any
    moment and started again loses at most one epoch per seed. Returns the metrics, one per seed."""
    startup = {"imports_done": provenance.process_age_s()}
    cache = data.load(cache_path)
    startup["data_loaded"] = provenance.process_age_s()
    seeds = spec.get("seeds") or [spec["seed"]]
    folder = (lambda seed: out_dir / f"seed={seed}") if "seeds" in spec else (lambda seed: out_dir)
    data_meta = {k: v for k, v in cache.meta.items() if k not in ("mean", "std")}
    run_spec = lambda seed: {**spec, "seed": seed, "cell": f"{spec['setting']}_seed={seed}"}  # noqa: E731
    bases = {seed: {"schema": 2, "study": spec["study"], "cell": run_spec(seed)["cell"], "setting": spec["setting"],
                    "seed": seed, "spec": run_spec(seed), "data": data_meta} for seed in seeds}
    if not cache.meta.get("available", True):
        log(f"data set '{spec['dataset']}' is not available: {cache.meta.get('reason')}")
        out = []
        for seed, base in bases.items():
            atomic_write_text(folder(seed) / "history.csv", "epoch\n")
            atomic_write_text(folder(seed) / "iterations.csv", "step,epoch,loss\n")
            metrics = {**base, "status": "no-data", "reason": cache.meta.get("reason"), "env": provenance.environment()}
            atomic_write_json(folder(seed) / "metrics.json", metrics)
            out.append(metrics)
        return out
    store = Checkpoints(checkpoints, spec, log) if checkpoints else None
    staged = store.folder if store else folder

    written: dict[int, dict] = {}

    def write(seed: int, result: dict) -> None:
        written[seed] = _write_run(staged(seed), bases[seed], result)
        if store:
            store.done(seed)

    todo = [seed for seed in seeds if not (store and store.finished(seed))]
    if len(todo) < len(seeds):
        log(f"seeds {sorted(set(seeds) - set(todo))} finished before this job was interrupted; kept")
    try:
        train_seeds(spec, cache, todo, log, startup, store, on_done=write)
    except torch.cuda.OutOfMemoryError as exc:
        raise TrainingError(f"cell {spec['study']}/{spec['setting']}: CUDA out of memory at batch_size "
                            f"{spec['params']['batch_size']} ({len(todo)} seed(s) together); use a smaller batch, "
                            f"fewer --resources gpu jobs or a larger GPU") from exc
    if store:
        store.move_results(seeds, folder)
    return [written.get(seed) or json.loads((folder(seed) / "metrics.json").read_text()) for seed in seeds]

