"""Resume inside a run: a cell job killed at any moment and started again continues from its seeds'
last finished epoch, and its results (wall times aside) are byte-identical to an uninterrupted run's."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from batchwise import config
from batchwise.engine import train
from batchwise.engine.checkpoint import Checkpoints, spec_identity
from conftest import run_env

# Wall-clock figures differ between any two runs; everything else must not.
WALL_COLUMNS = {"epoch_time_s", "elapsed_s"}
WALL_METRICS = {"train_time_s", "eval_time_s", "total_time_s", "mean_epoch_s", "time_until_stop_s", "time_to_target_s",
                "first_step_process_age_s", "startup_s", "env"}


class Killed(Exception):
    """Stands for a SIGKILL at a chosen point of an in-process run."""


def cell(seeds=(0,), model="mnist_cnn", **params) -> dict:
    """The resolved spec of a one-setting cell (all of its seeds) on synthetic MNIST, on the CPU."""
    params = {"epochs": 4, "lr": 0.05, "momentum": 0.9, "train_subset": 192, "test_subset": 100, **params}
    bs = params.pop("batch_size", 64)
    cfg = config.validate({"data_dir": "data", "device": "cpu", "cuda_graphs": "off", "homeworks": {"x": {"title": "x"}},
                           "studies": {"t": {"homework": "x", "title": "t", "dataset": "mnist", "model": model,
                                             "seeds": list(seeds), "params": params, "grid": {"batch_size": [bs]}}}})
    return config.resolve_setting(cfg, config.settings(cfg)[0])


def comparable(out: Path, seeds) -> dict:
    """Each seed's history.csv without its wall-time columns (as text), iterations.csv (bytes), metrics
    without wall times."""
    found = {}
    for seed in seeds:
        folder = out / f"seed={seed}"
        rows = list(csv.reader(io.StringIO((folder / "history.csv").read_text())))
        keep = [i for i, name in enumerate(rows[0]) if name not in WALL_COLUMNS]
        history = "\n".join(",".join(row[i] for i in keep) for row in rows)
        metrics = {k: v for k, v in json.loads((folder / "metrics.json").read_text()).items() if k not in WALL_METRICS}
        found[seed] = (history, (folder / "iterations.csv").read_bytes(), metrics)
    return found


_straight: dict[str, dict] = {}


def uninterrupted(spec, cache, tmp_path) -> dict:
    """The cell's results trained without interruption (once per spec in this session)."""
    key = json.dumps(spec, sort_keys=True)
    if key not in _straight:
        out = tmp_path / "straight"
        train.run_cell(spec, cache, out, log=lambda line: None, checkpoints=tmp_path / "ckpt-straight")
        _straight[key] = comparable(out, spec["seeds"])
    return _straight[key]


def kill_at(text: str | None):
    """A log callback that 'kills' the run when a log line holds `text`."""
    def log(line: str) -> None:
        if text is not None and text in line:
            raise Killed(line)
    return log


def killed_then_resumed(spec, cache, tmp_path, kill: str | None, monkeypatch=None,
                        advance_kill=None) -> tuple[dict, list[str]]:
    """Run the cell until a log line holds `kill` or until its `advance_kill`-th step, then run it
    again into a fresh output folder (Snakemake deletes the old one); returns results and the second log."""
    out, ckpt = tmp_path / "resumed", tmp_path / "ckpt"

    if advance_kill is not None:
        original, calls = train.SeedRun.advance, {"n": 0}

        def advance(self, i):
            calls["n"] += 1
            if calls["n"] == advance_kill:
                raise Killed(f"mid-epoch, step {i}")
            return original(self, i)
        monkeypatch.setattr(train.SeedRun, "advance", advance)
    with pytest.raises(Killed):
        train.run_cell(spec, cache, out / "first", log=kill_at(kill), checkpoints=ckpt)
    if advance_kill is not None:
        monkeypatch.undo()
    assert not (out / "first" / f"seed={spec['seeds'][0]}" / "metrics.json").exists()  # nothing half-done in the output
    second: list[str] = []
    train.run_cell(spec, cache, out, log=second.append, checkpoints=ckpt)
    assert not ckpt.exists()  # checkpoints are removed once the results are written
    return comparable(out, spec["seeds"]), second


@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_kill_after_an_epoch_resumes_byte_identical(synthetic_caches, tmp_path, epoch):
    # Dropout (the global generator), momentum, warm-up across the kill, the noise-scale probe generator.
    spec = cell(warmup_epochs=1.5, noise_scale_batches=[4, 64], noise_scale_draws=4)
    straight = uninterrupted(spec, synthetic_caches["mnist"], tmp_path)
    noise = [row.split(",")[-1] for row in straight[0][0].splitlines()[1:]]
    assert "nan" not in noise[1:3], noise  # epochs 2 and 3 (after a kill) draw on the restored probe generator
    # Killed as epoch `epoch + 1` is logged: its state is not saved yet, so that epoch is trained again.
    resumed, log = killed_then_resumed(spec, synthetic_caches["mnist"], tmp_path, f"epoch {epoch + 1}/")
    assert resumed == straight
    assert any(f"resumed at epoch {epoch} " in line for line in log), log


def test_kill_mid_epoch_loses_only_that_epoch(synthetic_caches, tmp_path, monkeypatch):
    spec = cell(epochs=3)
    straight = uninterrupted(spec, synthetic_caches["mnist"], tmp_path)
    steps = 192 // 64
    resumed, log = killed_then_resumed(spec, synthetic_caches["mnist"], tmp_path, None, monkeypatch,
                                       advance_kill=steps + 3)  # the 3rd step of epoch 2
    assert resumed == straight
    assert any("resumed at epoch 1 " in line for line in log), log


def test_stop_at_target_with_mid_epoch_checks_resumes_byte_identical(synthetic_caches, tmp_path):
    spec = cell(model="mlp", epochs=6, lr=0.005, momentum=0.0, target_acc=0.9, train_subset=320, stop_at_target=True,
                target_checks_per_epoch=3, batch_size=32)
    straight = uninterrupted(spec, synthetic_caches["mnist"], tmp_path)
    metrics = straight[0][2]
    assert metrics["stopped_at_target"] and metrics["epochs_to_target"] >= 2  # the kill below comes before the stop
    resumed, log = killed_then_resumed(spec, synthetic_caches["mnist"], tmp_path, "epoch 2/")
    assert resumed == straight
    assert any("resumed at epoch 1 " in line for line in log), log


def test_job_of_several_seeds_keeps_finished_seeds_and_resumes_the_rest(synthetic_caches, tmp_path):
    spec = cell(seeds=(0, 1, 2), epochs=3, model="mlp")
    straight = uninterrupted(spec, synthetic_caches["mnist"], tmp_path)
    resumed, log = killed_then_resumed(spec, synthetic_caches["mnist"], tmp_path, "seed 1 epoch 3/")
    assert resumed == straight
    assert any("seeds [0] finished before this job was interrupted" in line for line in log), log
    assert any("seed 1: resumed at epoch 2 " in line for line in log), log
    assert not any(line.startswith("seed 0 epoch") for line in log)  # seed 0 is not trained again


def test_checkpoint_of_another_spec_is_not_resumed(synthetic_caches, tmp_path):
    spec = cell(epochs=3, model="mlp")
    ckpt = tmp_path / "checkpoints" / "t" / "batch_size=64"
    with pytest.raises(Killed):
        train.run_cell(spec, synthetic_caches["mnist"], tmp_path / "a", checkpoints=ckpt,
                       log=kill_at("epoch 3/"))
    changed = cell(epochs=3, model="mlp", lr=0.01)  # the same cell folder, another learning rate
    log: list[str] = []
    train.run_cell(changed, synthetic_caches["mnist"], tmp_path / "b", log=log.append, checkpoints=ckpt)
    aside = tmp_path / "checkpoints.set-aside" / "t" / "batch_size=64" / "seed=0"
    assert f"seed 0: checkpoint of a different spec of this cell (params.lr 0.05 -> 0.01) set aside in {aside}; " \
           "training afresh" in log, log
    assert not any("resumed at epoch" in line for line in log)
    assert comparable(tmp_path / "b", [0]) == uninterrupted(changed, synthetic_caches["mnist"], tmp_path)
    kept = torch.load(aside / "state.pt", weights_only=True)  # the other spec's work, as it was saved
    assert kept["identity"] == spec_identity(spec) and kept["device_type"] == "cpu"


def test_finished_results_of_another_spec_are_set_aside_not_deleted(tmp_path):
    """A finished seed of another spec (an imported bundle, a config changed and changed back) is moved
    out of the job's way, whole; a second one beside it is not overwritten."""
    store = Checkpoints(tmp_path / "checkpoints" / "t" / "c", cell(epochs=3, model="mlp"), log=(log := []).append)
    aside = tmp_path / "checkpoints.set-aside" / "t" / "c"
    for n in (1, 2):
        (store.folder(0)).mkdir(parents=True)
        (store.folder(0) / "metrics.json").write_text(json.dumps({"spec": {**cell(epochs=3, model="mlp"), "device": "auto"}}))
        (store.folder(0) / "history.csv").write_text(f"run {n}")
        assert store.finished(0) is False and not store.folder(0).exists()
    assert (aside / "seed=0" / "history.csv").read_text() == "run 1"
    assert (aside / "seed=0.2" / "history.csv").read_text() == "run 2"
    assert log[0] == (f"seed 0: results of a different spec of this cell (device \"auto\" -> \"cpu\") set aside in "
                      f"{aside / 'seed=0'}; training afresh")


def test_sigkilled_job_resumes(synthetic_caches, tmp_path):
    """A real `python -m batchwise train` process, SIGKILLed once its first checkpoint is on disk."""
    spec = cell(epochs=6, model="mlp")
    straight = uninterrupted(spec, synthetic_caches["mnist"], tmp_path)
    out, ckpt = tmp_path / "job", tmp_path / "job-ckpt"
    cmd = [sys.executable, "-m", "batchwise", "train", "--spec", json.dumps(spec), "--data",
           str(synthetic_caches["mnist"]), "--out", str(out), "--checkpoints", str(ckpt)]
    proc = subprocess.Popen(cmd, env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not (ckpt / "seed=0" / "state.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (ckpt / "seed=0" / "state.pt").exists(), "the job ended before its first checkpoint: make it longer"
    done = subprocess.run(cmd, env=run_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed at epoch" in done.stdout
    assert comparable(out, [0]) == straight
