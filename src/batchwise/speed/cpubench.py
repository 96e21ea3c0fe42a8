"""The CPU benchmark: this machine's fp32 limit and how much of it the engine's own step reaches, for
every (model, batch size) the CPU studies train, the engine as it was and as it is side by side.

    PYTHONPATH=src python -m batchwise.speed.bench cpu [--studies s3_batch_convergence ...] [--rounds 2]
                                                   [--add] [--out docs/benchmarks-cpu-<cpu>]

- peak: an fp32 GEMM (2048^3) in one process at every core's thread, and in one 1-thread process per
  core at once; the larger rate is the machine's peak.
- per workload: FLOPs of one training step (forward + backward, `torch.utils.flop_counter`, linear in
  the batch), ms per step of `train.SeedRun.advance` and evaluation seconds per 10,000 images
  (`estimate.engine_times`), each measurement a fresh process, the two variants in turn, A B A B:
    was  one job at 2 threads (train_cell's threads until 2026-12), whole batches, evaluation at 2000
         with PyTorch's max-pooling kernel (engine v3's evaluation);
    is   `train_threads` threads per job and cores/threads jobs at once (timed together, their median),
         the spec's `micro_batch` and `eval_batch_size` (config/config.yaml as it is), the engine's
         evaluation as it is (`models.MaxPool2d`).
  The machine's rate counts the jobs running at once: `is` trains `jobs` steps per step time.
- per study: CPU hours of every run at its full budget (`estimate.cell_seconds`) on this machine, was vs is.
Writes <out>.json and <out>.md, rewritten after every workload, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from batchwise import config
from . import estimate
from .benchkit import log, sub_env, write_outputs

STUDIES = ("s1_batch_init", "s1_batch1", "s1_cifar_grey", "x1_zero_init", "s3_batch_convergence", "x3_scaled_lr",
           "s4_mobilenet")
WAS_THREADS, WAS_EVAL_BATCH = 2, 2000


def gemm_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    """fp32 GFLOP/s of an n^3 matrix product at `threads` threads (best of `reps`, after one warm-up)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_flops(spec: dict) -> float:
    """FLOPs of one training step (forward and backward) of the spec's model at its batch size, counted
    at a batch of at most 256 and scaled (every op of these models is linear in the batch)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from batchwise.engine import models

    c, h, w = estimate.SHAPES[spec["dataset"]]
    options = {k: spec["params"][k] for k in ("bn", "pretrained") if k in spec["params"]}
    model, _ = models.build(spec["model"], (c, h, w), 10, **options)
    b = min(spec["params"]["batch_size"], 256)
    x, y = torch.randn(b, c, h, w), torch.randint(0, 10, (b,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() * spec["params"]["batch_size"] / b


def _processes(args: list[str], threads: int, jobs: int) -> list[dict]:
    """`jobs` fresh processes of `python -m batchwise.speed.cpubench one ...` at once; their JSON answers."""
    env = {**sub_env(), "OMP_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen([sys.executable, "-m", "batchwise.speed.cpubench", *args, "--threads", str(threads)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(jobs)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark process exited with {proc.returncode}: {stderr[-2000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def variants(spec: dict, threads: int, was_threads: int = WAS_THREADS) -> dict[str, dict]:
    """The spec as the engine ran it before (`was`: whole batches, evaluation at 2000, one job of
    `was_threads` threads per machine, or one per core at 1 thread) and as the config runs it now (`is`)."""
    was = {**spec, "params": {k: v for k, v in spec["params"].items() if k != "micro_batch"}}
    was["params"]["eval_batch_size"] = WAS_EVAL_BATCH
    cores = os.cpu_count() or 1
    return {"was": {"spec": was, "threads": was_threads, "jobs": 1 if was_threads > 1 else cores},
            "is": {"spec": spec, "threads": threads, "jobs": max(1, (os.cpu_count() or 1) // threads)}}


def workloads(cfg: dict, studies: list[str]) -> list[dict]:
    """One spec per (kind, batch size) the studies train at, with the noise-scale probe's sizes."""
    seen: dict[tuple, dict] = {}
    for cell in config.cells(cfg):
        if cell.study not in studies:
            continue
        spec = config.resolve(cfg, cell)
        for b in (spec["params"]["batch_size"], *(spec["params"].get("noise_scale_batches") or [])):
            at = {**spec, "params": {**spec["params"], "batch_size": b}}
            seen.setdefault((estimate._kind(at), b), at)
    return sorted(seen.values(), key=lambda s: (s["model"], s["dataset"], s["params"]["batch_size"]))


def study_hours(cfg: dict, studies: list[str], records: list[dict], was_threads: int = WAS_THREADS
                ) -> dict[str, dict[str, float]]:
    """CPU hours on this machine of each study's runs at their full budget, per variant: the sum of
    `estimate.cell_seconds` from the measured steps, divided by the jobs that run at once."""
    tables = {name: estimate.bench_tables(records, name) for name in ("was", "is")}
    out = {}
    for study in studies:
        hours: dict[str, float] = {}
        cells = [c for c in config.cells(cfg) if c.study == study]
        for name in ("was", "is"):
            total, measured = 0.0, 0
            for cell in cells:
                spec = variants(config.resolve(cfg, cell), 1, was_threads)[name]["spec"]
                kind = json.dumps(estimate._kind(spec))
                if spec["params"]["batch_size"] not in tables[name].get(kind, {}):  # not measured: no guess
                    continue
                total += estimate.cell_seconds(cfg, spec, tables[name][kind])
                measured += 1
            jobs = variants({"params": {}}, cfg["train_threads"], was_threads)[name]["jobs"]
            hours[name] = total / jobs / 3600 if measured else float("nan")
        hours["runs_measured"], hours["runs"] = measured, len(cells)
        out[study] = hours
    return out


def write(out: dict, path: Path) -> None:
    write_outputs(out, path, report(out))


def report(out: dict) -> str:
    peak = out.get("peak", {})
    top = max(peak.values()) if peak else float("nan")
    lines = [f"Measured {out['date']} on {out['cpu']}, {out['cores']} cores, torch {out['torch']}; {out['load']}.",
             f"Command: `{out['command']}`", *([f"Note: {out['note']}."] if out.get("note") else []), "",
             "fp32 GEMM 2048^3: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items())
             + f"; peak taken: {top:.0f} GFLOP/s.", "",
             "| model | data | batch | MFLOP/step | was: ms/step per job | was: jobs | was: GFLOP/s | was: % peak | is: chunk | "
             "is: ms/step per job | is: jobs | is: GFLOP/s | is: % peak | step x | was: eval s/10k | "
             "is: eval s/10k | eval x |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in out["records"]:
        was, now = r["was"], r["is"]
        rate_was = r["flops"] * was["jobs"] / was["ms_per_step"] / 1e6
        rate_is = r["flops"] * now["jobs"] / now["ms_per_step"] / 1e6
        lines.append(
            f"| {r['model']} | {r['dataset']} | {r['batch_size']} | {r['flops'] / 1e6:,.0f} | {was['ms_per_step']:.1f} | {was['jobs']} | "
            f"{rate_was:.1f} | {100 * rate_was / top:.0f} % | {now['micro_batch'] or '-'} | {now['ms_per_step']:.1f} | "
            f"{now['jobs']} | {rate_is:.1f} | {100 * rate_is / top:.0f} % | x{rate_is / rate_was:.2f} | "
            f"{was['eval_s_per_10k']:.2f} | {now['eval_s_per_10k']:.2f} | "
            f"x{was['eval_s_per_10k'] * now['jobs'] / now['eval_s_per_10k'] / was['jobs']:.2f} |")
    lines += ["", "'x': the machine's rate, is / was (steps or evaluated images per second, all jobs together).",
              "", "CPU hours on this machine, every run at its full budget (runs that stop at their target end earlier):",
              "", "| study | runs counted | was (h) | is (h) | x |", "|---|---:|---:|---:|---:|"]
    total = {"was": 0.0, "is": 0.0}
    for study, h in out.get("hours", {}).items():
        lines.append(f"| {study} | {h['runs_measured']} of {h['runs']} | {h['was']:.1f} | {h['is']:.1f} | "
                     f"x{h['was'] / h['is']:.2f} |")
        for k in total:  # runs at a batch size not measured (--max-batch) are not counted: the column says so
            total[k] += h[k]
    if out.get("hours"):
        lines.append(f"| all | | {total['was']:.1f} | {total['is']:.1f} | x{total['was'] / total['is']:.2f} |")
    return "\n".join(lines) + "\n"


def one(argv: list[str]) -> int:
    """A child process: `one gemm` or `one step --spec JSON`; prints one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m batchwise.speed.cpubench one")
    parser.add_argument("what", choices=("gemm", "step"))
    parser.add_argument("--spec")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", choices=("was", "is"), default="is")
    args = parser.parse_args(argv)
    import torch

    from batchwise.engine import models

    models.MaxPool2d.fast = args.variant == "is"
    if args.variant == "is":
        models.pin_fp32()  # as the engine's jobs run (v4 flushes subnormals)

    torch.set_num_threads(args.threads)
    if args.what == "gemm":
        print(json.dumps({"gflops": gemm_gflops(args.threads)}))
    else:
        print(json.dumps(estimate.engine_times(json.loads(args.spec), steps=args.steps)))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["one"]:
        return one(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m batchwise.speed.bench cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--studies", nargs="+", default=list(STUDIES))
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds per workload (default 2)")
    parser.add_argument("--was-threads", type=int, default=WAS_THREADS,
                        help="threads of the 'was' job (default 2, as train_cell ran; 1: one job per core, "
                             "so that the two differ in the engine only)")
    parser.add_argument("--max-batch", type=int, default=None, help="leave out larger batches (a shorter run)")
    parser.add_argument("--min-batch", type=int, default=None, help="leave out smaller batches")
    parser.add_argument("--add", action="store_true",
                        help="add to OUT.json's records (a run of the larger batches after one of the smaller)")
    parser.add_argument("--out", default=None, help="where to write <out>.json and <out>.md (default: this CPU "
                        "type's file, docs/benchmarks-cpu.json or docs/benchmarks-cpu-<cpu>.json)")
    parser.add_argument("--config", default=str(config.BASE_CONFIG))
    args = parser.parse_args(argv)
    cfg = config.load(Path(args.config))
    import torch

    from batchwise import provenance

    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "cpu": provenance.cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
           "command": "PYTHONPATH=src python -m batchwise.speed.bench cpu " + " ".join(argv),
           "load": f"load average at start {os.getloadavg()[0]:.2f}", "peak": {}, "records": []}
    cores = os.cpu_count() or 1
    args.out = args.out or str(estimate.cpu_file_stem(out["cpu"]))  # one file per CPU type
    if args.add:
        before = json.loads(Path(args.out).with_suffix(".json").read_text())
        out = {**before, "command": before["command"] + "; then " + out["command"],
               "load": before["load"] + "; then " + out["load"]}
        out.pop("hours", None)
        if out["records"]:  # the layout the records were measured with
            args.was_threads = out["records"][0]["was"]["threads"]
    else:
        out["peak"][f"1 process x {cores} threads"] = _processes(["one", "gemm"], cores, 1)[0]["gflops"]
        out["peak"][f"{cores} processes x 1 thread"] = sum(r["gflops"] for r in _processes(["one", "gemm"], 1, cores))
    write(out, Path(args.out))
    for spec in workloads(cfg, args.studies):
        b = spec["params"]["batch_size"]
        if (args.max_batch and b > args.max_batch) or (args.min_batch and b < args.min_batch):
            continue
        steps = 3 if b <= 1024 else 2 if b <= 4096 else 1
        pair = variants(spec, cfg["train_threads"], args.was_threads)
        runs: dict[str, list[dict]] = {"was": [], "is": []}
        for _ in range(args.rounds):
            for name, v in pair.items():
                runs[name] += _processes(["one", "step", "--spec", json.dumps(v["spec"]), "--steps", str(steps),
                                          "--variant", name], v["threads"], v["jobs"])
        record = {"model": spec["model"], "dataset": spec["dataset"], "batch_size": b,
                  "flops": step_flops(spec), "steps_timed": steps, "rounds": args.rounds}
        for name, v in pair.items():
            record[name] = {"threads": v["threads"], "jobs": v["jobs"], "kind": json.dumps(estimate._kind(v["spec"])),
                            "micro_batch": v["spec"]["params"].get("micro_batch") if (v["spec"]["params"].get(
                                "micro_batch") or b + 1) < b else None,
                            "ms_per_step": 1000 * statistics.median(r["step_s"] for r in runs[name]),
                            "eval_s_per_10k": 10000 * statistics.median(r["eval_s_per_image"] for r in runs[name]),
                            "all_ms_per_step": [1000 * r["step_s"] for r in runs[name]]}
        out["records"].append(record)
        log(f"{spec['model']} {spec['dataset']} batch {b}: was {record['was']['ms_per_step']:.1f} ms/step, "
            f"is {record['is']['ms_per_step']:.1f} ms/step per job x {record['is']['jobs']} jobs")
        write(out, Path(args.out))
    out["hours"] = study_hours(cfg, args.studies, out["records"], args.was_threads)
    out["load"] += f", at end {os.getloadavg()[0]:.2f}"
    out["records"].sort(key=lambda r: (r["model"], r["dataset"], r["batch_size"]))
    write(out, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
