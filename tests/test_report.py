"""The report's own logic on hand-made input: no torch at build time, reproducible commands, no
machine paths, device types per study, the findings page, the commit wording, the layout rules."""
import json
import subprocess
import sys

import pandas as pd

from batchwise import provenance
from batchwise.results import aggregate
from batchwise.report import document as report
from conftest import REPO

VENV = "/home/someone/batchwise/.venv/bin/snakemake"


def test_building_a_report_imports_no_torch():
    code = ("import sys; import batchwise.report.document, batchwise.analysis.registry; "
            "print('torch' in sys.modules, 'batchwise.analysis.saddle' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_reproducible_command_drops_machine_paths():
    argv = [VENV, "-s", str(REPO / "Snakefile"), "--directory", "/tmp/tmpab12cd", "--cores", "2",
            "--configfile", str(REPO / "config" / "quick.yaml"), "/tmp/tmpab12cd/publish.yaml", "--quiet", "rules"]
    got = provenance.reproducible_command(argv, repo=REPO, workdir=REPO.parent / "elsewhere")
    assert got == "snakemake --cores 2 --configfile config/quick.yaml publish.yaml --quiet rules"
    argv = ["/usr/lib/python3/site-packages/snakemake/__main__.py", "--directory=/scratch/x",
            "--config", "missing_runs=skip", "data_dir=/mnt/big/data"]
    assert provenance.reproducible_command(argv, repo=REPO, workdir=REPO) == \
        "snakemake --config missing_runs=skip data_dir=data"
    # a path in the working directory stays relative to it; a Snakefile other than the repository's is kept
    argv = [VENV, "-s", "/opt/other/Snakefile", "--configfile", "/work/run/mine.yaml"]
    assert provenance.reproducible_command(argv, repo=REPO, workdir=REPO.parent / "run") == \
        "snakemake -s Snakefile --configfile mine.yaml"


def test_data_notes_lose_the_absolute_path():
    note = ("MNIST: original IDX files in /work/shared/data/MNIST/raw; all four match the published MD5 sums, "
            "so the pixels are the original ones.")
    assert provenance.portable_note(note) == ("MNIST: original IDX files in <data_dir>/MNIST/raw; all four match the "
                                          "published MD5 sums, so the pixels are the original ones.")
    assert provenance.portable_note("CIFAR-10 from the original python-pickle batches in /d/cifar-10-batches-py.") == \
        "CIFAR-10 from the original python-pickle batches in <data_dir>/cifar-10-batches-py."
    assert provenance.portable_note("cached at /home/x/cache/mnist.npz (uint8)") == "cached at mnist.npz (uint8)"
    assert provenance.portable_note("ITU-R 601-2 luma, 1/3 of it") == "ITU-R 601-2 luma, 1/3 of it"
    assert provenance.portable_note(None) is None


def test_device_types_per_study_and_the_mixed_note():
    runs = pd.DataFrame({"status": ["ok", "ok", "diverged", "no-data", "ok"],
                         "device": ["AMD EPYC", "NVIDIA H100", "NVIDIA H100", "NVIDIA H100", "AMD EPYC"],
                         "device_type": ["cpu", "cuda", "cuda", "cuda", "cpu"]})
    assert provenance.device_types(runs) == {"cpu": 2, "cuda": 2}
    assert provenance.device_listing({"cpu": 2, "cuda": 2}) == "cpu (2 runs), cuda (2 runs)"
    assert provenance.device_listing({"cpu": 60}) == "cpu (all 60 runs)"
    assert provenance.mixed_device_note({"cpu": 60}) == ""
    note = provenance.mixed_device_note({"cpu": 2, "cuda": 1})
    assert note.startswith("Mixed devices: this study's runs come from more than one device type "
                           "(cpu (2 runs), cuda (1 run)).")
    mixed = {"s3": note}
    assert report.time_claim_device_note({"study": "s3", "metric": "time_to_target_s"}, mixed) == f"s3: {note}"
    assert report.time_claim_device_note({"study": "s3", "metric": "final_test_acc"}, mixed) == ""
    assert report.time_claim_device_note({"study": "s1", "metric": "train_time_s"}, mixed) == ""


def test_device_type_of_a_recorded_device():
    assert [provenance.device_type(d) for d in ("cpu", "cuda:0", "cuda", "mps", None, float("nan"))] == \
        ["cpu", "cuda", "cuda", "mps", "unknown", "unknown"]


def test_commit_wording_says_when_the_tree_was_not_clean():
    assert report.commit_text({"commit": "abc123", "dirty": False}) == "abc123"
    assert report.commit_text({"commit": None, "dirty": None}) == "not a git checkout"
    dirty = report.commit_text({"commit": "abc123", "dirty": True})
    assert dirty == ("abc123, with uncommitted changes to the code or config: this report cannot be rebuilt "
                     "from the commit alone")
    assert "uncommitted changes)" not in dirty   # the old wording, which a published report showed


def test_run_commits_per_study():
    runs = pd.DataFrame({"study": ["a", "a", "a", "b"], "status": ["ok", "ok", "no-data", "ok"],
                         "commit": ["1" * 40, "2" * 40, "3" * 40, "1" * 40]})
    assert report.run_commits(runs) == [["a", "1" * 12, "1"], ["a", "2" * 12, "1"], ["b", "1" * 12, "1"]]


def test_findings_page_gives_verdict_numbers_spread_and_what_is_missing():
    claims = [
        {"verdict": "contradicted", "english": "BN rescues lr 0.5", "metric": "final_test_acc", "evidence": "e1",
         "groups": [{"label": "bn=true, lr=0.5", "mean": 0.5, "std": 0.4, "n": 5, "n_runs": 5, "n_trained": 5},
                    {"label": "bn=false, lr=0.5", "mean": 0.98, "std": float("nan"), "n": 1, "n_runs": 5,
                     "n_trained": 1}]},
        {"verdict": "inconclusive", "english": "time falls", "metric": "time_to_target_s", "evidence": "e2",
         "groups": [], "device_note": "s3: mixed"},
        {"verdict": "inconclusive", "english": "BN tolerates a higher lr", "metric": "lr", "evidence": "BN 3.2 [0.5, 9]",
         "groups": [{"label": "BN", "mean": 3.2, "std": float("nan"), "n": 46, "n_runs": 50}]},
        {"verdict": "not run yet", "english": "zeros give 11 %", "metric": "final_test_acc", "evidence": "", "groups": []},
    ]
    chapters = [{"id": "002", "title": "BN x lr", "homework": "002", "beyond": False, "claims": claims,
                 "studies": [{"title": "S2", "meta": {}}, {"title": "S9", "meta": {"not_run_yet": True}}]}]
    got = report.findings(chapters, [])
    assert got == [{
        "id": "002", "title": "BN x lr", "homework": "002", "beyond": False,
        "lines": [{"verdict": "contradicted", "phrase": "does not hold up", "english": "BN rescues lr 0.5",
                   "seeds": "bn=true, lr=0.5: 50.00 ± 40.00 % (5 runs); bn=false, lr=0.5: 98.00 % (mean over the 1 of 5 runs that trained)",
                   "evidence": "", "device_note": "", "hardware": ""},
                  {"verdict": "inconclusive", "phrase": "not settled", "english": "time falls", "seeds": "",
                   "evidence": "e2", "device_note": "s3: mixed", "hardware": ""},
                  {"verdict": "inconclusive", "phrase": "not settled", "english": "BN tolerates a higher lr",
                   "seeds": "", "evidence": "BN 3.2 [0.5, 9]", "device_note": "", "hardware": ""}],
        "waiting": ["zeros give 11 %"], "unrun_studies": ["S9"]}]
    page = report.render_html({"findings": got, "homeworks": [], "provenance": [], "verdict_counts": {},
                               "progress": {"show": False}})
    assert "<h2>What the runs found</h2>" in page and "bn=true, lr=0.5: 50.00 ± 40.00 % (5 runs)" in page
    assert "<b>Not run yet:</b> S9 (no finished run). 1 conclusion waits for runs: zeros give 11 %." in page


def test_claim_blocks_are_never_split_across_pages():
    css = (REPO / "reports" / "templates" / "report.css").read_text()
    assert ".conclusions li { margin-bottom: 5pt; page-break-inside: avoid; }" in css
    assert ".finding li { margin-bottom: 3pt; page-break-inside: avoid; }" in css


def test_analyses_are_keyed_by_figure_kinds_the_schema_allows(tmp_path):
    import yaml

    from batchwise.analysis.registry import FIGURE_ANALYSES, write_study_analysis

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    text = json.dumps(schema)
    assert set(FIGURE_ANALYSES) == {"trained_share", "to_target"}
    assert all(f'"{kind}"' in text for kind in FIGURE_ANALYSES)
    # a study whose runs all lacked data gets no analysis, and the report shows none
    runs = tmp_path / "runs.csv"
    pd.DataFrame({"study": ["s"], "setting": ["lr=0.1"], "status": ["no-data"], "outcome": ["no-data"],
                  "lr": [0.1]}).to_csv(runs, index=False)
    study = {"dataset": "mnist", "grid": {"lr": [0.1]}, "figures": [{"kind": "trained_share", "x": "lr"},
                                                                      {"kind": "predictions", "hue": "lr"}]}
    assert write_study_analysis(study, runs, tmp_path / "analysis.json", 0.95) == {"blocks": []}
    assert report.read_analyses(tmp_path) == []


def test_mixed_devices_are_said_beside_the_table_and_the_time_claim():
    note = provenance.mixed_device_note({"cpu": 3, "cuda": 2})
    claim = {"homework": "001", "quote": "q", "english": "time falls", "verdict": "inconclusive", "evidence": "ev",
             "reason": "r", "device_note": f"s3: {note}"}
    study = {"id": "s3", "title": "S3", "meta": {}, "setup": [("device type of the runs", "cpu (3 runs), cuda (2 runs)")],
             "results": {"header": ["batch_size"], "rows": [{"cells": ["16"]}], "time_note": ""},
             "figures": [], "analyses": [], "device_note": note}
    page = report.render_html({"homeworks": [{"id": "001", "homework": "001", "title": "T", "studies": [study],
                                              "tables": [], "claims": [claim]}],
                               "claims": [claim], "provenance": [], "verdict_counts": {}, "progress": {"show": False}})
    assert page.count("Mixed devices: this study&#39;s runs come from more than one device type "
                      "(cpu (3 runs), cuda (2 runs)).") == 3   # beside the table, in the chapter's claim, in the verdicts
    assert '<p class="warning device-note">Mixed devices' in page


def test_a_spread_below_float_rounding_shows_as_zero():
    """Runs that share one solo timing have the same time: pandas' std of it is a residue (1.4e-13),
    shown as 0; a real spread keeps its three digits."""
    rows = pd.DataFrame([{"metric": "train_time_s", "n": 3, "n_runs": 3, "n_trained": 3, "n_failed": 0,
                          "mean": 710.0, "std": 1.39e-13, "basis": "trained"}])
    assert report.mean_std(rows, "train_time_s") == "710 ± 0"
    assert report.mean_std(rows.assign(std=2.5), "train_time_s") == "710 ± 2.5"
    assert report.spread(0.9909, 0.0002, "final_test_acc") == "0.02"


def test_a_time_shared_by_its_runs_shows_the_timing_error_not_a_zero_spread():
    """Summary rows from the timing pass carry its standard error; the table and the findings page show
    it (a zero spread of runs that share one timing says nothing), and a mean over failed runs says so."""
    rows = pd.DataFrame([{"metric": "train_time_s", "n": 3, "n_runs": 3, "n_trained": 3, "n_failed": 0,
                          "mean": 710.0, "std": 1.39e-13, "basis": "trained", "timing_se": 9.66}])
    assert report.mean_std(rows, "train_time_s") == "710 (SE 9.66)"
    shared = {"label": "batch 1000", "mean": 979.9, "std": 0.0, "n": 3, "n_runs": 3, "n_trained": 3,
              "one_timing": True, "timing_se": 9.66, "basis": "trained"}
    assert report._group_text(shared, "total_time_s") == "batch 1000: 980 s (timing SE 9.66 s) (3 runs, one timing shared)"
    mixed = {"label": "BN, lr 0.5", "mean": 0.4335, "std": 0.4383, "n": 5, "n_runs": 5, "n_trained": 2, "basis": "all"}
    assert report._group_text(mixed, "final_test_acc") == (
        "BN, lr 0.5: 43.35 ± 43.83 % (mean over all 5 runs, 2 of them trained)")
    none = {"label": "no BN", "mean": 0.11, "std": 0.01, "n": 5, "n_runs": 5, "n_trained": 0, "basis": "failed"}
    assert report._group_text(none, "final_test_acc").endswith("(none of 5 trained: mean over the 5 runs that failed)")


def test_a_study_id_may_wrap_after_its_underscores_and_stays_escaped():
    from batchwise.report.document import breakable
    assert str(breakable("s3_batch<x>")) == "s3_<wbr>batch&lt;x&gt;"


def test_time_columns_say_wall_time_where_no_run_has_the_timing_pass():
    runs = pd.DataFrame({"status": ["ok", "ok"], "time_basis": ["wall", "wall"]})
    assert aggregate.time_label("training compute time (s)", runs) == "training wall time (s)"
    assert aggregate.time_label("training compute time (s)", runs.assign(time_basis=["solo", "wall"])) == "training time (s)"
    assert aggregate.time_label("training compute time (s)", runs.assign(time_basis="solo")) == "training compute time (s)"
    assert aggregate.time_label("final test accuracy (%)", runs) == "final test accuracy (%)"


def test_a_homework_table_of_more_than_two_metrics_gets_a_row_per_metric():
    """Three columns per metric overflow A4 beyond two metrics (homework 003's table has four)."""
    wide = {"key": ["batch_size"], "columns": [{"label": "Loss", "metric": "final_running_loss"},
                                               {"label": "Acc (%)", "metric": "final_running_acc"},
                                               {"label": "Test loss", "metric": "final_test_loss"}]}
    frame = pd.DataFrame([{"batch_size": "16", "Loss — homework": "0.1", "Loss — ours": "0.2 (n=3)",
                           "Loss — difference": "+0.1", "Acc (%) — homework": "90.0", "Acc (%) — ours": "not run",
                           "Acc (%) — difference": "not run", "Test loss — homework": "1.0",
                           "Test loss — ours": "0.5 (n=3)", "Test loss — difference": "−0.5"}])
    header, rows = report.homework_table_layout(wide, frame)
    assert header == ["batch_size", "metric", "homework", "ours", "difference"]
    assert rows == [["16", "Loss", "0.1", "0.2 (n=3)", "+0.1"], ["16", "Acc (%)", "90.0", "not run", "not run"],
                    ["16", "Test loss", "1.0", "0.5 (n=3)", "−0.5"]]
    two = {**wide, "columns": wide["columns"][:2]}
    narrow = frame.drop(columns=[c for c in frame.columns if c.startswith("Test loss")])
    assert report.homework_table_layout(two, narrow) == (list(narrow.columns), [list(narrow.iloc[0])])


def test_run_time_summary_is_one_row_per_study_with_wall_beside_compute():
    """The provenance's time table: one row per study (it fits the page), wall times summed and per-run
    medians beside the timing pass's compute time; a study without a timing pass says so."""
    runs = pd.DataFrame({
        "study": ["a", "a", "a", "b"], "status": ["ok", "ok", "ok", "ok"],
        "outcome": ["trained", "trained", "diverged", "trained"],
        "time_basis": ["solo", "solo", "solo", "wall"],
        "time_until_stop_s": [10.0, 20.0, 3.0, 7.0], "train_time_s": [1.0, 2.0, 3.0, 6.0],
        "wall_train_time_s": [8.0, 16.0, 2.0, None], "wall_total_time_s": [9.0, 18.0, 3.0, None],
        "total_time_s": [3.0, 3.0, 1.0, 6.5]})
    rows = report.run_time_summary(runs)
    assert rows == [["a", "3 (2 trained, 1 diverged)", "33", "8.0", "3.0", "3.00"],
                    ["b", "1 (1 trained)", "7", "6.0", "no timing pass", "–"]]
    assert all(len(r) == len(report.RUN_TIMES_HEADER) for r in rows)


def test_a_diverged_run_does_not_stretch_the_loss_axis(tmp_path):
    """Loss panel with one run that trained and one that diverged (loss 1e29 before it stopped): the axis
    keeps the trained run's range and the diverged run's × sits on its upper edge."""
    import yaml
    from matplotlib import pyplot as plt
    from batchwise.report import figures

    golden = REPO / "tests" / "golden" / "smoke"
    study = yaml.safe_load((golden / "config.yaml").read_text())["studies"]["s2_bn_lr_mlp"]
    index = next(i for i, f in enumerate(study["figures"]) if f["kind"] == "loss_iterations")
    runs = pd.read_csv(golden / "results" / "s2_bn_lr_mlp" / "runs.csv")
    its = pd.read_csv(golden / "results" / "s2_bn_lr_mlp" / "iterations.csv")
    setting = "bn=false_lr=0.7"
    assert its[its["setting"] == setting]["loss"].max() > 1e20   # the smoke run's diverged run
    trained = runs[runs["setting"] == setting].assign(seed=1, outcome="trained", status="ok")
    curve = its[its["setting"] == "bn=false_lr=0.01"].assign(setting=setting, seed=1, outcome="trained")
    runs = pd.concat([runs, trained], ignore_index=True)
    its = pd.concat([its, curve], ignore_index=True)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    its.to_csv(tmp_path / "iterations.csv", index=False)
    fig = figures.draw_figure(study, index, runs=tmp_path / "runs.csv", history=tmp_path / "none.csv",
                              iterations=tmp_path / "iterations.csv")
    try:
        ax = next(a for a in fig.axes if a.get_title() == "lr=0.7, bn=false")
        lo, hi = ax.get_ylim()
        assert hi < 10 * curve["loss"].max()          # not stretched towards 1e29
        crosses = [ln for ln in ax.lines if ln.get_marker() == "x"]
        assert len(crosses) == 1 and crosses[0].get_ydata()[0] == hi and not crosses[0].get_clip_on()
    finally:
        plt.close(fig)


def test_run_records_come_from_the_runs_metrics_and_timing(tmp_path):
    """The setup table's methods rows are what the runs recorded: machines, threads, engine, libraries,
    micro-batches only where a run's engine cut its batch, and the timing pass (or that there is none)."""
    def metrics(cell: str, micro: int | None, cpu: str) -> None:
        folder = tmp_path / cell / "seed=0"
        folder.mkdir(parents=True)
        folder.joinpath("metrics.json").write_text(json.dumps({
            "status": "ok", "device": "cpu", "device_type": "cpu",
            "engine": {"version": 4, "threads": 1, "micro_batch": micro, "eval_batch_size": 500},
            "env": {"python": "3.11.7", "torch": "2.9.0", "device_name": cpu, "cpu_count": 2}}))
    metrics("batch_size=64", None, "AMD EPYC")
    metrics("batch_size=1024", 256, "Intel Xeon")
    rows = dict(report.run_records(tmp_path))
    assert rows["machines of the runs"] == "AMD EPYC, 2 CPUs visible (1 run); Intel Xeon, 2 CPUs visible (1 run)"
    assert rows["threads per job"] == "1 (2 runs)" and rows["engine version"] == "4 (2 runs)"
    assert rows["libraries of the runs"] == "Python 3.11.7, PyTorch 2.9.0 (2 runs)"
    assert rows["micro-batches"].startswith("1 of 2 runs") and "flat above batch 256" in rows["micro-batches"]
    assert rows["timing pass"].startswith("none")
    (tmp_path / "timing.json").write_text(json.dumps({"bursts": 5, "steps": 20, "settings": [
        {"device": "cpu", "env": {"device_name": "Intel Xeon", "hostname": "vm", "torch": "2.9.0",
                                  "git": {"commit": "0123456789abcdef"}}}]}))
    timing = dict(report.run_records(tmp_path))["timing pass"]
    assert "1 setting timed alone, 5 bursts of 20 steps" in timing and "host vm" in timing and "0123456789" in timing
    assert report.run_records(tmp_path / "nothing") == []


def test_chapter_scope_counts_runs_and_names_what_the_verdicts_do_not_carry():
    """First pages: partial (k of N runs), our choices from the config, a setting where no run trained
    and one whose trained runs overfit by more than GAP_NOTED; a small gap is not named."""
    cfg = {"studies": {"s": {"grid": {"batch_size": [1, 64, 128]}, "seeds": [0, 1],
                             "our_choices": {"optimizer": "SGD (unstated)"}}}}
    runs = pd.DataFrame({
        "study": ["s"] * 5, "status": ["ok"] * 5,
        "setting": ["batch_size=1", "batch_size=1", "batch_size=64", "batch_size=64", "batch_size=128"],
        "outcome": ["failed", "failed", "trained", "trained", "trained"],
        "final_train_acc": [0.1, 0.1, 0.90, 0.92, 0.95], "final_test_acc": [0.1, 0.1, 0.67, 0.69, 0.93]})
    hw = {"studies": [{"id": "s"}]}
    scope = report.chapter_scope(cfg, hw, runs)
    assert scope["state"] == "partial (5 of 6 runs)"
    assert scope["choices"] == ["s, optimizer: SGD (unstated)"]
    assert scope["seen"] == ["s batch_size=1: no run trained (2 failed)",
                             "s batch_size=64: training accuracy 91 % vs test 68 % (mean of 2 trained runs)"]
    assert report.chapter_scope(cfg, hw, runs.iloc[0:0])["state"] == "not run (0 of 6 runs)"
    six = pd.concat([runs, runs.iloc[[4]]], ignore_index=True)
    assert report.chapter_scope(cfg, hw, six)["state"] == "complete (6 of 6 runs)"


def test_methods_describe_the_gpu_path_only_if_a_run_used_a_gpu():
    """A report of CPU runs says the GPU path was not used; one with a CUDA run describes it."""
    base = {"run_label": "", "date": "today", "provenance": [("a", "b")] * 3, "homeworks": [], "claims": [],
            "verdict_counts": {"supported": 0, "contradicted": 0, "inconclusive": 0, "not run yet": 0},
            "progress": {"show": False}, "findings": [], "choices": [], "data_notes": []}
    cpu = report.render_html({**base, "any_gpu": False})
    gpu = report.render_html({**base, "any_gpu": True})
    assert "ran on a CPU" in cpu and "CUDA stream," not in cpu
    assert "on a CUDA GPU it trains them together" in gpu and "ran on a CPU" not in gpu


def test_a_panel_of_diverged_runs_only_takes_the_other_panels_range(tmp_path):
    """The smoke run's no-BN MLP at lr 0.7 diverged alone in its panel (loss 1e29): that panel takes the
    range of the other loss panels, and its × sits on the edge, labelled."""
    import yaml
    from matplotlib import pyplot as plt
    from batchwise.report import figures

    golden = REPO / "tests" / "golden" / "smoke"
    study = yaml.safe_load((golden / "config.yaml").read_text())["studies"]["s2_bn_lr_mlp"]
    index = next(i for i, f in enumerate(study["figures"]) if f["kind"] == "loss_iterations")
    folder = golden / "results" / "s2_bn_lr_mlp"
    fig = figures.draw_figure(study, index, runs=folder / "runs.csv", history=folder / "history.csv",
                              iterations=folder / "iterations.csv")
    try:
        alone = next(a for a in fig.axes if a.get_title() == "lr=0.7, bn=false")
        others = [a for a in fig.axes if a is not alone]
        assert alone.get_ylim()[1] == max(a.get_ylim()[1] for a in others) < 100
        assert [t.get_text() for t in alone.texts] == ["diverged"]
    finally:
        plt.close(fig)


def test_a_setting_with_fewer_seeds_run_than_the_study_has_says_how_many():
    first = pd.Series({"n_trained": 1, "n_runs": 1, "n_failed": 0, "n_diverged": 0})
    assert report.outcome_text(first, seeds=3) == "1 of 1 trained (1 of 3 seeds run)"
    assert report.outcome_text(first.copy().replace({1: 3}), seeds=3) == "3 of 3 trained"
    failed = pd.Series({"n_trained": 0, "n_runs": 2, "n_failed": 2, "n_diverged": 0})
    assert report.outcome_text(failed, seeds=5) == "0 of 2 trained (2 failed, 2 of 5 seeds run)"


def test_a_group_that_never_reached_the_target_reads_never_not_inf():
    never = {"label": "batch 16", "mean": float("inf"), "std": float("nan"), "n": 3, "n_runs": 3, "n_trained": 0,
             "n_reached": 0, "basis": "all"}
    assert report._group_text(never, "epochs_to_target") == "batch 16: never reached (0 of 3 runs trained)"
    some = {**never, "n_reached": 2, "n_trained": 2}
    assert report._group_text(some, "time_to_target_s") == "batch 16: reached in 2 of 3 runs only (2 of 3 runs trained)"
