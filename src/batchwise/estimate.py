"""How long a config's training takes on this machine's CPU, from step times measured here.

Run by the workflow before the first job (`onstart`) when training would run on the CPU: a user
without a GPU learns that the default config takes days there, and that `make quick` exists. The
numbers are measured, not guessed: a few training steps (forward, backward, SGD update) of each model
at its smallest and largest batch size (capped), on random inputs of the data set's shape, with the
jobs' thread count; other batch sizes are interpolated linearly in the batch size (a step costs a
fixed part plus a part per example), larger ones extrapolated per example. Evaluation is not counted,
so the estimate is a lower bound.
"""
from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any

from .config import SYNTHETIC_TRAIN_SIZE, TRAIN_SIZES, Cell, Setting, resolve, resolve_setting

# Below this many training examples in all (the quick and smoke configs) there is nothing to warn about.
MIN_EXAMPLES = 5_000_000
MEASURE_CAP = 512  # largest batch measured; larger ones are extrapolated per example
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar10_grey": (1, 32, 32)}
MODEL_OPTIONS = {"mlp": ("bn",), "cnn2": ("bn",)}  # options that change the cost of a step


def _train_size(config: dict, spec: dict) -> int:
    size = SYNTHETIC_TRAIN_SIZE if config.get("synthetic_data") else TRAIN_SIZES[spec["dataset"]]
    return min(size, spec["params"].get("train_subset") or size)


def examples(config: dict, cells: list[Cell]) -> int:
    """Training examples the cells process in all (epochs x training-set size)."""
    total = 0
    for cell in cells:
        spec = resolve(config, cell)
        total += spec["params"]["epochs"] * _train_size(config, spec)
    return total


def cpu_only(device: str) -> bool:
    """Whether training with `device` (config value) runs on this machine's CPU."""
    if device == "cpu":
        return True
    if device == "cuda":
        return False
    import torch

    mps = getattr(torch.backends, "mps", None)
    return not torch.cuda.is_available() and not (mps is not None and mps.is_available())


def measure_step_s(model_name: str, shape: tuple[int, int, int], batch_size: int, options: dict[str, Any],
                   steps: int = 2) -> float:
    """Median seconds of one SGD training step of a model at a batch size, after one warm-up step."""
    import torch
    import torch.nn.functional as F

    from . import models

    model, _ = models.build(model_name, shape, **options)
    model.train()
    x = torch.randn(batch_size, *shape)
    y = torch.randint(0, 10, (batch_size,))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.add_(p.grad, alpha=-0.01)
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def step_time_table(config: dict, cells: list[Cell], threads: int) -> dict[tuple, dict[int, float]]:
    """Measured seconds per step, {(model, dataset, options): {batch size: seconds}}, at each kind's
    smallest and largest batch size (capped at MEASURE_CAP)."""
    import torch

    torch.set_num_threads(max(1, threads))
    batches: dict[tuple, set[int]] = {}
    for cell in cells:
        spec = resolve(config, cell)
        batches.setdefault(_kind(spec), set()).add(min(spec["params"]["batch_size"], MEASURE_CAP))
    first = next(iter(batches))
    measure_step_s(first[0], SHAPES[first[1]], 1, dict(first[2]))  # the process's first steps run slow: discard
    table = {}
    for kind, sizes in batches.items():
        model_name, dataset, options = kind
        table[kind] = {b: measure_step_s(model_name, SHAPES[dataset], b, dict(options))
                       for b in sorted({min(sizes), max(sizes)})}
    return table


def _kind(spec: dict) -> tuple:
    options = tuple((k, spec["params"][k]) for k in MODEL_OPTIONS.get(spec["model"], ()))
    return spec["model"], spec["dataset"], options


def _step_s(measured: dict[int, float], batch_size: int) -> float:
    """Seconds per step at `batch_size` from the measured points (linear in the batch size)."""
    (b0, t0), (b1, t1) = list(measured.items())[0], list(measured.items())[-1]
    if batch_size >= b1:
        return t1 * batch_size / b1
    slope = (t1 - t0) / (b1 - b0) if b1 != b0 else t0 / b0
    return max(t0 + slope * (batch_size - b0), 0.0)


def training_seconds(config: dict, cells: list[Cell], table: dict[tuple, dict[int, float]]) -> float:
    """Seconds of training steps for the cells, one after another."""
    total = 0.0
    for cell in cells:
        spec = resolve(config, cell)
        batch = spec["params"]["batch_size"]
        steps = spec["params"]["epochs"] * math.ceil(_train_size(config, spec) / batch)
        total += steps * _step_s(table[_kind(spec)], batch)
    return total


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def cpu_warning(config: dict, cells: list[Cell], cores: int, threads: int = 2) -> str | None:
    """The warning the workflow prints before its first job when training runs on the CPU and is
    long; None where it runs on a GPU or is short."""
    if not cells or examples(config, cells) < MIN_EXAMPLES or not cpu_only(config["device"]):
        return None
    threads = max(1, min(threads, cores))
    table = step_time_table(config, cells, threads)
    parallel = max(1, cores // threads)
    seconds = training_seconds(config, cells, table) / parallel
    shown = "; ".join(f"{m}{' ' + ','.join(f'{k}={v}' for k, v in opts) if opts else ''} on {d}: "
                      + ", ".join(f"{1000 * t:.1f} ms at batch {b}" for b, t in steps.items())
                      for (m, d, opts), steps in table.items())
    return (f"No GPU: the {len(cells)} training runs left will train on this CPU for about {_duration(seconds)} "
            f"({parallel} job(s) at a time, {threads} threads each; evaluation not counted). Measured per step "
            f"here: {shown}.\nFor every study reduced to minutes on a CPU, stop (Ctrl-C) and run `make quick` "
            f"(or snakemake --configfile config/quick.yaml). Going on with this config.")


# ---------------------------------------------------------------------------------------------
# the order of the jobs: longest first

BENCHMARKS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.json"
DEFAULT_STEP_S = 0.001  # a model docs/benchmarks.json has never timed: 1 ms per step


@functools.cache
def device_step_table(path: Path = BENCHMARKS) -> dict[str, dict[int, float]]:
    """Seconds per training step on a GPU, {model: {batch size: seconds}}, from the engine's CUDA-graph
    timings recorded in docs/benchmarks.json (the smallest figure where a setting was timed twice);
    empty when the file is absent or unreadable."""
    try:
        records = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    table: dict[str, dict[int, float]] = {}
    for r in records if isinstance(records, list) else []:
        if r.get("variant") == "graph" and r.get("model") and r.get("batch_size") and r.get("ms_per_step"):
            sizes = table.setdefault(r["model"], {})
            b = int(r["batch_size"])
            sizes[b] = min(sizes.get(b, math.inf), r["ms_per_step"] / 1000)
    return {m: dict(sorted(s.items())) for m, s in table.items()}


def gpu_step_s(model: str, batch: int) -> float:
    """Estimated GPU seconds per training step of `model` at `batch`: the recorded step times at the
    nearest timed batch sizes (linear in between, proportional beyond the largest)."""
    timed = device_step_table().get(model)
    if not timed:
        return DEFAULT_STEP_S
    below = [b for b in timed if b <= batch]
    above = [b for b in timed if b >= batch]
    if not below:
        return timed[above[0]]
    if not above:
        return timed[below[-1]] * batch / below[-1]
    return _step_s({below[-1]: timed[below[-1]], above[0]: timed[above[0]]}, batch)


def job_seconds(config: dict, setting: Setting) -> float:
    """Estimated GPU seconds of training of one job (a grid point, all of its seeds, one after another):
    steps x `gpu_step_s`. Only the order matters to the scheduler: it starts the longest jobs first, so
    the last job to finish is a short one."""
    spec = resolve_setting(config, setting)
    batch = spec["params"]["batch_size"]
    steps = spec["params"]["epochs"] * math.ceil(_train_size(config, spec) / batch) * len(setting.seeds)
    return steps * gpu_step_s(spec["model"], batch)


def job_priority(config: dict, setting: Setting) -> float:
    """Snakemake priority of a training job: its estimated length mapped into [0, 1) (longer: higher),
    so that any rule given an integer priority of 1 or more still runs before every training job."""
    seconds = job_seconds(config, setting)
    return round(seconds / (seconds + 3600), 9)
