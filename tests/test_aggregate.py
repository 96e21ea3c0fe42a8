"""The outcome rule and the tables built on it, on hand-written metrics files with hand-computed answers."""
import json
import math

import pandas as pd
import pytest

from batchwise.results import aggregate
from batchwise.report import figures, document as report
from batchwise import provenance


def write_run(folder, setting, seed, *, acc=None, time_s=None, diverged=False, lr=0.1):
    """A metrics.json as the engine writes it: a diverged run has no final numbers or times."""
    cell = folder / f"{setting}_seed={seed}"
    cell.mkdir(parents=True)
    m = {"study": "st", "setting": setting, "cell": cell.name, "seed": seed,
         "spec": {"params": {"lr": lr, "batch_size": 64}}, "status": "diverged" if diverged else "ok",
         "diverged": diverged, "diverged_epoch": 1 if diverged else None,
         "final_test_acc": None if diverged else acc, "final_train_acc": None if diverged else acc + 0.01,
         "final_test_loss": None if diverged else 0.5, "train_time_s": None if diverged else time_s,
         "time_until_stop_s": 0.7 if diverged else time_s, "steps_per_epoch": 938, "env": {}}
    (cell / "metrics.json").write_text(json.dumps(m))
    (cell / "history.csv").write_text("epoch,test_acc\n1,nan\n" if diverged else f"epoch,test_acc\n1,{acc}\n")
    return cell / "metrics.json"


@pytest.fixture
def tables(tmp_path):
    """lr=0.1: 2 trained + 1 diverged; lr=0.5: 1 trained + 1 failed + 1 diverged;
    lr=0.9: 2 failed; lr=2: all diverged."""
    files = [
        write_run(tmp_path, "lr=0.1", 0, acc=0.90, time_s=10.0),
        write_run(tmp_path, "lr=0.1", 1, acc=0.80, time_s=12.0),
        write_run(tmp_path, "lr=0.1", 2, diverged=True),
        write_run(tmp_path, "lr=0.5", 0, acc=0.96, time_s=11.0, lr=0.5),
        write_run(tmp_path, "lr=0.5", 1, acc=0.1135, time_s=11.0, lr=0.5),
        write_run(tmp_path, "lr=0.5", 2, diverged=True, lr=0.5),
        write_run(tmp_path, "lr=0.9", 0, acc=0.098, time_s=9.0, lr=0.9),
        write_run(tmp_path, "lr=0.9", 1, acc=0.1135, time_s=13.0, lr=0.9),
        write_run(tmp_path, "lr=2", 0, diverged=True, lr=2),
    ]
    runs = aggregate.runs_table(files, ["lr"], failure_margin=0.02)
    return runs, aggregate.summary_table(runs, ["lr"])


def pick(summary, setting, metric):
    return summary[(summary["setting"] == setting) & (summary["metric"] == metric)].iloc[0]


def test_outcome_of_each_run(tables):
    runs, _ = tables
    assert runs.set_index("cell")["outcome"].to_dict() == {
        "lr=0.1_seed=0": "trained", "lr=0.1_seed=1": "trained", "lr=0.1_seed=2": "diverged",
        "lr=0.5_seed=0": "trained", "lr=0.5_seed=1": "failed", "lr=0.5_seed=2": "diverged",
        "lr=0.9_seed=0": "failed", "lr=0.9_seed=1": "failed", "lr=2_seed=0": "diverged"}


def test_boundary_of_failure_is_chance_plus_margin():
    ok = {"status": "ok", "diverged": False}
    assert aggregate.outcome({**ok, "final_test_acc": 0.1199}, 0.02) == "failed"
    assert aggregate.outcome({**ok, "final_test_acc": 0.12}, 0.02) == "trained"
    assert aggregate.outcome({**ok, "final_test_acc": 0.1135}, 0.0) == "trained"
    assert aggregate.outcome({"status": "diverged", "diverged": True, "final_test_acc": None}, 0.02) == "diverged"
    assert aggregate.outcome({"status": "no-data"}, 0.02) == "no-data"


def test_diverged_runs_enter_no_mean_and_are_counted(tables):
    _, summary = tables
    acc, time_s = pick(summary, "lr=0.1", "final_test_acc"), pick(summary, "lr=0.1", "train_time_s")
    assert (acc["mean"], acc["n"], acc["basis"]) == (pytest.approx(0.85), 2, "trained")
    assert acc["std"] == pytest.approx(math.sqrt(0.005))  # (0.05² + 0.05²) / (2 - 1)
    assert (time_s["mean"], time_s["n"]) == (pytest.approx(11.0), 2)  # the diverged run's 0.7 s is not in it
    assert (acc["n_runs"], acc["n_trained"], acc["n_failed"], acc["n_diverged"]) == (3, 2, 0, 1)


def test_failed_runs_leave_the_mean_when_some_trained(tables):
    _, summary = tables
    acc = pick(summary, "lr=0.5", "final_test_acc")
    assert (acc["mean"], acc["n"], acc["basis"]) == (pytest.approx(0.96), 1, "trained")
    assert (acc["n_trained"], acc["n_failed"], acc["n_diverged"]) == (1, 1, 1)


def test_all_failed_setting_is_the_mean_of_its_failed_runs(tables):
    _, summary = tables
    acc = pick(summary, "lr=0.9", "final_test_acc")
    assert (acc["mean"], acc["n"], acc["basis"]) == (pytest.approx(0.10575), 2, "failed")


def test_all_diverged_setting_has_no_mean(tables):
    _, summary = tables
    acc = pick(summary, "lr=2", "final_test_acc")
    assert pd.isna(acc["mean"]) and acc["n"] == 0 and acc["basis"] == "none" and acc["n_diverged"] == 1


def test_generalisation_gap_is_train_minus_test(tables):
    runs, _ = tables
    trained = runs[runs["outcome"] != "diverged"]
    assert trained["generalisation_gap"].tolist() == pytest.approx([0.01] * len(trained))
    assert runs[runs["outcome"] == "diverged"]["generalisation_gap"].isna().all()


def test_results_table_says_k_of_n_trained(tables):
    _, summary = tables
    study = {"grid": {"lr": [0.1, 0.5, 0.9, 2]}, "params": {}}
    rows = {r["cells"][0]: r for r in report.results_table(study, summary)["rows"]}
    assert rows["0.1"]["cells"][-1] == "2 of 3 trained (1 diverged)"
    assert rows["0.5"]["cells"][-1] == "1 of 3 trained (1 failed, 1 diverged)"
    assert rows["0.9"]["cells"][-1] == "0 of 2 trained (2 failed)"
    assert rows["0.1"]["cells"][1] == "938"  # steps per epoch
    assert rows["0.1"]["cells"][2] == "85.00 ± 7.07"  # final test accuracy over the two trained runs
    assert rows["2"]["cells"][2] == "–"


def test_curves_keep_diverged_runs_apart(tables, tmp_path):
    runs, _ = tables
    curves = aggregate.long_curves(sorted(p for p in tmp_path.iterdir() if p.is_dir()), "history.csv", runs)
    assert curves.groupby("outcome")["seed"].count().to_dict() == {"diverged": 3, "failed": 3, "trained": 3}
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    group = curves[curves["setting"] == "lr=0.1"].assign(epoch=1)
    figures._setting(ax, group, "epoch", "test_acc", "C0", "lr=0.1")
    mean_line = ax.get_lines()[0]
    assert mean_line.get_ydata().tolist() == pytest.approx([0.85])  # trained runs only, not the NaN one
    plt.close(fig)


def test_curves_of_settings_sharing_a_colour_differ_by_marker():
    """Two grid keys, coloured by one: the other key's value picks the marker, the same one in every
    colour (init=zeros looks the same at batch 64 and 500); a key with one setting per colour has none."""
    import matplotlib.pyplot as plt

    study = {"grid": {"batch_size": [64, 500], "init": ["default", "zeros"]}}
    rows = [{"setting": f"batch_size={b}_init={i}", "batch_size": b, "init": i, "seed": 0, "epoch": e,
             "outcome": "trained", "test_acc": 0.9} for b in (500, 64) for i in ("zeros", "default") for e in (1, 2)]
    fig = figures._curves(study, {"metrics": ["test_acc"]}, pd.DataFrame(rows), "batch_size",
                          figures.colours([64, 500]))
    marker = {line.get_label(): line.get_marker() for line in fig.axes[0].get_lines()}
    assert marker == {"batch_size=64_init=default": "o", "batch_size=64_init=zeros": "s",
                      "batch_size=500_init=default": "o", "batch_size=500_init=zeros": "s"}
    plt.close(fig)
    one = {"grid": {"batch_size": [64, 500]}}
    fig = figures._curves(one, {"metrics": ["test_acc"]}, pd.DataFrame([r for r in rows if r["init"] == "zeros"]),
                          "batch_size", figures.colours([64, 500]))
    assert {line.get_marker() for line in fig.axes[0].get_lines()} == {"None"}
    plt.close(fig)


def test_time_axes_say_wall_time_where_no_run_has_the_timing_pass():
    """A sweep of times names them as the table does: wall time without the timing pass, compute time with it."""
    import matplotlib.pyplot as plt

    study = {"grid": {"batch_size": [16, 256]}}
    runs = pd.DataFrame([{"setting": f"batch_size={b}", "batch_size": b, "seed": s, "status": "ok", "outcome": "trained",
                          "mean_epoch_s": 5.0, "final_test_acc": 0.98, "time_basis": "wall"}
                         for b in (16, 256) for s in (0, 1)])
    spec = {"kind": "sweep", "x": "batch_size", "metrics": ["mean_epoch_s", "final_test_acc"]}
    for basis, label in (("wall", "wall time per epoch (s)"), ("solo", "compute time per epoch (s)")):
        fig = figures._sweep(study, spec, runs.assign(time_basis=basis), None, figures.colours([16, 256]))
        assert [ax.get_ylabel() for ax in fig.axes] == [label, "final test accuracy (%)"]
        # ticked at the grid's batch sizes in every panel, without minor labels
        assert [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes] == [["16", "256"]] * 2
        assert not any(t.get_text() for ax in fig.axes for t in ax.get_xticklabels(minor=True))
        plt.close(fig)


def test_runs_table_takes_solo_times_and_keeps_wall_times(tmp_path):
    path = write_run(tmp_path, "lr=0.1", 0, acc=0.9, time_s=10.0)
    m = json.loads(path.read_text())
    path.write_text(json.dumps({**m, "steps_run": 1876, "epochs_run": 2, "steps_per_epoch": 938, "images_per_epoch": 60000}))
    timing = tmp_path / "timing.json"
    record = {"setting": "lr=0.1", "step_s_bursts": [0.001, 0.0011, 0.0009], "remainder_s_bursts": [0.0005] * 3,
              "eval_test_s_bursts": [0.125] * 3, "eval_train_s_bursts": [0.125] * 3}
    timing.write_text(json.dumps({"bursts": 3, "settings": [record, {"setting": "lr=0.5", "error": "CUDA out of memory"}]}))
    row = aggregate.runs_table([path], ["lr"], timing=timing).iloc[0]
    assert row["time_basis"] == "solo" and row["wall_train_time_s"] == 10.0
    # 60000 images at batch 64: 937 full steps and a remainder of 32 an epoch; two epochs
    assert row["train_time_s"] == pytest.approx(1874 * 0.001 + 2 * 0.0005) and row["total_time_s"] == pytest.approx(2.375)
    assert row["train_time_s_se"] == pytest.approx(1874 * 0.0001 / math.sqrt(3)) and row["timing_bursts"] == 3
    assert row["mean_epoch_s"] == pytest.approx(0.9375)
    assert aggregate.runs_table([path], ["lr"]).iloc[0]["time_basis"] == "wall"  # no timing file


def test_runs_table_records_each_runs_device_type(tmp_path):
    files = [write_run(tmp_path, "lr=0.1", 0, acc=0.9, time_s=1.0), write_run(tmp_path, "lr=0.1", 1, acc=0.9, time_s=1.0),
             write_run(tmp_path, "lr=0.1", 2, acc=0.9, time_s=1.0)]
    for path, device in zip(files, ["cpu", "cuda:0", None]):
        m = json.loads(path.read_text())
        m["device"] = device
        path.write_text(json.dumps(m))
    runs = aggregate.runs_table(files, ["lr"], failure_margin=0.02)
    assert list(runs["device_type"]) == ["cpu", "cuda", "unknown"]
    assert provenance.device_types(runs) == {"cpu": 1, "cuda": 1, "unknown": 1}
