"""Tests of the claim rules, the real claims/homework files and side_by_side."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
try:
    import batchwise.claims  # noqa: F401
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(ROOT / "src"))

from batchwise.claims import (  # noqa: E402
    claim_selectors, evaluate_claims, load_claims, load_homework_tables, side_by_side,
    verdict_rule_text,
)

FAST = dict(level=0.95, resamples=2000, min_runs=3, seed=0)


def make_runs(study: str, groups: dict[tuple, list], keys: tuple[str, ...],
              metric: str = "final_test_acc", **extra) -> pd.DataFrame:
    """One row per value: groups maps a tuple of key values to that setting's metric values."""
    rows = []
    for values, metrics in groups.items():
        params = dict(zip(keys, values))
        setting = "_".join(f"{k}={str(v).lower()}" for k, v in params.items())
        for seed, m in enumerate(metrics):
            rows.append(dict(study=study, setting=setting, cell=f"{setting}_seed={seed}",
                             seed=seed, **params, status="ok", diverged=False,
                             **{metric: m}, **extra))
    return pd.DataFrame(rows)


def claim(rule: dict, study: str = "st", cid: str = "c1") -> dict:
    return dict(id=cid, homework="000", quote="q", english="e", study=study, rule=rule)


def run_one(c: dict, runs: pd.DataFrame, **kw) -> dict:
    return evaluate_claims([c], runs, **{**FAST, **kw})[0]


BATCH = make_runs("st", {(64,): [0.990, 0.991, 0.989], (1000,): [0.980, 0.981, 0.979],
                         (500,): [0.985, 0.975, 0.995]}, ("batch_size",))


# ------------------------------------------------------------------ compare

def test_compare_supported():
    r = run_one(claim(dict(kind="compare", metric="final_test_acc", a={"batch_size": 1000},
                           b={"batch_size": 64}, expect="less")), BATCH)
    assert r["verdict"] == "supported"
    assert r["mean_a"] == pytest.approx(0.98) and r["mean_b"] == pytest.approx(0.99)
    assert r["std_a"] == pytest.approx(0.001) and r["n_a"] == 3
    assert r["diff"] == pytest.approx(-0.01) and r["lo"] < r["hi"] < 0
    assert "98.0 ± 0.1 % (n=3)" in r["evidence"] and "pp" in r["evidence"]


def test_compare_contradicted():
    r = run_one(claim(dict(kind="compare", metric="final_test_acc", a={"batch_size": 1000},
                           b={"batch_size": 64}, expect="greater")), BATCH)
    assert r["verdict"] == "contradicted"


def test_compare_inconclusive_when_overlapping():
    r = run_one(claim(dict(kind="compare", metric="final_test_acc", a={"batch_size": 500},
                           b={"batch_size": 64}, expect="less")), BATCH)
    assert r["verdict"] == "inconclusive"
    assert r["lo"] <= 0 <= r["hi"]


def test_compare_inconclusive_by_min_runs():
    runs = BATCH[~((BATCH.batch_size == 1000) & (BATCH.seed == 2))]
    r = run_one(claim(dict(kind="compare", metric="final_test_acc", a={"batch_size": 1000},
                           b={"batch_size": 64}, expect="less")), runs)
    assert r["verdict"] == "inconclusive"
    assert "fewer than the 3 required" in r["reason"] and r["n_a"] == 2


def test_compare_factor_and_cross_study():
    slow = make_runs("one", {(1,): [90.0, 92.0, 91.0]}, ("batch_size",), metric="mean_epoch_s")
    fast = make_runs("st", {(64,): [13.0, 12.5, 13.2]}, ("batch_size",), metric="mean_epoch_s")
    rule = dict(kind="compare", metric="mean_epoch_s", a={"batch_size": 1},
                b={"study": "st", "batch_size": 64}, expect="greater", factor=5)
    assert run_one(claim(rule, study="one"), pd.concat([slow, fast]))["verdict"] == "supported"
    rule["factor"] = 10
    assert run_one(claim(rule, study="one"), pd.concat([slow, fast]))["verdict"] == "contradicted"


def test_deterministic():
    c = claim(dict(kind="compare", metric="final_test_acc", a={"batch_size": 500},
                   b={"batch_size": 64}, expect="less"))
    assert run_one(c, BATCH) == run_one(c, BATCH)


def test_not_run_when_study_has_no_runs():
    runs = pd.concat([BATCH, make_runs("gone", {(64,): [math.nan]}, ("batch_size",))])
    runs.loc[runs.study == "gone", "status"] = "no-data"
    r = run_one(claim(dict(kind="near", metric="final_test_acc", select={"batch_size": 64},
                           target=0.1, tolerance=0.02), study="gone"), runs)
    assert r["verdict"] == "not run" and "gone" in r["reason"]


# ------------------------------------------------------------------ near, equivalent, threshold

def test_near_supported_and_contradicted():
    runs = make_runs("st", {("zeros",): [0.1135, 0.1135, 0.1135],
                            ("default",): [0.99, 0.985, 0.988]}, ("init",))
    near = dict(kind="near", metric="final_test_acc", target=0.1135, tolerance=0.02)
    assert run_one(claim({**near, "select": {"init": "zeros"}}), runs)["verdict"] == "supported"
    assert run_one(claim({**near, "select": {"init": "default"}}), runs)["verdict"] == "contradicted"
    # straddling the band's edge
    edge = make_runs("st", {("zeros",): [0.12, 0.14, 0.13]}, ("init",))
    assert run_one(claim({**near, "select": {"init": "zeros"}}), edge)["verdict"] == "inconclusive"


def test_equivalent():
    runs = make_runs("st", {(True,): [0.960, 0.962, 0.961], (False,): [0.957, 0.959, 0.958]},
                     ("bn",))
    rule = dict(kind="equivalent", metric="final_test_acc", a={"bn": True}, b={"bn": False})
    assert run_one(claim({**rule, "margin": 0.01}), runs)["verdict"] == "supported"
    assert run_one(claim({**rule, "margin": 0.001}), runs)["verdict"] == "contradicted"


def test_threshold_with_derived_metric():
    runs = make_runs("st", {(16,): [0.45, 0.50, 0.40]}, ("batch_size",), final_train_acc=1.0)
    rule = dict(kind="threshold", metric="generalisation_gap", select={"batch_size": 16})
    r = run_one(claim({**rule, "above": 0.2}), runs)
    assert r["verdict"] == "supported" and r["mean_a"] == pytest.approx(0.55)
    assert run_one(claim({**rule, "above": 0.8}), runs)["verdict"] == "contradicted"


def test_diverged_accuracy_counts_as_chance():
    runs = make_runs("st", {(0.5,): [math.nan, math.nan, math.nan]}, ("lr",))
    runs["status"], runs["diverged"] = "diverged", True
    r = run_one(claim(dict(kind="near", metric="final_test_acc", select={"lr": 0.5},
                           target=0.1, tolerance=0.02)), runs)
    assert r["verdict"] == "supported" and "chance" in r["reason"]


# ------------------------------------------------------------------ sweeps

def test_interior_optimum_supported():
    runs = make_runs("st", {(16,): [0.90, 0.91, 0.90], (64,): [0.99, 0.99, 0.98],
                            (256,): [0.95, 0.95, 0.96]}, ("batch_size",))
    r = run_one(claim(dict(kind="interior_optimum", metric="final_test_acc",
                           over="batch_size", goal="max")), runs)
    assert r["verdict"] == "supported"
    assert [g["label"] for g in r["groups"]] == ["batch 16", "batch 64", "batch 256"]


def test_interior_optimum_contradicted():
    runs = make_runs("st", {(16,): [0.99, 0.99, 0.98], (64,): [0.95, 0.95, 0.96],
                            (256,): [0.90, 0.91, 0.90]}, ("batch_size",))
    r = run_one(claim(dict(kind="interior_optimum", metric="final_test_acc",
                           over="batch_size", goal="max")), runs)
    assert r["verdict"] == "contradicted"


def test_interior_optimum_never_counts_as_infinite():
    # time to target: batch 16 never reaches it, 64 is fastest, 256 slower, 60000 never
    groups = {(16,): [math.nan] * 3, (64,): [10.0, 11.0, 10.5],
              (256,): [20.0, 21.0, 19.0], (60000,): [math.nan] * 3}
    runs = make_runs("st", groups, ("batch_size",), metric="time_to_target_s")
    rule = dict(kind="interior_optimum", metric="time_to_target_s", over="batch_size", goal="min")
    r = run_one(claim(rule), runs)
    assert r["verdict"] == "supported"
    assert all(math.isinf(c["diff"]) and c["diff"] < 0 for c in r["comparisons"])
    assert "never reached (0/3 runs)" in r["evidence"]
    # the best at an endpoint that beats every interior setting: contradicted
    groups = {(16,): [5.0, 5.5, 5.2], (64,): [10.0, 11.0, 10.5],
              (256,): [math.nan, 21.0, 19.0], (60000,): [math.nan] * 3}
    runs = make_runs("st", groups, ("batch_size",), metric="time_to_target_s")
    r = run_one(claim(rule), runs)
    assert r["verdict"] == "contradicted"
    assert "reached in 2/3 runs" in r["evidence"]
    # nobody reaches the target: nothing to say
    runs = make_runs("st", {(b,): [math.nan] * 3 for b in (16, 64, 256)}, ("batch_size",),
                     metric="time_to_target_s")
    assert run_one(claim(rule), runs)["verdict"] == "inconclusive"


def test_monotonic():
    inc = {(16,): [2.0, 2.1, 2.0], (64,): [5.0, 5.2, 5.1], (256,): [9.0, 9.5, 9.2],
           (1024,): [math.nan] * 3}
    runs = make_runs("st", inc, ("batch_size",), metric="epochs_to_target")
    rule = dict(kind="monotonic", metric="epochs_to_target", over="batch_size")
    assert run_one(claim({**rule, "direction": "increasing"}), runs)["verdict"] == "supported"
    assert run_one(claim({**rule, "direction": "decreasing"}), runs)["verdict"] == "contradicted"
    bumpy = {(16,): [2.0, 2.1, 2.0], (64,): [9.0, 9.2, 9.1], (256,): [5.0, 5.5, 5.2]}
    runs = make_runs("st", bumpy, ("batch_size",), metric="epochs_to_target")
    r = run_one(claim({**rule, "direction": "increasing"}), runs)
    assert r["verdict"] == "inconclusive" and "not monotone" in r["reason"]


def test_best_and_never_reaches_and_compare_each():
    runs = make_runs("st", {("default",): [0.99, 0.989, 0.991], ("xavier",): [0.98, 0.981, 0.979],
                            ("zeros",): [0.1135] * 3}, ("init",))
    rule = dict(kind="best", metric="final_test_acc", goal="max")
    assert run_one(claim({**rule, "at": {"init": "default"}}), runs)["verdict"] == "supported"
    assert run_one(claim({**rule, "at": {"init": "xavier"}}), runs)["verdict"] == "contradicted"
    assert run_one(claim({**rule, "at": {"init": "zeros"}, "goal": "min"}),
                   runs)["verdict"] == "supported"

    runs = make_runs("st", {(16,): [math.nan] * 3, (64,): [3.0, 4.0, 3.0]}, ("batch_size",),
                     metric="epochs_to_target", epochs_run=200)
    never = dict(kind="never_reaches", metric="epochs_to_target")
    r = run_one(claim({**never, "select": {"batch_size": 16}}), runs)
    assert r["verdict"] == "supported" and "within 200 epochs" in r["evidence"]
    assert run_one(claim({**never, "select": {"batch_size": 64}}), runs)["verdict"] == "contradicted"

    groups = {(True, 0.01): [1.0, 1.1, 1.0], (False, 0.01): [2.0, 2.1, 2.0],
              (True, 0.5): [1.0, 1.1, 1.0], (False, 0.5): [0.5, 0.6, 0.5]}
    runs = make_runs("st", groups, ("bn", "lr"), metric="train_time_s")
    each = dict(kind="compare_each", metric="train_time_s", over="lr", a={"bn": True},
                b={"bn": False}, expect="less")
    r = run_one(claim(each), runs)
    assert r["verdict"] == "contradicted" and len(r["comparisons"]) == 2


# ------------------------------------------------------------------ CSV round trip

def test_selectors_match_after_csv_round_trip(tmp_path):
    groups = {(True, 0.1, 64): [0.978, 0.977, 0.979], (False, 0.1, 64): [0.971, 0.970, 0.972],
              (True, 0.5, 64): [0.5, 0.5, 0.5]}
    runs = make_runs("st", groups, ("bn", "lr", "batch_size"))
    runs["diverged"] = runs["diverged"].astype(bool)
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    back = pd.read_csv(path, dtype={"bn": str, "diverged": str})  # "True"/"False" strings
    assert back["bn"].iloc[0] in ("True", "False")
    c = claim(dict(kind="compare", metric="final_test_acc", a={"bn": True, "lr": 0.1},
                   b={"bn": "false", "lr": "0.1", "batch_size": 64.0}, expect="greater"))
    r1, r2 = run_one(c, runs), run_one(c, back)
    assert r1["n_a"] == r2["n_a"] == 3 and r1["n_b"] == r2["n_b"] == 3
    assert r1["verdict"] == r2["verdict"] == "supported"
    assert r1["lo"] == r2["lo"] and r1["hi"] == r2["hi"]


# ------------------------------------------------------------------ the real files

def test_real_claims_file_is_valid_and_matches_config():
    claims = load_claims(ROOT / "config" / "claims.yaml")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    studies = config["studies"]
    assert len(claims) >= 12
    assert {c["homework"] for c in claims} >= {"000", "001", "002", "003"}
    assert len({c["id"] for c in claims}) == len(claims)
    for c in claims:
        assert c["study"] in studies, c["id"]
        for study, selector in claim_selectors(c):
            assert study in studies, (c["id"], study)
            known = set(studies[study]["params"]) | set(studies[study]["grid"])
            assert set(selector) <= known, (c["id"], set(selector) - known)
            for key, value in selector.items():  # selected grid values must exist
                if value is not None and key in studies[study]["grid"]:
                    assert value in studies[study]["grid"][key], (c["id"], key, value)


def test_real_claims_evaluate_on_a_synthetic_table():
    claims = load_claims(ROOT / "config" / "claims.yaml")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    rows, rng = [], np.random.default_rng(0)
    for sid, st in config["studies"].items():
        keys = list(st["grid"])
        for combo in pd.MultiIndex.from_product(list(st["grid"].values())):
            combo = combo if isinstance(combo, tuple) else (combo,)
            for seed in st["seeds"]:
                acc = 0.9 + 0.05 * rng.random()
                rows.append(dict(study=sid, setting=str(combo), cell=f"{combo}{seed}", seed=seed,
                                 **st["params"], **dict(zip(keys, combo)), status="ok",
                                 diverged=False, final_test_acc=acc, final_train_acc=acc + 0.01,
                                 final_train_loss=0.1, first_epoch_train_loss=0.5,
                                 epochs_to_target=rng.integers(1, 9), time_to_target_s=5.0,
                                 train_time_s=rng.random(), mean_epoch_s=rng.random(),
                                 total_time_s=rng.random(), epochs_run=st["params"]["epochs"]))
    runs = pd.DataFrame(rows)
    runs = runs[runs.study != "s4_mobilenet"]  # e.g. CIFAR-10 not available
    results = evaluate_claims(claims, runs, **FAST)
    assert len(results) == len(claims)
    for r in results:
        assert r["verdict"] in ("supported", "contradicted", "inconclusive", "not run")
        assert r["evidence"] and r["reason"]
        assert (r["verdict"] == "not run") == (r["study"] == "s4_mobilenet"), r["id"]
    assert "10,000 resamples" in verdict_rule_text(0.95, 10000, 3)


def test_real_homework_tables():
    tables = load_homework_tables(ROOT / "config" / "homework.yaml")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    ids = {t["id"] for t in tables}
    assert {"hw002-table1", "hw002-table2", "hw003-final", "hw000-init-times"} <= ids
    for t in tables:
        study = config["studies"][t["study"]]
        assert set(t["key"]) <= set(study["params"]) | set(study["grid"]), t["id"]
    t3 = next(t for t in tables if t["id"] == "hw003-final")
    assert [r["final_test_acc"] for r in t3["rows"]] == [45.0, 21.96, 83.82, 69.02]
    batch1 = next(t for t in tables if t["id"] == "hw000-batch1-time")
    assert batch1["rows"][0]["total_time_s"] == pytest.approx(91.543283)


# ------------------------------------------------------------------ side_by_side

def test_side_by_side():
    table = dict(id="t", homework="002", title="T", study="st", key=["bn", "lr"],
                 columns=[dict(metric="final_test_acc", label="Accuracy (%)", scale=100, digits=1),
                          dict(metric="train_time_s", label="Time (ms)", scale=1000, digits=0)],
                 rows=[dict(bn=False, lr=0.01, final_test_acc=95.7, train_time_s=576),
                       dict(bn=True, lr=0.7, final_test_acc=93.4, train_time_s=130)])
    runs = make_runs("st", {(False, 0.01): [0.95, 0.96, 0.97]}, ("bn", "lr"),
                     train_time_s=0.5)
    runs["bn"] = runs["bn"].astype(str)  # as read back from CSV
    shown = side_by_side(table, runs)
    assert list(shown.columns[:2]) == ["bn", "lr"]
    assert shown.loc[0, "Accuracy (%) — homework"] == "95.7"
    assert shown.loc[0, "Accuracy (%) — ours"] == "96.0 ± 1.0 (n=3)"
    assert shown.loc[0, "Accuracy (%) — difference"] == "+0.3"
    assert shown.loc[0, "Time (ms) — ours"] == "500 ± 0 (n=3)"
    assert shown.loc[0, "Time (ms) — difference"] == "−76"
    assert shown.loc[1, "Accuracy (%) — ours"] == "not run"
    num = side_by_side(table, runs, numeric=True)
    assert num.loc[0, "final_test_acc_mean"] == pytest.approx(96.0)
    assert num.loc[0, "final_test_acc_std"] == pytest.approx(1.0)
    assert num.loc[0, "final_test_acc_diff"] == pytest.approx(0.3)
    assert num.loc[0, "final_test_acc_n"] == 3
    assert math.isnan(num.loc[1, "final_test_acc_mean"]) and num.loc[1, "final_test_acc_n"] == 0


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("rule, key", [
    (dict(kind="teleport", metric="final_test_acc"), "kind"),
    (dict(kind="compare", metric="final_test_acc", a={"batch_size": 64}, expect="less"), "'b'"),
    (dict(kind="compare", metric="accuracy", a={}, b={}, expect="less"), "metric"),
    (dict(kind="compare", metric="final_test_acc", a={}, b={}, expect="smaller"), "expect"),
])
def test_bad_claims_file_names_the_claim(tmp_path, rule, key):
    good = claim(dict(kind="near", metric="final_test_acc", select={}, target=0.1,
                      tolerance=0.1), cid="fine")
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [good, claim(rule, cid="broken-claim")]}))
    with pytest.raises(ValueError, match="broken-claim") as err:
        load_claims(path)
    assert key in str(err.value)


def test_missing_claim_key(tmp_path):
    bad = claim(dict(kind="near", metric="final_test_acc", select={}, target=0.1, tolerance=0.1),
                cid="no-quote")
    del bad["quote"]
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [bad]}))
    with pytest.raises(ValueError, match=r"no-quote.*'quote'"):
        load_claims(path)
