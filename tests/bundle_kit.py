"""A small synthetic checkout, its bundle, and ways to damage a bundle: shared by the bundle tests.

The checkout holds one study `t` (MLP on synthetic MNIST, batch 32 or 64, seeds 0 and 1, 3 epochs of
640 images): batch 32 finished (seed 1 diverged in epoch 2), batch 64 seed 0 finished inside a stopped
cell job (checkpoints/) and seed 1 unfinished there (an opaque state.pt), and the study's timing.json.
"""
from __future__ import annotations

import io
import json
import lzma
import math
import shutil
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from batchwise.results import bundles, merge, unpack
from batchwise import config

CONFIG = config.validate({
    "data_dir": "data", "synthetic_data": True, "device": "cpu", "homeworks": {"x": {"title": "x"}},
    "studies": {"t": {"homework": "x", "title": "t", "dataset": "mnist", "model": "mlp", "seeds": [0, 1],
                      "params": {"epochs": 3, "train_subset": 640}, "grid": {"batch_size": [32, 64]}}}})
IMAGES = 640


def run_files(setting: config.Setting, seed: int, diverged_epoch: int | None = None) -> dict[str, bytes]:
    """A run's three files as train.py writes them (numbers made up, shapes and counts exact)."""
    spec = {**config.resolve_setting(CONFIG, setting), "seed": seed, "cell": f"{setting.id}_seed={seed}"}
    batch = spec["params"]["batch_size"]
    steps = math.ceil(IMAGES / batch)
    epochs = diverged_epoch or spec["params"]["epochs"]
    history = []
    for e in range(1, epochs + 1):
        bad = e == diverged_epoch
        acc = math.nan if bad else round(0.5 + 0.1 * e + 0.01 * seed, 4)
        history.append({"epoch": e, "running_loss": math.nan if bad else 1.0 / e, "running_acc": 0.4 + 0.1 * e,
                        "train_loss": math.nan if bad else 0.9 / e, "train_acc": acc, "test_loss": math.nan if bad else 1.1 / e,
                        "test_acc": acc, "epoch_time_s": 0.25, "elapsed_s": 0.25 * e})
    every = max(1, math.ceil(steps * spec["params"]["epochs"] / 2000))
    iterations = [(g + 1, g // steps + 1, 2.3 / (g + 1)) for g in range(epochs * steps) if g % every == 0]
    last, ok = history[-1], diverged_epoch is None
    final = lambda v: v if ok else None  # noqa: E731
    metrics = {
        "schema": 2, "study": setting.study, "cell": spec["cell"], "setting": setting.id, "seed": seed, "spec": spec,
        "data": {"name": "mnist", "source": "synthetic"}, "status": "ok" if ok else "diverged", "diverged": not ok,
        "diverged_epoch": diverged_epoch, "epochs_run": epochs,
        "final_train_loss": final(last["train_loss"]), "final_train_acc": final(last["train_acc"]),
        "final_test_loss": final(last["test_loss"]), "final_test_acc": final(last["test_acc"]),
        "final_running_loss": final(last["running_loss"]), "final_running_acc": final(last["running_acc"]),
        "first_epoch_running_loss": 1.0, "best_test_acc": max(h["test_acc"] for h in history if h["test_acc"] == h["test_acc"]),
        "target_acc": None, "epochs_to_target": None, "steps_to_target": None, "examples_to_target": None,
        "time_to_target_s": None, "stopped_at_target": False, "train_time_s": final(0.75), "eval_time_s": final(0.1),
        "total_time_s": final(0.85), "mean_epoch_s": final(0.25), "time_until_stop_s": 0.85,
        "steps_per_epoch": steps, "steps_run": epochs * steps, "images_per_epoch": IMAGES, "train_eval_images": 400,
        "lr_effective": spec["params"]["lr"], "warmup_steps": 0, "noise_scale": None,
        "test_pred_counts": [40] * 10 if ok else None, "test_label_counts": [40] * 10, "top_pred_class": 0 if ok else None,
        "top_pred_share": final(0.1), "cuda_graphs": False, "cuda_graphs_note": None, "n_params": 1000,
        "weights": "PyTorch default initialisation", "device": "cpu",
        "env": {"hostname": "lab", "device_name": "Test CPU", "git": {"commit": "0" * 40, "dirty": False}},
    }
    return {
        "history.csv": (",".join(history[0]) + "\n" + "".join(",".join(repr(v) for v in row.values()) + "\n"
                                                             for row in history)).encode(),
        "iterations.csv": ("step,epoch,loss\n" + "".join(f"{s},{e},{loss!r}\n" for s, e, loss in iterations)).encode(),
        "metrics.json": (json.dumps(metrics, indent=2).replace("NaN", "null") + "\n").encode(),
    }


def timing_file() -> bytes:
    """The study's timing.json: one record per setting, five bursts."""
    records = [{"study": "t", "setting": s.id, "batch_size": dict(s.grid_values)["batch_size"],
                "step_s_bursts": [0.001] * 5, "step_s": 0.001, "eval_test_s_bursts": [0.01] * 5,
                "eval_train_s_bursts": [0.01] * 5, "device": "cpu", "env": {"device_name": "Test CPU"}}
               for s in config.settings(CONFIG)]
    return (json.dumps({"schema": 2, "bursts": 5, "steps": 20, "warmup": 10, "settings": records,
                        "sequence": []}, indent=1) + "\n").encode()


def checkout(root: Path) -> Path:
    """Write the synthetic checkout (module docstring) under `root`; returns `root`."""
    small, large = config.settings(CONFIG)
    files = {f"results/t/{small.id}/seed=0/{k}": v for k, v in run_files(small, 0).items()}
    files |= {f"results/t/{small.id}/seed=1/{k}": v for k, v in run_files(small, 1, diverged_epoch=2).items()}
    files |= {f"checkpoints/t/{large.id}/seed=0/{k}": v for k, v in run_files(large, 0).items()}
    files[f"checkpoints/t/{large.id}/seed=1/state.pt"] = b"opaque training state"
    files["results/t/timing.json"] = timing_file()
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@dataclass
class Member:
    """One archive member as the damage functions see it."""

    name: str
    data: bytes = b""
    mtime: int = 1764547200  # 2025-12-01
    type: bytes = tarfile.REGTYPE
    linkname: str = ""


def exported_members(tmp: Path) -> list[Member]:
    """The members (manifest first) of the synthetic checkout's bundle, as `results export` packs them."""
    src = checkout(tmp / "src")
    files, _ = bundles.export(tmp / "exported" / "b", root=src, with_checkpoints=True, source="synthetic")
    out = [Member(info.name, data or b"", int(info.mtime), info.type, info.linkname)
           for info, data in unpack.members(files)]
    shutil.rmtree(tmp / "src")
    shutil.rmtree(tmp / "exported")
    return out


def write_members(path: Path, members: list[Member], preset: int = 0, tail: bytes = b"") -> Path:
    """Pack `members` as they are (any name, type, date) into one tar.xz file, `tail` after the archive's end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type, info.mtime, info.linkname, info.mode = m.type, m.mtime, m.linkname, 0o644
            info.size = len(m.data) if m.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            tar.addfile(info, io.BytesIO(m.data) if info.size else None)
    path.write_bytes(lzma.compress(raw.getvalue() + tail, preset=preset))
    return path


def member(members: list[Member], suffix: str) -> Member:
    """The first member whose name ends with `suffix`."""
    return next(m for m in members if m.name.endswith(suffix))


def edit_json(members: list[Member], suffix: str, edit) -> list[Member]:
    """A copy of `members` with the JSON member ending in `suffix` changed by `edit(doc)` (in place)."""
    out = [replace(m) for m in members]
    m = member(out, suffix)
    doc = json.loads(m.data)
    edit(doc)
    m.data = json.dumps(doc, indent=1).encode()
    return out


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (results/, checkpoints/, anything else) with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} | {
        p.relative_to(root).as_posix() + "/": b"" for p in root.rglob("*") if p.is_dir()}


def try_import(paths: list[Path], root: Path, limits: unpack.Limits = unpack.LIMITS) -> tuple[list[str], merge.Outcome | None]:
    """Import as `results import` does; the error lines it would print (none: it imported) and the outcome."""
    try:
        outcome = merge.plan_and_import(paths, CONFIG, root=root, limits=limits)
    except bundles.BundleError as err:
        return str(err).splitlines(), None
    if outcome.refused:
        return [f"import refused (nothing written): {line}" for line in outcome.refused], outcome
    return [], outcome
