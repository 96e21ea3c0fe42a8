"""Runs trained here pass the run check that export and import apply, and a checkpoint that cannot be
loaded is set aside with one line in the cell's log; the seed then trains from its start."""
from __future__ import annotations

import json

import torch

from batchwise import config
from batchwise.results import runcheck
from batchwise.engine import train
from batchwise.engine.checkpoint import UNLOADABLE, Checkpoints


def _cell(seeds=(0, 1), **params) -> dict:
    params = {"epochs": 3, "lr": 0.05, "momentum": 0.9, "train_subset": 200, "test_subset": 100, **params}
    cfg = config.validate({"data_dir": "data", "device": "cpu", "cuda_graphs": "off", "homeworks": {"x": {"title": "x"}},
                           "studies": {"t": {"homework": "x", "title": "t", "dataset": "mnist", "model": "mlp",
                                             "seeds": list(seeds), "params": params, "grid": {"batch_size": [64]}}}})
    return config.resolve_setting(cfg, config.settings(cfg)[0])


def test_runs_trained_here_pass_the_run_check(synthetic_caches, tmp_path):
    """A remainder batch (200 = 3 x 64 + 8), the noise-scale column, a run stopped mid-epoch at its
    target, and one that diverged (lr 1e4): each seed's three files pass `runcheck.read_run`."""
    specs = {"plain": _cell(noise_scale_batches=[4, 32], noise_scale_draws=2),
             "target": _cell(target_acc=0.05, stop_at_target=True, target_checks_per_epoch=3),
             "diverged": _cell(seeds=(0,), lr=1e4, momentum=0.0)}
    statuses = set()
    for name, spec in specs.items():
        train.run_cell(spec, synthetic_caches["mnist"], tmp_path / name, log=lambda line: None)
        for seed in spec["seeds"]:
            m = runcheck.read_run(tmp_path / name / f"seed={seed}", ("t", "batch_size=64", seed))
            statuses.add(m["status"])
            if name == "target":
                assert m["stopped_at_target"] and m["steps_run"] < m["epochs_run"] * m["steps_per_epoch"]
    assert statuses == {"ok", "diverged"}


def test_a_checkpoint_that_cannot_be_loaded_is_set_aside(tmp_path):
    log: list[str] = []
    store = Checkpoints(tmp_path / "ckpt", _cell(), log.append)
    path = store.folder(0) / "state.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    assert store.load(0, torch.device("cpu")) is None
    assert not path.exists() and (store.folder(0) / UNLOADABLE).read_bytes() == b"PK\x03\x04 truncated"
    assert len(log) == 1 and log[0].startswith(f"seed 0: checkpoint {path} cannot be loaded (")
    assert log[0].endswith(f"); set aside as {UNLOADABLE}, training from the start")
    torch.save([1, 2], path)  # loads, but is no training state
    assert store.load(0, torch.device("cpu")) is None
    assert log[1] == f"seed 0: checkpoint {path} cannot be loaded (holds a list, not a training state); set aside as " \
                     f"{UNLOADABLE}, training from the start"


def test_finished_results_that_cannot_be_read_are_trained_again(tmp_path):
    log: list[str] = []
    store = Checkpoints(tmp_path / "ckpt", _cell(), log.append)
    (store.folder(1)).mkdir(parents=True)
    (store.folder(1) / "metrics.json").write_text('{"spec": ')
    assert store.finished(1) is False and not store.folder(1).exists()
    assert log == [f"seed 1: finished results in {store.folder(1)} cannot be read (Expecting value: line 1 column 10 "
                   f"(char 9)); removed, training afresh"]


def test_a_cell_job_resumes_past_an_unloadable_checkpoint(synthetic_caches, tmp_path):
    """The job that finds a corrupt state.pt trains the seed from its start and finishes, instead of
    failing every time it is started."""
    spec = _cell(seeds=(0,), epochs=2)
    ckpt = tmp_path / "ckpt"
    (ckpt / "seed=0").mkdir(parents=True)
    (ckpt / "seed=0" / "state.pt").write_bytes(b"not a checkpoint")
    log: list[str] = []
    train.run_cell(spec, synthetic_caches["mnist"], tmp_path / "out", log=log.append, checkpoints=ckpt)
    m = json.loads((tmp_path / "out" / "seed=0" / "metrics.json").read_text())
    assert m["epochs_run"] == 2 and any("set aside as state.pt.unloadable" in line for line in log)
