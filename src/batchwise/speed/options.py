"""Step options the engine might take on the CPU, measured against the step as it is: channels-last
memory layout, an inductor-compiled step (`torch.compile`), and the evaluation batch size.

    PYTHONPATH=src python -m batchwise.speed.bench options [--studies s4_mobilenet] [--batches 16 128]
                                                           [--rounds 1] [--steps 10] [--out docs/benchmarks-options-<cpu>]

For every batch size the studies train at, each variant is a fresh 1-thread process (the variants in
turn, A B C A B C) that builds the study's model at seed 0 and times a plain SGD step on random data
of the data set's shape (forward, loss, backward, update: what the engine's step runs, without its
bookkeeping), median ms per step after one warm-up step; a compiled step's first call (the compile)
is reported apart. The first step's loss is given for each variant: same weights, same batch, so it
agrees to float rounding, except where a variant draws dropout from another random stream (compiled
code does). The eager process also times `evaluation.evaluate` per image at each `--eval-batches`
size over 2,000 images (warm: one untimed batch first). Writes <out>.json and <out>.md.
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
from . import estimate
from .benchkit import child_json, log, write_outputs

VARIANTS = ("eager", "channels_last", "compile")
EVAL_IMAGES = 2000


def measure(spec: dict, variant: str, steps: int, eval_batches: list[int]) -> dict:
    """One process's timings of `spec`'s step as `variant` (see the module's docstring)."""
    import torch
    import torch.nn.functional as F

    from batchwise.engine import models
    from batchwise.engine.evaluation import evaluate

    torch.set_num_threads(1)
    models.pin_fp32()
    p = spec["params"]
    c, h, w = estimate.SHAPES[spec["dataset"]]
    torch.manual_seed(0)
    model, _ = models.build(spec["model"], (c, h, w), 10, **{k: p[k] for k in ("bn", "pretrained") if k in p})
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(p["batch_size"], c, h, w, generator=gen), torch.randint(0, 10, (p["batch_size"],), generator=gen))
               for _ in range(steps + 1)]
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    opt = torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=p["momentum"])

    def forward_backward(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    run = torch.compile(forward_backward) if variant == "compile" else forward_backward
    times, losses = [], []
    for x, y in batches:
        start = time.perf_counter()
        losses.append(run(x, y).item())
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    out = {"variant": variant, "batch_size": p["batch_size"], "ms_per_step": 1000 * statistics.median(times[1:]),
           "first_step_s": times[0], "first_loss": losses[0]}
    if variant == "eager" and eval_batches:
        d = estimate._random_data(spec["dataset"], EVAL_IMAGES)  # the images `bench cpu` evaluates
        out["eval_s_per_10k"] = {}
        for b in eval_batches:
            evaluate(model, d.x_test[:b], d.y_test[:b], d.normalise, b)  # a new batch shape builds oneDNN's kernels once
            passes = []
            for _ in range(2):
                start = time.perf_counter()
                evaluate(model, d.x_test, d.y_test, d.normalise, b)
                passes.append(time.perf_counter() - start)
            out["eval_s_per_10k"][str(b)] = 10000 / EVAL_IMAGES * statistics.median(passes)
    return out


def report(out: dict) -> str:
    """The markdown tables: per batch size, the median ms per step of each variant over the rounds and its
    speed relative to eager, compile time, first-step losses; evaluation per batch size."""
    lines = [f"Measured {out['date']} on {out['cpu']}, torch {out['torch']}; {out['load']}.",
             f"Command: `{out['command']}`", "",
             f"1 thread, fresh processes, {out['rounds']} round(s) A B C; ms per step: median of {out['steps']} "
             "steps after one warm-up step, then the median over the rounds. 'x': eager time / variant time.", "",
             "| model | batch | eager ms/step | channels_last ms/step | x | compile ms/step | x | compile s | "
             "first loss eager / channels_last / compile |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for (model, b), runs in _by_workload(out["runs"]).items():
        ms = {v: statistics.median(r["ms_per_step"] for r in runs[v]) for v in runs}
        first = " / ".join(f"{runs[v][0]['first_loss']:.4f}" if v in runs else "-" for v in VARIANTS)
        cell = lambda v: (f"{ms[v]:.1f} | x{ms['eager'] / ms[v]:.2f}" if v in ms else "- | -")  # noqa: E731
        compile_s = f"{statistics.median(r['first_step_s'] for r in runs['compile']):.0f}" if "compile" in runs else "-"
        lines.append(f"| {model} | {b} | {ms['eager']:.1f} | {cell('channels_last')} | {cell('compile')} | "
                     f"{compile_s} | {first} |")
    if out["rounds"] > 1:  # the spread between processes is the measure of what a ratio can show
        lines += ["", "Each round's ms per step, in the order run:", ""]
        for (model, b), runs in _by_workload(out["runs"]).items():
            lines.append(f"- {model} batch {b}: " + "; ".join(
                f"{v} " + ", ".join(f"{r['ms_per_step']:.1f}" for r in runs[v]) for v in VARIANTS if v in runs))
    evals = [r for r in out["runs"] if r.get("eval_s_per_10k")]
    if evals:
        sizes = list(evals[0]["eval_s_per_10k"])
        base = statistics.median(r["eval_s_per_10k"][sizes[-1]] for r in evals)
        lines += ["", f"Evaluation (`evaluation.evaluate`, eval mode, {EVAL_IMAGES} images, warm; median over the "
                  f"eager processes): seconds per 10,000 images; 'x': against batch {sizes[-1]}.", "",
                  "| eval batch | s/10k | x |", "|---:|---:|---:|"]
        for size in sizes:
            s = statistics.median(r["eval_s_per_10k"][size] for r in evals)
            lines.append(f"| {size} | {s:.2f} | x{base / s:.2f} |")
    return "\n".join(lines) + "\n"


def _by_workload(runs: list[dict]) -> dict[tuple, dict[str, list[dict]]]:
    out: dict[tuple, dict[str, list[dict]]] = {}
    for r in runs:
        out.setdefault((r["model"], r["batch_size"]), {}).setdefault(r["variant"], []).append(r)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchwise.speed.bench options", description=__doc__.split("\n")[0])
    parser.add_argument("--studies", nargs="+", default=["s4_mobilenet"])
    parser.add_argument("--batches", type=int, nargs="+", help="only these batch sizes (default: all the studies train at)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--eval-batches", type=int, nargs="*", default=[100, 200, 500, 2000],
                        help="evaluation batch sizes (the last is the reference)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None, help="default: docs/benchmarks-options-<cpu>")
    parser.add_argument("--config", default=str(config.BASE_CONFIG))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: JSON of (spec, variant)
    args = parser.parse_args(argv)
    if "eager" not in args.variants:
        parser.error("--variants: eager is the reference every other variant is timed against; list it too")
    if args.one:
        spec, variant = json.loads(args.one)
        print(json.dumps({"model": spec["model"], **measure(spec, variant, args.steps, args.eval_batches)}))
        return 0
    cfg = config.load(Path(args.config))
    unknown = sorted(set(args.studies) - set(cfg["studies"]))
    if unknown:
        parser.error(f"--studies: no study {', '.join(unknown)} in {args.config}")
    import torch

    from batchwise import provenance

    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "cpu": provenance.cpu_model(), "torch": torch.__version__, "rounds": args.rounds, "steps": args.steps,
           "command": " ".join(["PYTHONPATH=src python -m batchwise.speed.bench options", *argv]),
           "load": f"load average at start {os.getloadavg()[0]:.2f}", "runs": []}
    path = Path(args.out or str(estimate.cpu_file_stem(out["cpu"])).replace("benchmarks-cpu", "benchmarks-options"))
    specs = {}
    for cell in config.cells(cfg):
        spec = config.resolve(cfg, cell)
        if cell.study in args.studies and (not args.batches or spec["params"]["batch_size"] in args.batches):
            specs.setdefault((spec["model"], spec["dataset"], spec["params"]["batch_size"]), spec)
    for spec in specs.values():
        for _ in range(args.rounds):
            for variant in args.variants:
                out["runs"].append(child_json("batchwise.speed.options", [*argv, "--one", json.dumps([spec, variant])],
                                              f"options benchmark ({variant})"))
                log(f"{spec['model']} batch {spec['params']['batch_size']} {variant}: "
                    f"{out['runs'][-1]['ms_per_step']:.1f} ms/step")
    out["load"] += f", at end {os.getloadavg()[0]:.2f}"
    write_outputs(out, path, report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
