"""The GPU window's script (tools/gpu-window.sh), rehearsed end to end on the CPU as a lent GPU would
run it: `prepare` here, then call 1 (`data selfcheck checks`, carrying only the checks' wheels) and call
2 (`data train`, all the wheels) on a copy of the working tree as it travels, with the smoke config, a
tiny fake data folder and a short deadline that stops Snakemake mid-job. Calls 1 and 2 run with a
python3 that holds only what the GPU image holds (the script's IN_IMAGE and IMAGE_ALSO, linked from
this environment) plus what the carried wheels install: an import of anything else fails here, not in
a window. Also the limits it checks (carried set, returned files) on made-up folders."""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from batchwise import config
from batchwise.speed import estimate, gpu_probe, gpu_window
from conftest import REPO

SCRIPT = "tools/gpu-window.sh"
STUDIES = "s4_mobilenet s3_batch_convergence x3_scaled_lr"
MIB = 2**20


def travelling_copy(dst: Path) -> Path:
    """The files a device call sends (tracked, and untracked ones git does not ignore), as a git
    repository of their own, so that the script's size checks see what git sees there."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        if (REPO / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dst / name)
    subprocess.run(["git", "init", "-q", str(dst)], check=True)
    subprocess.run(["git", "-C", str(dst), "add", "-A"], check=True)
    return dst


def fake_data(folder: Path) -> Path:
    """A data folder laid out as ../shared/data, tiny: the prepare stage only copies it."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(os.urandom(2000))
    (folder / "cifar10-jpeg" / "train" / "cat").mkdir(parents=True)
    (folder / "cifar10-jpeg" / "train" / "cat" / "0.jpg").write_bytes(os.urandom(3000))
    return folder


def script_list(name: str) -> list[str]:
    """A package list the script keeps (IN_IMAGE, IMAGE_ALSO, CHECK_NEEDS): one source of truth."""
    text = (REPO / SCRIPT).read_text()
    return re.search(rf'^{name}="([^"]*)"', text, re.M).group(1).split()


def image_python(dest: Path) -> Path:
    """A python3 with only what the GPU image has: IN_IMAGE and IMAGE_ALSO (those installed here),
    and what they need, linked from this environment."""
    installed = [n for n in script_list("IN_IMAGE") + script_list("IMAGE_ALSO") if has_dist(n)]
    return gpu_window.image_python(dest, gpu_window.closure(installed))


def has_dist(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def wheel_from_installed(name: str, folder: Path) -> Path:
    """The installed distribution `name` packed back into a wheel (its files as installed, stored, its
    own WHEEL tag): what `prepare` would fetch, without a package index."""
    dist = importlib.metadata.distribution(name)
    tags = [line.split(":", 1)[1].strip() for line in dist.read_text("WHEEL").splitlines() if line.startswith("Tag:")]
    tag = next(t for t in tags if t.startswith(("py3", "cp3")))  # a py2.py3 wheel lists py2 first
    path = folder / f"{re.sub(r'[-_.]+', '_', dist.metadata['Name'])}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for f in dist.files:
            source = Path(dist.locate_file(f))
            if f.parts[0] != ".." and "__pycache__" not in f.parts and source.is_file():
                zf.write(source, str(f))
    return path


def script(repo: Path, out: Path, *stages: str, python: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """The script in `repo`, with `python`'s folder (default: this interpreter's) first on PATH (its
    `python3`)."""
    bindir = (python or Path(sys.executable)).parent
    full = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "OUT": str(out), **env}
    full.pop("PYTHONPATH", None)  # the copy's own src/ (the script puts it first)
    proc = subprocess.run(["bash", SCRIPT, *stages], cwd=repo, env=full, capture_output=True, text=True,
                          timeout=900)
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    return proc


def stages(out: Path) -> dict[str, dict]:
    return {s["stage"]: s for s in json.loads((out / "summary.json").read_text())["stages"]}


def returned(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def window_run(tmp_path_factory) -> dict:
    """prepare, call 1 and call 2, run once for the tests below."""
    tmp = tmp_path_factory.mktemp("window")
    repo = travelling_copy(tmp / "repo")
    overlay = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    studies = overlay["studies"]
    # The longest job reads the smallest input: Snakemake's own tie-break (larger input first) would
    # start s4 first; the jobs' priorities start s3's long job first and s4's single step last.
    studies["s3_batch_convergence"].update(params={"epochs": 5000, "train_subset": 64},
                                           grid={"batch_size": [16]})  # far longer than the deadline
    studies["x3_scaled_lr"].update(params={**studies["x3_scaled_lr"]["params"], "epochs": 1, "train_subset": 640},
                                   grid={"lr_scaling": ["none", "linear"], "batch_size": [16]})
    studies["s4_mobilenet"].update(params={"epochs": 1, "train_subset": 32, "test_subset": 64},
                                   grid={"batch_size": [32]})
    (tmp / "window.yaml").write_text(yaml.safe_dump(overlay))
    common = {"CONFIG": str(tmp / "window.yaml"), "STUDIES": STUDIES, "GPU_JOBS": "2", "CORES": "4",
              "python": image_python(tmp / "imagepy")}
    wheels = repo / ".whl"  # what prepare fetches: Snakemake and what it needs, less what the image has
    wheels.mkdir()
    for name in gpu_window.closure(["snakemake"], skip=set(script_list("IN_IMAGE"))):
        wheel_from_installed(name, wheels)
    runs = {"repo": repo, "config": tmp / "window.yaml"}
    runs["prepare"] = script(repo, tmp / "out0", "prepare", DATA_DIR=str(fake_data(tmp / "data")), FETCH_WHEELS="0")
    aside = tmp / "not-carried-in-call-1"  # call 1 carries .whl/checks only
    aside.mkdir()
    for whl in wheels.glob("*.whl"):
        whl.rename(aside / whl.name)
    runs["call1"] = script(repo, tmp / "out1", "data", "selfcheck", "checks", CHECKS_S="60", PYTEST_S="45",
                           SELFCHECK_S="60", **common)
    for whl in aside.glob("*.whl"):
        whl.rename(wheels / whl.name)
    runs["call2"] = script(repo, tmp / "out2", "data", "train", DEADLINE_S="150", **common)
    runs.update(out0=tmp / "out0", out1=tmp / "out1", out2=tmp / "out2")
    return runs


@pytest.mark.slow
def test_prepare_stages_each_calls_carry_under_64_mib(window_run):
    assert window_run["prepare"].returncode == 0, window_run["prepare"].stdout[-3000:]
    assert stages(window_run["out0"])["prepare"]["status"] == "ok"
    calls = {c["call"]: c for c in json.loads((window_run["out0"] / "carried.json").read_text())}
    assert set(calls) == {"call1", "call2"}
    repo = window_run["repo"]
    assert set(calls["call1"]["carry"]) == {".gpu/cifar", ".whl/checks"}
    assert set(calls["call2"]["carry"]) == {".gpu/mnist", ".whl"}
    checks = {p.name.split("-")[0].lower().replace("_", "-") for p in (repo / ".whl/checks").iterdir()}
    assert checks == gpu_window.closure(script_list("CHECK_NEEDS"), skip=set(script_list("IN_IMAGE")))
    for call in calls.values():
        assert call["fits"] and not call["missing"] and call["total_bytes"] < 64 * MIB
        assert call["total_bytes"] == call["tree_bytes"] + sum(call["carry"].values())
    assert sorted(p.name for p in (repo / ".gpu/mnist/MNIST/raw").iterdir()) == sorted(
        f"{n}.gz" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                            "t10k-labels-idx1-ubyte"))
    assert (repo / ".gpu/cifar/cifar10-jpeg/train/cat/0.jpg").is_file()


@pytest.mark.slow
def test_call1_builds_caches_then_checks_and_probe(window_run):
    out = window_run["out1"]
    assert window_run["call1"].returncode == 0, window_run["call1"].stdout[-3000:]
    got = stages(out)
    assert list(got) == ["data", "selfcheck", "checks"] and got["data"]["status"] == "ok", got
    assert got["data"]["note"] == "built: mnist cifar10 cifar10_grey"
    assert got["selfcheck"]["status"] == "ok", window_run["call1"].stdout[-3000:]
    assert got["checks"]["status"] == "ok", window_run["call1"].stdout[-3000:]
    checked = json.loads((out / "selfcheck.json").read_text())
    assert [(c["check"], c["case"], c["ok"]) for c in checked["checks"]] == [
        ("resume", "mlp-bn-momentum", True), ("resume", "mlp-bn-noise-scale", True), ("resume", "x3", True)]
    assert "packed: no CUDA device" in checked["skipped"] and checked["verdict"].startswith("3 of 3 checks ok")
    junit = (out / "pytest.xml").read_text()  # the gpu test modules were collected with the image's packages
    suite = re.search(r"<testsuite [^>]*>", junit).group(0)
    assert 'errors="0"' in suite and 'failures="0"' in suite and not re.search(r'tests="0"', suite), suite
    measured = json.loads((out / "probe.json").read_text())
    assert measured["kind"] == "throughput-probe" and measured["device"] == "cpu"
    assert measured["seeds"] or measured["jobs"], measured  # at least one measurement within the deadline
    assert "MPS: no CUDA device" in measured["skipped"]
    assert {p.name for p in returned(out)} == {"summary.json", "selfcheck.json", "pytest.xml", "probe.json",
                                               "logs.tar.gz"}


@pytest.mark.slow
def test_call2_trains_longest_first_stops_at_deadline_and_exports(window_run):
    out, repo = window_run["out2"], window_run["repo"]
    assert window_run["call2"].returncode == 0, window_run["call2"].stdout[-3000:]
    got = stages(out)
    assert got["data"]["note"] == "built: nothing"  # the caches of call 1 were kept, as on a warm machine
    assert got["train"]["status"] == "ok" and "stopped at the deadline (150s)" in got["train"]["note"], got
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_plan"]["jobs"] == 4 and not summary["train_plan"]["skipped_studies"]
    assert summary["train_plan"]["longest_first"][0] == "results/s3_batch_convergence/batch_size=16"
    done = summary["runs_finished"]
    assert done["s3_batch_convergence"] == [0, 1]  # the 5000-epoch job was stopped...
    assert summary["runs_in_checkpoints"]["s3_batch_convergence"] == {"finished": 0, "partial": 1}  # ...resumes
    assert done["s4_mobilenet"][0] + done["x3_scaled_lr"][0] >= 1, done
    # Snakemake started the longest job first, s4's last; priorities never rise after the first pair.
    log = (repo / ".gpu/logs/snakemake.log").read_text()
    started = re.findall(r"Training (\w+)/(\S+), all seeds", log)
    assert ("s3_batch_convergence", "batch_size=16") in started[:2] and ("s4_mobilenet", "batch_size=32") not in \
        started[:2], started
    cfg = config.load(window_run["config"])
    prio = [estimate.job_priority(cfg, config.setting_by_id(cfg, s, c)) for s, c in started]
    assert prio[2:] == sorted(prio[2:], reverse=True), list(zip(started, prio))
    assert not (repo / ".snakemake/locks").exists() or not any((repo / ".snakemake/locks").iterdir())
    bundles = [p for p in returned(out) if p.name.startswith("bundle-")]
    assert bundles, summary


@pytest.mark.slow
@pytest.mark.parametrize("call", ["out0", "out1", "out2"])
def test_every_call_returns_at_most_8_files_of_16_mib(window_run, call):
    files = returned(window_run[call])
    assert 0 < len(files) <= 8 and all(p.stat().st_size <= 16 * MIB for p in files)
    assert all(len(p.relative_to(window_run[call]).parts) <= 3 for p in files)
    checked = json.loads((window_run[call] / "summary.json").read_text())["out"]
    assert checked["ok"] and {f["file"] for f in checked["files"]} == {
        str(p.relative_to(window_run[call])) for p in files}


@pytest.mark.slow
def test_bundle_imports_into_a_fresh_copy(window_run, tmp_path):
    probe_cli = subprocess.run([sys.executable, "-m", "batchwise", "results", "--help"], capture_output=True,
                               env={**os.environ, "PYTHONPATH": str(window_run["repo"] / "src")})
    if probe_cli.returncode != 0:
        pytest.skip("`python -m batchwise results export/import` is not in this checkout yet: the window "
                    "packed results/ as a plain tarball instead")
    parts = sorted(str(p) for p in returned(window_run["out2"]) if p.name.startswith("bundle-"))
    fresh = travelling_copy(tmp_path / "fresh")
    proc = subprocess.run([sys.executable, "-m", "batchwise", "results", "import", *parts,
                           "--configfile", str(window_run["config"])], cwd=fresh, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(fresh / "src")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(fresh.glob("results/*/*/seed=*/metrics.json"))


def stub_wheel(folder: Path) -> Path:
    """A wheel named snakemake that installs a stub package: the --target install needs no network."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "snakemake-0.0.1-py3-none-any.whl"
    files = {"snakemake/__init__.py": '__version__ = "0.0.1-stub"\n',
             "snakemake-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: snakemake\nVersion: 0.0.1\n",
             "snakemake-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                 "Tag: py3-none-any\n"}
    files["snakemake-0.0.1.dist-info/RECORD"] = "".join(f"{n},,\n" for n in files) + \
        "snakemake-0.0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.mark.slow
def test_wheels_install_into_a_folder_and_snakemake_comes_from_there(window_run, tmp_path):
    repo = window_run["repo"]
    stub_wheel(repo / ".whl-test")
    proc = script(repo, tmp_path / "out", "wheels", WHEEL_DIR=".whl-test")
    assert stages(tmp_path / "out")["wheels"]["status"] == "ok", proc.stdout[-2000:]
    assert f"snakemake 0.0.1-stub from {repo}/.gpu/site/snakemake/__init__.py" in proc.stdout
    (repo / ".whl-empty").mkdir()
    proc = script(repo, tmp_path / "out-empty", "wheels", WHEEL_DIR=".whl-empty")
    assert stages(tmp_path / "out-empty")["wheels"]["status"] == "failed"
    assert "no wheels in .whl-empty/" in proc.stdout


# ---------------------------------------------------------------------------------------------
# the limits, on made-up folders (fast)


def test_carried_set_over_64_mib_is_caught(tmp_path):
    travelling = travelling_copy(tmp_path / "repo")
    (travelling / ".gpu").mkdir()
    with open(travelling / ".gpu" / "big.bin", "wb") as fh:  # sparse: no disk used
        fh.truncate(64 * MIB)
    rows = {r["call"]: r for r in gpu_window.carried(travelling, {"small": [".gpu/nothing"], "big": [".gpu/big.bin"]})}
    assert rows["big"]["total_bytes"] > 64 * MIB and not rows["big"]["fits"]
    assert rows["small"]["fits"] and rows["small"]["missing"] == [".gpu/nothing"]


def test_outcheck_names_each_broken_limit(tmp_path):
    out = tmp_path / "out"
    (out / "a" / "b" / "c").mkdir(parents=True)
    for i in range(7):
        (out / f"f{i}.txt").write_text("x")
    with open(out / "big.tar.gz", "wb") as fh:
        fh.truncate(16 * MIB + 1)
    (out / "a" / "b" / "c" / "deep.txt").write_text("x")
    (out / "odd name.txt").write_text("x")
    assert gpu_window.main(["outcheck", str(out), str(out / "summary.json")]) == 1
    problems = json.loads((out / "summary.json").read_text())["out"]["problems"]
    assert "big.tar.gz: over 16 MiB" in problems and "a/b/c/deep.txt: too deep" in problems
    assert "odd name.txt: a name with odd characters" in problems
    assert any(p.startswith("11 files under OUT") for p in problems)
    for p in [out / "big.tar.gz", out / "a" / "b" / "c" / "deep.txt", out / "odd name.txt",
              *[out / f"f{i}.txt" for i in range(5)]]:
        p.unlink()
    assert gpu_window.main(["outcheck", str(out), str(out / "summary.json")]) == 0


def test_probe_past_its_deadline_skips_and_says_so(tmp_path):
    import torch

    got = gpu_probe.probe(torch.device("cpu"), tmp_path, tmp_path / "probe.json", deadline_s=0, steps=2, widths=[1])
    assert not got["seeds"] and not got["jobs"]
    names = [w[0] for w in gpu_probe.WORKLOADS]
    assert set(got["skipped"]) == {
        *(f"{n} bs 16: {mode}: deadline" for n in names
          for mode in ("1 seed", "3 seeds in one job, one after another", "3 seeds one after another")),
        *(f"{n} bs 16: 1 job(s) at once, MPS off: deadline" for n in names), "MPS: no CUDA device"}
    assert json.loads((tmp_path / "probe.json").read_text())["skipped"] == got["skipped"]


def test_probe_says_which_models_pack_their_seeds():
    """MobileNetV2 has dropout: the engine trains its seeds one after another even on CUDA, and the probe's
    label must say so; LeNet-5 packs them on CUDA; nothing packs on the CPU."""
    import torch

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert gpu_probe.packs_seeds("lenet5", "mnist", cuda) and not gpu_probe.packs_seeds("mobilenet_v2", "cifar10", cuda)
    assert not gpu_probe.packs_seeds("lenet5", "mnist", cpu)


@pytest.mark.slow
def test_the_rehearsal_python_lacks_what_the_image_lacks(window_run, tmp_path):
    """The image-only python3 of calls 1 and 2 imports torch but neither jsonschema nor Snakemake (they
    come from the carried wheels), so the rehearsal would fail where the image would."""
    python = image_python(tmp_path / "imagepy")
    assert subprocess.run([python, "-c", "import torch, yaml, pytest"], capture_output=True).returncode == 0
    for name in ("jsonschema", "snakemake"):
        proc = subprocess.run([python, "-c", f"import {name}"], capture_output=True, text=True)
        assert proc.returncode != 0 and "No module named" in proc.stderr, name


# ---------------------------------------------------------------------------------------------
# the self-check's own checks can fail (fast, on the CPU)


def test_selfcheck_resume_check_fails_when_resuming_loses_state(synthetic_caches, tmp_path, monkeypatch):
    """A resume that forgets the shuffling generator's state must show as a failed check."""
    from batchwise.data import prepare as data
    from batchwise.engine import record
    from batchwise.speed import gpu_selfcheck

    cache = data.load(synthetic_caches["mnist"])
    spec = gpu_selfcheck.spec_for("mlp", device="cpu", graphs="off", bn=True, epochs=2, batch_size=64,
                              train_subset=320, test_subset=200)
    out = {"checks": [], "skipped": []}
    gpu_selfcheck.check_resume(cache, "cpu", [("good", spec)], float("inf"), out, lambda: None, tmp_path)
    load_state = record.load_state

    def forgetful(run, state):
        shuffle = run.shuffle.get_state()
        load_state(run, state)
        run.shuffle.set_state(shuffle)  # the generator starts afresh: other batches than the straight run's
    monkeypatch.setattr(record, "load_state", forgetful)
    gpu_selfcheck.check_resume(cache, "cpu", [("forgetful", spec)], float("inf"), out, lambda: None, tmp_path)
    assert [(c["case"], c["ok"], c["resumed"]) for c in out["checks"]] == [("good", True, 3), ("forgetful", False, 3)]
    assert gpu_selfcheck.verdict(out).startswith("1 of 2 checks ok; FAILED: resume forgetful; mutants: none run")


def test_selfcheck_mutants_are_undone_and_counted():
    from batchwise.speed import gpu_selfcheck
    from batchwise.engine import step

    capture, wait = step.capture, torch.cuda.Stream.wait_stream
    for name, mutant in gpu_selfcheck.MUTANTS.items():
        with mutant():
            assert (step.capture, torch.cuda.Stream.wait_stream) != (capture, wait), name
        assert (step.capture, torch.cuda.Stream.wait_stream) == (capture, wait), name
    out = {"checks": [{"check": "packed", "case": "a", "ok": True},
                      {"check": "mutant", "mutant": "shared-stream", "case": "a", "caught": True},
                      {"check": "mutant", "mutant": "no-waits", "case": "a", "caught": False}], "skipped": []}
    assert gpu_selfcheck.verdict(out) == "1 of 1 checks ok; mutants: shared-stream caught, no-waits NOT caught"
