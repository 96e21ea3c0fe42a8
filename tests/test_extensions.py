"""The extension studies' analyses (half-failure learning rate, bend of steps to target, collapsed
models), their figures on small hand-made tables, and their chapters in the report."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from batchwise.analysis import extensions as ext
from batchwise.report import figures

MNIST_TEST_LABELS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # the MNIST test set per digit


def share_runs(counts: dict[tuple[bool, float], tuple[int, int]]) -> pd.DataFrame:
    """A runs table of a BN x lr study: (bn, lr) -> (trained, of n); the others alternate failed/diverged."""
    rows = []
    for (bn, lr), (trained, n) in counts.items():
        for seed in range(n):
            outcome = "trained" if seed < trained else ("failed" if seed % 2 else "diverged")
            rows.append({"study": "x", "setting": f"bn={str(bn).lower()}_lr={lr:g}", "seed": seed, "bn": bn,
                         "lr": lr, "outcome": outcome, "status": "ok" if outcome != "diverged" else "diverged",
                         "final_test_acc": {"trained": 0.97, "failed": 0.1135, "diverged": math.nan}[outcome]
                         - 0.001 * seed})
    return pd.DataFrame(rows)


LRS = [0.1, 0.2, 0.5, 1.0]
HAND = share_runs({**{(False, lr): (k, 5) for lr, k in zip(LRS, [5, 5, 3, 0])},
                   **{(True, lr): (5, 5) for lr in LRS}})


def test_half_failure_lr_on_a_hand_computed_table():
    (no_bn, without), (bn, with_bn) = ext.half_failures(HAND, "lr", "bn")
    assert (no_bn, bn) == (False, True)
    # shares 1, 1, 0.6, 0 -> falls below 1/2 between lr 0.5 (0.6) and 1 (0): a sixth of the way in log lr
    assert without.point == pytest.approx(0.5 * 2 ** (1 / 6), rel=1e-12)  # 0.5612...
    # Wilson bounds of 3/5 are 0.2307 and 0.8824: the pessimistic curve crosses between 0.2 and 0.5
    lo3, hi3 = ext.wilson_interval(3, 5)
    lo5, _ = ext.wilson_interval(5, 5)
    t = (lo5 - 0.5) / (lo5 - lo3)
    assert without.lo == pytest.approx(10 ** (math.log10(0.2) + t * math.log10(2.5)), rel=1e-9)
    _, hi0 = ext.wilson_interval(0, 5)
    t = (hi3 - 0.5) / (hi3 - hi0)
    assert without.hi == pytest.approx(10 ** (math.log10(0.5) + t * math.log10(2)), rel=1e-9)
    assert without.lo < without.point < without.hi
    # with BN every run trained: the crossing lies past the grid, and the interval's lower end too
    assert with_bn.point == with_bn.lo == math.inf and with_bn.text() == "> 1"
    assert with_bn.conservative() == (1.0, math.inf)
    assert without.text() == "0.56"


def test_crossing_below_the_grid_and_at_exactly_one_half():
    assert ext.first_crossing([0.1, 1.0], [0.4, 0.0]) == -math.inf
    assert ext.first_crossing([0.1, 1.0, 10.0], [1.0, 0.5, 0.0]) == pytest.approx(1.0)
    assert ext.first_crossing([0.1, 1.0], [1.0, 1.0]) == math.inf


def test_trained_share_counts_outcomes_and_wilson_bounds():
    share = ext.trained_share(HAND, "lr", "bn")
    row = share[(share["bn"] == False) & (share["lr"] == 0.5)].iloc[0]  # noqa: E712
    assert (row["n"], row["trained"], row["failed"] + row["diverged"]) == (5, 3, 2)
    assert (row["lo"], row["hi"]) == pytest.approx(ext.wilson_interval(3, 5))
    assert row["lo"] == pytest.approx(0.2307, abs=1e-4) and row["hi"] == pytest.approx(0.8824, abs=1e-4)


def test_bend_fit_recovers_the_critical_batch():
    batch = [16, 32, 64, 128, 256, 512, 1024]
    s_min, b_crit = ext.bend_fit(batch, [400 * (1 + 100 / b) for b in batch])
    assert (s_min, b_crit) == (pytest.approx(400), pytest.approx(100))
    assert ext.bend_fit(batch, [6400 / b for b in batch])[1] == pytest.approx(math.inf) or \
        ext.bend_fit(batch, [6400 / b for b in batch])[1] > 1e6  # perfect scaling: no bend in range
    assert math.isnan(ext.bend_fit([64], [10])[1])


def collapse_runs() -> pd.DataFrame:
    """Zero init collapses to "1" in 3 of 3 runs at batch 64 and 2 of 3 at batch 1000; default init never."""
    collapsed = [0] * 10
    collapsed[1] = 10000
    almost = [10] * 10
    almost[1] = 9910  # 99.1 % "1"
    healthy = [c + 3 for c in MNIST_TEST_LABELS]
    rows = []
    for init, batch, preds in (("zeros", 64, [collapsed, collapsed, almost]),
                               ("zeros", 1000, [collapsed, healthy, collapsed]),
                               ("default", 64, [healthy] * 3)):
        for seed, counts in enumerate(preds):
            top = max(range(10), key=counts.__getitem__)
            acc = 0.1135 if counts[top] / sum(counts) > 0.9 else 0.98
            rows.append({"study": "x1", "setting": f"init={init}_batch_size={batch}", "seed": seed, "init": init,
                         "batch_size": batch, "outcome": "failed" if acc < 0.12 else "trained",
                         "final_test_acc": acc, "top_pred_class": top, "top_pred_share": counts[top] / sum(counts),
                         "test_pred_counts": json.dumps(counts), "test_label_counts": json.dumps(MNIST_TEST_LABELS)})
    return pd.DataFrame(rows)


def test_collapse_detection_names_the_class_and_its_share_of_the_test_set():
    found = ext.collapsed_settings(collapse_runs(), ["init", "batch_size"])
    assert [c["setting"] for c in found] == ["init=zeros_batch_size=64", "init=zeros_batch_size=1000"]
    first, second = found
    assert (first["collapsed"], first["n"], first["class"]) == (3, 3, 1)
    assert first["label_count"] == 1135 and first["test_size"] == 10000
    assert first["label_share"] == pytest.approx(0.1135)
    assert first["pred_share"] == pytest.approx((1 + 1 + 0.991) / 3)
    assert (second["collapsed"], second["n"]) == (2, 3)
    rows = ext.collapse_rows(found, "mnist")
    assert rows[0] == ["init=zeros, batch_size=64", "3 of 3", "1", "3", "99.7\u00a0%", "11.35\u00a0%",
                       "1,135 of 10,000 = 11.35\u00a0%"]
    text = ext.collapse_paragraph(found, "mnist")
    assert "1,135 of the 10,000 test images" in text and "11.35 %" in text and "symmetry" in text.lower()
    assert ext.class_name("cifar10", 1) == "1 (automobile)"


def test_runs_collapsing_to_different_classes_get_a_row_each():
    """Batch 1: the three runs answer 9, 6 and 1; no row may speak for another's class or accuracy."""
    rows = []
    for seed, (top, acc) in enumerate(((9, 0.1009), (6, 0.0958), (1, 0.1135))):
        rows.append({"study": "s1", "setting": "batch_size=1", "seed": seed, "batch_size": 1, "outcome": "failed",
                     "final_test_acc": acc, "top_pred_class": top, "top_pred_share": 1.0,
                     "test_label_counts": json.dumps(MNIST_TEST_LABELS)})
    found = ext.collapsed_settings(pd.DataFrame(rows), ["batch_size"])
    assert [(k["class"], k["same_class"], k["test_acc"]) for k in found[0]["classes"]] == [
        (1, 1, 0.1135), (6, 1, 0.0958), (9, 1, 0.1009)]
    assert [[cell.replace("\u00a0", " ") for cell in row] for row in ext.collapse_rows(found, "mnist")] == [
        ["batch_size=1", "3 of 3", "1", "1", "100.0 %", "11.35 %", "1,135 of 10,000 = 11.35 %"],
        ["", "", "6", "1", "100.0 %", "9.58 %", "958 of 10,000 = 9.58 %"],
        ["", "", "9", "1", "100.0 %", "10.09 %", "1,009 of 10,000 = 10.09 %"]]


def test_no_collapse_no_paragraph():
    healthy = collapse_runs().query("init == 'default'")
    assert ext.collapsed_settings(healthy, ["init", "batch_size"]) == []
    assert ext.collapse_paragraph([], "mnist") == ""


def scaling_runs(seeds: int = 2) -> pd.DataFrame:
    """LeNet-like steps to target: linear scaling bends at B_crit 200, the fixed rate never reaches the target
    at the largest batch in one of its runs."""
    rows = []
    for rule in ("none", "linear"):
        for batch in (16, 64, 256, 1024):
            for seed in range(seeds):
                steps = 300 * (1 + 200 / batch) * (1.3 if rule == "none" and batch > 64 else 1) * (1 + 0.02 * seed)
                reached = not (rule == "none" and batch == 1024 and seed == 1)
                rows.append({"study": "x3", "setting": f"lr_scaling={rule}_batch_size={batch}", "seed": seed,
                             "lr_scaling": rule, "batch_size": batch, "outcome": "trained", "status": "ok",
                             "final_test_acc": 0.985, "steps_to_target": steps if reached else math.nan,
                             "examples_to_target": steps * batch if reached else math.nan,
                             "noise_scale": 150.0 + 10 * seed + batch / 100})
    return pd.DataFrame(rows)


def test_envelope_and_noise_scale():
    runs = scaling_runs()
    best = ext.envelope(runs, "batch_size", "lr_scaling", "steps_to_target")
    assert list(best["batch_size"]) == [16, 64, 256, 1024]
    assert list(best["lr_scaling"]) == ["none", "none", "linear", "linear"]  # 'none' at 1024: 1 of 2 reached
    s_min, b_crit = ext.bend_fit(list(best["batch_size"]), list(best["mean"]))
    assert b_crit == pytest.approx(200, rel=0.05)
    noise = ext.noise_scale(runs)
    assert noise["n"] == 16 and noise["q25"] <= noise["median"] <= noise["q75"]


@pytest.mark.parametrize("kind, study, runs", [
    ("trained_share", {"dataset": "mnist", "grid": {"bn": [False, True], "lr": LRS},
                       "figures": [{"kind": "trained_share", "x": "lr", "hue": "bn"}]}, HAND),
    ("to_target", {"dataset": "mnist", "grid": {"lr_scaling": ["none", "linear"], "batch_size": [16, 64, 256, 1024]},
                   "figures": [{"kind": "to_target", "x": "batch_size", "hue": "lr_scaling"}]}, scaling_runs()),
    ("predictions", {"dataset": "mnist", "grid": {"init": ["zeros", "default"], "batch_size": [64, 1000]},
                     "figures": [{"kind": "predictions", "hue": "init", "panel": "batch_size"}]}, collapse_runs()),
])
def test_new_figures_render(kind, study, runs, tmp_path):
    runs = runs.assign(status=runs.get("status", "ok"))
    runs.to_csv(tmp_path / "runs.csv", index=False)
    for name in ("history.csv", "iterations.csv"):
        (tmp_path / name).write_text("setting,seed,outcome\n")
    out = tmp_path / f"{kind}.svg"
    figures.plot_figure(study, 0, runs=tmp_path / "runs.csv", history=tmp_path / "history.csv",
                        iterations=tmp_path / "iterations.csv", out=out)
    assert out.stat().st_size > 5000
    svg = out.read_text()
    if kind == "to_target":
        assert "B_simple" in svg and "perfect scaling" in svg


def test_to_target_figure_renders_when_no_run_reached(tmp_path):
    runs = scaling_runs().assign(steps_to_target=math.nan, examples_to_target=math.nan, noise_scale=math.nan)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    study = {"dataset": "mnist", "grid": {"lr_scaling": ["none", "linear"], "batch_size": [16, 64, 256, 1024]},
             "figures": [{"kind": "to_target", "x": "batch_size", "hue": "lr_scaling"}]}
    figures.plot_figure(study, 0, runs=tmp_path / "runs.csv", history=tmp_path / "runs.csv",
                        iterations=tmp_path / "runs.csv", out=tmp_path / "f.svg")
    assert (tmp_path / "f.svg").exists()


# --- the chapters in the report ------------------------------------------------------------------

def _write_study(folder, runs: pd.DataFrame, grid_keys: list[str]) -> None:
    """runs.csv and summary.csv of one study, as aggregate writes them, from a hand-made runs table."""
    from batchwise.results.aggregate import summary_table
    from batchwise.config import RUN_METRICS

    runs = runs.copy()
    runs["cell"] = runs["setting"] + "_seed=" + runs["seed"].astype(str)
    for column in (*RUN_METRICS, "time_until_stop_s", "device", "cuda_graphs", "cuda_graphs_note"):
        if column not in runs:
            runs[column] = 1.0 if column in ("time_until_stop_s", "train_time_s") else math.nan
    runs["status"] = runs.get("status", "ok")
    folder.mkdir(parents=True)
    runs.to_csv(folder / "runs.csv", index=False)
    summary_table(runs, grid_keys).to_csv(folder / "summary.csv", index=False)


def test_beyond_chapters_follow_the_homework_chapters(tmp_path):
    from batchwise.report import document as report
    from batchwise.analysis import zero_init
    from batchwise.analysis.registry import write_study_analysis

    config = {
        "run_label": "", "verdict": {"level": 0.95, "resamples": 1000, "min_runs": 3, "failure_margin": 0.02},
        "homeworks": {"000": {"title": "Init"}, "002": {"title": "BN x lr", "beyond": "The largest stable lr"}},
        "studies": {
            "s1": {"homework": "000", "title": "Homework study", "dataset": "mnist", "model": "mlp", "params": {},
                   "grid": {"init": ["zeros", "default"], "batch_size": [64, 1000]}, "seeds": [0, 1, 2], "figures": []},
            "x2": {"extends": "002", "title": "BN and the half-failure lr", "dataset": "mnist", "model": "mlp", "params": {},
                   "grid": {"bn": [False, True], "lr": LRS}, "seeds": [0, 1, 2, 3, 4],
                   "figures": [{"kind": "trained_share", "x": "lr", "hue": "bn"}]},
            "x1": {"extends": "000", "title": "Zero init collapses", "dataset": "mnist", "model": "mlp", "params": {},
                   "grid": {"init": ["zeros", "default"], "batch_size": [64, 1000]}, "seeds": [0, 1, 2],
                   "figures": [{"kind": "predictions", "hue": "init", "panel": "batch_size"}]},
        },
    }
    _write_study(tmp_path / "results" / "s1", collapse_runs().assign(study="s1"), ["init", "batch_size"])
    _write_study(tmp_path / "results" / "x1", collapse_runs(), ["init", "batch_size"])
    _write_study(tmp_path / "results" / "x2", HAND.assign(study="x2"), ["bn", "lr"])
    claims = tmp_path / "claims.yaml"
    claims.write_text(
        "claims:\n"
        "  - {id: hw, homework: '000', quote: q, english: e, study: s1,\n"
        "     rule: {kind: near, metric: final_test_acc, select: {init: zeros, batch_size: 64}, target: 0.1135, tolerance: 0.02}}\n"
        "  - {id: lit, homework: '002', quote: 'Batch Normalization enables higher learning rates',\n"
        "     source: 'Ioffe & Szegedy 2015', english: e, study: x2,\n"
        "     rule: {kind: compare, metric: final_test_acc, a: {bn: true, lr: 0.5}, b: {bn: false, lr: 0.5}, expect: greater}}\n")
    tables = tmp_path / "homework.yaml"
    tables.write_text("tables:\n  - {id: t, homework: '000', title: T, study: s1, key: [init, batch_size],\n"
                      "     columns: [{metric: final_test_acc, label: acc}], rows: [{init: zeros, batch_size: 64, final_test_acc: 11}]}\n")
    for name, study in config["studies"].items():   # what rules measure_zero_init and analyse_study do
        folder = tmp_path / "results" / name
        measured = folder / "zero_init.json" if zero_init.needed(study) else None
        if measured:
            zero_init.write(study, measured)
        write_study_analysis(study, folder / "runs.csv", folder / "analysis.json", 0.95, measured)
    assert [zero_init.needed(s) for s in config["studies"].values()] == [False, False, True]
    context = report.build_context(config, tmp_path / "results", tmp_path / "figures", claims=claims, homework=tables)
    assert [(c["id"], c["beyond"]) for c in context["homeworks"]] == [
        ("000", False), ("beyond-000", True), ("beyond-002", True)]
    assert [c["id"] for c in context["claims"]] == ["hw"]
    assert [c["id"] for c in context["literature_claims"]] == ["lit"]
    page = report.render_html(context)
    assert page.index("<h2>Homework 000: Init</h2>") < page.index("<h2>Beyond homework 000</h2>") \
        < page.index("<h2>Beyond homework 002: The largest stable lr</h2>")
    assert "Half-failure lr" in page and "<td>0.56</td>" in page and "<td>&gt; 1</td>" in page
    assert "Ioffe &amp; Szegedy 2015" in page
    # collapse: detected in every study where it happens, explained where the prediction figure is asked for
    assert page.count("Collapsed models") == 2 and page.count("<b>Why.</b>") == 1
    # the mechanism measured on the chapter's own network (an MLP here) by its own job, quoted by the report
    assert "only the output bias (" in page and "gradient of exactly 0" in page and "dead saddle" in page
    assert "1,135 of 10,000 = 11.35\u00a0%" in page


# --- the verdicts behind the literature claims ------------------------------------------------------

def test_half_failure_verdict_bn_above_no_bn():
    bn, no_bn = HAND[HAND["bn"]], HAND[~HAND["bn"]]
    out = ext.half_failure_verdict(bn, no_bn, ("BN", "no BN"), "lr", "greater", 0.95)
    # BN's interval starts past the grid (>= 1); no BN's ends at 0.5 x 2^(log2 of the upper crossing) < 1
    assert out["verdict"] == "supported", out
    assert "half-failure lr > 1" in out["evidence"] and "0.56" in out["evidence"]
    assert ext.half_failure_verdict(bn, no_bn, ("BN", "no BN"), "lr", "less", 0.95)["verdict"] == "contradicted"
    # the same counts on both sides: the intervals overlap
    assert ext.half_failure_verdict(no_bn, no_bn, ("a", "b"), "lr", "greater", 0.95)["verdict"] == "inconclusive"


def test_half_failure_verdict_with_few_runs_is_inconclusive():
    one = share_runs({**{(False, lr): (k, 1) for lr, k in zip(LRS, [1, 1, 0, 0])},
                      **{(True, lr): (1, 1) for lr in LRS}})
    out = ext.half_failure_verdict(one[one["bn"]], one[~one["bn"]], ("BN", "no BN"), "lr", "greater", 0.95)
    assert out["verdict"] == "inconclusive"  # one run per rate: Wilson [0.21, 1] and [0, 0.79]


def test_collapse_verdict_reliably_or_in_k_of_n():
    runs = collapse_runs()
    zeros = runs[runs["init"] == "zeros"].assign(top_class_test_share=0.1135)
    out = ext.collapse_verdict(zeros, "zeros", 0.95)
    assert out["verdict"] == "inconclusive"  # 5 of 6: exact [0.36, 0.996] holds one half
    assert out["evidence"].startswith("zeros: 5 of 6 runs collapsed (95% exact interval 36–100 %)")
    assert (out["lo"], out["hi"]) == pytest.approx((sps.beta.ppf(0.025, 5, 2), sps.beta.ppf(0.975, 6, 1)))
    assert "in 5 of 6 runs" in out["reason"]
    six = pd.concat([zeros[zeros["batch_size"] == 64]] * 2)  # 6 of 6: exact [0.025^(1/6) = 0.54, 1]
    out = ext.collapse_verdict(six, "zeros", 0.95)
    assert out["verdict"] == "supported" and "reliably" in out["reason"]
    assert "class “1” for 99.7 % of the test images and score 11.35 %" in out["evidence"]
    assert "the class's share of the test set being 11.35 %" in out["evidence"]
    healthy = ext.collapse_verdict(runs[runs["init"] == "default"], "default", 0.95)
    assert healthy["verdict"] == "inconclusive" and "0 of 3" in healthy["evidence"]  # [0, 0.71]: n too small


def bend_reference(runs: pd.DataFrame, level: float = 0.95) -> tuple[float, float, float]:
    """(ratio, lo, hi) of B_crit / B_simple by hand: numpy's weighted polyfit of S against 1/B (weights 1/S),
    its derivative by central differences, the median's variance (pi/2) s^2 / n on log values, and the
    Welch-Satterthwaite t quantile."""
    bs, cells = sorted(set(runs["batch_size"])), []
    for b in bs:
        options = [runs[(runs["batch_size"] == b) & (runs["lr_scaling"] == r)]["steps_to_target"].to_numpy(float)
                   for r in ("none", "linear")]
        cells.append(min((s for s in options if np.isfinite(s).all()), key=np.mean))
    x = 1 / np.array(bs, dtype=float)

    def log_bc(means):
        slope, icpt = np.polyfit(x, means, 1, w=1 / np.asarray(means))
        return math.log(slope / icpt)

    means = [c.mean() for c in cells]
    terms = []
    for i, c in enumerate(cells):
        h = 1e-4 * means[i]
        up, down = list(means), list(means)
        up[i] += h
        down[i] -= h
        terms.append((((log_bc(up) - log_bc(down)) / (2 * h)) ** 2 * c.var(ddof=1) / len(c), len(c) - 1))
    logs = np.log(runs["noise_scale"].to_numpy(float))
    terms.append((math.pi / 2 * logs.var(ddof=1) / len(logs), len(logs) - 1))
    total = sum(v for v, _ in terms)
    df = total ** 2 / sum(v ** 2 / d for v, d in terms)
    from scipy.stats import t as t_dist
    est = log_bc(means) - math.log(np.median(runs["noise_scale"]))
    half = t_dist.ppf((1 + level) / 2, df) * math.sqrt(total)
    return math.exp(est), math.exp(est - half), math.exp(est + half)


def test_critical_batch_verdict_within_a_factor():
    runs = scaling_runs(seeds=3)  # bend at 200, noise scale ~150-175: ratio 1.28
    out = ext.critical_batch_verdict(runs, "batch_size", "lr_scaling", 4.0, 0.95)
    ratio, lo, hi = bend_reference(runs)
    assert (out["diff"], out["lo"], out["hi"]) == pytest.approx((ratio, lo, hi), rel=1e-4)
    assert out["mean_a"] == pytest.approx(200) and out["diff"] == pytest.approx(out["mean_a"] / out["mean_b"])
    assert out["verdict"] == "supported" and 1 / 4 <= lo and hi <= 4   # [1.20, 1.36] by hand
    assert ext.critical_batch_verdict(runs, "batch_size", "lr_scaling", 1.3, 0.95)["verdict"] == "inconclusive"
    far = runs.assign(noise_scale=runs["noise_scale"] * 100)
    out = ext.critical_batch_verdict(far, "batch_size", "lr_scaling", 4.0, 0.95)
    assert out["verdict"] == "contradicted" and out["hi"] == pytest.approx(hi / 100, rel=1e-4)


def test_new_rule_kinds_through_the_claims_machinery():
    from batchwise.analysis.claims import evaluate_claims, load_claims
    from conftest import REPO

    def claim(cid, study, rule):
        return {"id": cid, "homework": "002", "quote": "q", "english": "e", "study": study, "rule": rule}

    runs = pd.concat([HAND.assign(study="x2"), collapse_runs().assign(study="x1", status="ok"),
                      scaling_runs(seeds=3).assign(study="x3")], ignore_index=True)
    results = evaluate_claims([
        claim("hf", "x2", {"kind": "half_failure", "over": "lr", "a": {"bn": True}, "b": {"bn": False},
                           "expect": "greater"}),
        claim("co", "x1", {"kind": "collapse", "select": {"init": "zeros", "batch_size": 64}}),
        claim("cb", "x3", {"kind": "critical_batch", "over": "batch_size", "by": "lr_scaling", "factor": 4}),
    ], runs, min_runs=3)
    assert [r["verdict"] for r in results] == ["supported", "inconclusive", "supported"]
    # half-failure: BN past the grid (> 1), no BN 0.56 with its interval, from the Wilson bounds
    # no BN: 3 of 5 trained at lr 0.5, 0 of 5 at 1; one half is crossed 1/6 of the way in log lr
    assert results[0]["mean_a"] == math.inf and results[0]["mean_b"] == pytest.approx(0.5 * 2 ** (1 / 6))
    assert "3 of 3 runs collapsed" in results[1]["evidence"]  # exact [0.29, 1]: three runs are too few
    assert (results[1]["lo"], results[1]["hi"]) == pytest.approx((0.025 ** (1 / 3), 1.0))
    ratio, lo, hi = bend_reference(scaling_runs(seeds=3))
    assert (results[2]["diff"], results[2]["lo"], results[2]["hi"]) == pytest.approx((ratio, lo, hi), rel=1e-4)
    shipped = [c for c in load_claims(REPO / "config" / "claims.yaml") if "source" in c]
    assert {c["rule"]["kind"] for c in shipped} >= {"half_failure", "collapse", "critical_batch"}


def test_critical_batch_verdict_needs_runs_and_a_bend_inside_the_sweep():
    runs = scaling_runs(seeds=3)
    # min_runs counts the measured runs of the settings the fit uses: two of three diverged at batch 256
    # leaves linear's cell out (not every run reached), and 'none' then fits it with 3 runs: still 3
    two = scaling_runs(seeds=2)
    out = ext.critical_batch_verdict(two, "batch_size", "lr_scaling", 4.0, 0.95)
    assert out["verdict"] == "inconclusive" and "has 2 measured runs, fewer than the 3" in out["reason"]
    assert ext.critical_batch_verdict(two, "batch_size", "lr_scaling", 4.0, 0.95, min_runs=2)["verdict"] == "supported"
    gone = runs.copy()
    gone.loc[(gone["lr_scaling"] == "none") & (gone["batch_size"] == 16), "outcome"] = "diverged"
    out = ext.critical_batch_verdict(gone, "batch_size", "lr_scaling", 4.0, 0.95)   # diverged runs are not counted
    assert out["verdict"] == "supported"
    steep = runs.assign(steps_to_target=runs["steps_to_target"] * 0 + 5000 / runs["batch_size"] + 0.5)
    out = ext.critical_batch_verdict(steep, "batch_size", "lr_scaling", 4.0, 0.95)
    assert out["verdict"] == "inconclusive" and "outside" in out["reason"]
