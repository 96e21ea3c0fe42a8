"""Kill the smoke workflow hard in the middle of training, then resume it.

What must hold: every metrics.json on disk is complete JSON (writes are atomic); after
`snakemake --unlock` the same command with `--rerun-incomplete` finishes; only cells (grid points,
one job each with all of their seeds) that had not finished are trained again; finished cells'
files are byte-identical afterwards.

The run is the smoke config cut to two cheap MLP studies (10 cells, `only_studies`): enough cells to
kill it with some finished, one training and some not started, at a quarter of the smoke run's cost.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchwise import config
from conftest import REPO, run_env

pytestmark = pytest.mark.slow

SMOKE = REPO / "config" / "smoke.yaml"
# Two cheap studies of the smoke config: 4 + 6 cells, two figures and one, their claims and the report.
STUDIES = ["s2_bn_lr_mlp", "x2_bn_stable_lr_mlp"]
CELL_FILES = ("metrics.json", "history.csv", "iterations.csv")


def env_for(tmp: Path) -> dict:
    return run_env(tmp / "stub-bin")


def incomplete_outputs(work: Path) -> set[str]:
    """Outputs Snakemake has marked incomplete (.snakemake/incomplete/<urlsafe base64 of the path>,
    long names split into folders whose names start with '@')."""
    root = work / ".snakemake" / "incomplete"
    out = set()
    for path in root.rglob("*") if root.exists() else []:
        if path.is_file() and path.name != "migration_underway":
            encoded = "".join(part.lstrip("@") for part in path.relative_to(root).parts)
            out.add(base64.urlsafe_b64decode(encoded).decode())
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_group_gone(pgid: int, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes of group {pgid} survived SIGKILL")


def test_sigkill_mid_training_then_resume(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = env_for(tmp_path)
    overlay = tmp_path / "two-studies.yaml"
    overlay.write_text(f"only_studies: {STUDIES}\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
           "--cores", "2", "--resources", "gpu=2", "--set-threads", "train_cell=1",
           "--configfile", str(SMOKE), str(overlay)]
    cfg = config.load(SMOKE, overlay)
    assert sorted(cfg["studies"]) == sorted(STUDIES)
    seeds = {name: study["seeds"] for name, study in cfg["studies"].items()}
    all_cells = {f"{s.study}/{s.id}" for s in config.settings(cfg)}

    def run_files(cell: str) -> list[Path]:
        """Every file a finished cell holds: per seed, metrics, history and iterations."""
        return [work / "results" / cell / f"seed={seed}" / name
                for seed in seeds[cell.split("/")[0]] for name in CELL_FILES]

    def complete(cell: str) -> bool:
        return all(path.exists() for path in run_files(cell))

    # 1. Start the run in its own process group; kill it while a cell trains and a few are done.
    with (tmp_path / "run1.out").open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while True:
        done = [c for c in all_cells if complete(c)]
        started = [p for p in work.glob("logs/train_cell/*/*.log") if f"{p.parent.name}/{p.stem}" not in done]
        if len(done) >= 3 and started:
            break
        assert proc.poll() is None, "the workflow ended before it could be interrupted:\n" + \
            (tmp_path / "run1.out").read_text()[-3000:]
        assert time.monotonic() < deadline, "no training progress in 300 s"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_group_gone(proc.pid)

    # 2. (a) Whatever is on disk is whole: every metrics.json parses, every CSV has its header.
    for metrics in work.glob("results/*/*/seed=*/metrics.json"):
        record = json.loads(metrics.read_text())
        assert record["status"] in ("ok", "diverged", "no-data"), metrics
        for name in ("history.csv", "iterations.csv"):
            assert (metrics.parent / name).read_text().startswith(("epoch", "step")), metrics.parent / name

    # (b) Finished cells: every seed's files present and the cell's folder not marked incomplete by
    # Snakemake (a job killed after its last write but before Snakemake recorded it is re-run).
    incomplete = incomplete_outputs(work)
    finished = {c for c in all_cells if complete(c) and f"results/{c}" not in incomplete}
    assert finished and finished < all_cells
    before = {path: sha(path) for cell in finished for path in run_files(cell)}
    mtimes = {path: path.stat().st_mtime_ns for path in before}

    # 3. A SIGKILL leaves Snakemake's lock behind: the same command is refused until --unlock.
    locked = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    assert subprocess.run([*cmd, "--unlock"], env=env, capture_output=True, text=True, timeout=120).returncode == 0

    # 4. Resume. --rerun-incomplete (also set in profiles/default) re-runs jobs that were killed.
    resumed = subprocess.run([*cmd, "--rerun-incomplete"], env=env, capture_output=True, text=True, timeout=600)
    output = resumed.stdout + resumed.stderr
    (tmp_path / "run2.out").write_text(output)
    assert resumed.returncode == 0, output[-5000:]
    assert (work / "reports" / "report.pdf").stat().st_size > 0
    assert (work / "reports" / "report.html").exists()

    # (d) Exactly the unfinished cells were trained again; finished ones were left alone.
    retrained = set(re.findall(r"^Job \d+: Training (\S+), all seeds$", output, re.M))
    assert retrained == all_cells - finished, (sorted(retrained), sorted(finished))
    assert {path: sha(path) for path in before} == before
    assert all(path.stat().st_mtime_ns == t for path, t in mtimes.items())
    for cell in all_cells:
        assert complete(cell), cell
