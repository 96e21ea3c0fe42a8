"""Train one cell: data resident on the device, seeded shuffling, SGD, one CUDA graph per step.

The whole training set lives on the device as uint8; a batch is an index gather. On CUDA the
step (gather, forward, backward, SGD update, loss/accuracy bookkeeping) is captured once in a CUDA
graph and replayed, so a step costs one launch instead of hundreds. The eager path runs the very
same `step` function, on CPU or as a fallback. The host reads results back once per epoch.
"""
from __future__ import annotations

import math
import os
import time
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
    """`auto` takes CUDA when present, else CPU (and says so); `cuda` without a GPU is an error."""
    if wanted == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda was asked for but no CUDA GPU is visible; "
                            "set device: auto (falls back to CPU) or device: cpu")
    if wanted == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu"), "cpu (no CUDA GPU visible)" if wanted == "auto" else "cpu"
    return torch.device("cuda"), "cuda"


def use_graphs(setting: str, device: torch.device) -> bool:
    """CUDA graphs are a CUDA feature: `auto` and `on` use them there, never on CPU."""
    return device.type == "cuda" and setting in ("auto", "on")


def to_device(x: np.ndarray, y: np.ndarray, subset: int | None, device: torch.device):
    """uint8 NHWC images -> uint8 NCHW on the device (4x smaller than float), labels int64."""
    if subset:
        x, y = x[:subset], y[:subset]
    return (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device),
            torch.from_numpy(y.astype(np.int64)).to(device))


@torch.no_grad()
def evaluate(model, x, y, normalise: Callable, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean loss, accuracy and the count of non-finite logits over (x, y), in eval mode (dropout off,
    batch norm on running statistics), in large batches; results stay on the device. A model whose
    logits are NaN has no accuracy: the caller checks the third value (argmax of NaN is class 0)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    bad = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(x), batch_size):
        out = model(normalise(x[i:i + batch_size]))
        loss_sum += F.cross_entropy(out, y[i:i + batch_size], reduction="sum")
        correct += (out.argmax(1) == y[i:i + batch_size]).sum()
        bad += (~torch.isfinite(out)).sum()
    model.train()
    return loss_sum / len(x), correct / len(x), bad


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


def train(spec: dict, cache: data.Cache, log: Callable[[str], None] = print, startup: dict | None = None) -> dict:
    """Run one cell. Returns {"metrics": dict, "history": list[dict], "iterations": list[tuple]}.

    Every epoch trains on every training image: ceil(n / batch_size) steps, the last one on the
    remainder. After each epoch, test and training accuracy and loss are measured alike: eval mode,
    the test set and a fixed subset of the training set of the same size. `running_loss` and
    `running_acc` are the in-epoch averages in train mode, while the weights move.
    `startup` collects the process age (s) at each start-up stage, for metrics["startup_s"].
    """
    startup = {} if startup is None else startup
    p, seed = spec["params"], spec["seed"]
    device, device_note = pick_device(spec["device"])
    if spec.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read by cuBLAS before its first call
        # warn_only: a few kernels (MobileNetV2's pooling backward) have no deterministic CUDA version
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(seed)
    np.random.seed(seed)

    x_train, y_train = to_device(cache.x_train, cache.y_train, p["train_subset"], device)
    x_test, y_test = to_device(cache.x_test, cache.y_test, p["test_subset"], device)
    fixed = train_eval_indices(len(x_train), len(x_test), seed).to(device)
    x_train_eval, y_train_eval = x_train[fixed], y_train[fixed]
    startup["data_on_device"] = provenance.process_age_s()  # on CUDA: includes creating the context
    mean = torch.tensor(cache.meta["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(cache.meta["std"], device=device).view(1, -1, 1, 1)
    normalise = lambda x: (x.float() / 255 - mean) / std  # noqa: E731 - one line, on the device

    options = {k: p[k] for k in ("bn", "pretrained") if k in p}
    model, weights_note = models.build(spec["model"], tuple(x_train.shape[1:]), 10, **options)
    models.initialise(model, p["init"])
    model.to(device).train()
    opt = SGD(model.parameters(), lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"])

    n, bs = len(x_train), p["batch_size"]
    if bs > n:
        raise TrainingError(f"cell {spec['cell']}: batch_size {bs} exceeds the {n} training images")
    full, rest = divmod(n, bs)  # `full` steps of `bs` images, then one of `rest` (if any): every image
    steps = full + (rest > 0)
    order = torch.zeros(n, dtype=torch.long, device=device)            # this epoch's permutation
    offsets = torch.arange(bs, device=device)
    k = torch.zeros(1, dtype=torch.long, device=device)                 # step counter, on the device
    losses = torch.zeros(steps, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    shuffle = torch.Generator(device=device).manual_seed(seed)

    def step_on(idx: torch.Tensor) -> None:
        xb, yb = normalise(x_train.index_select(0, idx)), y_train.index_select(0, idx)
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        loss.backward()
        opt.step()
        losses.index_copy_(0, k, loss.detach().view(1))
        correct.add_((out.argmax(1) == yb).sum())
        k.add_(1)

    def full_step() -> None:  # batch k of the epoch; an index gather, so one graph serves every k
        step_on(order.index_select(0, k * bs + offsets))

    def last_step() -> None:  # the remainder: always the permutation's last `rest` entries
        step_on(order[full * bs:])

    startup["model_ready"] = provenance.process_age_s()
    kinds = [(full_step, full), (last_step, 1 if rest else 0)]
    graphs, graph_note = [], None
    if use_graphs(spec["cuda_graphs"], device):
        try:
            graphs = [capture(fn, k.zero_, model, opt, device) if count else None for fn, count in kinds]
        except RuntimeError as exc:  # an op that cannot be captured: `auto` runs eagerly, `on` says so
            if spec["cuda_graphs"] == "on":
                raise TrainingError(f"cell {spec['study']}/{spec['cell']}: CUDA graph capture failed "
                                    f"({str(exc).splitlines()[0]}); set cuda_graphs: auto or off") from exc
            graphs, graph_note = [], f"capture failed, ran eagerly: {str(exc).splitlines()[0]}"
            log(f"CUDA graph {graph_note}")
    every = max(1, math.ceil(steps * p["epochs"] / MAX_LOSS_POINTS))
    history, iterations = [], []
    train_time = eval_time = 0.0
    startup["first_step"] = first_step_age = provenance.process_age_s()
    diverged_epoch = time_to_target = epochs_to_target = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    for epoch in range(1, p["epochs"] + 1):
        t0 = time.perf_counter()
        order.copy_(torch.randperm(n, device=device, generator=shuffle))
        k.zero_()
        correct.zero_()
        for i, (fn, count) in enumerate(kinds):
            for _ in range(count):
                if graphs:
                    graphs[i].replay()
                else:
                    opt.zero_grad()
                    fn()
        epoch_losses = losses.cpu()  # the one host sync of the epoch
        t1 = time.perf_counter()
        test_loss, test_acc, bad_test = evaluate(model, x_test, y_test, normalise, p["eval_batch_size"])
        train_loss, train_acc, bad_train = evaluate(model, x_train_eval, y_train_eval, normalise, p["eval_batch_size"])
        finite = (bool(torch.isfinite(epoch_losses).all()) and bad_test.item() == 0 and bad_train.item() == 0
                  and math.isfinite(test_loss.item()) and math.isfinite(train_loss.item()))
        measured = lambda v: v.item() if finite else math.nan  # noqa: E731 - NaN logits have no accuracy
        train_time, eval_time = train_time + t1 - t0, eval_time + time.perf_counter() - t1
        row = {"epoch": epoch, "running_loss": float(epoch_losses.mean()), "running_acc": correct.item() / n,
               "train_loss": measured(train_loss), "train_acc": measured(train_acc),
               "test_loss": measured(test_loss), "test_acc": measured(test_acc),
               "epoch_time_s": t1 - t0, "elapsed_s": train_time}
        history.append(row)
        iterations += [((epoch - 1) * steps + i + 1, epoch, float(epoch_losses[i]))
                       for i in range(steps) if ((epoch - 1) * steps + i) % every == 0]
        if not finite:
            diverged_epoch = epoch
            log(f"epoch {epoch}/{p['epochs']}  diverged: non-finite loss or logits; stopping this cell "
                f"(recorded as a result, not an error)")
            break
        if p["target_acc"] and epochs_to_target is None and row["test_acc"] >= p["target_acc"]:
            epochs_to_target, time_to_target = epoch, train_time
        eta = (p["epochs"] - epoch) * train_time / epoch
        log(f"epoch {epoch}/{p['epochs']}  running_loss {row['running_loss']:.4f}  train_acc {100 * row['train_acc']:.2f}%  "
            f"test_loss {row['test_loss']:.4f}  test_acc {100 * row['test_acc']:.2f}%  epoch {t1 - t0:.2f}s  ETA {eta:.0f}s")

    last = history[-1]
    done = diverged_epoch is None  # a diverged run's final numbers and times are not measurements
    final = lambda v: v if done else None  # noqa: E731
    metrics = {
        "status": "ok" if done else "diverged",
        "diverged": not done,
        "diverged_epoch": diverged_epoch,
        "epochs_run": len(history),
        "final_train_loss": final(last["train_loss"]), "final_train_acc": final(last["train_acc"]),
        "final_test_loss": final(last["test_loss"]), "final_test_acc": final(last["test_acc"]),
        "final_running_loss": final(last["running_loss"]), "final_running_acc": final(last["running_acc"]),
        "first_epoch_running_loss": history[0]["running_loss"] if math.isfinite(history[0]["running_loss"]) else None,
        "best_test_acc": max((h["test_acc"] for h in history if math.isfinite(h["test_acc"])), default=None),
        "target_acc": p["target_acc"], "epochs_to_target": epochs_to_target, "time_to_target_s": time_to_target,
        "train_time_s": final(train_time), "eval_time_s": final(eval_time), "total_time_s": final(train_time + eval_time),
        "mean_epoch_s": final(train_time / len(history)), "time_until_stop_s": train_time + eval_time,
        "steps_per_epoch": steps, "images_per_epoch": n, "train_eval_images": len(fixed),
        "first_step_process_age_s": first_step_age, "startup_s": startup,
        "device": str(device), "device_note": device_note, "cuda_graphs": bool(graphs),
        "cuda_graphs_note": graph_note,
        "gpu_mem_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "n_params": models.n_params(model), "weights": weights_note,
    }
    return {"metrics": metrics, "history": history, "iterations": iterations, "device": device, "model": model}


def run_cell(spec: dict, cache_path: Path, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Train one cell and write metrics.json, history.csv and iterations.csv atomically to `out_dir`.

    metrics.json is written last: its presence means the cell finished.
    """
    startup = {"imports_done": provenance.process_age_s()}
    cache = data.load(cache_path)
    startup["data_loaded"] = provenance.process_age_s()
    base = {"schema": 1, "study": spec["study"], "cell": spec["cell"], "setting": spec["setting"],
            "seed": spec["seed"], "spec": spec, "data": {k: v for k, v in cache.meta.items() if k not in ("mean", "std")}}
    if not cache.meta.get("available", True):
        log(f"data set '{spec['dataset']}' is not available: {cache.meta.get('reason')}")
        metrics = {**base, "status": "no-data", "reason": cache.meta.get("reason"), "env": provenance.environment()}
        atomic_write_text(out_dir / "history.csv", "epoch\n")
        atomic_write_text(out_dir / "iterations.csv", "step,epoch,loss\n")
        atomic_write_json(out_dir / "metrics.json", metrics)
        return metrics
    try:
        result = train(spec, cache, log, startup)
    except torch.cuda.OutOfMemoryError as exc:
        raise TrainingError(f"cell {spec['study']}/{spec['cell']}: CUDA out of memory at batch_size "
                            f"{spec['params']['batch_size']}; use a smaller batch or a larger GPU") from exc
    hist = result["history"]
    atomic_write_text(out_dir / "history.csv", ",".join(hist[0]) + "\n" + "".join(
        ",".join(repr(v) for v in row.values()) + "\n" for row in hist))
    atomic_write_text(out_dir / "iterations.csv", "step,epoch,loss\n" + "".join(
        f"{s},{e},{loss!r}\n" for s, e, loss in result["iterations"]))
    metrics = {**base, **result["metrics"], "env": provenance.environment(result["device"])}
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
