"""How long a config's training takes on this machine's CPU, from step times measured here.

Run by the workflow before the first job (`onstart`) when training would run on the CPU: a user
without a GPU learns that the default config takes days there, and that `make quick` exists. The
numbers are measured, not guessed: the engine's own training step (`train.SeedRun`, micro-batches
included) at every batch size the runs train at, and its evaluation per image, on random images of the
data set's shape and size, at the jobs' thread count; a run costs its steps, its evaluations (two per
epoch plus mid-epoch target checks) and its noise-scale probe, every epoch of its budget (runs that
stop at their target end earlier: an upper bound for those).
"""
from __future__ import annotations

import functools
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from batchwise.config import SYNTHETIC_TEST_SIZE, SYNTHETIC_TRAIN_SIZE, TEST_SIZES, TRAIN_SIZES, Cell, Setting, resolve, resolve_setting

# Below this many training examples in all (the quick and smoke configs) there is nothing to warn about.
MIN_EXAMPLES = 5_000_000
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar10_grey": (1, 32, 32)}
MODEL_OPTIONS = {"mlp": ("bn",), "cnn2": ("bn",)}  # options that change the cost of a step
STEP_BUDGET_S = 1.0  # timed steps per batch size: small steps are timed many times (a median of two is their max)


def train_size(config: dict, spec: dict) -> int:
    """Training images of one epoch of the spec: the data set's (synthetic stand-in's) size, or its train_subset."""
    size = SYNTHETIC_TRAIN_SIZE if config.get("synthetic_data") else TRAIN_SIZES[spec["dataset"]]
    return min(size, spec["params"].get("train_subset") or size)


def examples(config: dict, cells: list[Cell]) -> int:
    """Training examples the cells process in all (epochs x training-set size)."""
    total = 0
    for cell in cells:
        spec = resolve(config, cell)
        total += spec["params"]["epochs"] * train_size(config, spec)
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


def _step_s(measured: dict[int, float], batch_size: int) -> float:
    """Seconds per step at `batch_size` from the measured points (linear in the batch size)."""
    (b0, t0), (b1, t1) = list(measured.items())[0], list(measured.items())[-1]
    if batch_size >= b1:
        return t1 * batch_size / b1
    slope = (t1 - t0) / (b1 - b0) if b1 != b0 else t0 / b0
    return max(t0 + slope * (batch_size - b0), 0.0)



@functools.cache
def _random_data(dataset: str, eval_images: int):
    """Random uint8 images of the data set's full size and shape (a step's cost does not depend on
    pixel values), as the engine holds them; built once per data set."""
    import numpy as np
    import torch

    from batchwise.engine import train

    c, h, w = SHAPES[dataset]
    gen = np.random.default_rng(0)
    x = torch.from_numpy(gen.integers(0, 256, (TRAIN_SIZES[dataset], c, h, w), dtype=np.uint8))
    y = torch.from_numpy(gen.integers(0, 10, TRAIN_SIZES[dataset]).astype(np.int64))
    stats = torch.full((1, c, 1, 1), 0.5), torch.full((1, c, 1, 1), 0.25)
    return train.DeviceData(x, y, x[:eval_images].clone(), y[:eval_images].clone(), *stats)


def engine_times(spec: dict, steps: int = 2, eval_images: int = 2000, evaluate: bool = True) -> dict[str, float]:
    """The engine's own costs for `spec` on this CPU, at the current thread count: seconds per training
    step (`train.SeedRun.advance`, micro-batches and all, the median of at least `steps` after one
    warm-up step, more while they take under STEP_BUDGET_S) and seconds per evaluated image
    (`train.evaluate` at the spec's `eval_batch_size` after one untimed batch, the median of passes over
    `eval_images` while they take under STEP_BUDGET_S; NaN without `evaluate`)."""
    import torch

    from batchwise.engine import train

    d = _random_data(spec["dataset"], eval_images)
    spec = {**spec, "device": "cpu", "params": {**spec["params"], "train_subset": None, "test_subset": None}}
    run = train.SeedRun(spec, 0, d, torch.device("cpu"), log=lambda line: None)
    run.warmup_steps = 0
    run.begin_epoch()

    def step() -> None:
        run.k.zero_()
        run.advance(0)

    step()  # warm-up
    step_s = statistics.median_high(_timings(step, steps, 100))
    per_image = math.nan
    if evaluate:
        eval_batch = spec["params"]["eval_batch_size"]
        # Untimed first: a new batch shape builds oneDNN's kernels, once per run, not once per evaluation.
        train.evaluate(run.model, d.x_test[:eval_batch], d.y_test[:eval_batch], d.normalise, eval_batch)
        passes = _timings(lambda: train.evaluate(run.model, d.x_test, d.y_test, d.normalise, eval_batch), 1, 25)
        per_image = statistics.median_high(passes) / eval_images
    return {"step_s": step_s, "eval_s_per_image": per_image}


def _timings(call: Callable[[], object], at_least: int, at_most: int) -> list[float]:
    """Wall times of repeated calls: at least `at_least`, more while they sum to under STEP_BUDGET_S,
    at most `at_most`."""
    times: list[float] = []
    while len(times) < at_least or (sum(times) < STEP_BUDGET_S and len(times) < at_most):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def measured_times(spec: dict, steps: int = 2, evaluate: bool = True) -> dict[str, float]:
    """`engine_times` at the spec's batch size; a step of more than two micro-batches is its chunks'
    forward and backward passes one after another plus one update, so it is measured at two chunks
    and scaled by its count of chunks (every chunk but perhaps the last is full)."""
    b, chunk = spec["params"]["batch_size"], spec["params"].get("micro_batch")
    if not chunk or b <= 2 * chunk:
        return engine_times(spec, steps, evaluate=evaluate)
    two = engine_times({**spec, "params": {**spec["params"], "batch_size": 2 * chunk}}, steps, evaluate=evaluate)
    return {**two, "step_s": two["step_s"] * math.ceil(b / chunk) / 2}


def _kind(spec: dict) -> tuple:
    """What a step's cost depends on besides the batch size: model, data set, model options, chunk, eval batch."""
    options = tuple((k, spec["params"][k]) for k in MODEL_OPTIONS.get(spec["model"], ()))
    return spec["model"], spec["dataset"], options, spec["params"].get("micro_batch"), spec["params"]["eval_batch_size"]


def _probe_batches(spec: dict) -> list[int]:
    """The noise-scale probe's batch sizes (gradients without an update: costed as steps)."""
    return list(spec["params"].get("noise_scale_batches") or [])


def step_time_table(config: dict, cells: list[Cell], threads: int) -> dict[tuple, dict[int, dict[str, float]]]:
    """Measured here with the engine's own step: {kind: {batch size: engine_times}} at every batch size
    the cells train at (and the noise-scale probe's), the jobs' thread count."""
    import torch

    torch.set_num_threads(max(1, threads))
    wanted: dict[tuple, tuple[dict, set[int]]] = {}
    for cell in cells:
        spec = resolve(config, cell)
        entry = wanted.setdefault(_kind(spec), (spec, set()))
        entry[1].update([spec["params"]["batch_size"], *_probe_batches(spec)])
    table = {}
    for kind, (spec, sizes) in wanted.items():
        table[kind] = {}
        for i, b in enumerate(sorted(sizes)):  # evaluation does not depend on the training batch: timed once
            at = {**spec, "params": {**spec["params"], "batch_size": b}}
            table[kind][b] = measured_times(at, steps=2 if b <= 1024 else 1, evaluate=i == 0)
        first = table[kind][min(sizes)]["eval_s_per_image"]
        for times in table[kind].values():
            times["eval_s_per_image"] = first
    return table


def _at(measured: dict[int, dict[str, float]], batch: int) -> float:
    """Seconds per step at `batch`: measured there, else interpolated between the measured neighbours
    (beyond the largest measured batch: proportional to the batch)."""
    if batch in measured:
        return measured[batch]["step_s"]
    below = [b for b in measured if b < batch]
    above = [b for b in measured if b > batch]
    pair = ([max(below)] if below else []) + ([min(above)] if above else [])
    return _step_s({b: measured[b]["step_s"] for b in sorted(pair)}, batch)


def cell_seconds(config: dict, spec: dict, measured: dict[int, dict[str, float]]) -> float:
    """CPU seconds of one run at its full budget (every epoch; a run that stops at its target ends
    earlier): steps, the two evaluations of each epoch (test set and the training sample of its size),
    mid-epoch target checks, and the noise-scale probe."""
    p = spec["params"]
    n = train_size(config, spec)
    n_test = min(TEST_SIZES[spec["dataset"]], p.get("test_subset") or TEST_SIZES[spec["dataset"]])
    if config.get("synthetic_data"):
        n_test = min(n_test, SYNTHETIC_TEST_SIZE)
    steps = math.ceil(n / p["batch_size"])
    per_image = measured[min(measured)]["eval_s_per_image"]
    checks = (min(p["target_checks_per_epoch"], steps) - 1) if p["target_acc"] else 0
    evaluated = n_test * (2 + checks)
    probe = sum(p["noise_scale_draws"] * _at(measured, b) for b in _probe_batches(spec))
    return p["epochs"] * (steps * _at(measured, p["batch_size"]) + evaluated * per_image + probe)


def covered(spec: dict, measured: dict[int, dict[str, float]]) -> bool:
    """Whether `measured` has the spec's batch and probe sizes, or measured batches on both sides of each."""
    return bool(measured) and all(b in measured or min(measured) < b < max(measured)
                                  for b in (spec["params"]["batch_size"], *_probe_batches(spec)))


def training_seconds(config: dict, cells: list[Cell], table: dict[tuple, dict[int, dict[str, float]]]) -> float:
    """CPU seconds of the cells, one after another (see `cell_seconds`)."""
    return sum(cell_seconds(config, spec, table[_kind(spec)]) for spec in (resolve(config, c) for c in cells))


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def cpu_warning(config: dict, cells: list[Cell], cores: int, threads: int = 1, slots: int | None = None) -> str | None:
    """The warning the workflow prints before its first job when training runs on the CPU and is
    long; None where it runs on a GPU or is short. Jobs at a time: cores / threads, at most `slots`
    (Snakemake's `--resources gpu=N`, which also bounds training jobs on a CPU)."""
    if not cells or examples(config, cells) < MIN_EXAMPLES or not cpu_only(config["device"]):
        return None
    threads = max(1, min(threads, cores))
    table = step_time_table(config, cells, threads)
    parallel = max(1, cores // threads)
    if slots is not None:
        parallel = max(1, min(parallel, slots))
    seconds = training_seconds(config, cells, table) / parallel
    more = (f" With --resources gpu={cores // threads} it would run {cores // threads} at a time."
            if slots is not None and slots < cores // threads else "")
    shown = "; ".join(f"{m}{' ' + ','.join(f'{k}={v}' for k, v in opts) if opts else ''} on {d}"
                      f"{f' (chunks of {chunk})' if chunk else ''}: "
                      + ", ".join(f"{1000 * t['step_s']:.1f} ms at batch {b}" for b, t in steps.items())
                      for (m, d, opts, chunk, _), steps in table.items())
    return (f"No GPU: the {len(cells)} training runs left will train on this CPU for about {_duration(seconds)} "
            f"({parallel} job(s) at a time, {threads} thread(s) each; the engine's own step and evaluation at "
            f"every batch size used, every epoch of the budget counted).{more} Measured per step here: {shown}.\n"
            f"For every study reduced to minutes on a CPU, stop (Ctrl-C) and run `make quick` "
            f"(or snakemake --configfile config/quick.yaml). Going on with this config.")


# ---------------------------------------------------------------------------------------------
# recorded measurements: the CPU benchmark's step times, the GPU's (the order of the jobs)

BENCHMARKS = Path(__file__).resolve().parents[3] / "docs" / "benchmarks.json"
# The CPU benchmark's records, one file per CPU type it ran on (their fp32 peaks differ 5x):
# docs/benchmarks-cpu.json (the first), docs/benchmarks-cpu-<cpu>.json (`cpu_file_stem`).
BENCHMARKS_CPU = BENCHMARKS.with_name("benchmarks-cpu.json")


def cpu_file_stem(cpu: str, folder: Path = BENCHMARKS.parent) -> Path:
    """Where the CPU benchmark of a CPU type goes (without suffix): the file that already holds that
    type, else docs/benchmarks-cpu-<type, lower case, words joined by '-'>."""
    for rec in recorded_cpus(folder):
        if rec["cpu"] == cpu:
            return rec["path"].with_suffix("")
    slug = "-".join(w for w in "".join(c if c.isalnum() else " " for c in cpu.lower().replace("(r)", "")).split())
    return folder / f"benchmarks-cpu-{slug or 'unknown'}"


def bench_tables(records: list[dict], variant: str) -> dict[str, dict[int, dict[str, float]]]:
    """The CPU benchmark's measurements of one variant ("was" or "is") as `cell_seconds` reads them:
    {kind (JSON of `_kind`): {batch size: {"step_s", "eval_s_per_image"}}}."""
    tables: dict[str, dict[int, dict[str, float]]] = {}
    for r in records:
        v = r[variant]
        tables.setdefault(v["kind"], {})[r["batch_size"]] = {
            "step_s": v["ms_per_step"] / 1000, "eval_s_per_image": v["eval_s_per_10k"] / 10000}
    return {kind: dict(sorted(sizes.items())) for kind, sizes in tables.items()}


@functools.cache
def recorded_cpus(folder: Path = BENCHMARKS.parent) -> tuple[dict, ...]:
    """The CPU benchmark's records, one per CPU type (docs/benchmarks-cpu*.json, the first CPU type's file
    first): {"cpu", "machine", "jobs", "tables", "path"} of the engine as it is. A file that is unreadable
    or holds no record is left out."""
    out = []
    for path in sorted(Path(folder).glob("benchmarks-cpu*.json"), key=lambda p: (p.name != BENCHMARKS_CPU.name, p.name)):
        try:
            doc = json.loads(path.read_text())
            records = doc["records"]
            out.append({"cpu": doc["cpu"], "machine": f"{doc['cpu']}, {doc['cores']} cores, {doc['date'][:10]}",
                        "jobs": records[0]["is"]["jobs"], "tables": bench_tables(records, "is"), "path": path})
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue
    return tuple(out)


def recorded_cpu_seconds(config: dict, spec: dict, cpu: dict) -> float | None:
    """CPU seconds of one run at its full budget on a benchmarked CPU type (`cpu`: one of `recorded_cpus`;
    `cell_seconds` at its recorded step times, over the jobs that ran at once); None where that benchmark
    did not measure the run's model and batch sizes."""
    measured = cpu["tables"].get(json.dumps(_kind(spec)), {})
    if not covered(spec, measured):
        return None
    return cell_seconds(config, spec, measured) / cpu["jobs"]

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
    steps = spec["params"]["epochs"] * math.ceil(train_size(config, spec) / batch) * len(setting.seeds)
    return steps * gpu_step_s(spec["model"], batch)


def job_priority(config: dict, setting: Setting) -> float:
    """Snakemake priority of a training job: its estimated length mapped into [0, 1) (longer: higher),
    so that any rule given an integer priority of 1 or more still runs before every training job."""
    seconds = job_seconds(config, setting)
    return round(seconds / (seconds + 3600), 9)
