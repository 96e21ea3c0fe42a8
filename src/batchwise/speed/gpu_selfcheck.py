"""The GPU window's self-check: evidence, in the window's first minutes, that the CUDA engine does what
its tests say and that those tests could see it fail.

    python -m batchwise.speed.gpu_selfcheck --out selfcheck.json [--deadline 150] [--data results/data]

Checks, in order, each a record in OUT (rewritten after each, so a check cut short keeps the others):
  packed       seeds packed on streams equal each seed alone, bit for bit (deterministic kernels, graphs
               on, MNIST-sized data so that split-K matmuls are chosen); ms per step per seed packed and
               alone (packed below alone x seeds: their kernels overlapped)
  mutant       the same comparison with a deliberate fault: `shared-stream` (every graph captured on
               one stream: one cuBLAS workspace) and `no-waits` (streams never wait for each other);
               a mutant is *caught* when the packed seeds then differ from the lone ones. A mutant
               not caught means the packed-vs-alone test could pass by luck: recorded, not hidden.
  resume       a run stopped after its first epoch's checkpoint and resumed equals the run left alone:
               MLP with batch norm and momentum; the same with the noise-scale probe (batch-norm
               statistics restored on the seed's stream before the checkpoint reads them); the x3 spec
               (warm-up, mid-epoch target checks, noise scale)
  graphs-auto  one short cell per model with `cuda_graphs: auto` and deterministic kernels off: graphs
               on (no silent eager fallback), and its losses within 1e-3 of the eager run's
On a machine without CUDA (the CPU rehearsal) only `resume` runs, small; the rest say why not.
`verdict` sums it up in one line; exit 1 when a check that ran failed (a mutant not caught is not a
failure of the engine, and says so).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from batchwise import config
from batchwise.data import prepare as data
from batchwise.engine import step, train
from batchwise.engine.checkpoint import Checkpoints

QUIET: Callable[[str], None] = lambda line: None  # noqa: E731


def spec_for(model: str, dataset: str = "mnist", device: str = "cuda", graphs: str = "on",
             deterministic: bool = True, **params) -> dict:
    """The resolved spec of a one-setting cell with seeds 0, 1, 2."""
    params = {"epochs": 1, "lr": 0.05, "momentum": 0.9, **params}
    bs = params.pop("batch_size", 64)
    cfg = config.validate({"data_dir": "data", "device": device, "cuda_graphs": graphs,
                           "deterministic": deterministic, "homeworks": {"x": {"title": "x"}},
                           "studies": {"t": {"homework": "x", "title": "t", "dataset": dataset, "model": model,
                                             "seeds": [0, 1, 2], "params": params, "grid": {"batch_size": [bs]}}}})
    return config.resolve_setting(cfg, config.settings(cfg)[0])


def comparable(result: dict) -> str:
    """A run's numbers without its wall times and packing facts."""
    metrics = {k: v for k, v in result["metrics"].items()
               if not k.endswith("_s") and k not in ("startup_s", "seeds_together", "gpu_mem_peak_mb")}
    history = [{k: v for k, v in row.items() if k not in ("epoch_time_s", "elapsed_s")} for row in result["history"]]
    # as JSON text: NaN (a noise scale with too few draws) equals NaN there, never as a float
    return json.dumps([metrics, history, result["iterations"]], sort_keys=True, default=str)


def load_cache(data_dir: Path, dataset: str, tmp: Path, n_train: int | None = None) -> tuple[data.Cache, str]:
    """The prepared cache where the window built one, else synthetic images; tiled to `n_train`
    training images where asked (MNIST's 60,000: large enough for split-K kernels)."""
    path = data_dir / f"{dataset}.npz"
    if path.is_file():
        cache, source = data.load(path), str(path)
    else:
        data.prepare(dataset, tmp / f"{dataset}.npz", data_dir=tmp, download=False, synthetic=True)
        cache, source = data.load(tmp / f"{dataset}.npz"), "synthetic"
    if n_train and len(cache.y_train) < n_train:
        reps = -(-n_train // len(cache.y_train))
        cache = data.Cache(np.tile(cache.x_train, (reps, 1, 1, 1))[:n_train], np.tile(cache.y_train, reps)[:n_train],
                           cache.x_test, cache.y_test, cache.meta)
        source += f", tiled to {n_train}"
    return cache, source


# ---------------------------------------------------------------------------------------------- mutants

@contextlib.contextmanager
def shared_stream() -> Iterator[None]:
    """Mutant: every graph captured on one stream (so one cuBLAS workspace), replayed on each seed's own."""
    capture, one = step.capture, []

    def on_one_stream(step, reset, model, opt, device, stream):
        one.append(one[0] if one else torch.cuda.Stream(device))
        return capture(step, reset, model, opt, device, one[0])
    step.capture = on_one_stream
    try:
        yield
    finally:
        step.capture = capture


@contextlib.contextmanager
def no_waits() -> Iterator[None]:
    """Mutant: streams never wait for one another (set-up, restores and seeds race)."""
    wait = torch.cuda.Stream.wait_stream
    torch.cuda.Stream.wait_stream = lambda self, other: None
    try:
        yield
    finally:
        torch.cuda.Stream.wait_stream = wait


MUTANTS = {"shared-stream": shared_stream, "no-waits": no_waits}


# ---------------------------------------------------------------------------------------------- checks

def ms_per_step(result: dict) -> float:
    return 1000 * result["metrics"]["train_time_s"] / max(1, result["metrics"]["steps_run"])


def check_packed(cache: data.Cache, cases: list[tuple[str, dict, int]], deadline: float, out: dict,
                 save: Callable[[], None]) -> None:
    """Packed vs alone per case, then each mutant against the same lone runs."""
    for model, params, bs in cases:
        label = f"{model} {params} bs {bs}"
        if time.monotonic() > deadline:
            out["skipped"].append(f"packed {label}: deadline")
            continue
        spec = spec_for(model, batch_size=bs, **params)
        alone = [train.train({**spec, "seed": s}, cache, log=QUIET) for s in (0, 1, 2)]
        packed = train.train_seeds(spec, cache, [0, 1, 2], log=QUIET)
        equal = [comparable(p) == comparable(a) for p, a in zip(packed, alone)]
        together_ms, alone_ms = ms_per_step(packed[0]), sum(map(ms_per_step, alone)) / 3
        out["checks"].append({
            "check": "packed", "case": label, "ok": all(equal) and all(p["metrics"]["seeds_together"] == 3
                                                                        for p in packed),
            "equal_per_seed": equal, "ms_per_step_packed": together_ms, "ms_per_step_alone": alone_ms,
            # packed, each seed's clock spans all three seeds' steps: below 3x alone means they overlapped
            "overlap_speedup": 3 * alone_ms / together_ms if together_ms > 0 else None})
        save()
        for name, mutant in MUTANTS.items():
            if time.monotonic() > deadline:
                out["skipped"].append(f"mutant {name} on {label}: deadline")
                continue
            with mutant():
                try:
                    broken = train.train_seeds(spec, cache, [0, 1, 2], log=QUIET)
                    differ = [comparable(p) != comparable(a) for p, a in zip(broken, alone)]
                    note = None
                except Exception as exc:  # a crash is the mutant caught too
                    differ, note = [True], f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            out["checks"].append({"check": "mutant", "mutant": name, "case": label, "caught": any(differ),
                                  "differ_per_seed": differ, "error": note})
            save()


class Stop(Exception):
    """Stands in for a kill right after a checkpoint was written."""


def check_resume(cache: data.Cache, device: str, cases: list[tuple[str, dict]], deadline: float, out: dict,
                 save: Callable[[], None], tmp: Path) -> None:
    """Each case: three seeds run straight through vs stopped after the first epoch's checkpoints and
    started again from them (a new engine, as a new job would be)."""
    for label, spec in cases:
        if time.monotonic() > deadline:
            out["skipped"].append(f"resume {label}: deadline")
            continue
        straight = train.train_seeds(spec, cache, [0, 1, 2], log=QUIET)
        store = Checkpoints(tmp / label, spec, QUIET)
        save_state, saved = store.save, []

        def save_then_stop(seed, state):
            save_state(seed, state)
            saved.append(seed)
            if len(set(saved)) == 3:  # every seed has a checkpoint (on the CPU: one after another)
                raise Stop
        store.save = save_then_stop
        try:
            train.train_seeds(spec, cache, [0, 1, 2], log=QUIET, store=store)
            stopped = False
        except Stop:
            stopped = True
        store.save = save_state
        lines = []
        resumed = train.train_seeds(spec, cache, [0, 1, 2], log=lines.append, store=store)
        equal = [comparable(r) == comparable(s) for r, s in zip(resumed, straight)]
        out["checks"].append({"check": "resume", "case": label, "device": device, "stopped": stopped,
                              "resumed": sum("resumed at epoch" in line for line in lines),
                              "ok": stopped and all(equal) and sum("resumed at epoch" in line for line in lines) == 3,
                              "equal_per_seed": equal})
        save()


def check_graphs_auto(caches: dict, models: list[tuple[str, str, dict]], deadline: float, out: dict,
                      save: Callable[[], None]) -> None:
    """A short cell per model, graphs `auto`, deterministic off: graphs on, and near the eager losses."""
    for model, dataset, params in models:
        if time.monotonic() > deadline:
            out["skipped"].append(f"graphs-auto {model}: deadline")
            continue
        spec = {**spec_for(model, dataset, graphs="auto", deterministic=False, batch_size=32, train_subset=2048,
                           test_subset=512, **params), "seed": 0}
        train.deterministic_kernels(False)
        graph = train.train(spec, caches[dataset], log=QUIET)
        eager = train.train({**spec, "cuda_graphs": "off"}, caches[dataset], log=QUIET)
        g, e = graph["history"][-1], eager["history"][-1]
        gaps = {k: abs(g[k] - e[k]) for k in ("running_loss", "test_loss", "train_loss")}
        out["checks"].append({"check": "graphs-auto", "case": model, "cuda_graphs": graph["metrics"]["cuda_graphs"],
                              "note": graph["metrics"]["cuda_graphs_note"], "loss_gaps": gaps,
                              "ok": graph["metrics"]["cuda_graphs"] is True and all(
                                  math.isfinite(v) and v <= 1e-3 * max(1.0, abs(e[k])) for k, v in gaps.items())})
        save()


def verdict(out: dict) -> str:
    """One line: what passed, what failed, which mutants were caught."""
    ran = [c for c in out["checks"] if c["check"] != "mutant"]
    failed = [f"{c['check']} {c['case']}" for c in ran if not c["ok"]]
    mutants = [c for c in out["checks"] if c["check"] == "mutant"]
    caught = {m: any(c["caught"] for c in mutants if c["mutant"] == m) for m in MUTANTS if
              any(c["mutant"] == m for c in mutants)}
    text = f"{len(ran) - len(failed)} of {len(ran)} checks ok"
    text += f"; FAILED: {', '.join(failed)}" if failed else ""
    text += "; mutants: " + (", ".join(f"{m} {'caught' if c else 'NOT caught'}" for m, c in caught.items())
                             if caught else "none run")
    return text + (f"; {len(out['skipped'])} skipped" if out["skipped"] else "")


def selfcheck(path: Path, data_dir: Path, deadline_s: float) -> dict:
    """Run every check that fits in `deadline_s` seconds; returns (and writes to `path`) the record."""
    deadline = time.monotonic() + deadline_s
    cuda = torch.cuda.is_available()
    out = {"kind": "gpu-window-selfcheck", "device": torch.cuda.get_device_name(0) if cuda else "cpu",
           "torch": torch.__version__, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "deadline_s": deadline_s, "data": {}, "checks": [], "skipped": []}

    def save() -> None:
        out["verdict"] = verdict(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(path.name + ".tmp").write_text(json.dumps(out, indent=1) + "\n")
        path.with_name(path.name + ".tmp").replace(path)

    save()
    with tempfile.TemporaryDirectory(prefix="batchwise-selfcheck-") as tmp_name:
        tmp = Path(tmp_name)
        mnist, out["data"]["mnist"] = load_cache(data_dir, "mnist", tmp, 60000 if cuda else None)
        if cuda:
            check_packed(mnist, [("mlp", {"bn": True, "weight_decay": 0.001}, 64), ("lenet5", {}, 16)],
                         deadline - 0.55 * deadline_s, out, save)
        else:
            out["skipped"] += ["packed: no CUDA device", "mutants: no CUDA device", "graphs-auto: no CUDA device"]
        device = "cuda" if cuda else "cpu"
        small = {"train_subset": 6400 if cuda else 320, "test_subset": 1000 if cuda else 200}
        engine = {"device": device, "graphs": "on" if cuda else "off"}
        x3 = {**config.load()["studies"]["x3_scaled_lr"]["params"], "epochs": 3, "target_acc": 0.99,
              "noise_scale_batches": [16, 256], "noise_scale_draws": 4, "lr_scaling": "linear", **small}
        check_resume(mnist, device, [
            ("mlp-bn-momentum", spec_for("mlp", bn=True, momentum=0.9, epochs=3, batch_size=64, **small, **engine)),
            ("mlp-bn-noise-scale", spec_for("mlp", bn=True, momentum=0.9, epochs=3, batch_size=64,
                                            noise_scale_batches=[16, 256], noise_scale_draws=4, **small, **engine)),
            ("x3", spec_for("lenet5", batch_size=64, **x3, **engine)),
        ], deadline - (0.2 * deadline_s if cuda else 0), out, save, tmp)
        if cuda:
            cifar, out["data"]["cifar10"] = load_cache(data_dir, "cifar10", tmp)
            check_graphs_auto({"mnist": mnist, "cifar10": cifar}, [
                ("mlp", "mnist", {"bn": True}), ("cnn2", "mnist", {"bn": True}), ("lenet5", "mnist", {}),
                ("mnist_cnn", "mnist", {}), ("mobilenet_v2", "cifar10", {})], deadline, out, save)
    out["seconds"] = round(deadline_s - (deadline - time.monotonic()), 1)
    save()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchwise.speed.gpu_selfcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the self-check's JSON file")
    parser.add_argument("--deadline", type=float, default=150.0, help="seconds the whole self-check may take")
    parser.add_argument("--data", default="results/data", help="folder of the prepared caches")
    args = parser.parse_args(argv)
    out = selfcheck(Path(args.out), Path(args.data), args.deadline)
    print(f"selfcheck: {out['verdict']} ({out['seconds']} s)")
    return 0 if all(c["ok"] for c in out["checks"] if c["check"] != "mutant") else 1


if __name__ == "__main__":
    sys.exit(main())
