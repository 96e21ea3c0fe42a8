"""Train one cell: data resident on the device, seeded shuffling, SGD, one CUDA graph per step.

The whole training set lives on the device as uint8; a batch is an index gather. On CUDA the
step (gather, forward, backward, SGD update, loss/accuracy bookkeeping) is captured once in a CUDA
graph and replayed, so a step costs one launch instead of hundreds. The eager path runs the very
same step function, on CPU or as a fallback. The host reads results back once per epoch. The seeds
of a cell share one copy of the data; on CUDA they train together, each on its own stream.
"""
from __future__ import annotations

import contextlib
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
from .files import atomic_write_json, atomic_write_text

MAX_LOSS_POINTS = 2000  # per-iteration losses kept per run, for the loss-evolution figures


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


def to_device(x: np.ndarray, y: np.ndarray, subset: int | None, device: torch.device):
    """uint8 NHWC images -> uint8 NCHW on the device (4x smaller than float), labels int64."""
    if subset:
        x, y = x[:subset], y[:subset]
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
        predicted += torch.bincount(out.argmax(1), minlength=10)
    model.train()
    return loss_sum / len(x), correct.double() / len(x), bad, predicted


def train_eval_indices(n_train: int, n: int, seed: int) -> torch.Tensor:
    """A fixed, seeded subset of `n` training images (sorted) on which training accuracy and loss are
    measured after each epoch, exactly like test accuracy. Drawn on the CPU: the same on every device."""
    if n >= n_train:
        return torch.arange(n_train)
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:n].sort().values


class SGD:
    """torch.optim.SGD's update (weight decay, momentum; no dampening, no Nesterov) in at most four
    multi-tensor ops. Written out because torch.optim's first call imports torch._dynamo, about
    1 s of every job's start-up, and so the momentum buffers exist before a CUDA graph is captured.
    A zero buffer makes the first step equal to torch's (which starts the buffer at the gradient)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers = [torch.zeros_like(p) for p in self.params] if momentum else []

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
        torch._foreach_add_(self.params, grads, alpha=-self.lr)


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


def capture(step: Callable, reset: Callable, model, opt: SGD, device) -> torch.cuda.CUDAGraph:
    """Record `step` as a CUDA graph. Warm-up steps (required before capture) would move the
    weights, so model, optimiser and RNG state are restored afterwards, also when capture fails:
    the graph run (or the eager fallback) starts from exactly the state the eager run starts from."""
    state = snapshot(model, opt, device)
    try:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                reset()  # keeps the step counter in range: an epoch may hold a single step
                opt.zero_grad()
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad()  # grads are then allocated, and overwritten, inside the graph
        with torch.cuda.graph(graph):
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


class SeedRun:
    """One seed of a cell: its model, optimiser, step graphs and records.

    `launch_epoch` queues an epoch's steps (asynchronously on CUDA, on this run's stream, so the seeds
    of a cell overlap on one GPU); `finish_epoch` reads the epoch back, evaluates and records, and
    says whether the run goes on. Every epoch trains on every image: ceil(n / batch) steps, the last
    one on the remainder, each step shape its own CUDA graph. Warm-up steps run eagerly (their
    learning rate changes every step; a graph holds one).
    """

    def __init__(self, spec: dict, seed: int, d: DeviceData, device: torch.device, log: Callable[[str], None]):
        p = self.p = spec["params"]
        self.spec, self.seed, self.d, self.device, self.log = spec, seed, d, device, log
        torch.manual_seed(seed)
        np.random.seed(seed)
        fixed = train_eval_indices(len(d.x_train), len(d.x_test), seed).to(device)
        self.x_train_eval, self.y_train_eval = d.x_train[fixed], d.y_train[fixed]
        options = {k: p[k] for k in ("bn", "pretrained") if k in p}
        self.model, self.weights_note = models.build(spec["model"], tuple(d.x_train.shape[1:]), 10, **options)
        models.initialise(self.model, p["init"])
        self.model.to(device).train()
        self.lr = effective_lr(p)
        self.opt = SGD(self.model.parameters(), lr=self.lr, momentum=p["momentum"], weight_decay=p["weight_decay"])

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
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

        self.fns = self._step_fns()
        self.graphs, self.graph_note = [], None
        if use_graphs(spec["cuda_graphs"], device):
            try:
                self.graphs = [capture(fn, self.k.zero_, self.model, self.opt, device) for fn in self.fns]
            except RuntimeError as exc:  # an op that cannot be captured: `auto` runs eagerly, `on` says so
                if spec["cuda_graphs"] == "on":
                    raise TrainingError(f"cell {spec['study']}/{spec['cell']}: CUDA graph capture failed "
                                        f"({str(exc).splitlines()[0]}); set cuda_graphs: auto or off") from exc
                self.graphs, self.graph_note = [], f"capture failed, ran eagerly: {str(exc).splitlines()[0]}"
                log(f"CUDA graph {self.graph_note}")
        self.every = max(1, math.ceil(self.steps * p["epochs"] / MAX_LOSS_POINTS))
        self.check_every = math.ceil(self.steps / p["target_checks_per_epoch"])
        self.epoch = self.step_count = self.images_seen = 0
        self.history, self.iterations, self.noise = [], [], []
        self.train_time = self.eval_time = 0.0
        self.diverged_epoch = self.epochs_to_target = self.steps_to_target = None
        self.examples_to_target = self.time_to_target = None
        self.stopped_at_target = False

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
        """Step i of the epoch: a graph replay, or eagerly during warm-up (its rate changes every step)."""
        shape = int(i >= self.full)
        if self.step_count < self.warmup_steps or not self.graphs:
            warm = self.step_count < self.warmup_steps
            self.opt.lr = self.lr * (self.step_count + 1) / self.warmup_steps if warm else self.lr
            self.opt.zero_grad()
            self.fns[shape]()
        else:
            self.graphs[shape].replay()
        self.step_count += 1
        self.images_seen += self.sizes[i]

    def launch_epoch(self) -> None:
        """Queue one epoch of steps (checking the target mid-epoch where `target_checks_per_epoch` > 1)."""
        self.epoch += 1
        with torch.cuda.stream(self.stream) if self.stream else contextlib.nullcontext():
            self.t0 = time.perf_counter()
            self.order.copy_(torch.randperm(self.n, device=self.device, generator=self.shuffle))
            self.k.zero_()
            self.correct.zero_()
            for i in range(self.steps):
                self.advance(i)
                if self.p["target_acc"] and self.epochs_to_target is None and (i + 1) % self.check_every == 0 \
                        and i + 1 < self.steps and self._check_target(mid_epoch=True):
                    break

    def _check_target(self, mid_epoch: bool) -> bool:
        """Record the first time test accuracy reaches the target; True when the run should stop there."""
        if mid_epoch:  # a check between steps: the test set only, time paused
            elapsed = time.perf_counter() - self.t0
            acc = evaluate(self.model, self.d.x_test, self.d.y_test, self.d.normalise, self.p["eval_batch_size"])[1]
            reached = acc.item() >= self.p["target_acc"]
            self.t0 = time.perf_counter() - elapsed
        else:
            reached = self.history[-1]["test_acc"] >= self.p["target_acc"]
        if reached:
            self.epochs_to_target, self.steps_to_target = self.epoch, self.step_count
            self.examples_to_target = self.images_seen
            self.time_to_target = self.train_time + (time.perf_counter() - self.t0 if mid_epoch else 0.0)
            self.stopped_at_target = self.p["stop_at_target"]
        return reached and self.p["stop_at_target"]

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
            self._check_target(mid_epoch=False)
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


def train_seeds(spec: dict, cache: data.Cache, seeds: list[int], log: Callable[[str], None] = print,
                startup: dict | None = None) -> list[dict]:
    """Train the seeds of one cell; returns one `SeedRun.result()` per seed, plus device facts.

    On the CPU the seeds run one after another, each exactly as it would alone. On CUDA they run
    together: each seed's epoch is queued on its own stream, so small runs fill the GPU together
    (dropout draws then differ from a lone run's: they share the device's generator).
    """
    startup = {} if startup is None else startup
    p = spec["params"]
    device, device_note = pick_device(spec["device"])
    if spec.get("deterministic"):
        deterministic_kernels(True)
    d = load_data(cache, p, device)
    startup["data_on_device"] = provenance.process_age_s()  # on CUDA: includes creating the context
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    together = device.type == "cuda" and len(seeds) > 1
    runs = [SeedRun(spec, s, d, device, log) for s in (seeds if together else seeds[:1])]
    startup["model_ready"] = provenance.process_age_s()
    startup["first_step"] = provenance.process_age_s()
    if together:
        active = list(runs)
        while active:
            for run in active:
                run.launch_epoch()
            active = [run for run in active if run.finish_epoch()]
    else:  # one after another, each built just before it trains: exactly as if it ran alone
        for i, seed in enumerate(seeds):
            if i:
                runs.append(SeedRun(spec, seed, d, device, log))
            run = runs[-1]
            run.launch_epoch()
            while run.finish_epoch():
                run.launch_epoch()
    results = []
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    for run in runs:
        out = run.result()
        out["metrics"].update({"first_step_process_age_s": startup["first_step"], "startup_s": startup,
                               "device": str(device), "device_note": device_note, "gpu_mem_peak_mb": peak,
                               "seeds_together": len(seeds) if together else 1})
        out["device"], out["model"] = device, run.model
        results.append(out)
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


def run_cell(spec: dict, cache_path: Path, out_dir: Path, log: Callable[[str], None] = print) -> list[dict]:
    """Train the seeds of one grid point (`spec["seeds"]`, else the one `spec["seed"]`) and write
    each seed's metrics.json, history.csv and iterations.csv to `out_dir/seed=<n>/` (to `out_dir`
    itself for a one-seed spec without `seeds`). metrics.json is written last: its presence means
    that run finished. Returns the metrics, one per seed."""
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
    try:
        results = train_seeds(spec, cache, seeds, log, startup)
    except torch.cuda.OutOfMemoryError as exc:
        raise TrainingError(f"cell {spec['study']}/{spec['setting']}: CUDA out of memory at batch_size "
                            f"{spec['params']['batch_size']} ({len(seeds)} seed(s) together); use a smaller batch, "
                            f"fewer --resources gpu jobs or a larger GPU") from exc
    return [_write_run(folder(seed), bases[seed], result) for seed, result in zip(seeds, results)]
