"""Shared fixtures: the repo, a finished smoke workflow run (once per session), synthetic caches."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BATCHWISE_TEST_DATA", REPO.parent / "shared" / "data"))


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """`snakemake` on the repo's Snakefile, run in `workdir`, with this interpreter's environment."""
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]


def run_env(stub_dir: Path | None = None) -> dict:
    """Jobs run `python -m batchwise`: put this interpreter first on PATH. With `stub_dir`, also a
    failing `scontrol` where SLURM tools exist without a controller (Snakemake's SLURM plugin
    otherwise waits 10 s for one at every start)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if stub_dir is not None and shutil.which("scontrol"):
        stub_dir.mkdir(exist_ok=True)
        (stub_dir / "scontrol").write_text("#!/bin/sh\nexit 1\n")
        (stub_dir / "scontrol").chmod(0o755)
        env["PATH"] = f"{stub_dir}{os.pathsep}{env['PATH']}"
    return env


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke config run end to end (data to PDF) once; returns its working directory."""
    workdir = tmp_path_factory.mktemp("smoke")
    cmd = snakemake_cmd(workdir, "--cores", "2", "--resources", "gpu=2", "--set-threads", "train_cell=1",
                        "--configfile", str(REPO / "config" / "smoke.yaml"))
    proc = subprocess.run(cmd, env=run_env(), capture_output=True, text=True, timeout=900)
    (workdir / "snakemake.out").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return workdir


@pytest.fixture(scope="session")
def synthetic_caches(tmp_path_factory) -> dict[str, Path]:
    """Synthetic caches of every data set, as the prepare step writes them."""
    from batchwise.data import prepare as data

    folder = tmp_path_factory.mktemp("caches")
    paths = {}
    for name in ("mnist", "cifar10"):
        paths[name] = folder / f"{name}.npz"
        data.prepare(name, paths[name], data_dir=folder, download=False, synthetic=True)
    paths["cifar10_grey"] = folder / "cifar10_grey.npz"
    data.prepare("cifar10_grey", paths["cifar10_grey"], data_dir=folder, download=False, synthetic=True,
                 colour_cache=paths["cifar10"])
    return paths
