"""The workflow on a real SLURM cluster, through snakemake-executor-plugin-slurm.

tests/slurm/up.sh installs slurm-wlm and munge and starts a single-node cluster
(munged, slurmctld, slurmd; no accounting database; two GPUs backed by /dev/null
and /dev/zero, so SLURM sets CUDA_VISIBLE_DEVICES in jobs that ask for one). That needs root and
apt, so these tests only run where asked to: CI=true or BATCHWISE_SLURM_TESTS=1.

The run uses the user's profile plus a small CI overlay:
    snakemake --profile profiles/slurm --profile tests/slurm/profile ...
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = ROOT / "tests" / "slurm"
# What a run needs from the repository (results, logs and .snakemake stay behind).
WORKFLOW_PARTS = ["Snakefile", "workflow", "config", "src", "envs", "profiles", "reports/templates", "tests/slurm/profile"]
SLURM_PROFILES = ["--profile", "profiles/slurm", "--profile", "tests/slurm/profile"]
RUN_LIMIT_S = 900


def _skip_reason() -> str | None:
    if not (os.environ.get("CI") == "true" or os.environ.get("BATCHWISE_SLURM_TESTS") == "1"):
        return "installs and starts SLURM: set BATCHWISE_SLURM_TESTS=1 (or CI=true) to run"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to install and start SLURM"
    if shutil.which("apt-get") is None:
        return "needs apt-get (Debian/Ubuntu) to install SLURM"
    return None


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
]

SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
SBATCH_CALL = re.compile(r"sbatch call: (sbatch .*)")


def _bin_dir() -> Path:
    # The venv running pytest: its snakemake, and its python for the jobs' `python -m batchwise`
    # (SLURM jobs inherit the submitting environment: the plugin passes --export=ALL).
    return Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{_bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SNAKEMAKE_PROFILE", None)  # only the profiles named on the command line
    return env


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run snakemake in workdir under a hard time limit; output goes to workdir/snakemake.out."""
    # A hung Snakemake ignores SIGTERM: stop it with SIGINT, then SIGKILL 30 s later.
    cmd = ["timeout", "-s", "INT", "-k", "30", str(RUN_LIMIT_S), str(_bin_dir() / "snakemake"), *args, "--directory", str(workdir)]
    out = workdir / "snakemake.out"
    with out.open("w") as fh:
        proc = subprocess.run(cmd, cwd=workdir, env=_env(), stdout=fh, stderr=subprocess.STDOUT)
    proc.output = out.read_text()
    return proc


def _start_snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    """Start snakemake in workdir in the background, as _snakemake does; output goes to workdir/snakemake.out."""
    cmd = ["timeout", "-s", "INT", "-k", "30", str(RUN_LIMIT_S), str(_bin_dir() / "snakemake"), *args, "--directory", str(workdir)]
    with (workdir / "snakemake.out").open("w") as fh:
        return subprocess.Popen(cmd, cwd=workdir, env=_env(), stdout=fh, stderr=subprocess.STDOUT)


def _job_state(jobid: str) -> str:
    """SLURM's state of a job (RUNNING, PENDING, ...), or '' when squeue does not know it."""
    out = subprocess.run(["squeue", "-h", "-j", jobid, "--states=all", "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def _tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest


def _summaries(workdir: Path) -> dict[str, list[dict[str, str]]]:
    """results/<study>/summary.csv per study, without timings: columns or metrics named *_s."""
    tables = {}
    for path in sorted(workdir.glob("results/*/summary.csv")):
        with path.open(newline="") as fh:
            tables[path.parent.name] = [
                {k: v for k, v in row.items() if not k.endswith("_s")}
                for row in csv.DictReader(fh)
                if not row.get("metric", "").endswith("_s")
            ]
    return tables


def _same(a: str, b: str) -> bool:
    """Equal cells; numbers may differ in the last bits (float formatting, reduction order)."""
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    except ValueError:
        return False


def _table_differences(expected: dict, actual: dict) -> list[str]:
    if expected.keys() != actual.keys():
        return [f"studies: {sorted(expected)} != {sorted(actual)}"]
    diffs = []
    for study, rows in expected.items():
        if len(rows) != len(actual[study]):
            diffs.append(f"{study}: {len(rows)} rows != {len(actual[study])}")
            continue
        for want, got in zip(rows, actual[study]):
            if want.keys() != got.keys() or not all(_same(want[k], got[k]) for k in want):
                diffs.append(f"{study}: {want} != {got}")
    return diffs


@pytest.fixture(scope="session")
def slurm_cluster():
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("snakemake-executor-plugin-slurm is not installed: pip install -r envs/cluster-requirements.txt")
    up = subprocess.run(["bash", str(SLURM_DIR / "up.sh")], capture_output=True, text=True, timeout=900)
    try:
        if up.returncode != 0:
            pytest.fail(f"tests/slurm/up.sh failed ({up.returncode}):\n{up.stdout}\n{up.stderr}")
        yield
    finally:
        subprocess.run(["bash", str(SLURM_DIR / "down.sh")], timeout=120)


def test_smoke_run_on_slurm_matches_local_run(slurm_cluster, smoke_run, tmp_path):
    """The smoke config through SLURM gives the tables of the session's local smoke run (`smoke_run`,
    shared with the other tests that read one), with one SLURM job and one GPU per training cell."""
    if not (ROOT / "Snakefile").exists() or not (ROOT / "config" / "smoke.yaml").exists():
        pytest.fail("the workflow (Snakefile, config/smoke.yaml) is missing")
    local = smoke_run

    cluster = _copy_workflow(tmp_path / "slurm")
    # --verbose: the plugin logs each sbatch call at debug level. One thread per training job, as
    # in the local run (a job's thread count can change the last bits of its numbers).
    run = _snakemake(cluster, *SLURM_PROFILES, "--configfile", "config/smoke.yaml",
                     "--set-threads", "train_cell=1", "--verbose")
    assert run.returncode == 0, f"slurm run failed ({run.returncode}):\n{_tail(run.output)}"

    # One SLURM job per training cell, each with a GPU.
    # The plugin writes a job's log to .snakemake/slurm_logs/rule_<rule>/<wildcards>/%j.log; that
    # directory ties a "submitted with SLURM jobid N" line to its "sbatch call: ..." line.
    calls = {}
    for call in SBATCH_CALL.findall(run.output):
        logdir = str(Path(re.search(r"--output (\S+)", call).group(1).strip("'\"")).parent)
        calls[logdir] = call
    train_jobs = {}  # SLURM job id -> sbatch call
    for jobid, log in SUBMITTED.findall(run.output):
        if "/rule_train_cell/" in log:
            train_jobs[jobid] = calls.get(str(Path(log).parent), "")
    metrics = sorted(cluster.glob("results/*/*/seed=*/metrics.json"))
    assert metrics, "no results/<study>/<cell>/seed=<n>/metrics.json after the slurm run"
    cells = {path.parent.parent for path in metrics}
    assert len(train_jobs) >= len(cells), (
        f"{len(cells)} cells but only {len(train_jobs)} train_cell SLURM submissions"
    )
    no_gpu = [jobid for jobid, call in train_jobs.items() if not re.search(r"--gpus=(\S+:)?1\b|--gres=\S*gpu", call)]
    assert not no_gpu, f"train_cell jobs submitted without a GPU request: {no_gpu}\n{train_jobs}"

    seen = {}
    for path in metrics:
        env = json.loads(path.read_text()).get("env", {})
        cell = str(path.parent.parent.relative_to(cluster / "results"))  # a cell's seeds share its job
        assert "cuda_visible_devices" in env, f"{cell}: metrics.json records no env.cuda_visible_devices"
        assert env["cuda_visible_devices"], f"{cell}: CUDA_VISIBLE_DEVICES unset in the job (no GPU allocated?)"
        jobid = env.get("slurm_job_id")
        assert jobid in train_jobs, f"{cell}: ran in SLURM job {jobid!r}, not one the plugin submitted"
        seen.setdefault(jobid, set()).add(cell)
    shared = {jobid: cells for jobid, cells in seen.items() if len(cells) > 1}
    assert not shared, f"cells that shared a SLURM job: {shared}"

    assert (cluster / "reports" / "report.pdf").exists()
    local_tables, cluster_tables = _summaries(local), _summaries(cluster)
    assert local_tables, "the local run wrote no results/*/summary.csv"
    differences = _table_differences(local_tables, cluster_tables)
    assert not differences, "summary tables differ (local vs slurm):\n" + "\n".join(differences[:20])


def test_failing_job_fails_the_run(slurm_cluster, tmp_path):
    """A job that exits 1 on the cluster makes Snakemake exit non-zero and say so."""
    work = tmp_path / "fail"
    work.mkdir()
    shutil.copytree(ROOT / "profiles", work / "profiles")
    shutil.copytree(ROOT / "tests" / "slurm" / "profile", work / "tests" / "slurm" / "profile")
    (work / "Snakefile").write_text(
        'rule fail_cell:\n'
        '    output: "results/fail/metrics.json"\n'
        '    resources: gpu=1\n'
        '    shell: "echo about to fail >&2; exit 1"\n'
    )
    # --retries 0: the profile's one retry would only double the time.
    run = _snakemake(work, *SLURM_PROFILES, "--retries", "0")
    assert run.returncode != 0, f"a failing job did not fail the run:\n{_tail(run.output)}"
    assert re.search(r"SLURM-job '\d+' failed", run.output), _tail(run.output)
    assert "Error in rule fail_cell" in run.output
    assert not (work / "results" / "fail" / "metrics.json").exists()


# The requeue test's cell: one CNN cell of S2 with many epochs, so that its job is still training when
# it is requeued after its first epoch's checkpoint (each epoch takes a second or so on a CPU).
REQUEUE_STUDY = "s2_bn_lr_cnn"
REQUEUE_EPOCHS = 25
REQUEUE_OVERLAY = f"""only_studies: [{REQUEUE_STUDY}]
studies:
  {REQUEUE_STUDY}:
    params: {{epochs: {REQUEUE_EPOCHS}}}
    grid: {{bn: [true], lr: [0.01]}}
"""
RESUMED = re.compile(r"seed 0: resumed at epoch (\d+)")


def test_requeued_training_job_resumes_where_it_stopped(slurm_cluster, tmp_path):
    """`scontrol requeue` of a running training job, as pre-emption or a node failure does it: SLURM
    starts the same job again, Snakemake keeps waiting for it (no failure, no resubmission), and the
    cell resumes at its last finished epoch from checkpoints/ instead of starting over."""
    from batchwise import config

    work = _copy_workflow(tmp_path / "requeue")
    (work / "requeue.yaml").write_text(REQUEUE_OVERLAY)
    cfg = config.load(work / "config" / "smoke.yaml", work / "requeue.yaml")
    (cell,) = [s.id for s in config.settings(cfg, REQUEUE_STUDY)]
    result = work / "results" / REQUEUE_STUDY / cell
    state = work / "checkpoints" / REQUEUE_STUDY / cell / "seed=0" / "state.pt"

    proc = _start_snakemake(work, *SLURM_PROFILES, "--configfile", "config/smoke.yaml", "requeue.yaml",
                            "--verbose", str(result.relative_to(work)))
    out = work / "snakemake.out"
    try:
        # 1. Wait for the training job to save its first epoch's state while it is still running.
        deadline = time.monotonic() + 600
        jobid = None
        while True:
            assert proc.poll() is None, f"the run ended before its job could be requeued:\n{_tail(out.read_text())}"
            assert time.monotonic() < deadline, f"no checkpoint {state} within 600 s:\n{_tail(out.read_text())}"
            jobid = jobid or next((j for j, log in SUBMITTED.findall(out.read_text()) if "/rule_train_cell/" in log), None)
            if jobid and state.exists():
                break
            time.sleep(0.2)
        assert not (result / "seed=0" / "metrics.json").exists()
        assert _job_state(jobid) == "RUNNING", f"job {jobid} is {_job_state(jobid)!r}, not RUNNING"

        # 2. Requeue it: SLURM ends the running job and queues the same job id again. A requeued job
        # waits for its old credential to expire (120 s by default); start it now instead.
        requeue = subprocess.run(["scontrol", "requeue", jobid], capture_output=True, text=True)
        assert requeue.returncode == 0, f"scontrol requeue {jobid}: {requeue.stderr}"
        for _ in range(50):
            if _job_state(jobid) == "PENDING":
                subprocess.run(["scontrol", "update", f"JobId={jobid}", "StartTime=now"], capture_output=True)
                break
            time.sleep(0.2)
        rc = proc.wait(timeout=RUN_LIMIT_S + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = out.read_text()
    assert rc == 0, f"the run failed after its job was requeued ({rc}):\n{_tail(output)}"

    # 3. One submission, the requeued job finished it: the plugin did not take the requeue for a failure.
    train_jobs = [j for j, log in SUBMITTED.findall(output) if "/rule_train_cell/" in log]
    assert train_jobs == [jobid], f"train_cell submissions {train_jobs}, expected only the requeued job {jobid}"
    assert any("--requeue" in call for call in SBATCH_CALL.findall(output)), "profiles/slurm does not submit --requeue"
    info = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
    assert re.search(r"Restarts=[1-9]", info), f"job {jobid} was not restarted by SLURM:\n{info}"

    # 4. The job continued: its training log says where it resumed, and the result is whole.
    log = (work / "logs" / "train_cell" / REQUEUE_STUDY / f"{cell}.log").read_text()
    resumed = RESUMED.findall(log)
    assert resumed and int(resumed[0]) >= 1, f"the requeued job started over instead of resuming:\n{log[-3000:]}"
    metrics = json.loads((result / "seed=0" / "metrics.json").read_text())
    assert metrics["epochs_run"] == REQUEUE_EPOCHS and metrics["status"] == "ok", metrics
    assert metrics["env"]["slurm_job_id"] == jobid
    with (result / "seed=0" / "history.csv").open(newline="") as fh:
        epochs = [int(row["epoch"]) for row in csv.DictReader(fh)]
    assert epochs == list(range(1, REQUEUE_EPOCHS + 1)), epochs
    assert not state.exists(), "the checkpoint was left behind after the run finished"
