"""Training-speed benchmark: the homework loop (a DataLoader) against the project engine.

    PYTHONPATH=src python -m batchwise.speed.bench [--device auto|cpu|cuda] [--small] [--concurrency N]
                                               [--out docs/benchmarks] [--data results/data]
    PYTHONPATH=src python -m batchwise.speed.bench cpu ...    the CPU benchmark (`cpubench`): % of the fp32 peak
    PYTHONPATH=src python -m batchwise.speed.bench subnormal ...  s1_batch1's collapsed steps, subnormals flushed or not
    PYTHONPATH=src python -m batchwise.speed.bench options ...    channels-last, compiled steps, evaluation batch (CPU)

One process, one machine, the same data for every variant:
  dataloader0  the homework loop: a torchvision-style Dataset (uint8 image -> PIL -> ToTensor ->
               Normalize per item, as torchvision.datasets.MNIST/CIFAR10 do),
               DataLoader(shuffle=True, num_workers=0), .to(device) per batch, zero_grad /
               backward / step, loss.item() per step
  dataloader4  the same with num_workers=4 (2 in --small runs)
  eager        the project engine (train.train), data resident on the device, no CUDA graph
  graph        the project engine with the step captured in one CUDA graph (CUDA only)
The engine is timed through train.train itself (epoch 1 is warm-up, later epochs are timed), so
the benchmark measures the code that runs the studies, not a copy of it. Then: the per-job
overhead of a fresh `python -m batchwise train` process, what a training process imports, a
projection of the whole default config, and optionally N concurrent jobs on one device.
Writes <out>.json (records) and <out>.md (the report); both are rewritten after every section,
so a run that is cut short still leaves what it measured.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from batchwise import config, provenance
from batchwise.data import prepare as data
from batchwise.engine import models, train
from .benchkit import (FULL_TEST, FULL_TRAIN, LR, MOMENTUM, SHAPES, bench_spec, finish, load_images, log,  # noqa: F401
                       machine, mnist_cache, sub_env, sync, train_job)

EVAL_IMAGES = 2000        # test images evaluated per engine epoch; scaled to the full test set

# (workload, model, data set, batch size, model options): the variants are timed on each.
WORKLOADS = [
    ("MLP-BN", "mlp", "mnist", 64, {"bn": True}),
    ("LeNet-5", "lenet5", "mnist", 16, {}),
    ("CNN2", "cnn2", "mnist", 64, {"bn": False}),
    ("MobileNetV2", "mobilenet_v2", "cifar10", 16, {}),
    ("MobileNetV2", "mobilenet_v2", "cifar10", 128, {}),
]
SMALL_WORKLOADS = WORKLOADS[:3]

# `bench <word> ...`: the module of the package that runs it
SUBCOMMANDS = {
    "cpu": "cpubench",        # the CPU benchmark: the machine's limit and the engine's share
    "subnormal": "subnormal",  # s1_batch1's collapsed steps, flush off and on
    "options": "options",      # channels-last, compiled steps, evaluation batch on the CPU
    "probe": "gpu_probe",      # the GPU window's throughput probe
}


# ---------------------------------------------------------------------------------------------
# data: the real cache when there is one, else random images of the right shape


# ---------------------------------------------------------------------------------------------
# the variants; each returns milliseconds per training step


class HomeworkImages(Dataset):
    """What torchvision.datasets.MNIST / CIFAR10 hand a DataLoader: per item, the uint8 image as
    a PIL image through ToTensor and Normalize (built from the cache, so no raw files are needed)."""

    def __init__(self, cache: data.Cache, n: int):
        from torchvision import transforms

        self.x, self.y = cache.x_train[:n], cache.y_train[:n]
        self.transform = transforms.Compose([transforms.ToTensor(),
                                             transforms.Normalize(cache.meta["mean"], cache.meta["std"])])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = self.x[i]  # H, W, C uint8; a 2-D array becomes a greyscale ("L") image, as in torchvision
        return self.transform(Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)), int(self.y[i])


def time_dataloader(model_name: str, cache: data.Cache, bs: int, options: dict, workers: int,
                    steps: int, warmup: int, device: torch.device) -> float:
    """The homework loop: a DataLoader over a torchvision-style Dataset, one host sync per step."""
    dataset = HomeworkImages(cache, (warmup + steps) * bs)
    loader = DataLoader(dataset, batch_size=bs, shuffle=True, num_workers=workers)
    torch.manual_seed(0)
    model, _ = models.build(model_name, (cache.x_train.shape[3], *cache.x_train.shape[1:3]), 10, **options)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    t0 = time.perf_counter()
    for i, (xb, yb) in enumerate(loader):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        xb, yb = xb.to(device), yb.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        loss.item()
    sync(device)
    return (time.perf_counter() - t0) / steps * 1000


def time_engine(model_name: str, dataset: str, cache: data.Cache, bs: int, options: dict, graphs: bool,
                steps: int, device: torch.device) -> dict:
    """The project engine, through train.train: a 1-epoch warm-up, then timed epochs of `steps`
    steps (at least 3 timed steps where an epoch holds fewer). Returns ms/step, steps timed and
    evaluation seconds per epoch, scaled to the full test set."""
    per_epoch = max(1, min(steps, len(cache.x_train) // bs))
    epochs = 1 + max(1, math.ceil(3 / per_epoch))
    test_n = min(EVAL_IMAGES, len(cache.x_test))
    spec = bench_spec(model_name, dataset, bs, options, epochs, per_epoch, test_n, device, graphs)
    result = train.train(spec, cache, log=lambda line: None)
    timed = result["history"][1:]
    if not timed:
        raise RuntimeError(f"{model_name} bs {bs}: diverged in the warm-up epoch, nothing timed")
    ms = sum(h["epoch_time_s"] for h in timed) / (len(timed) * per_epoch) * 1000
    eval_s = result["metrics"]["eval_time_s"] / len(result["history"]) * FULL_TEST / test_n
    return {"ms_per_step": ms, "steps_timed": len(timed) * per_epoch, "eval_s_per_epoch": eval_s,
            "cuda_graphs": result["metrics"]["cuda_graphs"]}


def epoch_fields(ms_per_step: float, dataset: str, bs: int, engine: bool) -> dict:
    """Steps and seconds per epoch of the full data set. The engine drops the last partial batch;
    a DataLoader (drop_last=False) runs it."""
    steps = FULL_TRAIN[dataset] // bs if engine else -(-FULL_TRAIN[dataset] // bs)
    return {"s_per_epoch": ms_per_step / 1000 * steps, "steps_per_epoch": steps}


# ---------------------------------------------------------------------------------------------
# sections


def time_workloads(workloads, device, data_dir, steps, warmup, workers4, out) -> None:
    """Every variant on every workload; appends one record per (workload, variant) to out['records']."""
    for name, model_name, dataset, bs, options in workloads:
        cache, out["data"][dataset], _ = load_images(dataset, data_dir)
        n_steps = min(steps, len(cache.x_train) // bs - warmup)
        loader = lambda workers: time_dataloader(model_name, cache, bs, options, workers,  # noqa: E731
                                                 n_steps, warmup, device)
        engine = lambda graphs: time_engine(model_name, dataset, cache, bs, options, graphs,  # noqa: E731
                                            n_steps, device)
        variants = {"dataloader0": lambda: loader(0), "dataloader4": lambda: loader(workers4),
                    "eager": lambda: engine(False), "graph": lambda: engine(True)}
        if device.type != "cuda":
            del variants["graph"]
        for variant, run in variants.items():
            try:
                got = run()
            except Exception as exc:  # noqa: BLE001 - one failed variant must not lose the others
                out["notes"].append(f"{name} bs {bs} {variant}: failed ({type(exc).__name__}: {exc})")
                log(f"  {name:12s} bs {bs:5d} {variant:12s} FAILED: {type(exc).__name__}: {exc}")
                continue
            got = got if isinstance(got, dict) else {"ms_per_step": got, "steps_timed": n_steps}
            record = {"workload": name, "batch_size": bs, "variant": variant, "model": model_name,
                      "dataset": dataset, "bn": bool(options.get("bn")), "ms_per_step": got["ms_per_step"],
                      **epoch_fields(got["ms_per_step"], dataset, bs, engine=variant in ("eager", "graph")),
                      "steps_timed": got["steps_timed"], "device": out["device"], "torch": torch.__version__}
            if variant.startswith("dataloader"):
                record["num_workers"] = 0 if variant == "dataloader0" else workers4
            if "eval_s_per_epoch" in got:
                record["eval_s_per_epoch"] = got["eval_s_per_epoch"]
            out["records"].append(record)
            log(f"  {name:12s} bs {bs:5d} {variant:12s} {record['ms_per_step']:9.3f} ms/step "
                f"{record['s_per_epoch']:9.2f} s/epoch")


def probe_imports(device: torch.device) -> dict:
    """A fresh process: how long `import torch` takes, and whether importing the engine, building an
    MLP and its optimiser pulls in torchvision, matplotlib or torch._dynamo (it should not: hundreds
    of jobs pay for it)."""
    code = ("import json, sys, time\n"
            "t0 = time.perf_counter(); import torch; t = time.perf_counter() - t0\n"
            "from batchwise.engine import devices, models, step\n"
            "device, _ = devices.pick_device(sys.argv[1])\n"
            "model = models.build('mlp', (1, 28, 28), 10, bn=True)[0].to(device)\n"
            "step.SGD(model.parameters(), lr=0.1, momentum=0.9).zero_grad()\n"
            "print(json.dumps({'import_torch_s': t, 'torchvision_imported': 'torchvision' in sys.modules,"
            " 'matplotlib_imported': 'matplotlib' in sys.modules, 'dynamo_imported': 'torch._dynamo' in sys.modules}))\n")
    proc = subprocess.run([sys.executable, "-c", code, device.type], env=sub_env(), capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_study_config(path: Path) -> dict:
    """The config, validated when jsonschema is installed; else read with defaults applied."""
    try:
        return config.load(path)
    except ImportError:  # a bare machine without jsonschema: the defaults are enough to project
        import yaml
        return config._apply_defaults(yaml.safe_load(path.read_text()))


def mlp_cell(cfg: dict, device: torch.device, small: bool) -> dict:
    """The first cell of the MLP study (a short cell: 5 epochs of MNIST at batch 64) on `device`;
    in small runs 1 epoch of 640 images."""
    study = next(s for s, v in cfg["studies"].items() if v["model"] == "mlp")
    spec = config.resolve(cfg, config.cells(cfg, study)[0])
    spec["device"] = device.type
    if small:
        spec["params"] = {**spec["params"], "epochs": 1, "train_subset": 640, "test_subset": 200}
    return spec


def job_overhead(spec: dict, cache: Path, tmp: Path, runs: int) -> dict:
    """Fresh `python -m batchwise train` processes: process start to first training step (as the
    engine records it), and wall time minus training and evaluation (start-up plus shut-down)."""
    ages, rest, stages = [], [], []
    for i in range(runs):
        out_dir = tmp / f"overhead{i}"
        t0 = time.perf_counter()
        finish(train_job(spec, cache, out_dir))
        wall = time.perf_counter() - t0
        m = json.loads((out_dir / "metrics.json").read_text())
        ages.append(m["first_step_process_age_s"])
        rest.append(wall - m["train_time_s"] - m["eval_time_s"])
        stages.append(m["startup_s"])
    best = ages.index(min(ages))
    return {"workload": "per-job-overhead", "variant": "cli", "seconds": min(rest),
            "first_step_process_age_s": ages[best], "startup_s": stages[best], "runs": runs,
            "cell": f"{spec['study']}/{spec['cell']}", "epochs": spec["params"]["epochs"], "device": spec["device"],
            "torch": torch.__version__}


def concurrency(spec: dict, cache: Path, tmp: Path, width: int, cells: int) -> list[dict]:
    """Cells per hour of `cells` training jobs run `width` at a time on one device, and 1 at a time."""
    records = []
    for w in (1, width):
        running, done, t0 = [], 0, time.perf_counter()
        try:
            while done < cells:
                while len(running) < w and done + len(running) < cells:
                    running.append(train_job(spec, cache, tmp / f"conc{w}_{done + len(running)}"))
                finish(running.pop(0))  # oldest first: jobs of one shape finish in about start order
                done += 1
        finally:
            for proc in running:  # only left over when one job failed: stop the others
                proc.kill()
                proc.wait()
        wall = time.perf_counter() - t0
        records.append({"workload": "concurrency", "variant": f"gpu={w}", "cells": cells, "seconds": wall,
                        "cells_per_hour": cells / wall * 3600, "cell": f"{spec['study']}/{spec['cell']}",
                        "epochs": spec["params"]["epochs"], "device": spec["device"], "torch": torch.__version__})
    records[1]["speedup_vs_gpu=1"] = records[1]["cells_per_hour"] / records[0]["cells_per_hour"]
    return records


def projection(cfg: dict, device: torch.device, data_dir: Path, steps: int, measure: bool, out: dict) -> None:
    """Minutes for every cell of `cfg` (one seed each): s/epoch x epochs + evaluation + per-job
    overhead, from one timing per distinct (data set, model, batch size, BN). The main table's
    timings are reused; with `measure`, the rest are timed now (graph on CUDA, eager on CPU)."""
    variant = "graph" if device.type == "cuda" else "eager"
    timed = {(r["dataset"], r["model"], r["batch_size"], bool(r.get("bn"))): r
             for r in out["records"] if r.get("variant") == variant and "dataset" in r}
    rows, missing = [], set()
    for cell in config.cells(cfg):
        spec = config.resolve(cfg, cell)
        p = spec["params"]
        key = (spec["dataset"], spec["model"], p["batch_size"], bool(p.get("bn")))
        if key not in timed and key not in missing and measure:
            cache, source, _ = load_images(key[0], data_dir)
            out["data"][key[0]] = source
            try:
                got = time_engine(key[1], key[0], cache, key[2], {"bn": True} if key[3] else {},
                                  device.type == "cuda", steps, device)
                timed[key] = {**got, "workload": f"{key[1]}" + ("-BN" if key[3] else ""), "variant": variant,
                              "dataset": key[0], "model": key[1], "batch_size": key[2], "bn": key[3],
                              "device": out["device"], "torch": torch.__version__, "projection_only": True,
                              **epoch_fields(got["ms_per_step"], key[0], key[2], engine=True)}
                del timed[key]["cuda_graphs"]
                out["records"].append(timed[key])
                log(f"  {key[1]:12s} bs {key[2]:5d} {key[0]:12s} {got['ms_per_step']:9.3f} ms/step")
            except Exception as exc:  # noqa: BLE001
                out["notes"].append(f"projection timing {key}: failed ({type(exc).__name__}: {exc})")
                missing.add(key)
        rows.append((spec, key, timed.get(key)))
    seeds = {name: s["seeds"] for name, s in cfg["studies"].items()}
    overhead = out["overhead"]["seconds"] if out.get("overhead") else 0.0
    studies: dict[str, dict] = {}
    for spec, key, t in rows:
        row = studies.setdefault(spec["study"], {"cells": 0, "covered": 0, "train_s": 0.0, "eval_s": 0.0,
                                                 "overhead_s": 0.0, "seeds": len(seeds[spec["study"]])})
        if spec["seed"] != seeds[spec["study"]][0]:
            continue  # one seed each
        row["cells"] += 1
        if t is None:
            continue
        p = spec["params"]
        n = min(p["train_subset"] or FULL_TRAIN[key[0]], FULL_TRAIN[key[0]])
        row["covered"] += 1
        row["train_s"] += t["ms_per_step"] / 1000 * (n // key[2]) * p["epochs"]
        row["eval_s"] += t.get("eval_s_per_epoch", 0.0) * p["epochs"]
        row["overhead_s"] += overhead
    total = sum(r["train_s"] + r["eval_s"] + r["overhead_s"] for r in studies.values())
    cells = sum(r["cells"] for r in studies.values())
    covered = sum(r["covered"] for r in studies.values())
    all_seeds = sum((r["train_s"] + r["eval_s"] + r["overhead_s"]) * r["seeds"] for r in studies.values())
    out["projection"] = {"workload": "projection", "variant": "default-config", "minutes": total / 60,
                         "minutes_all_seeds": all_seeds / 60, "cells": cells, "cells_covered": covered,
                         "partial": covered < cells, "timing_variant": variant, "overhead_s_per_cell": overhead,
                         "studies": studies, "device": out["device"], "torch": torch.__version__}


# ---------------------------------------------------------------------------------------------
# output


def speedups(records: list[dict]) -> list[tuple[dict, dict]]:
    """Each timing record with its speed-ups against the other variants of its workload and batch."""
    rows = []
    for r in records:
        if r.get("projection_only") or "ms_per_step" not in r:
            continue
        same = {o["variant"]: o["ms_per_step"] for o in records if not o.get("projection_only")
                and o.get("workload") == r["workload"] and o.get("batch_size") == r["batch_size"]}
        rows.append((r, {base: same[base] / r["ms_per_step"] if base in same else None
                         for base in ("dataloader0", "dataloader4", "eager")}))
    return rows


def table(records: list[dict]) -> list[str]:
    """The timing table as markdown lines (also printed)."""
    fmt = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
    lines = ["| workload | batch | variant | ms/step | s/epoch | vs dataloader0 | vs dataloader4 | vs eager |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r, s in speedups(records):
        lines.append(f"| {r['workload']} | {r['batch_size']} | {r['variant']} | {r['ms_per_step']:.3f} | "
                     f"{r['s_per_epoch']:.2f} | " + " | ".join(fmt(s[b]) for b in s) + " |")
    return lines


def write(out: dict, path: Path) -> None:
    """<path>.json: the records; <path>.md: the report. Rewritten after every section."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = list(out["records"])
    if out.get("overhead"):
        records.append(out["overhead"])
    records += out.get("concurrency", [])
    if out.get("projection"):
        records.append(out["projection"])
    path.with_suffix(".json").write_text(json.dumps(records, indent=1) + "\n")
    path.with_suffix(".md").write_text(report(out) + "\n")


def report(out: dict) -> str:
    m, s = out["machine"], out["settings"]
    lines = ["# Training-speed benchmark", ""]
    if out["device"] == "cpu":
        lines += ["> **CPU run.** These numbers come from a CPU" + (" `--small`" if s["small"] else "") +
                  " run (a placeholder, and a check that the benchmark works); the engine's point is the GPU, "
                  "where the `graph` variant runs. Re-run on a GPU machine for the real numbers.", ""]
    lines += [f"- **Date**: {out['date']}",
              f"- **Machine**: {m['device']}; CPU {m['cpu']}; torch {m['torch']}, CUDA {m['cuda']}, "
              f"cuDNN {m['cudnn']}; Python {m['python']}; {m['platform']}",
              f"- **Command** (from the repository root): `{out['command']}`",
              f"- **Data**: " + "; ".join(out["data"].values()),
              f"- **Settings**: {s['warmup']} warm-up steps then {s['steps']} timed steps per variant (fewer where "
              f"the data hold fewer batches); SGD lr {LR}, momentum {MOMENTUM}; the engine is timed through "
              f"`train.train` (epoch 1 warm-up, later epochs timed, per-epoch shuffle and host read-back included). "
              f"s/epoch = ms/step x steps per epoch of the full data set (60000 MNIST, 50000 CIFAR-10 images).",
              f"- **Homework loop**: a torchvision-style Dataset (per item: uint8 image -> PIL -> ToTensor -> "
              f"Normalize, as `torchvision.datasets.MNIST` does), `DataLoader(shuffle=True)`, `.to(device)` per "
              f"batch, `torch.optim.SGD`, `loss.item()` every step; dataloader4 ran with {s['workers4']} workers.",
              ""]
    lines += ["## Time per training step", "", *table(out["records"]), ""]
    engine = "graph" if out["device"] != "cpu" else "eager"
    best = [(r, sp) for r, sp in speedups(out["records"]) if r["variant"] == engine]
    if best:
        lines += ["## Ratios", "", f"Speed-up of the engine ({engine}): the other variant's ms/step / its own.", ""]
        for r, sp in best:
            parts = [f"{sp[b]:.1f}x over {b}" for b in sp if sp[b] and b != engine]
            lines.append(f"- {r['workload']} batch {r['batch_size']}: " + ", ".join(parts))
        lines.append("")
    if out.get("overhead"):
        o, i = out["overhead"], out.get("imports", {})
        lines += ["## Per-job overhead", "",
                  f"- A fresh `python -m batchwise train` process ({o['cell']}, {o['epochs']} epoch(s), "
                  f"{o['device']}; best of {o['runs']}): **{o['seconds']:.2f} s** of wall time outside training and "
                  f"evaluation; process start to first training step {o['first_step_process_age_s']:.2f} s.",
                  f"- Start-up stages of that run (process age, s): " + ", ".join(
                      f"{k.replace('_', ' ')} {v:.2f}" for k, v in o["startup_s"].items()) + ".",
                  f"- `import torch` in a fresh process: {i.get('import_torch_s', float('nan')):.2f} s.",
                  "- Importing `batchwise.engine.train`, building an MLP and its optimiser imports " + "; ".join(
                      f"{name}: {'yes' if i.get(key) else 'no'}" for name, key in (
                          ("torchvision", "torchvision_imported"), ("matplotlib", "matplotlib_imported"),
                          ("torch._dynamo", "dynamo_imported"))) + ".", ""]
    if out.get("projection"):
        p = out["projection"]
        lines += ["## Projection of the default config", "",
                  f"{out['config']}, one seed per cell: s/epoch ({p['timing_variant']}) x epochs + evaluation "
                  f"(scaled to the 10000 test images) + {p['overhead_s_per_cell']:.1f} s per-job overhead per cell "
                  f"(measured on an MLP job; MobileNet jobs also import torchvision), one job at a time.", ""]
        if p["partial"]:
            lines += [f"**Partial**: only {p['cells_covered']} of {p['cells']} cells have a measured (model, batch "
                      f"size) on this run" + (" (--small: no extra timings)" if s["small"] else "") +
                      "; the minutes below cover those cells only.", ""]
        lines += ["| study | cells | covered | train min | eval min | overhead min | total min |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in p["studies"].items():
            lines.append(f"| {name} | {r['cells']} | {r['covered']} | {r['train_s'] / 60:.1f} | {r['eval_s'] / 60:.1f} "
                         f"| {r['overhead_s'] / 60:.1f} | {(r['train_s'] + r['eval_s'] + r['overhead_s']) / 60:.1f} |")
        lines += ["", f"**Total: {p['minutes']:.1f} min** for one seed per cell "
                      f"({p['minutes'] / 60:.2f} h); with every configured seed: {p['minutes_all_seeds']:.1f} min.", ""]
    if out.get("concurrency"):
        one, many = out["concurrency"]
        lines += ["## Concurrent jobs on one device", "",
                  f"{one['cells']} cells ({one['cell']}, {one['epochs']} epoch(s)) as separate "
                  f"`python -m batchwise train` processes:", "",
                  "| jobs at a time | wall s | cells per hour |", "|---|---:|---:|",
                  f"| 1 | {one['seconds']:.1f} | {one['cells_per_hour']:.0f} |",
                  f"| {many['variant'].split('=')[1]} | {many['seconds']:.1f} | {many['cells_per_hour']:.0f} |", "",
                  f"{many['variant']}: **{many['speedup_vs_gpu=1']:.2f}x** the cells per hour of one at a time "
                  f"(target on a GPU: >= 2.5x with 4).", ""]
    if out["notes"]:
        lines += ["## Notes", "", *[f"- {n}" for n in out["notes"]], ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] and words[0] in SUBCOMMANDS:
        return importlib.import_module(f".{SUBCOMMANDS[words[0]]}", __package__).main(words[1:])
    parser = argparse.ArgumentParser(prog="python -m batchwise.speed.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--small", action=argparse.BooleanOptionalAction, default=None,
                        help="tiny step counts and three small workloads (default: on when there is no CUDA)")
    parser.add_argument("--steps", type=int, help="timed steps per variant (default 200, --small 20)")
    parser.add_argument("--concurrency", type=int, default=0, metavar="N",
                        help="also time N concurrent training jobs against 1 at a time")
    parser.add_argument("--cells", type=int, default=8, help="cells per concurrency mode (default 8)")
    parser.add_argument("--out", default="docs/benchmarks", help="writes OUT.json and OUT.md")
    parser.add_argument("--data", default="results/data", help="folder of the prepared caches (mnist.npz, ...)")
    parser.add_argument("--config", default="config/config.yaml",
                        help="config to project (relative paths: from here, else from the repository root)")
    args = parser.parse_args(argv)

    device, note = train.pick_device(args.device)
    small = device.type == "cpu" if args.small is None else args.small
    steps = args.steps or (20 if small else 200)
    warmup = 5 if small else 20
    workers4 = 2 if small else 4
    out = {"device": str(device), "machine": machine(device), "records": [], "notes": [], "data": {},
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "command": " ".join(["PYTHONPATH=src python -m batchwise.speed.bench", *words]), "config": args.config,
           "settings": {"small": small, "steps": steps, "warmup": warmup, "workers4": workers4}}
    if small and args.small is None:
        out["notes"].append(f"--small chosen automatically: {note}")
    if small:
        out["notes"].append(f"--small: three workloads, {steps} timed steps, dataloader4 with {workers4} workers; "
                            "the projection uses the measured workloads only")
    path, data_dir = Path(args.out), Path(args.data)
    config_path = Path(args.config) if Path(args.config).exists() else config.REPO / args.config
    log(f"batchwise bench on {out['machine']['device']}, {out['machine']['cpu']} (torch {torch.__version__}), "
        f"{'small' if small else 'full'} run -> {path}.md/.json")

    log("time per step:")
    time_workloads(SMALL_WORKLOADS if small else WORKLOADS, device, data_dir, steps, warmup, workers4, out)
    write(out, path)

    cfg = load_study_config(config_path)
    spec = mlp_cell(cfg, device, small)
    with tempfile.TemporaryDirectory(prefix="batchwise-bench-") as tmp:
        cache = mnist_cache(data_dir, Path(tmp))
        log("per-job overhead and imports (fresh processes):")
        out["imports"] = probe_imports(device)
        out["overhead"] = job_overhead(spec, cache, Path(tmp), runs=1 if small else 2)
        o, i = out["overhead"], out["imports"]
        log(f"  overhead {o['seconds']:.2f} s, first step at {o['first_step_process_age_s']:.2f} s, "
            f"import torch {i['import_torch_s']:.2f} s, torchvision imported: {i['torchvision_imported']}, "
            f"matplotlib imported: {i['matplotlib_imported']}, torch._dynamo imported: {i['dynamo_imported']}")
        write(out, path)

        log(f"projection of {args.config}:")
        projection(cfg, device, data_dir, min(steps, 100), measure=not small, out=out)
        p = out["projection"]
        log(f"  {p['minutes']:.1f} min for {p['cells_covered']} of {p['cells']} cells (one seed each)")
        write(out, path)

        if args.concurrency:
            log(f"concurrency: {args.cells} cells, 1 and {args.concurrency} at a time:")
            try:
                out["concurrency"] = concurrency(spec, cache, Path(tmp), args.concurrency, args.cells)
                log(f"  {out['concurrency'][1]['speedup_vs_gpu=1']:.2f}x the cells per hour of one at a time")
            except (RuntimeError, subprocess.SubprocessError) as exc:
                out["notes"].append(f"concurrency: failed ({exc})")
                log(f"  FAILED: {exc}")
            write(out, path)

    print("\n".join(table(out["records"])))
    log(f"wrote {path.with_suffix('.md')} and {path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
