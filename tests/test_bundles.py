"""Results that travel: export, import, the report of whatever has run, publish (docs/reliability.md 12).

The round trip reads the session's one smoke run (`smoke_run`); nothing here trains."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from batchwise.results import bundles, unpack
from batchwise import config as bw_config
from batchwise.__main__ import main
from conftest import REPO, run_env, snakemake_cmd
from test_workflow import jobs_in_dry_run

SMOKE = str(REPO / "config" / "smoke.yaml")
STUDIES = ["s2_bn_lr_mlp", "x1_zero_init"]  # the partial bundle: two studies of the smoke config


@pytest.fixture(scope="module")
def full_bundle(smoke_run, tmp_path_factory) -> Path:
    """Every finished run and timing file of the smoke run, as one bundle."""
    out = tmp_path_factory.mktemp("bundle") / "smoke"
    files, _ = bundles.export(out, root=smoke_run, source="smoke run")
    return files[0].parent


@pytest.fixture(scope="module")
def partial_bundle(smoke_run, tmp_path_factory) -> Path:
    """Two studies of the smoke run, as one bundle."""
    out = tmp_path_factory.mktemp("partial") / "two-studies"
    files, doc = bundles.export(out, root=smoke_run, studies=STUDIES, source="smoke run, two studies")
    assert {r["study"] for r in doc["runs"]} == set(STUDIES)
    return files[0].parent


def _import(workdir: Path, *args: str, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(workdir)
    rc = main(["results", "import", *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def _snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = snakemake_cmd(workdir, "--cores", "2", *args, "--configfile", SMOKE)  # targets before the options
    return subprocess.run(cmd, env=run_env(), capture_output=True, text=True, timeout=timeout)


def test_a_bundle_over_the_limit_is_cut_into_parts_and_read_back_whole(tmp_path):
    files = []
    for i in range(6):  # incompressible bytes: the parts cannot fit in fewer files
        files.append(tmp_path / "src" / f"f{i}.bin")
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_bytes(__import__("os").urandom(3000))
    parts = bundles.write_bundle(tmp_path / "out" / "b", [(f"results/{p.name}", p) for p in files],
                                 {"runs": []}, part_bytes=4096)
    assert len(parts) > 1 and all(p.stat().st_size <= 4096 for p in parts)
    assert parts[0].name.endswith(f".part-1-of-{len(parts)}")
    grouped = bundles.group_parts([tmp_path / "out"])
    got = {info.name: data for info, data in unpack.members(grouped[0]) if data is not None}
    assert all(got[f"results/{p.name}"] == p.read_bytes() for p in files)
    parts[1].unlink()
    with pytest.raises(bundles.BundleError, match=f"part\\(s\\) 2 of {len(parts)} missing"):
        bundles.group_parts(parts[:1] + parts[2:])


def test_imported_runs_are_not_trained_again(smoke_run, full_bundle, tmp_path, monkeypatch, capsys):
    """Import into a fresh directory, prepare the (synthetic) data, and the dry run plans no training
    or timing job, though the data caches are newer than the imported runs; a cell that ran without
    its data set is still re-run once the data is there."""
    rc, out = _import(tmp_path, str(full_bundle), "--configfile", SMOKE, monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0, out
    some = sorted(smoke_run.glob("results/s2_bn_lr_mlp/*/seed=0/iterations.csv"))[0]
    assert (tmp_path / some.relative_to(smoke_run)).read_bytes() == some.read_bytes()
    # Before the data is prepared, with one cell left to train: the data job it needs runs first and
    # must not pull the imported cells (or their timing) back in as "updated by another job", which
    # would delete and retrain them.
    left = sorted(tmp_path.glob("results/s2_bn_lr_mlp/*=*"))[0]
    shutil.move(left, tmp_path / "left")
    first = _snakemake(tmp_path, "-n").stdout
    assert jobs_in_dry_run(first).get("prepare_data") and "time_settings" not in jobs_in_dry_run(first), first[-3000:]
    assert jobs_in_dry_run(first).get("train_cell") == 1 and f"Training s2_bn_lr_mlp/{left.name}," in first
    shutil.move(tmp_path / "left", left)
    data = [f"results/data/{d}.npz" for d in ("mnist", "cifar10", "cifar10_grey")]
    prepared = _snakemake(tmp_path, *data)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    dry = _snakemake(tmp_path, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = jobs_in_dry_run(dry.stdout)
    assert jobs.get("aggregate_study"), dry.stdout[-3000:]  # the dry run did plan the rest
    assert "train_cell" not in jobs and "time_settings" not in jobs, dry.stdout[-3000:]
    # A cell that ran while its data set was missing (no-data) trains once the data has been prepared.
    metrics = sorted(tmp_path.glob("results/s4_mobilenet/*/seed=0/metrics.json"))[0]
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "status": "no-data"}))
    again = _snakemake(tmp_path, "-n", "--forcerun", "results/data/cifar10.npz")
    assert again.returncode == 0, again.stderr[-3000:]
    assert jobs_in_dry_run(again.stdout).get("train_cell") == 1, again.stdout[-3000:]
    assert f"Training s4_mobilenet/{metrics.parent.parent.name}," in again.stdout


def test_report_of_whatever_has_run_says_k_of_n(partial_bundle, tmp_path, monkeypatch, capsys):
    rc, out = _import(tmp_path, str(partial_bundle), "--configfile", SMOKE, monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0, out
    proc = _snakemake(tmp_path, "reports/report.html", "--config", "missing_runs=skip")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    ran = proc.stdout + proc.stderr
    assert "Job stats" in ran and not {"prepare_data", "train_cell", "time_settings"} & set(jobs_in_dry_run(ran))
    cfg = bw_config.load(SMOKE)
    done = sum(len(bw_config.cells(cfg, s)) for s in STUDIES)
    html = (tmp_path / "reports" / "report.html").read_text()
    assert f"{done} of {len(bw_config.cells(cfg))} runs done" in html
    assert html.count("Not run yet: no run of this study has finished") == len(cfg["studies"]) - len(STUDIES)


def test_import_refuses_runs_with_other_parameters_and_writes_nothing(full_bundle, tmp_path, monkeypatch, capsys):
    overlay = tmp_path / "other.yaml"
    overlay.write_text("studies:\n  s2_bn_lr_mlp:\n    params: {epochs: 3}\n")
    work = tmp_path / "work"
    work.mkdir()
    rc, out = _import(work, str(full_bundle), "--configfile", SMOKE, str(overlay), monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 1
    assert "import refused (nothing written): s2_bn_lr_mlp/bn=false_lr=0.01: run parameters differ" in out
    assert "epochs 2 in the bundle, 3 here" in out
    assert not (work / "results").exists()


def test_a_different_finished_run_is_kept_unless_replace(full_bundle, tmp_path, monkeypatch, capsys):
    rc, out = _import(tmp_path, str(full_bundle), "--configfile", SMOKE, monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0, out
    metrics = sorted(tmp_path.glob("results/s2_bn_lr_cnn/*/seed=0/metrics.json"))[0]
    original = metrics.read_bytes()
    metrics.write_text(json.dumps({**json.loads(original), "final_test_acc": 0.5}))
    mine = metrics.read_bytes()
    rc, out = _import(tmp_path, str(full_bundle), "--configfile", SMOKE, monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0 and metrics.read_bytes() == mine
    cell = metrics.parent.parent.name
    assert f"kept (differs; --replace to take the bundle's): s2_bn_lr_cnn/{cell} seed=0" in out
    n_runs = len(list(tmp_path.glob("results/*/*/seed=*/metrics.json")))
    assert f"identical runs already here: {n_runs - 1}" in out
    rc, out = _import(tmp_path, str(full_bundle), "--replace", "--configfile", SMOKE, monkeypatch=monkeypatch,
                      capsys=capsys)
    assert rc == 0 and metrics.read_bytes() == original
    assert f"replaced: s2_bn_lr_cnn/{cell} seed=0" in out


def test_cells_with_seeds_missing_wait_in_checkpoints_and_other_studies_are_skipped(full_bundle, tmp_path,
                                                                                    monkeypatch, capsys):
    overlay = tmp_path / "more-seeds.yaml"
    overlay.write_text("only_studies: [s2_bn_lr_mlp]\nstudies:\n  s2_bn_lr_mlp: {seeds: [0, 1]}\n")
    work = tmp_path / "work"
    work.mkdir()
    rc, out = _import(work, str(full_bundle), "--configfile", SMOKE, str(overlay), monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0, out
    assert "skipped: s4_mobilenet/" in out and "study s4_mobilenet is not in this config" in out
    assert list(work.glob("checkpoints/s2_bn_lr_mlp/*/seed=0/metrics.json"))
    assert not (work / "results" / "s2_bn_lr_mlp").exists() or not list(work.glob("results/s2_bn_lr_mlp/*/seed=*"))


def test_publish_rebuilds_report_csvs_and_ledger_from_all_bundles(partial_bundle, tmp_path):
    from batchwise.results import publish

    folder = tmp_path / "full"
    publish.publish([partial_bundle], source="CPU session (test)", folder=folder, overlays=(SMOKE,))
    assert (folder / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.parent.name for p in folder.glob("*/runs.csv")) == sorted(STUDIES)
    assert (folder / "claims.csv").read_text().startswith("id,")
    assert list((folder / "bundles").glob("two-studies.tar.xz"))
    readme = (folder / "README.md").read_text()
    cfg = bw_config.load(SMOKE)
    done = sum(len(bw_config.cells(cfg, s)) for s in STUDIES)
    assert f"**{done} of {len(bw_config.cells(cfg))} runs done.**" in readme
    row = next(line for line in readme.splitlines() if line.startswith("| s2_bn_lr_mlp |"))
    assert "CPU session (test)" in row and "nothing" in row
    left = next(line for line in readme.splitlines() if line.startswith("| s4_mobilenet |"))
    assert f"0 of {len(bw_config.cells(cfg, 's4_mobilenet'))}" in left and " run(s), " in left


def test_unfinished_runs_travel_with_checkpoints(smoke_run, tmp_path, monkeypatch, capsys):
    """A cell job stopped mid-way: seed 0 finished (its files wait in checkpoints/), seed 1 has only
    its training state. Without --checkpoints the finished seed travels; with it, the state too."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(smoke_run / "results" / "s2_bn_lr_mlp", src / "results" / "s2_bn_lr_mlp")
    cell = sorted((src / "results" / "s2_bn_lr_mlp").glob("bn=*"))[0]
    wait = src / "checkpoints" / "s2_bn_lr_mlp" / cell.name
    wait.mkdir(parents=True)
    shutil.move(cell / "seed=0", wait / "seed=0")
    shutil.rmtree(cell)  # with Snakemake's .snakemake_timestamp
    (wait / "seed=1").mkdir()
    (wait / "seed=1" / "state.pt").write_bytes(b"opaque training state")
    _, plain = bundles.export(tmp_path / "b" / "plain", root=src)
    assert f"checkpoints/s2_bn_lr_mlp/{cell.name}/seed=0" in {r["path"] for r in plain["runs"]}
    assert plain["checkpoints"] == 0
    files, doc = bundles.export(tmp_path / "c" / "ck", root=src, with_checkpoints=True)
    assert doc["checkpoints"] == 1
    overlay = tmp_path / "two-seeds.yaml"
    overlay.write_text("only_studies: [s2_bn_lr_mlp]\nstudies:\n  s2_bn_lr_mlp: {seeds: [0, 1]}\n")
    work = tmp_path / "work"
    work.mkdir()
    rc, out = _import(work, str(files[0]), "--configfile", SMOKE, str(overlay), monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0, out
    assert (work / "checkpoints" / "s2_bn_lr_mlp" / cell.name / "seed=1" / "state.pt").read_bytes() == b"opaque training state"
    assert (work / "checkpoints" / "s2_bn_lr_mlp" / cell.name / "seed=0" / "metrics.json").exists()
    assert not (work / "results" / "s2_bn_lr_mlp" / cell.name).exists()


def test_gpu_cost_left_uses_the_recorded_step_times(monkeypatch):
    """The ledger's GPU-minutes: steps x step time, linear between timed batch sizes, proportional
    beyond the largest, the smallest timed size's time below it; 1 ms for an untimed model."""
    from batchwise.speed import estimate
    from batchwise.results import publish

    monkeypatch.setattr(estimate, "device_step_table", lambda: {"mlp": {16: 0.001, 64: 0.004}})
    assert estimate.gpu_step_s("mlp", 32) == pytest.approx(0.002)    # 0.001 + (0.003 / 48) x 16
    assert estimate.gpu_step_s("mlp", 128) == pytest.approx(0.008)   # 0.004 x 128 / 64
    assert estimate.gpu_step_s("mlp", 8) == pytest.approx(0.001)
    assert estimate.gpu_step_s("lenet5", 8) == estimate.DEFAULT_STEP_S
    cfg = bw_config.validate({"data_dir": "data", "synthetic_data": True, "homeworks": {"x": {"title": "x"}},
                           "studies": {"t": {"homework": "x", "title": "t", "dataset": "mnist", "model": "mlp",
                                             "seeds": [0, 1], "params": {"epochs": 2, "train_subset": 640},
                                             "grid": {"batch_size": [32, 64]}}}})
    # Seed 1 of batch 32 left (2 x 20 steps at 2 ms) and both seeds of batch 64 (2 x 2 x 10 steps at 4 ms).
    kind = json.dumps(["mlp", "mnist", [["bn", False]], None, 2000])
    fast = {"cpu": "Fast CPU", "machine": "m", "jobs": 2, "tables": {kind: {
        32: {"step_s": 0.01, "eval_s_per_image": 1e-4}, 64: {"step_s": 0.02, "eval_s_per_image": 3e-4}}}}
    slow = {"cpu": "Slow CPU", "machine": "s", "jobs": 2, "tables": {kind: {
        32: {"step_s": 0.05, "eval_s_per_image": 1e-4}}}}  # batch 64 not measured, nor between measured ones
    monkeypatch.setattr(publish, "recorded_cpus", lambda: (fast, slow))
    left = publish.left_cost(cfg, {("t", "batch_size=32", 0)})
    assert (left["t"]["runs"], left["t"]["steps"]) == (3, 2 * 20 + 2 * 2 * 10)
    assert left["t"]["gpu_s"] == pytest.approx(40 * 0.002 + 40 * 0.004)
    # CPU, per CPU type: per epoch its steps and two evaluations of the 400 synthetic test images at the
    # smallest measured batch's evaluation time; two jobs at once.
    seconds, runs = left["t"]["cpu"]["Fast CPU"]
    assert runs == 3 and seconds == pytest.approx((2 * (20 * 0.01 + 800 * 1e-4) + 2 * 2 * (10 * 0.02 + 800 * 1e-4)) / 2)
    seconds, runs = left["t"]["cpu"]["Slow CPU"]
    assert runs == 1 and seconds == pytest.approx((2 * (20 * 0.05 + 800 * 1e-4)) / 2)
    assert publish._left(left["t"]) == ("3 run(s), 80 training steps, ~0.0 GPU-min, ~0.0 CPU-h on Fast CPU, "
                                        "~0.0 CPU-h on Slow CPU (1 of them measured)")
    monkeypatch.setattr(publish, "recorded_cpus", lambda: ())
    assert publish._left(publish.left_cost(cfg, set())["t"]) == "4 run(s), 120 training steps, ~0.0 GPU-min"
    assert publish._left(None) == "nothing"


def test_each_cpu_type_has_its_own_benchmark_file(tmp_path):
    """The CPU benchmark keeps one file per CPU type: docs/benchmarks-cpu.json first, others named after theirs."""
    from batchwise.speed import estimate

    record = {"date": "2026-12-07T00:00:00", "cores": 2, "records": [{"batch_size": 16, "is": {
        "jobs": 2, "kind": "k", "ms_per_step": 10.0, "eval_s_per_10k": 1.0}}]}
    (tmp_path / "benchmarks-cpu.json").write_text(json.dumps({**record, "cpu": "Intel(R) Xeon(R) Processor"}))
    (tmp_path / "benchmarks-cpu-amd-epyc.json").write_text(json.dumps({**record, "cpu": "AMD EPYC"}))
    (tmp_path / "benchmarks-cpu-broken.json").write_text("{")
    got = estimate.recorded_cpus(tmp_path)
    assert [r["cpu"] for r in got] == ["Intel(R) Xeon(R) Processor", "AMD EPYC"]
    assert got[1]["tables"] == {"k": {16: {"step_s": 0.01, "eval_s_per_image": 1e-4}}}
    assert estimate.cpu_file_stem("AMD EPYC", tmp_path) == tmp_path / "benchmarks-cpu-amd-epyc"
    assert estimate.cpu_file_stem("Intel(R) Xeon(R) Processor", tmp_path) == tmp_path / "benchmarks-cpu"
    assert estimate.cpu_file_stem("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", tmp_path) == \
        tmp_path / "benchmarks-cpu-intel-core-tm-i7-8700-cpu-3-20ghz"


def test_estimate_check_sums_the_runs_the_benchmark_times(monkeypatch, tmp_path):
    """The README's estimate check: per study and engine version, the CPU runs of 1-thread jobs (engine
    v2 or later), measured total_time_s against the estimate for the same runs, each at the share of its
    budget it ran; GPU runs, 2-thread jobs and the unrecorded engine v1 are left out."""
    from batchwise.speed import estimate
    from batchwise.results import publish

    cfg = bw_config.validate({"data_dir": "data", "synthetic_data": True, "homeworks": {"x": {"title": "x"}},
                              "studies": {"t": {"homework": "x", "title": "t", "dataset": "mnist", "model": "mlp",
                                                "seeds": [0, 1, 2], "params": {"epochs": 2, "train_subset": 640},
                                                "grid": {"batch_size": [32, 64]}}}})
    kind = json.dumps(["mlp", "mnist", [["bn", False]], None, 2000])
    record = {"cpu": "Test CPU", "machine": "m", "jobs": 2, "tables": {kind: {
        32: {"step_s": 0.01, "eval_s_per_image": 1e-4}, 64: {"step_s": 0.02, "eval_s_per_image": 3e-4}}}}
    monkeypatch.setattr(publish, "recorded_cpus", lambda: (record,))
    # Either batch size: 2 epochs x (its steps x step time + 800 evaluated images x 1e-4 s) = 0.56 s a run.
    runs = {("t", "batch_size=32", 0): ("cpu", {"version": 4, "threads": 1}, 1.0, 40, 20),
            ("t", "batch_size=32", 1): ("cpu", {"version": 4, "threads": 1}, 0.5, 20, 20),   # half its budget
            ("t", "batch_size=64", 0): ("cpu", {"version": 3, "threads": 1}, 0.7, 20, 10),
            ("t", "batch_size=64", 1): ("cpu", {"version": 4, "threads": 2}, 9.0, 20, 10),   # a 2-thread job
            ("t", "batch_size=64", 2): ("cuda", {"version": 4, "threads": 1}, 9.0, 20, 10),  # a GPU run
            ("t", "batch_size=32", 2): ("cpu", None, 9.0, 40, 20)}                           # engine v1
    for (study, setting, seed), (device, engine, total, steps, per_epoch) in runs.items():
        folder = tmp_path / "results" / study / setting / f"seed={seed}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({
            "study": study, "setting": setting, "seed": seed, "device": device, "engine": engine,
            "env": {"cpu": "Test CPU"}, "total_time_s": total, "steps_run": steps, "steps_per_epoch": per_epoch}))
    found = publish.folder_runs(tmp_path / "results")
    assert sorted(found) == sorted(runs)
    lines = publish.estimate_check(cfg, found)
    assert lines[2:] == ["| t | Test CPU | v3 | 1 | 0.00 | 0.00 | 0.80 |",    # 0.56 / 0.7
                         "| t | Test CPU | v4 | 2 | 0.00 | 0.00 | 0.56 |"]    # (0.56 + 0.28) / 1.5
    # a run on a CPU type the benchmark never ran on is left out, not estimated from another type
    other = json.loads((found[("t", "batch_size=64", 0)] / "metrics.json").read_text())
    (found[("t", "batch_size=64", 0)] / "metrics.json").write_text(json.dumps({**other, "env": {"cpu": "Other CPU"}}))
    assert publish.estimate_check(cfg, found)[2:] == ["| t | Test CPU | v4 | 2 | 0.00 | 0.00 | 0.56 |"]
    assert publish.estimate_check(cfg, {}) == []


def test_step_time_between_measured_batches_uses_the_neighbours():
    """Interpolation only between the two measured batch sizes around it; beyond the largest, proportional."""
    from batchwise.speed import estimate

    measured = {16: {"step_s": 0.010}, 64: {"step_s": 0.020}, 1024: {"step_s": 1.0}}
    assert estimate._at(measured, 32) == pytest.approx(0.010 + 0.010 * 16 / 48)
    assert estimate._at(measured, 512) == pytest.approx(0.020 + 0.980 * 448 / 960)
    assert estimate._at(measured, 2048) == pytest.approx(2.0)
    spec = {"params": {"batch_size": 32, "noise_scale_batches": [2048]}}
    assert not estimate.covered(spec, measured)
    assert estimate.covered({"params": {"batch_size": 32}}, measured)
