"""Jobs run the workflow's Python: without activating the venv, and under `--sdm conda` with the
rule's environment, which holds every dependency and finds batchwise on PYTHONPATH."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import yaml

from conftest import REPO, snakemake_cmd

ENV = yaml.safe_load((REPO / "envs" / "batchwise.yaml").read_text())
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}  # conda-forge's names for PyPI ones
OUTSIDE_ENV = {"snakemake"}  # runs the workflow from outside the rule's environment


def split(spec: str) -> tuple[str, str]:
    """'torch>=2.4' -> ('torch', '>=2.4')."""
    name, bound = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", spec.split("#")[0]).groups()
    return name.lower(), bound.replace(" ", "")


def test_env_lists_every_dependency_of_pyproject_with_its_bound():
    conda = dict(split(d) for d in ENV["dependencies"] if isinstance(d, str))
    for dep in PYPROJECT["project"]["dependencies"]:
        name, bound = split(dep)
        if name in OUTSIDE_ENV:
            continue
        assert CONDA_NAMES.get(name, name) in conda, f"{name} is in pyproject.toml but not in envs/batchwise.yaml"
        assert conda[CONDA_NAMES.get(name, name)] == bound, (name, bound)
    assert "scipy" in conda  # the statistics need it (pyproject gains it too)


def test_env_is_conda_forge_only_with_nothing_from_pip():
    """WeasyPrint from conda-forge brings Pango; a pip section would need system libraries (and
    could not name this repository: Snakemake copies the env file elsewhere)."""
    assert ENV["channels"] == ["conda-forge", "nodefaults"]
    assert all(isinstance(d, str) for d in ENV["dependencies"]), "no pip section"


def outside_path() -> str:
    """PATH without the directory of this interpreter: the venv is not activated."""
    venv_bin = str(Path(sys.executable).parent)
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p.rstrip("/") != venv_bin.rstrip("/"))


def test_a_python_with_the_dependencies_but_not_batchwise_finds_it_on_the_jobs_pythonpath(tmp_path):
    """What a conda env provides: the dependencies, not batchwise. Simulated with this interpreter
    started without site processing (no editable-install hook) and its site-packages on PYTHONPATH."""
    site = sysconfig.get_paths()["purelib"]
    code = "import batchwise.config, numpy, yaml; print(batchwise.config.__file__)"
    bare = subprocess.run([sys.executable, "-S", "-c", code], env={"PATH": outside_path(), "PYTHONPATH": site},
                          capture_output=True, text=True, cwd=tmp_path)
    assert bare.returncode != 0 and "No module named 'batchwise'" in bare.stderr
    # common.smk prepends the checkout's src/ under a deployment method; a job's python then finds it.
    found = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                           env={"PATH": outside_path(), "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{site}"})
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(REPO / "src")


def test_job_under_a_deployment_method_runs_its_python_and_finds_batchwise(tmp_path):
    """`--sdm env-modules` (no module system needed: no rule names a module) takes the same branch as
    conda: the job runs `python` from PATH, here one that has the dependencies but not batchwise."""
    shim = tmp_path / "bin"
    shim.mkdir()
    site = sysconfig.get_paths()["purelib"]
    (shim / "python").write_text(f'#!/bin/sh\ntouch {tmp_path}/shim-ran\n'
                                 f'PYTHONPATH="$PYTHONPATH:{site}" exec {sys.executable} -S "$@"\n')
    (shim / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{outside_path()}"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(snakemake_cmd(tmp_path / "work", "results/data/mnist.npz", "--cores", "1", "--sdm", "env-modules",
                                        "-p", "--configfile", str(REPO / "config" / "smoke.yaml")),
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "shim-ran").exists()  # the job ran `python` from PATH, as a conda env's would
    assert (tmp_path / "work" / "results" / "data" / "mnist.npz").stat().st_size > 1000


def test_snakemake_without_activation_runs_jobs_with_its_own_python(tmp_path):
    """`.venv/bin/snakemake --cores 2 --configfile config/smoke.yaml` with the venv not on PATH (where a
    `python` without batchwise may come first): the whole DAG plans, and a job runs (data preparation)
    with this interpreter. The full smoke run is tests/test_workflow.py's."""
    env = {**os.environ, "PATH": outside_path()}
    env.pop("PYTHONPATH", None)
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile")]
    dry = subprocess.run([*snakemake, "--directory", str(tmp_path), "-n", "-p", "--cores", "2", "--configfile",
                          str(REPO / "config" / "smoke.yaml")], env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "train_cell" in dry.stdout
    run = subprocess.run([*snakemake, "results/data/cifar10.npz", "--directory", str(tmp_path), "--cores", "2",
                          "--configfile", str(REPO / "config" / "smoke.yaml")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "results" / "data" / "cifar10.npz").is_file()
    assert "No module named" not in (tmp_path / "logs" / "prepare_data" / "cifar10.log").read_text()
