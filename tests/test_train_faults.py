"""Faults during a job: divergence, a missing GPU, out of memory, corrupt data, hostile titles,
hostile cell ids, unsafe deserialisation; and determinism of a cell on the CPU."""
from __future__ import annotations

import ast
import csv
import io
import json
import math
import random
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from batchwise import config
from batchwise.data import prepare as data
from batchwise.engine import models, train
from batchwise.report import document as report
from batchwise.__main__ import main as cli
from conftest import REPO, SHARED_DATA, run_env

TIMING_KEYS = {"train_time_s", "eval_time_s", "total_time_s", "mean_epoch_s", "time_until_stop_s", "time_to_target_s",
               "first_step_process_age_s", "startup_s", "env"}
TIME_COLUMNS = {"epoch_time_s", "elapsed_s"}


def spec_for(model="mlp", dataset="mnist", seed=0, device="cpu", study="t", graphs="off", deterministic=False,
             **params) -> dict:
    bs = params.pop("batch_size", 32)
    study_spec = {"homework": "x", "title": "t", "dataset": dataset, "model": model, "seeds": [seed],
                  "params": params, "grid": {"batch_size": [bs]}}
    cfg = config.validate({"data_dir": "data", "device": device, "cuda_graphs": graphs,
                           "deterministic": deterministic, "homeworks": {"x": {"title": "x"}},
                           "studies": {study: study_spec}})
    return config.resolve(cfg, config.cells(cfg)[0])


def strict_json(path: Path) -> dict:
    """metrics.json must be standard JSON: no NaN or Infinity tokens."""
    def refuse(token):
        raise ValueError(f"{path} holds the non-standard JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def quiet(line: str) -> None:
    pass


# --- divergence is data, not an error ---------------------------------------------------------

def test_divergence_is_recorded_and_the_job_exits_0(synthetic_caches, tmp_path):
    spec = spec_for(model="mlp", epochs=3, lr=1e6, train_subset=320)
    out = tmp_path / "cell"
    proc = subprocess.run([sys.executable, "-m", "batchwise", "train", "--spec", json.dumps(spec),
                           "--data", str(synthetic_caches["mnist"]), "--out", str(out)],
                          env={**run_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 1/3  diverged: non-finite loss or logits" in proc.stdout
    assert "done: status diverged" in proc.stdout
    metrics = strict_json(out / "metrics.json")
    assert metrics["status"] == "diverged" and metrics["diverged"] is True
    assert metrics["diverged_epoch"] == 1 and metrics["epochs_run"] == 1  # stopped, not run to the end
    # Not measurements: no argmax-of-NaN accuracy (class 0's share), no truncated time beside full ones.
    for key in ("final_test_acc", "final_train_acc", "final_train_loss", "best_test_acc", "train_time_s",
                "total_time_s", "mean_epoch_s"):
        assert metrics[key] is None, key
    assert metrics["time_until_stop_s"] > 0  # the wall time it did take, for provenance
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 1 and math.isnan(float(rows[0]["test_acc"])) and math.isnan(float(rows[0]["train_loss"]))


# --- device --------------------------------------------------------------------------------------

def test_cuda_asked_without_gpu_fails_before_training(synthetic_caches, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "cell"
    rc = cli(["train", "--spec", json.dumps(spec_for(device="cuda", epochs=1)),
              "--data", str(synthetic_caches["mnist"]), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    err = captured.err.strip().splitlines()
    assert err == ["error: device: cuda was asked for but no CUDA GPU is visible; "
                   "set device: auto (falls back to CPU) or device: cpu"]
    assert "epoch 1/" not in captured.out  # refused before the first step
    assert not (out / "metrics.json").exists() and not out.exists()


def test_auto_device_falls_back_to_cpu_and_says_so(synthetic_caches, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    metrics = train.run_cell(spec_for(device="auto", epochs=1, train_subset=320), synthetic_caches["mnist"],
                             tmp_path, log=quiet)[0]
    on_disk = strict_json(tmp_path / "metrics.json")
    assert metrics["status"] == on_disk["status"] == "ok"
    assert on_disk["device"] == "cpu" and on_disk["cuda_graphs"] is False
    assert "no CUDA GPU" in on_disk["device_note"]


def test_cuda_out_of_memory_names_cell_and_batch_size(synthetic_caches, tmp_path, monkeypatch, capsys):
    """An OOM in the forward pass (simulated on the CPU) becomes one line naming cell and batch size."""
    real_build = models.build

    def build_oom(*args, **kwargs):
        model, note = real_build(*args, **kwargs)

        def forward(*a, **k):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        model.forward = forward
        return model, note

    monkeypatch.setattr(models, "build", build_oom)
    spec = spec_for(study="s4_big", epochs=1, batch_size=64, train_subset=320)
    with pytest.raises(train.TrainingError) as err:
        train.run_cell(spec, synthetic_caches["mnist"], tmp_path / "a", log=quiet)
    message = str(err.value)
    assert "\n" not in message
    assert f"s4_big/{spec['setting']}" in message and "batch_size 64" in message and "out of memory" in message
    assert not (tmp_path / "a" / "metrics.json").exists()
    # ... and through the CLI: exit 1, that one line.
    rc = cli(["train", "--spec", json.dumps(spec), "--data", str(synthetic_caches["mnist"]),
              "--out", str(tmp_path / "b")])
    assert rc == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "b" / "metrics.json").exists()


class _FakeStream:
    def wait_stream(self, other) -> None:
        pass


def _capture_fails_after_warm_up(monkeypatch) -> None:
    """Let the real `train.capture` run on the CPU: its warm-up steps run (and move the weights,
    momentum, batch-norm statistics and RNG), then recording the graph fails as CUDA can."""
    import contextlib

    def refuse():
        raise RuntimeError("operation not permitted when stream is capturing\n(more CUDA detail)")
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: _FakeStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: _FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", refuse)
    monkeypatch.setattr(train, "use_graphs", lambda *args: True)


@pytest.mark.parametrize("setting", ["auto", "on"])
def test_failed_graph_capture_runs_eagerly_on_auto_and_stops_on_on(synthetic_caches, tmp_path, monkeypatch, setting):
    """A step CUDA cannot capture: `auto` records it and trains eagerly from the restored state, to the
    very numbers of an eager run (the warm-up steps moved the weights: an incomplete restore shows);
    `on` fails before the first step with one line naming the cell."""
    spec = spec_for(model="cnn2", bn=True, graphs=setting, epochs=1, lr=0.05, momentum=0.9, train_subset=320)
    eager = train.train({**spec, "cuda_graphs": "off"}, data.load(synthetic_caches["mnist"]), log=quiet)
    _capture_fails_after_warm_up(monkeypatch)
    if setting == "on":
        with pytest.raises(train.TrainingError) as err:
            train.run_cell(spec, synthetic_caches["mnist"], tmp_path, log=quiet)
        assert str(err.value) == (f"cell t/{spec['cell']}: CUDA graph capture failed (operation not permitted "
                                  f"when stream is capturing); set cuda_graphs: auto or off")
        assert not (tmp_path / "metrics.json").exists()
        return
    lines = []
    metrics = train.run_cell(spec, synthetic_caches["mnist"], tmp_path, log=lines.append)[0]
    assert metrics["cuda_graphs"] is False and metrics["cuda_graphs_note"].startswith("capture failed, ran eagerly")
    assert any("capture failed" in line for line in lines)
    assert metrics["final_test_loss"] == eager["metrics"]["final_test_loss"]
    assert metrics["final_running_loss"] == eager["metrics"]["final_running_loss"]


def test_snapshot_and_restore_bring_back_weights_momentum_statistics_and_rng():
    """What capture relies on, checked on the CPU: after a few real steps, `restore` puts back every
    parameter, batch-norm buffer, momentum buffer and the RNG (dropout draws) exactly."""
    torch.manual_seed(0)
    model, _ = models.build("mnist_cnn", (1, 28, 28), 10)  # dropout: the steps draw random numbers
    bn_model, _ = models.build("mlp", (1, 28, 28), 10, bn=True)
    for net in (model, bn_model):
        opt = train.SGD(net.parameters(), lr=0.1, momentum=0.9)
        before = [t.clone() for t in (*net.parameters(), *net.buffers())]
        state = train.snapshot(net, opt, torch.device("cpu"))
        draw = torch.rand(3)
        train.restore(state, net, opt, torch.device("cpu"))
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,))).backward()
            opt.step()
        assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
        assert any(b.abs().sum() > 0 for b in opt.buffers)
        train.restore(state, net, opt, torch.device("cpu"))
        assert all(torch.equal(a, b) for a, b in zip(before, (*net.parameters(), *net.buffers())))
        assert all(not b.any() for b in opt.buffers)
        assert torch.equal(torch.rand(3), draw)


def test_report_says_how_many_runs_used_graphs_and_which_fell_back():
    import pandas as pd

    runs = pd.DataFrame({"cuda_graphs": [True, True, False], "cuda_graphs_note": [None, None, "capture failed, ..."]})
    assert report._step_kind(runs) == ("one CUDA graph per step in 2 of 3 runs, eager in the rest; "
                                       "1 of them after a failed capture (see their metrics.json)")
    assert report._step_kind(runs.iloc[:2]) == "one CUDA graph per step in all 2 runs"


# --- determinism ---------------------------------------------------------------------------------

def _without_time_columns(path: Path) -> str:
    rows = list(csv.reader(path.open()))
    keep = [i for i, name in enumerate(rows[0]) if name not in TIME_COLUMNS]
    assert len(keep) < len(rows[0]) or path.name != "history.csv"
    return "\n".join(",".join(row[i] for i in keep) for row in rows)


def test_same_cell_and_seed_twice_on_cpu_is_identical(synthetic_caches, tmp_path):
    spec = spec_for(model="cnn2", bn=True, epochs=2, lr=0.05, momentum=0.9, train_subset=320, target_acc=0.3)
    for run in ("a", "b"):
        train.run_cell(spec, synthetic_caches["mnist"], tmp_path / run, log=quiet)
    a, b = (strict_json(tmp_path / run / "metrics.json") for run in ("a", "b"))
    assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == {k: v for k, v in b.items() if k not in TIMING_KEYS}
    assert _without_time_columns(tmp_path / "a" / "history.csv") == _without_time_columns(tmp_path / "b" / "history.csv")
    assert (tmp_path / "a" / "iterations.csv").read_bytes() == (tmp_path / "b" / "iterations.csv").read_bytes()


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                            reason="needs a CUDA GPU")])])
def test_deterministic_setting_gives_identical_runs(synthetic_caches, tmp_path, device):
    """`deterministic: true`: the same cell twice, each in its own job process (cuBLAS reads
    CUBLAS_WORKSPACE_CONFIG once per process), gives identical numbers: on CUDA with the graph
    step, BN and cuDNN convolutions, where this is not true by default."""
    spec = spec_for(model="cnn2", device=device, graphs="auto", deterministic=True, bn=True, epochs=2, lr=0.05,
                    momentum=0.9, batch_size=64, train_subset=1280)
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-m", "batchwise", "train", "--spec", json.dumps(spec),
                        "--data", str(synthetic_caches["mnist"]), "--out", str(tmp_path / run)],
                       env=run_env(), check=True, capture_output=True)
    a, b = (strict_json(tmp_path / run / "metrics.json") for run in ("a", "b"))
    assert a["device"].startswith(device) and a["cuda_graphs"] is (device == "cuda")
    assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == {k: v for k, v in b.items() if k not in TIMING_KEYS}
    assert _without_time_columns(tmp_path / "a" / "history.csv") == _without_time_columns(tmp_path / "b" / "history.csv")
    assert (tmp_path / "a" / "iterations.csv").read_bytes() == (tmp_path / "b" / "iterations.csv").read_bytes()


# --- corrupt data --------------------------------------------------------------------------------

def _truncated_idx(real: Path | None) -> bytes:
    """The first 10 000 bytes of the real training-image file, or a header that promises 60 000
    images followed by far fewer bytes: either way, a truncated download."""
    if real is not None and real.is_file():
        with real.open("rb") as fh:
            return fh.read(10_000)
    return struct.pack(">IIII", 0x803, 60000, 28, 28) + bytes(10_000)


def test_truncated_mnist_file_is_one_line_error_and_results_untouched(synthetic_caches, tmp_path):
    from batchwise.data import sources

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    shared = SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte"
    (raw / "train-images-idx3-ubyte").write_bytes(_truncated_idx(shared))
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\0" * 16)
    # An earlier run's results, which a failed prepare must leave exactly as they are.
    results = tmp_path / "results"
    (results / "data").mkdir(parents=True)
    (results / "data" / "mnist.npz").write_bytes(synthetic_caches["mnist"].read_bytes())
    (results / "s1" / "cell").mkdir(parents=True)
    (results / "s1" / "cell" / "metrics.json").write_text('{"status": "ok"}\n')
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}

    proc = subprocess.run([sys.executable, "-m", "batchwise", "prepare", "--dataset", "mnist",
                           "--out", str(results / "data" / "mnist.npz"), "--data-dir", str(tmp_path / "data"),
                           "--no-download", "--strict"],
                          env=run_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith(f"error: MNIST file {raw / 'train-images-idx3-ubyte'} fails its MD5 check")
    assert f"expected {sources.MNIST_MD5['train-images-idx3-ubyte']}" in line and "truncated" in line
    assert "Traceback" not in proc.stderr
    after = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    assert after == before  # same files, same bytes, no temporary leftovers


# --- report: hostile text is escaped -------------------------------------------------------------

XSS = "<script>alert(1)</script>"


def test_hostile_titles_render_escaped_in_the_html():
    study = {"id": "s1", "title": f"Study {XSS}", "homework": "000", "meta": {},
             "setup": [("title", XSS)], "results": None, "figures": [{"path": "x.svg", "caption": XSS}]}
    claim = {"homework": "000", "quote": XSS, "english": XSS, "verdict": "supported", "evidence": XSS, "reason": XSS}
    context = {
        "run_label": XSS, "date": "today", "provenance": [("command", XSS)],
        "verdict_counts": {"supported": 1, "contradicted": 0, "inconclusive": 0, "not run": 0},
        "not_run": [], "homeworks": [{"id": "000", "title": XSS, "source": XSS, "studies": [study],
                                       "tables": [], "claims": [claim]}],
        "claims": [claim], "verdict_rule": "rule", "data_notes": [XSS], "choices": [("s1", "lr", XSS)],
        "cells": [["s1", XSS, "ok", "1.00", "1.00"]],
        "progress": {"show": True, "done": 1, "total": 2, "header": ["study", XSS], "rows": [["s1", XSS]]},
    }
    html = report.render_html(context)
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()


# --- cell ids cannot leave results/ --------------------------------------------------------------

def _cell_constraint() -> re.Pattern:
    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    match = re.search(r'^\s*cell\s*=\s*r?"([^"]+)"', text, re.M)
    assert match, "no cell wildcard constraint in common.smk"
    return re.compile(match.group(1))


@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "a/../b", "/etc", ".hidden", "a..b", "", "x\n", "A=1",
                                 "a b", "a;rm"])
def test_cell_wildcard_rejects_path_escapes(bad):
    constraint = _cell_constraint()
    assert not constraint.fullmatch(bad)
    # As Snakemake uses it inside the output pattern:
    output = re.compile(rf"results/(?P<study>s1)/(?P<cell>{constraint.pattern})/metrics\.json$")
    assert not output.match(f"results/s1/{bad}/metrics.json")


def test_every_config_cell_id_is_a_safe_slug():
    constraint = _cell_constraint()
    for name in ("config.yaml", "smoke.yaml", "quick.yaml"):
        path = REPO / "config" / name
        if path.exists():
            for cell in config.settings(config.load(path)):  # a cell: one grid point, all its seeds
                assert config.SLUG_RE.fullmatch(cell.id) and constraint.fullmatch(cell.id), cell.id
                assert re.fullmatch(r"[a-z][a-z0-9_]*", cell.study)
    for sibling in ("runs.csv", "summary.csv", "history.csv", "iterations.csv", "timing.json"):
        assert not constraint.fullmatch(sibling), sibling  # a study's tables are never taken for a cell


def test_any_valid_grid_value_gives_a_safe_slug():
    """Values the schema allows (finite numbers of any size, booleans, the init names) only make
    slugs of [a-z0-9_.=+-] that the wildcard constraint accepts."""
    rng = random.Random(0)
    constraint = _cell_constraint()
    values = [True, False, "default", "zeros", "xavier", 1, 60000, 1e-300, 5e-324, 1.7976931348623157e308]
    values += [rng.uniform(0, 1) for _ in range(300)] + [10 ** rng.uniform(-30, 30) for _ in range(300)]
    values += [rng.randint(1, 10**12) for _ in range(100)]
    for value in values:
        slug = f"lr={config.slug_value(value)}_seed=0"
        assert config.SLUG_RE.fullmatch(slug) and constraint.fullmatch(slug), slug


# --- no unsafe deserialisation -------------------------------------------------------------------

def _unsafe_calls(tree: ast.AST) -> list[str]:
    problems = []
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "pickle.Unpickler" for b in node.bases):
            if any(isinstance(n, ast.FunctionDef) and n.name == "find_class" for n in node.body):
                guarded.add(node.name)
            else:
                problems.append(f"class {node.name} subclasses pickle.Unpickler without a find_class allow-list")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if func in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "joblib.load", "yaml.load",
                    "yaml.unsafe_load", "torch.jit.load", "shelve.open", "marshal.loads"):
            problems.append(f"line {node.lineno}: {func}(...)")
        elif func == "torch.load" and kwargs.get("weights_only") != "True":
            problems.append(f"line {node.lineno}: torch.load without weights_only=True")
        elif func.endswith(("np.load", "numpy.load")) and kwargs.get("allow_pickle", "False") != "False":
            problems.append(f"line {node.lineno}: np.load with allow_pickle={kwargs['allow_pickle']}")
        elif isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Call) and ast.unparse(node.func.value.func).endswith("Unpickler") \
                and ast.unparse(node.func.value.func) not in guarded:
            problems.append(f"line {node.lineno}: {ast.unparse(node.func.value.func)}(...).load() is unrestricted")
    return problems


def test_no_unrestricted_unpickling_in_the_package():
    problems = {}
    for path in sorted((REPO / "src" / "batchwise").rglob("*.py")):
        found = _unsafe_calls(ast.parse(path.read_text(), filename=str(path)))
        if found:
            problems[str(path.relative_to(REPO))] = found
    assert not problems, problems
    # The checker itself catches what it should.
    assert _unsafe_calls(ast.parse("import pickle\npickle.load(open('x','rb'))"))
    assert _unsafe_calls(ast.parse("import torch\ntorch.load('m.pt')"))
    assert not _unsafe_calls(ast.parse("import torch\ntorch.load('m.pt', weights_only=True)"))
    assert _unsafe_calls(ast.parse("import numpy as np\nnp.load('x.npy', allow_pickle=True)"))


def test_the_data_unpickler_refuses_anything_but_arrays():
    import pickle

    from batchwise.data import sources

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        sources._NumpyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
    arr = __import__("numpy").arange(6, dtype="uint8").reshape(2, 3)
    assert (sources._NumpyUnpickler(io.BytesIO(pickle.dumps({"data": arr}, protocol=2))).load()["data"] == arr).all()
