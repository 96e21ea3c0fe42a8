"""The subnormal benchmark: s1_batch1's batch-1 steps once its network stops learning, with the CPU
flushing subnormal floats to zero (engine v4, `models.pin_fp32`) and without (before), side by side.

    PYTHONPATH=src python -m batchwise.speed.bench subnormal [--data results/data/mnist.npz] [--steps 3000]
                                                             [--rounds 2] [--out docs/benchmarks-subnormal]

Each measurement is a fresh 1-thread process that trains s1_batch1's seed 0 (the config's spec) on the
prepared MNIST cache with the engine's own step (`train.SeedRun.advance`) for its first `steps` steps,
flush off or on, the two in turn (A B A B). It reports the median ms per step of each window of
`window` steps, the mean loss of each window (the two must agree: flushing changes only numbers below
1.2e-38), and how many values of the weights, gradients and momentum buffers are subnormal at the end.
It needs the real images: the collapse is a property of the data, which random images do not show
(`snakemake results/data/mnist.npz` writes the cache). Writes <out>.json and <out>.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

from batchwise import config
from .benchkit import child_json, log, write_outputs

STUDY = "s1_batch1"


def _subnormal(tensors: list) -> int:
    """How many values of `tensors` are subnormal (non-zero, below the smallest normal float32)."""
    import torch

    tiny = torch.finfo(torch.float32).tiny
    return sum(int(((t != 0) & (t.abs() < tiny)).sum()) for t in tensors if t is not None)


def measure(data: Path, flush: bool, steps: int, window: int) -> dict:
    """Seed 0 of s1_batch1 for `steps` steps on this process's CPU, flush on or off: ms per step and mean
    loss per window of `window` steps, and the subnormal values left in weights, gradients and buffers."""
    import torch

    from batchwise.data import prepare
    from batchwise.engine import models, train
    from batchwise.engine.resident import load_data

    models.pin_fp32()
    torch.set_flush_denormal(flush)
    cfg = config.load(config.BASE_CONFIG)
    cell = next(c for c in config.cells(cfg) if c.study == STUDY and c.seed == 0)
    spec = {**config.resolve(cfg, cell), "device": "cpu"}
    device = torch.device("cpu")
    d = load_data(prepare.load(data), spec["params"], device)
    run = train.SeedRun(spec, 0, d, device, log=lambda line: None)
    run.begin_epoch()
    times = []
    for i in range(min(steps, run.steps)):
        start = time.perf_counter()
        run.advance(i)
        times.append(time.perf_counter() - start)
    losses = run.stepper.losses[:len(times)].tolist()
    windows = range(0, len(times), window)
    return {"flush": flush, "steps": len(times), "window": window,
            "ms_per_step": [1000 * statistics.median(times[i:i + window]) for i in windows],
            "mean_loss": [statistics.fmean(losses[i:i + window]) for i in windows],
            "subnormal": {"weights": _subnormal(list(run.model.parameters())),
                          "gradients": _subnormal([p.grad for p in run.model.parameters()]),
                          "momentum": _subnormal(run.opt.buffers)}}


def report(out: dict) -> str:
    """The markdown table: per window, the median ms per step flush off and on (over the rounds), their
    ratio, and the mean loss of each."""
    runs = {flag: [r for r in out["runs"] if r["flush"] == flag] for flag in (False, True)}
    lines = [f"Measured {out['date']} on {out['cpu']}, torch {out['torch']}; {out['load']}.",
             f"Command: `{out['command']}`", "",
             f"{STUDY}, seed 0: the engine's batch-1 step, 1 thread, {out['rounds']} fresh processes each way, "
             "A B A B; per window the median over the processes.", "",
             "| steps | flush off: ms/step | flush on: ms/step | off / on | flush off: mean loss | flush on: mean loss |",
             "|---|---:|---:|---:|---:|---:|"]
    window = out["runs"][0]["window"]
    for w in range(len(out["runs"][0]["ms_per_step"])):
        off, on = (statistics.median(r["ms_per_step"][w] for r in runs[flag]) for flag in (False, True))
        loss_off, loss_on = (statistics.median(r["mean_loss"][w] for r in runs[flag]) for flag in (False, True))
        lines.append(f"| {w * window + 1}-{(w + 1) * window} | {off:.2f} | {on:.2f} | x{off / on:.2f} | "
                     f"{loss_off:.4f} | {loss_on:.4f} |")
    lines += ["", "Subnormal values at the end (flush off; flush on): " + "; ".join(
        ", ".join(f"{k} {v:,}" for k, v in runs[flag][0]["subnormal"].items()) for flag in (False, True)) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchwise.speed.bench subnormal", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="results/data/mnist.npz", help="the prepared MNIST cache")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds (default 2)")
    parser.add_argument("--out", default="docs/benchmarks-subnormal")
    parser.add_argument("--one", choices=("on", "off"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not data.is_file():
        parser.error(f"--data {data}: no MNIST cache there; write it with `snakemake results/data/mnist.npz` "
                     f"(or name another with --data)")
    if args.one:
        print(json.dumps(measure(data, args.one == "on", args.steps, args.window)))
        return 0
    import torch

    from batchwise import provenance

    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "cpu": provenance.cpu_model(), "torch": torch.__version__, "rounds": args.rounds,
           "command": " ".join(["PYTHONPATH=src python -m batchwise.speed.bench subnormal", *argv]),
           "load": f"load average at start {os.getloadavg()[0]:.2f}", "runs": []}
    for _ in range(args.rounds):
        for flag in ("off", "on"):
            out["runs"].append(child_json("batchwise.speed.subnormal", [*argv, "--one", flag],
                                          f"subnormal benchmark (flush {flag})"))
            log(f"flush {flag}: {out['runs'][-1]['ms_per_step'][-1]:.2f} ms/step in the last window")
    out["load"] += f", at end {os.getloadavg()[0]:.2f}"
    write_outputs(out, Path(args.out), report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
