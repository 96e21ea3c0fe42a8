"""The GPU window's throughput probe: which way of sharing one device trains the most per second.

    PYTHONPATH=src python -m batchwise.speed.bench probe --out OUT.json [--deadline 60] [--device auto]
                                                     [--data results/data] [--steps N] [--jobs 1 4 8]

For LeNet-5 (MNIST) and MobileNetV2 (CIFAR-10) at batch 16, through the engine itself (bench's pieces):
  seeds     ms per step per seed for 1 seed, 3 seeds in one job (together on CUDA streams where the
            engine packs them; a model with random draws, MobileNetV2's dropout, and any model on
            the CPU trains them one after another, and the label says so) and 3 seeds one job
            after another, each as the
            wall-clock difference between a run of 1 + k epochs and one of 1 epoch (start-up, graph
            capture and the first epoch cancel out)
  jobs      1, 4 and 8 cell jobs (`python -m batchwise train` processes) at once, each without and
            with the CUDA MPS daemon (`nvidia-cuda-mps-control -d`, where it exists; stopped after):
            each job's ms per step (its own training time) and the steps per second of them all
A deadline bounds the whole probe: a measurement that would not end before it (by the one before it,
or by its own 1-epoch run) is skipped and named in `skipped`. OUT.json is rewritten after every
measurement, so a probe cut short keeps what it measured.
On the CPU (no CUDA) it runs tiny: a few steps, 1 and 2 jobs, no MPS.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import benchkit as bench
from batchwise.engine import models, train

WORKLOADS = [("LeNet-5", "lenet5", "mnist", 16, {}), ("MobileNetV2", "mobilenet_v2", "cifar10", 16, {})]
SEEDS = [0, 1, 2]
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def packs_seeds(model_name: str, dataset: str, device: torch.device) -> bool:
    """Whether the engine trains a cell's seeds together on `device`: on CUDA, for a model without
    random draws (`models.random_draws`); else one after another, as `train.train_seeds` decides."""
    if device.type != "cuda":
        return False
    shape = SHAPES[dataset]
    return not models.random_draws(models.build(model_name, shape)[0], shape)


EXTRA_EPOCHS = {"cuda": 2, "cpu": 1}  # timed epochs beyond the first


class Deadline:
    """Seconds left until a fixed time; `fits(estimate)` says whether a step of that length still fits."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def fits(self, estimate_s: float) -> bool:
        return self.left() > estimate_s


def seeds_wall(spec: dict, cache, seeds: list[int], together: bool) -> float:
    """Wall seconds of training `seeds` of `spec`: in one job (`together`), else one job per seed."""
    t0 = time.perf_counter()
    for group in ([seeds] if together else [[s] for s in seeds]):
        train.train_seeds(spec, cache, group, log=lambda line: None)
    bench.sync(torch.device(spec["device"]))
    return time.perf_counter() - t0


def time_seeds(workload: tuple, device: torch.device, data_dir: Path, steps: int, deadline: Deadline,
               out: dict, path: Path) -> None:
    """The three seed modes of one workload, one record each (ms per step per seed)."""
    name, model_name, dataset, bs, options = workload
    if deadline.fits(0):
        cache, out["data"][dataset], _ = bench.load_images(dataset, data_dir)
    graphs = device.type == "cuda"
    spec = lambda epochs: bench.bench_spec(model_name, dataset, bs, options, epochs, steps,  # noqa: E731
                                           4 * bs, device, graphs)
    extra, last = out["extra_epochs"], 0.0
    packed = packs_seeds(model_name, dataset, device)
    in_one_job = "3 seeds together" if packed else "3 seeds in one job, one after another"
    for mode, seeds, together in (("1 seed", SEEDS[:1], True), (in_one_job, SEEDS, True),
                                  ("3 seeds one after another", SEEDS, False)):
        label = f"{name} bs {bs}: {mode}"
        if not deadline.fits(1.5 * last * len(seeds)):
            out["skipped"].append(f"{label}: deadline")
            continue
        short = seeds_wall(spec(1), cache, seeds, together)  # also the pilot: does the longer run fit?
        if not deadline.fits(short * (1 + extra)):
            out["skipped"].append(f"{label}: deadline (after the 1-epoch run, {short:.1f} s)")
            continue
        long = seeds_wall(spec(1 + extra), cache, seeds, together)
        last = (short + long) / len(seeds)
        ms = max(long - short, 0.0) / (extra * steps * len(seeds)) * 1000
        out["seeds"].append({"workload": name, "model": model_name, "batch_size": bs, "mode": mode,
                             "seeds": len(seeds), "packed": packed and together and len(seeds) > 1,
                             "ms_per_step_per_seed": ms, "steps_timed": extra * steps,
                             "wall_s": short + long, "cuda_graphs": graphs})
        bench.log(f"  {label:45s} {ms:8.3f} ms/step/seed")
        write(out, path)


def mps(on: bool) -> str | None:
    """Start (`on`) or stop the CUDA MPS daemon; None on success, else why not."""
    exe = shutil.which("nvidia-cuda-mps-control")
    if exe is None:
        return "nvidia-cuda-mps-control is not on PATH"
    proc = subprocess.run([exe, "-d"] if on else [exe], input=None if on else "quit\n", text=True,
                          capture_output=True, timeout=30)
    if proc.returncode != 0:
        return f"nvidia-cuda-mps-control {'-d' if on else 'quit'} exited {proc.returncode}: " \
               f"{(proc.stderr or proc.stdout).strip()[-300:]}"
    if not on:
        time.sleep(1)  # the server exits after its clients; give it a moment before the next batch
    return None


def jobs_at_once(spec: dict, cache: Path, tmp: Path, n: int, timeout_s: float) -> dict:
    """`n` one-seed training processes started together: each one's ms per step, the batch's wall.
    RuntimeError when one fails; subprocess.TimeoutExpired when they outlast `timeout_s` (a client of a
    broken MPS server can hang)."""
    t0 = time.perf_counter()
    procs = [bench.train_job(spec, cache, tmp / f"job{i}") for i in range(n)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=max(1.0, timeout_s - (time.perf_counter() - t0)))
            if proc.returncode != 0:
                raise RuntimeError(f"`python -m batchwise train` exited with {proc.returncode}: {err[-1000:]}")
    finally:
        for proc in procs:  # only left running when one failed
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = time.perf_counter() - t0
    steps = spec["params"]["epochs"] * spec["params"]["train_subset"] // spec["params"]["batch_size"]
    per_job = [json.loads((tmp / f"job{i}" / "metrics.json").read_text())["train_time_s"] / steps * 1000
               for i in range(n)]
    shutil.rmtree(tmp)
    return {"ms_per_step_per_job": statistics.median_high(per_job), "ms_per_step_max": max(per_job),
            "steps_per_s_all": n * steps / wall, "wall_s": wall, "steps_per_job": steps}


def time_jobs(device: torch.device, data_dir: Path, steps: int, widths: list[int], deadline: Deadline,
              out: dict, path: Path) -> None:
    """Cell jobs at once, without and then with MPS, for each workload (MobileNetV2 first: S4's cost)."""
    modes = [False] + ([True] if device.type == "cuda" else [])
    if device.type != "cuda":
        out["skipped"].append("MPS: no CUDA device")
    with tempfile.TemporaryDirectory(prefix="batchwise-probe-") as tmp:
        for workload in reversed(WORKLOADS):
            name, model_name, dataset, bs, options = workload
            cache = bench.mnist_cache(data_dir, Path(tmp), dataset) if deadline.fits(5) else None
            spec = bench.bench_spec(model_name, dataset, bs, options, 1 + out["extra_epochs"], steps, 4 * bs, device,
                                    device.type == "cuda")
            for with_mps in modes:
                if cache is None:
                    out["skipped"] += [f"{name} bs {bs}: {n} job(s) at once, MPS {'on' if with_mps else 'off'}: "
                                       "deadline" for n in widths]
                    continue
                why = mps(True) if with_mps else None
                if why:
                    out["skipped"].append(f"{name} jobs with MPS: {why}")
                    continue
                try:
                    last, last_n = 0.0, 1
                    for n in widths:
                        label = f"{name} bs {bs}: {n} job(s) at once, MPS {'on' if with_mps else 'off'}"
                        if not deadline.fits(1.5 * last * max(1.0, n / last_n) + 5):  # as if they shared nothing
                            out["skipped"].append(f"{label}: deadline")
                            continue
                        try:
                            got = jobs_at_once(spec, cache, Path(tmp) / f"w{n}", n, deadline.left() + 30)
                        except (RuntimeError, subprocess.SubprocessError) as exc:
                            out["notes"].append(f"{label}: failed ({type(exc).__name__}: {exc})")
                            bench.log(f"  {label}: FAILED ({type(exc).__name__})")
                            break
                        last, last_n = got["wall_s"], n
                        out["jobs"].append({"workload": name, "model": model_name, "batch_size": bs, "jobs": n,
                                            "mps": with_mps, **got})
                        bench.log(f"  {label:45s} {got['ms_per_step_per_job']:8.3f} ms/step/job, "
                                  f"{got['steps_per_s_all']:9.1f} steps/s in all")
                        write(out, path)
                finally:
                    why = mps(False) if with_mps else None
                    if why:
                        out["notes"].append(f"stopping MPS: {why}")


def write(out: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(path)


def probe(device: torch.device, data_dir: Path, path: Path, deadline_s: float, steps: int,
          widths: list[int]) -> dict:
    """Run both parts of the probe within `deadline_s` seconds; returns (and writes to `path`) the record."""
    deadline = Deadline(deadline_s)
    out = {"kind": "throughput-probe", "machine": bench.machine(device), "device": str(device),
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "deadline_s": deadline_s,
           "steps_per_epoch": steps, "extra_epochs": EXTRA_EPOCHS.get(device.type, 1), "data": {}, "seeds": [],
           "jobs": [], "skipped": [], "notes": []}
    write(out, path)
    bench.log(f"probe on {out['machine']['device']}, {deadline_s:.0f} s at most -> {path}")
    for workload in WORKLOADS:
        time_seeds(workload, device, data_dir, steps, deadline, out, path)
    time_jobs(device, data_dir, steps, widths, deadline, out, path)
    out["seconds"] = round(deadline_s - deadline.left(), 1)
    write(out, path)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchwise.speed.bench probe", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the probe's JSON file")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds the whole probe may take")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--data", default="results/data", help="folder of the prepared caches")
    parser.add_argument("--steps", type=int, help="steps per epoch (default 500 on CUDA, 4 on the CPU)")
    parser.add_argument("--jobs", type=int, nargs="+", help="jobs at once (default 1 4 8 on CUDA, 1 2 on the CPU)")
    args = parser.parse_args(argv)
    device, _ = train.pick_device(args.device)
    cuda = device.type == "cuda"
    out = probe(device, Path(args.data), Path(args.out), args.deadline, args.steps or (500 if cuda else 4),
                args.jobs or ([1, 4, 8] if cuda else [1, 2]))
    bench.log(f"probe done in {out['seconds']} s: {len(out['seeds'])} seed timings, {len(out['jobs'])} job "
              f"timings, {len(out['skipped'])} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
