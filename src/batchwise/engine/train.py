"""Train one cell: data resident on the device, seeded shuffling, SGD, one CUDA graph per step.

The whole training set lives on the device as uint8; a batch is an index gather. On CUDA the
step (gather, forward, backward, SGD update, loss/accuracy bookkeeping) is captured once in a CUDA
graph and replayed, so a step costs one launch instead of hundreds. The eager path runs the very
same step function, on CPU or as a fallback. The host reads results back once per epoch. The seeds
of a cell share one copy of the data; on CUDA they train together, each on its own stream.

The parts: `devices` (where to train), `resident` (the data on the device), `step` (SGD, the step of
each batch shape, micro-batches, graph capture), `evaluation` (evaluation, the epoch's row, the noise
scale), `record` (the state saved between epochs, the result); here, the epoch loop and the cell's job.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from batchwise.data import prepare as data
from . import models, record
from batchwise import provenance
from .checkpoint import Checkpoints
from .devices import TrainingError, deterministic_kernels, pick_device, use_graphs  # noqa: F401
from .evaluation import epoch_row, evaluate, gradient_noise_scale, noise_scale_from_norms, reaches  # noqa: F401
from batchwise.files import atomic_write_json, atomic_write_text
from .resident import SUBSET_SEED, DeviceData, load_data, sample_indices, to_device  # noqa: F401
from .step import SGD, Steps, capture, restore, snapshot  # noqa: F401 - also the engine's API here

MAX_LOSS_POINTS = 2000  # per-iteration losses kept per run, for the loss-evolution figures


def effective_lr(p: dict) -> float:
    """`lr`, scaled with the batch size relative to `base_batch_size` when `lr_scaling` asks:
    linear (Goyal et al. 2017) or square root."""
    ratio = p["batch_size"] / p["base_batch_size"] if p["lr_scaling"] != "none" else 1.0
    return p["lr"] * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[p["lr_scaling"]]



def build_model(spec: dict, d: DeviceData, device: torch.device) -> tuple[torch.nn.Module, str]:
    """The cell's model, sized from the data, initialised as the spec says, on the device in train mode."""
    p = spec["params"]
    options = {k: p[k] for k in ("bn", "pretrained") if k in p}
    model, note = models.build(spec["model"], tuple(d.x_train.shape[1:]), 10, **options)
    models.initialise(model, p["init"])
    return model.to(device).train(), note


class SeedRun:
    """One seed of a cell, read top-down: built (model, optimiser, its `step.Steps`), then per epoch
    `begin_epoch`, `advance` once per step (with mid-epoch target checks), `finish_epoch` (read the
    epoch back, evaluate, record, say whether the run goes on). `launch_epoch` queues an epoch of this
    seed alone (asynchronously on CUDA, on its own stream); `launch_together` interleaves seeds step by
    step. Every epoch trains on every image: ceil(n / batch) steps, the last one on the remainder.
    `record` saves and restores it between epochs and writes its result."""

    def __init__(self, spec: dict, seed: int, d: DeviceData, device: torch.device, log: Callable[[str], None]):
        p = self.p = spec["params"]
        self.spec, self.seed, self.d, self.device, self.log = spec, seed, d, device, log
        torch.manual_seed(seed)
        np.random.seed(seed)
        fixed = sample_indices(len(d.x_train), len(d.x_test), seed).to(device)
        self.x_train_eval, self.y_train_eval = d.x_train[fixed], d.y_train[fixed]
        self.model, self.weights_note = build_model(spec, d, device)
        self.lr = effective_lr(p)
        self.opt = SGD(self.model.parameters(), lr=self.lr, momentum=p["momentum"], weight_decay=p["weight_decay"],
                       lr_on_device=device.type == "cuda")
        # Random draws (dropout of any kind, stochastic depth, F.dropout) come from the device's one
        # generator: seeds replayed side by side would share it.
        self.random_draws = models.random_draws(self.model, tuple(d.x_train.shape[1:]))
        self.has_dropout = bool(self.random_draws)
        self.n = len(d.x_train)
        if p["batch_size"] > self.n:
            raise TrainingError(f"cell {spec['cell']}: batch_size {p['batch_size']} exceeds the {self.n} training images")
        self.stepper = Steps(self.model, self.opt, d, p["batch_size"], p.get("micro_batch"), device)
        self.steps, self.full, self.sizes = self.stepper.count, self.stepper.full, self.stepper.sizes
        self.order, self.k = self.stepper.order, self.stepper.k  # this epoch's permutation, the step counter
        self.warmup_steps = round(p["warmup_epochs"] * self.steps)
        self.shuffle = torch.Generator(device=device).manual_seed(seed)
        self.probe = torch.Generator(device=device).manual_seed(seed + 1)  # noise-scale batches only
        graphs = use_graphs(spec["cuda_graphs"], device)
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" or graphs else None  # this seed's own
        self.graph_note = self.stepper.capture(self.stream, spec, log) if graphs else None
        self.every = max(1, math.ceil(self.steps * p["epochs"] / MAX_LOSS_POINTS))
        self.check_every = math.ceil(self.steps / p["target_checks_per_epoch"])
        self.epoch = self.step_count = self.images_seen = 0
        self.check_images: int | None = 0  # test images the mid-epoch checks read (None: not counted)
        self.history, self.iterations, self.pred_counts = [], [], []
        self.train_time = self.eval_time = 0.0
        self.diverged_epoch = self.epochs_to_target = self.steps_to_target = None
        self.examples_to_target = self.time_to_target = None
        self.stopped_at_target = False

    @property
    def graphs(self) -> list:
        """The captured step graphs (empty: the steps run eagerly)."""
        return self.stepper.graphs

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
            self.stepper.correct.zero_()

    def advance(self, i: int) -> None:
        """Step i of the epoch, on the current stream. Warm-up raises the rate linearly over its steps
        (a graph reads it from the device tensor)."""
        if self.step_count < self.warmup_steps:
            self.opt.set_lr(self.lr * (self.step_count + 1) / self.warmup_steps)
        elif self.step_count == self.warmup_steps and self.warmup_steps:
            self.opt.set_lr(self.lr)
        self.stepper.run(int(i >= self.full))
        self.step_count += 1
        self.images_seen += self.sizes[i]

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

    def reached(self, ok: bool, elapsed: float) -> bool:
        """Record the first time the test accuracy reaches the target (`ok`), `elapsed` seconds into this
        epoch's training; True when the run should stop there."""
        if not ok:
            return False
        self.epochs_to_target, self.steps_to_target = self.epoch, self.step_count
        self.examples_to_target = self.images_seen
        self.time_to_target = self.train_time + elapsed
        self.stopped_at_target = self.p["stop_at_target"]
        return self.p["stop_at_target"]

    def finish_epoch(self) -> bool:
        """Read the epoch back, evaluate, record; False once the run is over."""
        with self.on_stream():
            steps_done = int(self.k.item()) if self.stopped_at_target else self.steps
            epoch_losses = self.stepper.losses[:steps_done].cpu()  # the one host sync of the epoch
            t1 = time.perf_counter()
            self.train_time += t1 - self.t0
            test = evaluate(self.model, self.d.x_test, self.d.y_test, self.d.normalise, self.p["eval_batch_size"])
            train = evaluate(self.model, self.x_train_eval, self.y_train_eval, self.d.normalise, self.p["eval_batch_size"])
            row, finite = epoch_row(self, epoch_losses, steps_done, test, train)
            self.pred_counts = test[3].tolist()
            row.update(epoch_time_s=t1 - self.t0, elapsed_s=self.train_time)
            self.eval_time += time.perf_counter() - t1
        self.history.append(row)
        first = (self.epoch - 1) * self.steps
        self.iterations += [(first + i + 1, self.epoch, float(epoch_losses[i]))
                            for i in range(steps_done) if (first + i) % self.every == 0]
        if not finite:
            self.diverged_epoch = self.epoch
            self.log(f"seed {self.seed} epoch {self.epoch}/{self.p['epochs']}  diverged: non-finite loss or logits; "
                     f"stopping this run (recorded as a result, not an error)")
            return False
        if self.p["target_acc"] and self.epochs_to_target is None:
            self.reached(row["test_acc"] >= self.p["target_acc"], 0.0)
        self.log(record.epoch_line(self, row))
        return self.epoch < self.p["epochs"] and not self.stopped_at_target



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
        record.load_state(run, state)
        log(f"seed {seed}: resumed at epoch {run.epoch} (of {spec['params']['epochs']}) from {store.folder(seed)}")
    return run




def check_targets(runs: list[SeedRun]) -> list[SeedRun]:
    """Mid-epoch target checks of seeds at one point of an epoch, each seed's training clock paused
    meanwhile: whether its test accuracy reaches the target. On a GPU each seed's accuracy is queued
    on its own stream and read back with one synchronisation; on a CPU a check stops reading the test
    set once its errors decide it (`reaches`: the same verdict). Returns the runs that stop here."""
    now = time.perf_counter()
    elapsed = [now - run.t0 for run in runs]
    if runs[0].device.type == "cpu":
        checked = [reaches(run.model, run.d.x_test, run.d.y_test, run.d.normalise, run.p["eval_batch_size"],
                           run.p["target_acc"]) for run in runs]
    else:
        accs = []
        for run in runs:
            with run.on_stream():
                accs.append(evaluate(run.model, run.d.x_test, run.d.y_test, run.d.normalise, run.p["eval_batch_size"])[1])
        if runs[0].device.type == "cuda":
            torch.cuda.synchronize(runs[0].device)
        checked = [(acc.item() >= run.p["target_acc"], len(run.d.x_test)) for run, acc in zip(runs, accs)]
    for run, (_, read) in zip(runs, checked):
        run.check_images = None if run.check_images is None else run.check_images + read
    stopped = [run for run, (ok, _), e in zip(runs, checked, elapsed) if run.reached(ok, e)]
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
    """Train the seeds of one cell; returns one `record.result` per seed, plus device facts.

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
                store.save(run.seed, record.state(run))
            return True
        results.append(finish(run))
        return False

    def finish(run: SeedRun) -> dict:
        out = record.result(run)
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

