"""The solo timing pass: each setting's compute time, measured with the device to itself.

Runs that share a GPU measure the crowd, not the setting, so the time tables and time claims use
what this pass measures (`aggregate.solo_times`): a run's compute time is its full steps x seconds
per full step + its remainder steps x seconds per remainder step + its warm-up steps x seconds per
eager step + its evaluations x seconds per evaluation.

One process times every setting it is given, of every study (start-up paid once; one job that
holds every GPU slot). Each setting is built once, as its training job builds it (`train.SeedRun`:
the same model, optimiser, CUDA graphs and data on the device), and driven through the engine's own
step, `SeedRun.advance`. It is measured in `bursts` bursts, interleaved: burst 1 of every setting,
then burst 2 of every setting, and so on, so that a drift of the machine (clock boost, heat,
another tenant) hits every setting alike and shows in each setting's spread rather than in the
difference between two settings. Each burst takes the settings in another order (shuffled, seeded
by the burst's number), so that a cost tied to a place in the pass (right after a large model, at the
end of a burst) lands on every setting alike too. Per burst and setting:

  step             `steps` full-batch steps (graph replays where the run uses graphs)
  remainder        the epoch's last, smaller batch (images % batch_size), timed on its own:
                   ceil(steps / full steps per epoch) of them, as often as it comes in training
  eager_step       (warmup_epochs > 0 only) full steps as warm-up runs them, the learning rate set
  eager_remainder  every step (eagerly off CUDA; on CUDA a rate update and a graph replay); the
                   remainder too where the warm-up reaches an epoch's end
  eval_test        one evaluation of the test set (an epoch's end, and each mid-epoch target check)
  eval_train       one evaluation of the fixed training subset (an epoch's end)

An evaluation's cost depends on the network and the images, not on how the network was trained:
settings that differ only in training parameters (`TRAINING_ONLY`: batch size, learning rate, init,
...) share one evaluation timing per burst, taken on the model of whichever of them comes first in
that burst's order (`eval_timed_on` names it), and each of them records it as its own.

Each is seconds per step (per evaluation) in that burst, from the host reading the device's results
back, as training does. Before burst 1 an untimed round warms every kind of step up (`warmup` steps
each: CUDA graphs, cuDNN's choices, allocations) and both evaluations. A burst starts right after the
other settings' bursts, as an epoch's steps start right after an evaluation in training: no untimed
step before it. `deterministic: true` applies here as in training. The gradient-noise-scale probe
of some studies is an instrument, not training, and is not timed.

Every setting's run stays built until the pass ends (on CUDA with its graphs' memory pools), also one
that meets the device's memory limit: that one is recorded so ("CUDA out of memory") and left out of
the later bursts (its runs' tables then show their own wall time, and say so), but its graphs live on
and the cache is never emptied, since live graphs may share its stream's cuBLAS workspace. Steps and
evaluations run on the run's own stream, as in training. fp32 is pinned (no TF32), as in training.
"""
from __future__ import annotations

import datetime
import functools
import json
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from batchwise.data import prepare as data
from . import models, train
from batchwise import provenance
from batchwise.files import atomic_write_json

clock = time.perf_counter  # the pass's clock (a test puts a fake one here)

EVALS = ("eval_test", "eval_train")  # the two evaluations of an epoch's end
# Parameters that change how a run trains, not what one evaluation of its network computes.
TRAINING_ONLY = frozenset({"batch_size", "lr", "momentum", "weight_decay", "init", "epochs", "target_acc",
                           "target_checks_per_epoch", "stop_at_target", "micro_batch", "lr_scaling",
                           "base_batch_size", "warmup_epochs", "noise_scale_batches", "noise_scale_draws"})


@dataclass
class Timed:
    """One setting under measurement: its run, what it takes, and its bursts so far."""

    spec: dict
    run: train.SeedRun
    device: torch.device
    warmup_steps: int  # the run's own warm-up steps (the pass sets run.warmup_steps as it drives)
    reps: dict[str, int]  # timed steps of each kind this setting's runs take, per burst
    seconds: dict[str, list[float]] = field(default_factory=dict)  # per kind and evaluation: one value per burst
    sequence: list[int] = field(default_factory=list)  # each burst's position in the whole pass
    eval_timed_on: list[str] = field(default_factory=list)  # per burst: the setting whose model was evaluated

    @functools.cached_property
    def evaluation(self) -> str:
        """This setting's `evaluation_kind`: the settings that share its evaluation timing."""
        return evaluation_kind(self.spec)


def evaluation_kind(spec: dict) -> str:
    """What one evaluation's cost depends on: the spec without its identity and training-only parameters
    (`TRAINING_ONLY`). Settings of any study with the same kind evaluate the same network on as many images."""
    rest = {k: v for k, v in spec.items() if k not in ("study", "setting", "cell", "seed", "seeds", "params")}
    params = {k: v for k, v in spec["params"].items() if k not in TRAINING_ONLY}
    return json.dumps([rest, params], sort_keys=True)


def step_kinds(run: train.SeedRun, warmup_steps: int, steps: int) -> dict[str, int]:
    """The kinds of step a run of this setting takes, and how many of each a burst times."""
    has_rest = run.steps > run.full
    remainder = math.ceil(steps / run.full)
    reps = {"step": steps}
    if has_rest:
        reps["remainder"] = remainder
    if warmup_steps:
        reps["eager_step"] = steps
        if has_rest and warmup_steps >= run.steps:  # the warm-up reaches an epoch's last step
            reps["eager_remainder"] = remainder
    return reps


def drive(run: train.SeedRun, kind: str, count: int) -> None:
    """`count` steps of one kind through the engine's step. Full steps walk the epoch's full batches
    from the first (the step counter wraps before the remainder); a remainder step is the epoch's
    last. The `eager_*` kinds run as warm-up steps do (the engine sets the rate before each step while
    step_count < warmup_steps): eagerly off CUDA; on CUDA a graph replay that reads the rate from the
    device, so there they cost what a warm-up step really costs, a rate update plus a replay."""
    run.step_count, run.warmup_steps = 0, count if kind.startswith("eager") else 0
    with run.on_stream():  # the run's own stream, as in training: its capture's restore was queued there
        _drive_steps(run, kind, count)


def _drive_steps(run: train.SeedRun, kind: str, count: int) -> None:
    for j in range(count):
        if kind.endswith("remainder"):
            run.k.fill_(run.full)
            run.advance(run.full)
        else:
            if j % run.full == 0:
                run.k.zero_()
            run.advance(j % run.full)


def evaluate(run: train.SeedRun, which: str) -> None:
    """One evaluation as an epoch's end runs it, read back to the host."""
    x, y = (run.d.x_test, run.d.y_test) if which == "eval_test" else (run.x_train_eval, run.y_train_eval)
    with run.on_stream():  # after the steps queued there, as an epoch's end evaluates in training
        for value in train.evaluate(run.model, x, y, run.d.normalise, run.p["eval_batch_size"]):
            value.tolist()


def synchronise(device: torch.device) -> Callable[[], None]:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        return functools.partial(torch.cuda.synchronize, device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def timed(sync: Callable[[], None], work: Callable[[], None]) -> float:
    """Seconds `work` takes on the device: synchronised before and after."""
    sync()
    start = clock()
    work()
    sync()
    return clock() - start


def build(spec: dict, d: train.DeviceData, device: torch.device, steps: int) -> Timed:
    """A setting's run for timing, built as its training job builds it (first seed)."""
    train.deterministic_kernels(bool(spec.get("deterministic")))
    run = train.SeedRun(spec, spec["seed"], d, device, log=lambda line: None)
    run.order.copy_(torch.randperm(run.n, device=device, generator=run.shuffle))
    synchronise(device)()  # set-up on the default stream and the capture's restore on the run's: done
    reps = step_kinds(run, run.warmup_steps, steps)
    return Timed(spec, run, device, run.warmup_steps, reps, {key: [] for key in (*reps, *EVALS)})


def warm_up(t: Timed, count: int) -> None:
    """Untimed: `count` steps of every kind the setting takes, and both evaluations."""
    train.deterministic_kernels(bool(t.spec.get("deterministic")))
    for kind in t.reps:
        drive(t.run, kind, count)
    for which in EVALS:
        evaluate(t.run, which)
    synchronise(t.device)()


def burst(t: Timed, evaluated_by: Timed | None = None) -> None:
    """One burst of a setting: seconds per step of each kind, and per evaluation, timed here or, with
    `evaluated_by` (a setting of the same `evaluation_kind`, timed earlier in this burst), taken from it."""
    train.deterministic_kernels(bool(t.spec.get("deterministic")))
    sync = synchronise(t.device)
    for kind, count in t.reps.items():
        t.seconds[kind].append(timed(sync, functools.partial(drive, t.run, kind, count)) / count)
    source = evaluated_by or t
    for which in EVALS:
        t.seconds[which].append(source.seconds[which][-1] if evaluated_by else
                                timed(sync, functools.partial(evaluate, t.run, which)))
    t.eval_timed_on.append(f"{source.spec['study']}/{source.spec['setting']}")


def record(t: Timed, env: dict) -> dict:
    """A setting's timing record: per kind, the seconds of each burst and their mean."""
    run, spec = t.run, t.spec
    out = {"study": spec["study"], "setting": spec["setting"], "batch_size": run.p["batch_size"],
           "steps_per_epoch": run.steps, "full_steps_per_epoch": run.full,
           "remainder_batch": run.sizes[-1] if run.steps > run.full else None,
           "warmup_steps": t.warmup_steps, "bursts": len(t.sequence), "timed_per_burst": t.reps,
           "burst_sequence": t.sequence, "eval_timed_on": t.eval_timed_on,
           "cuda_graphs": bool(run.graphs),
           "deterministic": bool(spec.get("deterministic"))}
    for key, values in t.seconds.items():
        out[f"{key}_s"] = statistics.fmean(values)
        out[f"{key}_s_bursts"] = values
    out["eval_s"] = out["eval_test_s"] + out["eval_train_s"]  # one epoch's end
    out["epoch_s"] = run.full * out["step_s"] + out.get("remainder_s", 0.0)  # an epoch's steps, warm-up over
    return {**out, "device": str(t.device), "env": env}


class _DeviceData:
    """Each (data set, subsets, device)'s data moved to the device once, shared by its settings."""

    def __init__(self, caches: dict[str, str | Path]):
        self.paths, self.caches, self.moved = caches, {}, {}

    def cache(self, dataset: str) -> data.Cache:
        if dataset not in self.caches:
            self.caches[dataset] = data.load(Path(self.paths[dataset]))
        return self.caches[dataset]

    def get(self, spec: dict, device: torch.device) -> train.DeviceData:
        p = spec["params"]
        key = (spec["dataset"], p["train_subset"], p["test_subset"], str(device))
        if key not in self.moved:
            self.moved[key] = train.load_data(self.cache(spec["dataset"]), p, device)
        return self.moved[key]


def _out_of_memory(spec: dict, records: dict, log: Callable[[str], None]) -> None:
    """Recorded, not fatal: the other settings are still timed. No `torch.cuda.empty_cache()` here:
    the other settings' graphs are alive, and memory freed under them must stay with this process."""
    records[(spec["study"], spec["setting"])] = {"study": spec["study"], "setting": spec["setting"],
                                                 "error": "CUDA out of memory"}
    log(f"{spec['study']}/{spec['setting']}: CUDA out of memory; not timed")


def time_settings(specs: list[dict], caches: dict[str, str | Path], bursts: int = 5, steps: int = 20,
                  warmup: int = 10, log: Callable[[str], None] = print) -> dict:
    """Time every setting of `specs` (resolved specs, one per setting; `caches`: data set -> its
    cache file), bursts interleaved across all of them. Returns {"records": one per setting, in the
    order of `specs`, "sequence": [study, setting, burst] in the order the bursts ran}."""
    if any(spec.get("deterministic") for spec in specs):
        train.deterministic_kernels(True)  # before the first cuBLAS call: it reads its workspace setting then
    precision = models.pin_fp32()  # as in training: fp32 everywhere, no TF32
    moved, records, active = _DeviceData(caches), {}, []
    env = None
    kept: list[Timed] = []  # every built setting, left out or not, until the pass ends: see train.KEPT_GRAPHS
    for spec in specs:
        key = (spec["study"], spec["setting"])
        cache = moved.cache(spec["dataset"])
        if not cache.meta.get("available", True):
            records[key] = {"study": spec["study"], "setting": spec["setting"],
                            "error": f"no data: {cache.meta.get('reason')}"}
            continue
        device, _ = train.pick_device(spec["device"])
        env = env or provenance.environment(device)
        try:
            t = build(spec, moved.get(spec, device), device, steps)
            warm_up(t, warmup)
        except torch.cuda.OutOfMemoryError:
            _out_of_memory(spec, records, log)
            continue
        active.append(t)
        kept.append(t)
        log(f"built and warmed up: {spec['study']}/{spec['setting']} (steps timed per burst: {t.reps})")
    sequence = []
    for b in range(bursts):
        start = clock()
        order = list(active)
        random.Random(b).shuffle(order)
        evaluated: dict[str, Timed] = {}  # evaluation kind -> the setting that timed it in this burst
        for t in order:
            try:
                burst(t, evaluated.get(t.evaluation))
            except torch.cuda.OutOfMemoryError:
                active.remove(t)
                _out_of_memory(t.spec, records, log)
                continue
            evaluated.setdefault(t.evaluation, t)
            t.sequence.append(len(sequence))
            sequence.append([t.spec["study"], t.spec["setting"], b + 1])
        log(f"burst {b + 1}/{bursts}: {len(active)} settings in {clock() - start:.1f} s")
    for t in active:
        records[(t.spec["study"], t.spec["setting"])] = {**record(t, env), "precision": precision}
        log(f"{t.spec['study']}/{t.spec['setting']}: ms per step by burst "
            + " ".join(f"{1000 * s:.3f}" for s in t.seconds["step"]))
    return {"records": [records[(s["study"], s["setting"])] for s in specs], "sequence": sequence}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def time_studies(specs: list[dict], caches: dict[str, str | Path], outs: dict[str, str | Path], bursts: int = 5,
                 steps: int = 20, warmup: int = 10, log: Callable[[str], None] = print) -> dict:
    """The timing pass of every setting in `specs`, written as one JSON file per study (`outs`: study
    -> path); a study without settings here gets a file without records."""
    started = _utc_now()
    result = time_settings(specs, caches, bursts, steps, warmup, log)
    when = {"started": started, "finished": _utc_now(), "threads": torch.get_num_threads()}
    for study, path in outs.items():
        atomic_write_json(Path(path), {
            "schema": 2, "bursts": bursts, "steps": steps, "warmup": warmup, **when,
            "settings": [r for r in result["records"] if r["study"] == study],
            "sequence": result["sequence"],  # the whole pass, every study: the interleaving as it ran
        })
    return result
