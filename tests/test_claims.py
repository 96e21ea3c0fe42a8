"""Golden tests of the claim rules and their statistics: small hand-made runs tables -> the exact
verdict and the exact interval, computed here independently (Welch-Satterthwaite by hand, the t
quantile from scipy.stats.t.ppf, Wilson from its closed form), for every rule kind of
config/claims.yaml; the edge cases n = 2, 3, 5, ties, zero variance, all-failed and mixed groups;
the real claims and homework files; side_by_side."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1]
try:
    import batchwise.analysis.claims  # noqa: F401
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(ROOT / "src"))

from batchwise.analysis import stats  # noqa: E402
from batchwise.analysis.claims import (  # noqa: E402
    RULE_KINDS, claim_selectors, evaluate_claims, judge, load_claims, load_homework_tables, read_verdicts,
    side_by_side, verdict_rule_text, write_verdicts,
)

RULES = dict(level=0.95, min_runs=3)
T975 = {1: 12.706204736, 2: 4.302652730, 4: 2.776445105}  # t quantiles, from a printed table
Z = 1.959963985


# ------------------------------------------------------------------ references (independent)

def welch_ref(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(difference, lo, hi, df) of Welch's interval, from the textbook formulas."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ua, ub = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (ua + ub) ** 2 / (ua ** 2 / (len(a) - 1) + ub ** 2 / (len(b) - 1))
    half = sps.t.ppf((1 + level) / 2, df) * math.sqrt(ua + ub)
    d = a.mean() - b.mean()
    return d, d - half, d + half, df


def t_ref(x: list[float], level: float = 0.95) -> tuple[float, float]:
    x = np.asarray(x, float)
    half = sps.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def wilson_ref(k: int, n: int, z: float = Z) -> tuple[float, float]:
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


# ------------------------------------------------------------------ tables by hand

def make_runs(study: str, groups: dict[tuple, list], keys: tuple[str, ...],
              metric: str = "final_test_acc", **extra) -> pd.DataFrame:
    """One row per run. `groups` maps a tuple of key values to that setting's runs: a number is a
    trained run with that value, ("failed", x) a failed run, "diverged" a diverged run (no value).
    A time metric is each run's own wall time (time_basis "wall") unless `extra` says otherwise."""
    if metric in ("train_time_s", "eval_time_s", "total_time_s", "mean_epoch_s", "time_to_target_s"):
        extra.setdefault("time_basis", "wall")
    rows = []
    for values, runs in groups.items():
        params = dict(zip(keys, values))
        setting = "_".join(f"{k}={str(v).lower()}" for k, v in params.items())
        for seed, run in enumerate(runs):
            outcome, value = ("trained", run)
            if run == "diverged":
                outcome, value = "diverged", math.nan
            elif isinstance(run, tuple):
                outcome, value = run
            rows.append(dict(study=study, setting=setting, cell=f"{setting}_seed={seed}",
                             seed=seed, **params, status="ok", outcome=outcome,
                             diverged=outcome == "diverged", **{metric: value}, **extra))
    return pd.DataFrame(rows)


def claim(rule: dict, study: str = "st", cid: str = "c1") -> dict:
    return dict(id=cid, homework="000", quote="q", english="e", study=study, rule=rule)


def run_one(c: dict, runs: pd.DataFrame, **kw) -> dict:
    return evaluate_claims([c], runs, **{**RULES, **kw})[0]


def compare(a: dict, b: dict, expect: str = "greater", metric: str = "final_test_acc", **kw) -> dict:
    return claim(dict(kind="compare", metric=metric, a=a, b=b, expect=expect, **kw))


# ------------------------------------------------------------------ stats: the intervals

def test_welch_n3_equal_spread_by_hand():
    # var 1e-4 each; standard error² 2e-4/3; Welch-Satterthwaite df = (2u)² / (2 u²/2) = 4
    iv = stats.welch_interval([0.97, 0.98, 0.99], [0.95, 0.96, 0.97])
    assert iv.df == pytest.approx(4.0)
    half = T975[4] * math.sqrt(2e-4 / 3)
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((0.02, 0.02 - half, 0.02 + half))
    assert iv.method == "Welch t"


@pytest.mark.parametrize("a, b", [([0.98, 0.99], [0.90, 0.905, 0.91, 0.92, 0.895]),   # n = 2 vs 5
                                  ([1.0, 3.0, 2.0, 7.0, 4.0], [2.0, 2.5, 2.2]),        # n = 5 vs 3
                                  ([10.0, 30.0, 20.0], [10.0, 11.0, 10.5])])          # spreads differ 20x
def test_welch_matches_the_formula_and_scipys_own_welch(a, b):
    iv = stats.welch_interval(a, b)
    d, lo, hi, df = welch_ref(a, b)
    assert (iv.estimate, iv.lo, iv.hi, iv.df) == pytest.approx((d, lo, hi, df))
    scipy_welch = sps.ttest_ind(a, b, equal_var=False)
    if hasattr(scipy_welch, "confidence_interval"):  # scipy >= 1.11
        ci = scipy_welch.confidence_interval(0.95)
        assert (iv.lo, iv.hi) == pytest.approx((ci.low, ci.high))


def test_welch_n2_uses_one_degree_per_group():
    # two runs a side, equal spread: df = (2u)² / (u² + u²) = 2
    iv = stats.welch_interval([0.98, 0.99], [0.90, 0.91])
    half = T975[2] * math.sqrt(0.00005 / 2 + 0.00005 / 2)
    assert iv.df == pytest.approx(2.0)
    assert (iv.lo, iv.hi) == pytest.approx((0.08 - half, 0.08 + half))


def test_welch_factor_scales_the_second_group():
    a, b = [90.0, 92.0, 91.0], [13.0, 12.5, 13.2]
    iv = stats.welch_interval(a, b, factor=5.0)
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx(welch_ref(a, [5 * x for x in b])[:3])


def test_zero_variance_both_groups_is_an_exact_difference():
    iv = stats.welch_interval([0.1135] * 3, [0.098] * 3)
    assert iv.lo == iv.hi == iv.estimate == pytest.approx(0.0155)
    assert iv.method.startswith("exact")
    tie = stats.welch_interval([0.1135] * 3, [0.1135] * 3)
    assert (tie.lo, tie.hi) == (0.0, 0.0) and stats.side(tie) == 0   # a tie decides nothing


def test_zero_variance_one_group_takes_the_other_groups_degrees_of_freedom():
    iv = stats.welch_interval([0.5, 0.5, 0.5], [0.40, 0.42, 0.44, 0.41, 0.43])
    assert iv.df == pytest.approx(4.0)
    half = T975[4] * np.std([0.40, 0.42, 0.44, 0.41, 0.43], ddof=1) / math.sqrt(5)
    assert (iv.lo, iv.hi) == pytest.approx((0.08 - half, 0.08 + half))


def test_one_run_is_unbounded():
    one = stats.welch_interval([0.9], [0.1, 0.2])
    assert (one.lo, one.hi) == (-math.inf, math.inf)
    assert stats.mean_interval([0.9]).hi == math.inf


@pytest.mark.parametrize("x", [[0.97, 0.98], [0.97, 0.98, 0.995], [0.5, 0.52, 0.49, 0.51, 0.55]])
def test_mean_interval_is_the_t_interval(x):
    iv = stats.mean_interval(x)
    assert (iv.lo, iv.hi) == pytest.approx(t_ref(x))
    assert iv.df == len(x) - 1
    assert stats.mean_interval([0.1135] * 3).lo == stats.mean_interval([0.1135] * 3).hi == 0.1135


@pytest.mark.parametrize("k, n", [(0, 3), (3, 3), (1, 3), (2, 5), (3, 6)])
def test_wilson_matches_the_closed_form(k, n):
    assert stats.wilson_interval(k, n) == pytest.approx(wilson_ref(k, n), abs=1e-9)


def test_wilson_by_hand_and_no_runs():
    # k = 0 of 3: lo 0, hi = (z²/3) / (1 + z²/3)
    assert stats.wilson_interval(0, 3) == pytest.approx((0.0, (Z * Z / 3) / (1 + Z * Z / 3)))
    assert stats.wilson_interval(0, 3)[1] == pytest.approx(0.5615, abs=1e-4)
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


def test_ratio_interval_is_welch_on_logs():
    a, b = [1.05, 1.10, 1.08], [1.00, 1.02, 0.99]
    d, lo, hi, _ = welch_ref(np.log(a), np.log(b))
    iv = stats.ratio_interval(a, b)
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((math.expm1(d), math.expm1(lo), math.expm1(hi)))
    assert stats.ratio_interval([0.0, 1.0], [1.0, 1.0]).lo == -math.inf


def test_censored_difference_cases():
    inf = math.inf
    assert stats.censored_difference([inf] * 3, [inf] * 3).lo == 0.0                       # tie
    assert (stats.censored_difference([inf] * 3, [1.0, 2.0]).lo,) == (inf,)                  # decisive
    assert stats.censored_difference([1.0, 2.0], [inf] * 3).hi == -inf
    # a partly never: its never-run can only make it slower, so only its lower bound is kept
    iv = stats.censored_difference([inf, 21.0, 19.0], [5.0, 5.5, 5.2])
    assert iv.hi == inf and iv.lo == pytest.approx(welch_ref([21.0, 19.0], [5.0, 5.5, 5.2])[1])
    iv = stats.censored_difference([5.0, 5.5, 5.2], [inf, 21.0, 19.0])
    assert iv.lo == -inf and iv.hi == pytest.approx(welch_ref([5.0, 5.5, 5.2], [21.0, 19.0])[2])
    assert iv.estimate == -inf


def test_helpers_ties_and_plateaus():
    assert stats.best_index([0.9, 0.95, 0.95], "max") == 1       # first of tied
    assert stats.best_index([3.0, 1.0, 1.0], "min") == 1
    assert stats.is_monotone([1.0, 2.0, 2.0, math.inf, math.inf], increasing=True)
    assert not stats.is_monotone([1.0, 3.0, 2.0], increasing=True)
    assert stats.side(stats.Interval(0.1, 0.05, 0.2)) == 1 and stats.side(stats.Interval(0, -1, 1)) == 0


def test_rank_shift_interval_by_hand():
    """a = 10..14, b = 0..4: the 25 differences are 6 (once), 7 (twice), ..., 10 (5 times), ..., 14 (once).
    5 against 5 at 95 %: k = 3 (P(U <= 2) = 4/252 <= 0.025 < P(U <= 3) = 7/252), so [D(3), D(23)] = [7, 13]
    around the median 10; at 99 %: k = 1 (P(U = 0) = 1/252 <= 0.005 < 2/252), [6, 14]. 3 against 3 can
    never be decided: P(U = 0) = 1/20 > 0.025."""
    assert stats._rank_sum_counts(3, 3) == (1, 1, 2, 3, 3, 3, 3, 2, 1, 1)
    a, b = [14.0, 10.0, 12.0, 11.0, 13.0], [0.0, 1.0, 2.0, 3.0, 4.0]
    iv = stats.rank_shift_interval(a, b)
    assert (iv.estimate, iv.lo, iv.hi) == (10.0, 7.0, 13.0) and iv.method.startswith("rank-sum")
    assert (stats.rank_shift_interval(a, b, 0.99).lo, stats.rank_shift_interval(a, b, 0.99).hi) == (6.0, 14.0)
    three = stats.rank_shift_interval(a[:3], b[:3])
    assert (three.lo, three.hi) == (-math.inf, math.inf)
    # a run worse than any (-inf) ranks last; -inf against -inf is a tie, a difference of 0
    worst = stats.rank_shift_interval([-math.inf] * 5, [-math.inf, 1.0, 2.0, 3.0, 4.0])
    assert worst.hi == 0.0 and stats.side(worst) == 0


def test_float_rounding_is_a_tie_and_order_changes_nothing():
    """Three copies of 0.1 + 0.2 against three of 0.3: both constant, 5.6e-17 apart. Before: an exact
    difference, 'supported reliably'. Now equal to a relative 1e-9: a tie, inconclusive."""
    assert 0.1 + 0.2 != 0.3
    runs = make_runs("st", {(True,): [0.1 + 0.2] * 3, (False,): [0.3] * 3}, ("bn",))
    r = run_one(compare({"bn": True}, {"bn": False}), runs)
    assert r["verdict"] == "inconclusive" and r["lo"] == r["hi"] == 0.0
    near = stats.welch_interval([0.3, 0.1 + 0.2, 0.3], [0.3] * 3)     # a 'spread' of one rounding: none
    assert (near.lo, near.hi) == (0.0, 0.0)
    assert stats.side(stats.Interval(0.3, 0.1 + 0.2, 0.4), 0.3) == 0   # an end at the bound, to rounding
    assert stats.best_index([0.1 + 0.2, 0.3], "max") == stats.best_index([0.3, 0.1 + 0.2], "max") == 0
    assert stats.is_monotone([0.3, 0.1 + 0.2, 0.5], increasing=True)


def test_best_and_monotonic_do_not_depend_on_the_order_of_the_runs():
    """The same runs listed in another seed order give the same numbers, to the last bit: every group is
    sorted before any sum. Means 0.9 of three values whose float sum depends on their order."""
    values = [0.1, 0.7, 0.2 + 0.7]
    assert sum(values) != sum(values[::-1])   # the order matters to a plain float sum
    groups = {(1,): values, (2,): [0.3, 0.3, 0.4 + 0.1], (3,): [0.5, 0.6, 0.4]}
    flipped = {k: v[::-1] for k, v in groups.items()}
    for rule in (dict(kind="best", metric="final_test_acc", at={"batch_size": 1}, goal="max"),
                 dict(kind="monotonic", metric="final_test_acc", over="batch_size", direction="increasing")):
        r1 = run_one(claim(rule), make_runs("st", groups, ("batch_size",)))
        r2 = run_one(claim(rule), make_runs("st", flipped, ("batch_size",)))
        assert (r1["verdict"], r1["evidence"], r1["reason"]) == (r2["verdict"], r2["evidence"], r2["reason"])
        assert [g["mean"] for g in r1["groups"]] == [g["mean"] for g in r2["groups"]]


def test_failed_runs_count_as_never_reaching_the_target():
    """'3 reached at epoch 2, 2 failed' against '5 reached at epoch 3': before, the failures dropped out and
    the first setting was the faster, significantly ([-1, -1]). Now they are never (+inf): its interval is
    unbounded above, and 'faster' cannot be supported; 'slower' is not shown either (its reached runs are
    faster), so inconclusive. A failed run that touched the target before falling back is never too."""
    runs = make_runs("st", {(16,): [2.0, 2.0, 2.0, ("failed", 1.0), ("failed", math.nan)], (64,): [3.0] * 5},
                     ("batch_size",), metric="epochs_to_target")
    r = run_one(compare({"batch_size": 16}, {"batch_size": 64}, "less", metric="epochs_to_target"), runs)
    assert r["verdict"] == "inconclusive" and r["hi"] == math.inf and r["lo"] == pytest.approx(-1.0)
    assert "batch 16: reached in 3/5 runs (those: 2.0 epochs), counted as never (3 of 5 trained, 2 failed)" \
        in r["evidence"]
    assert r["n_a"] == 5


# ------------------------------------------------------------------ compare

HI, LO = [0.97, 0.98, 0.99], [0.95, 0.96, 0.97]


def test_compare_golden_inconclusive_n3():
    runs = make_runs("st", {(64,): HI, (1000,): LO}, ("batch_size",))
    r = run_one(compare({"batch_size": 64}, {"batch_size": 1000}), runs)
    half = T975[4] * math.sqrt(2e-4 / 3)
    assert r["verdict"] == "inconclusive"     # [-0.0027, +0.0427] contains 0
    assert (r["diff"], r["lo"], r["hi"]) == pytest.approx((0.02, 0.02 - half, 0.02 + half))
    assert r["comparisons"][0]["df"] == pytest.approx(4.0)
    assert "difference +2.0 pp, 95% Welch t interval [−0.3, +4.3]" in r["evidence"]
    assert "98.0 ± 1.0 % (n=3)" in r["evidence"]


def test_compare_golden_supported_and_contradicted_reliably():
    runs = make_runs("st", {(64,): [0.990, 0.991, 0.989], (1000,): [0.980, 0.981, 0.979]}, ("batch_size",))
    half = T975[4] * math.sqrt(2e-6 / 3)
    r = run_one(compare({"batch_size": 1000}, {"batch_size": 64}, "less"), runs)
    assert r["verdict"] == "supported"
    assert (r["lo"], r["hi"]) == pytest.approx((-0.01 - half, -0.01 + half))
    assert r["reason"].startswith("supported reliably (every run trained): expected batch 1000 < batch 64")
    r = run_one(compare({"batch_size": 1000}, {"batch_size": 64}, "greater"), runs)
    assert r["verdict"] == "contradicted" and r["reason"].startswith("contradicted reliably")


def test_compare_n2_decides_with_min_runs_2_and_not_with_3():
    runs = make_runs("st", {(True,): [0.98, 0.99], (False,): [0.90, 0.91]}, ("bn",))
    c = compare({"bn": True}, {"bn": False})
    r = run_one(c, runs, min_runs=2)
    half = T975[2] * math.sqrt(0.00005)
    assert r["verdict"] == "supported" and (r["lo"], r["hi"]) == pytest.approx((0.08 - half, 0.08 + half))
    r = run_one(c, runs)
    assert r["verdict"] == "inconclusive"
    assert "BN has 2 runs" in r["reason"] and "fewer than the 3 required" in r["reason"]
    assert math.isnan(r["lo"]) and r["n_a"] == 2


def test_compare_n5_golden():
    a, b = [0.962, 0.958, 0.965, 0.960, 0.961], [0.955, 0.950, 0.958, 0.949, 0.957]
    runs = make_runs("st", {(True,): a, (False,): b}, ("bn",))
    r = run_one(compare({"bn": True}, {"bn": False}), runs)
    d, lo, hi, df = welch_ref(a, b)
    assert r["verdict"] == "supported"
    assert (r["diff"], r["lo"], r["hi"], r["comparisons"][0]["df"]) == pytest.approx((d, lo, hi, df))


def test_compare_tie_is_inconclusive():
    runs = make_runs("st", {(True,): [0.97, 0.98, 0.99], (False,): [0.96, 0.98, 1.00]}, ("bn",))
    r = run_one(compare({"bn": True}, {"bn": False}), runs)
    assert r["verdict"] == "inconclusive" and r["diff"] == pytest.approx(0.0, abs=1e-12)
    assert r["lo"] < 0 < r["hi"]


def test_compare_zero_variance_is_decisive_unless_equal():
    runs = make_runs("st", {("zeros",): [0.1135] * 3, ("xavier",): [0.098] * 3,
                            ("ones",): [0.1135] * 3}, ("init",))
    r = run_one(compare({"init": "zeros"}, {"init": "xavier"}), runs)
    assert r["verdict"] == "supported" and r["lo"] == r["hi"] == pytest.approx(0.0155)
    assert "exact (no spread)" in r["evidence"]
    r = run_one(compare({"init": "zeros"}, {"init": "ones"}), runs)
    assert r["verdict"] == "inconclusive" and r["lo"] == r["hi"] == 0.0


def test_compare_factor_and_cross_study():
    slow = make_runs("one", {(1,): [90.0, 92.0, 91.0]}, ("batch_size",), metric="mean_epoch_s")
    fast = make_runs("st", {(64,): [13.0, 12.5, 13.2]}, ("batch_size",), metric="mean_epoch_s")
    runs = pd.concat([slow, fast])
    rule = dict(a={"batch_size": 1}, b={"study": "st", "batch_size": 64}, metric="mean_epoch_s")
    for factor, verdict in ((5, "supported"), (10, "contradicted"), (7, "inconclusive")):
        c = claim(dict(kind="compare", expect="greater", factor=factor, **rule), study="one")
        r = run_one(c, runs)
        d, lo, hi, _ = welch_ref([90.0, 92.0, 91.0], [factor * x for x in (13.0, 12.5, 13.2)])
        assert r["verdict"] == verdict, factor
        assert (r["diff"], r["lo"], r["hi"]) == pytest.approx((d, lo, hi))


def test_compare_all_failed_group_uses_its_failed_runs_and_says_so():
    failed = [("failed", 0.10), ("failed", 0.11), ("failed", 0.098)]
    runs = make_runs("st", {(True,): HI, (False,): failed}, ("bn",))
    r = run_one(compare({"bn": True}, {"bn": False}), runs)
    d, lo, hi, _ = welch_ref(HI, [0.10, 0.11, 0.098])
    assert r["verdict"] == "supported" and (r["lo"], r["hi"]) == pytest.approx((lo, hi))
    assert r["reason"].startswith("supported counting every run (3 of 6 did not train)")
    assert "no BN: 0 of 3 runs trained" in r["reason"] and "a failed run at its accuracy" in r["reason"]
    assert "no BN: 10.3 ± 0.6 % (0 of 3 trained, 3 failed)" in r["evidence"]
    no_bn = r["groups"][1]
    assert (no_bn["basis"], no_bn["n_trained"], no_bn["n_failed"]) == ("all", 0, 3)


def test_worst_setting_is_said_to_be_lower_and_its_failed_runs_are_named():
    """Zero init is the worst: 'lowest mean, significantly lower' (not 'better'), judged on its failed runs."""
    zeros = [("failed", 0.1135), ("failed", 0.1135), ("failed", 0.1135)]
    runs = make_runs("st", {("default",): HI, ("xavier",): [0.990, 0.991, 0.989], ("zeros",): zeros}, ("init",))
    r = run_one(claim(dict(kind="best", metric="final_test_acc", at={"init": "zeros"}, goal="min")), runs)
    assert r["verdict"] == "supported"
    assert r["reason"].startswith("supported counting every run (3 of 9 did not train): init zeros has the lowest "
                                  "mean and is significantly lower than every other setting")


def test_compare_mixed_group_counts_every_run_by_rank():
    """A setting whose runs trained (95-96 %), failed (10-11 %) and diverged: its failed runs count at their
    accuracy, the diverged one below every finished run, and the comparison is the exact rank-sum one. 3
    against 6 runs: P(U <= 1) = 2/84 <= 2.5 % < P(U <= 2) = 4/84, so k = 2 and the interval is
    [D(2), D(17)] of the 18 differences: 0.990 - 0.96 and +inf (three differences with the diverged run)."""
    mixed = [0.95, 0.955, 0.96, ("failed", 0.10), ("failed", 0.11), "diverged"]
    runs = make_runs("st", {(True,): [0.990, 0.991, 0.989], (False,): mixed}, ("bn",))
    r = run_one(compare({"bn": True}, {"bn": False}), runs)
    assert r["verdict"] == "supported"
    assert r["lo"] == pytest.approx(0.990 - 0.96) and r["hi"] == math.inf
    assert r["diff"] == pytest.approx((0.991 - 0.95 + 0.989 - 0.11) / 2)   # median: 9th and 10th of 18
    assert r["n_b"] == 6 and r["comparisons"][0]["method"].startswith("rank-sum")
    assert "no BN: 3 of 6 trained at 95.5 ± 0.5 %, 2 failed at 10.5 ± 0.7 %, 1 diverged" in r["evidence"]
    assert "shift +46.0 pp, 95% exact rank-sum (Hodges-Lehmann) interval [+3.0, +inf]" in r["evidence"]
    wl, wh = wilson_ref(3, 6)
    assert f"no BN: 3 of 6 runs trained (95% Wilson interval {100 * wl:.0f}–{100 * wh:.0f} %), " \
           f"2 failed, 1 diverged" in r["reason"]
    assert r["reason"].startswith("supported counting every run (3 of 9 did not train)")
    g = r["groups"][1]
    assert (g["n_runs"], g["n_trained"], g["n_failed"], g["n_diverged"]) == (6, 3, 2, 1)
    assert (g["trained_lo"], g["trained_hi"]) == pytest.approx((wl, wh))


def test_a_failed_run_is_evidence_against_the_better_claim_not_missing_data():
    """The reviewer's case, S2 CNN: BN at lr 0.5 trained in 2 of 5 runs (89.7, 93.0 %), 3 collapsed to 11.35 %;
    BN at lr 0.05 trained in 5 of 5 (97.2-97.8 %). Before, the 3 failures were left out and the claim
    'lr 0.5 is better' was inconclusive 'by rule: 2 measured runs'. Now every run counts: all 25 pairs put
    lr 0.05 above lr 0.5, the rank-sum test's smallest p (2/252 = 0.008) and the interval excludes 0."""
    runs = make_runs("st", {(0.5,): [("failed", 0.1135)] * 3 + [0.897, 0.9298],
                            (0.05,): [0.9739, 0.9722, 0.9768, 0.9742, 0.9781]}, ("lr",))
    r = run_one(compare({"lr": 0.5}, {"lr": 0.05}), runs)
    assert r["verdict"] == "contradicted" and r["n_a"] == 5
    # 5 against 5 at 95 %: P(U <= 2) = 4/252 <= 2.5 % < P(U <= 3) = 7/252, k = 3: [D(3), D(23)] of the 25
    assert r["hi"] == pytest.approx(0.9298 - 0.9742)      # the third largest difference
    assert r["lo"] == pytest.approx(0.1135 - 0.9781)      # the third smallest (three runs at 11.35 %)
    worse = make_runs("st", {(0.5,): [("failed", 0.1135)] * 5, (0.05,): [0.9739, 0.9722, 0.9768, 0.9742, 0.9781]},
                      ("lr",))
    assert run_one(compare({"lr": 0.5}, {"lr": 0.05}), worse)["verdict"] == "contradicted"   # Welch, all failed


def test_a_setting_whose_runs_all_diverged_loses_on_accuracy():
    """Every run diverged: no accuracy, but worse than any finished run (as never reaching a target is
    slower than reaching it): 'BN beats no BN' is decided. On a time, a diverged run is no measurement."""
    runs = make_runs("st", {(True,): HI, (False,): ["diverged"] * 3}, ("bn",))
    r = run_one(compare({"bn": True}, {"bn": False}), runs)
    assert r["verdict"] == "supported" and r["lo"] == r["hi"] == math.inf
    assert "no BN: 0 of 3 trained, 3 diverged (counted as worse than any finished run)" in r["evidence"]
    assert "diverged-as-worst" in r["evidence"]
    timed = make_runs("st", {(True,): [1.0, 1.1, 1.2], (False,): ["diverged"] * 3}, ("bn",), metric="train_time_s")
    r = run_one(compare({"bn": True}, {"bn": False}, "less", metric="train_time_s"), timed)
    assert r["verdict"] == "inconclusive" and "no BN has 0 measured runs" in r["reason"]
    assert "all 3 runs diverged" in r["evidence"]


def test_not_run_when_study_has_no_runs():
    runs = make_runs("st", {(64,): HI}, ("batch_size",))
    gone = make_runs("gone", {(64,): [math.nan]}, ("batch_size",)).assign(status="no-data", outcome="no-data")
    r = run_one(claim(dict(kind="near", metric="final_test_acc", select={"batch_size": 64},
                           target=0.1, tolerance=0.02), study="gone"), pd.concat([runs, gone]))
    assert r["verdict"] == "not run yet" and r["evidence"] == "no runs of study gone"
    assert r["reason"] == "not imported yet, or its data set was not available"  # why, not the evidence again


def test_runs_table_without_outcome_column_gets_the_outcome_rule():
    runs = make_runs("st", {(True,): HI + [0.5], (False,): LO}, ("bn",), metric="train_time_s").drop(columns="outcome")
    runs.loc[3, ["diverged", "train_time_s"]] = [True, math.nan]   # as an old runs.csv had it
    runs["final_test_acc"] = [0.97, 0.98, 0.99, math.nan, 0.96, 0.97, 0.98]
    r = run_one(compare({"bn": True}, {"bn": False}, "less", metric="train_time_s"), runs)
    assert r["n_a"] == 3 and r["groups"][0]["n_diverged"] == 1
    assert (r["lo"], r["hi"]) == pytest.approx(welch_ref(HI, LO)[1:3])


# ------------------------------------------------------------------ compare_each

def test_compare_each_golden():
    groups = {(True, 0.01): [1.0, 1.1, 1.0], (False, 0.01): [2.0, 2.1, 2.0],
              (True, 0.5): [1.0, 1.1, 1.0], (False, 0.5): [0.5, 0.6, 0.5]}
    runs = make_runs("st", groups, ("bn", "lr"), metric="train_time_s")
    each = dict(kind="compare_each", metric="train_time_s", over="lr", a={"bn": True},
                b={"bn": False}, expect="less")
    r = run_one(claim(each), runs)
    assert r["verdict"] == "contradicted" and len(r["comparisons"]) == 2
    assert r["reason"].startswith("contradicted reliably")
    assert "per value: supported, contradicted" in r["reason"] and "Holm" in r["reason"]
    # two comparisons, both decided in Holm's first round: each at 1 - 0.05 / 2 = 97.5 %
    d, lo, hi, _ = welch_ref([1.0, 1.1, 1.0], [0.5, 0.6, 0.5], level=0.975)   # the deciding one: lr 0.5
    assert (r["diff"], r["lo"], r["hi"]) == pytest.approx((d, lo, hi))
    assert "97.5% Welch t interval" in r["evidence"]
    r = run_one(claim({**each, "values": [0.01]}), runs)
    assert r["verdict"] == "supported"
    assert (r["lo"], r["hi"]) == pytest.approx(welch_ref([1.0, 1.1, 1.0], [2.0, 2.1, 2.0])[1:3])


def test_compare_each_is_reliable_when_its_deciding_comparisons_are():
    groups = {(True, 0.5): [1.0, 1.1, 1.0], (False, 0.5): [0.5, 0.6, 0.5],
              (True, 0.7): [1.0, 1.1, 1.0, "diverged"], (False, 0.7): [1.0, 1.2, ("failed", 1.1), 0.9]}
    runs = make_runs("st", groups, ("bn", "lr"), metric="train_time_s")
    each = dict(kind="compare_each", metric="train_time_s", over="lr", a={"bn": True},
                b={"bn": False}, expect="less")
    r = run_one(claim(each), runs)
    assert r["verdict"] == "contradicted" and r["reason"].startswith("contradicted reliably")
    assert "per value: contradicted, inconclusive" in r["reason"]


# ------------------------------------------------------------------ equivalent

def test_equivalent_golden_absolute():
    a, b = [0.960, 0.962, 0.961], [0.957, 0.959, 0.958]
    runs = make_runs("st", {(True,): a, (False,): b}, ("bn",))
    rule = dict(kind="equivalent", metric="final_test_acc", a={"bn": True}, b={"bn": False})
    d, lo, hi, _ = welch_ref(a, b)          # +0.3 pp, [+0.07, +0.53] pp
    r = run_one(claim({**rule, "margin": 0.01}), runs)
    assert r["verdict"] == "supported" and (r["lo"], r["hi"]) == pytest.approx((lo, hi))
    assert run_one(claim({**rule, "margin": 0.0005}), runs)["verdict"] == "contradicted"  # lo > margin
    assert run_one(claim({**rule, "margin": 0.004}), runs)["verdict"] == "inconclusive"   # hi > margin > lo
    const = make_runs("st", {(True,): [0.5] * 3, (False,): [0.5] * 3}, ("bn",))
    assert run_one(claim({**rule, "margin": 0.001}), const)["verdict"] == "supported"      # exact tie


def test_equivalent_golden_relative_on_logs():
    a, b = [1.05, 1.10, 1.08], [1.00, 1.02, 0.99]
    runs = make_runs("st", {(True,): a, (False,): b}, ("bn",), metric="train_time_s")
    rule = dict(kind="equivalent", metric="train_time_s", a={"bn": True}, b={"bn": False}, relative=True)
    d, lo, hi, _ = welch_ref(np.log(a), np.log(b))
    r = run_one(claim({**rule, "margin": 0.15}), runs)
    assert r["verdict"] == "supported"
    assert (r["diff"], r["lo"], r["hi"]) == pytest.approx((math.expm1(d), math.expm1(lo), math.expm1(hi)))
    assert f"relative difference +{100 * math.expm1(d):.1f} %" in r["evidence"] and "log values" in r["reason"]
    assert run_one(claim({**rule, "margin": 0.01}), runs)["verdict"] == "contradicted"


# ------------------------------------------------------------------ near, threshold

def test_near_golden():
    x = [0.12, 0.14, 0.13]
    runs = make_runs("st", {("zeros",): x, ("default",): [0.99, 0.985, 0.988]}, ("init",))
    near = dict(kind="near", metric="final_test_acc", target=0.1135, tolerance=0.02)
    r = run_one(claim({**near, "select": {"init": "zeros"}}), runs)
    lo, hi = t_ref(x)           # 0.13 ± 4.303 * 0.01 / sqrt 3: [0.105, 0.155] overlaps 0.1335
    assert r["verdict"] == "inconclusive" and (r["lo"], r["hi"]) == pytest.approx((lo, hi))
    assert run_one(claim({**near, "select": {"init": "default"}}), runs)["verdict"] == "contradicted"
    wide = run_one(claim({**near, "select": {"init": "zeros"}, "tolerance": 0.05}), runs)
    assert wide["verdict"] == "supported" and wide["reason"].startswith("supported reliably")


def test_near_all_failed_zero_variance_collapse():
    # zero init: every run answers "1" and scores its test share exactly; all of them failed
    runs = make_runs("st", {("zeros",): [("failed", 0.1135)] * 3}, ("init",))
    r = run_one(claim(dict(kind="near", metric="final_test_acc", select={"init": "zeros"},
                           target=0.1135, tolerance=0.02)), runs)
    assert r["verdict"] == "supported" and r["lo"] == r["hi"] == pytest.approx(0.1135)
    assert r["reason"].startswith("supported counting every run (none of the 3 trained)")


def test_near_counts_the_failed_runs_against_about_x():
    """'About 96 %' when 2 of 5 runs failed at 10-11 %: the failed runs count, the t interval of all five
    is wide, and the claim is not supported (before: 'supported in 3 of 5 runs', the failures left out)."""
    values = [0.96, 0.962, 0.958, 0.10, 0.11]
    runs = make_runs("st", {(0.5,): [0.96, 0.962, 0.958, ("failed", 0.10), ("failed", 0.11)]}, ("lr",))
    r = run_one(claim(dict(kind="near", metric="final_test_acc", select={"lr": 0.5},
                           target=0.96, tolerance=0.01)), runs)
    assert r["verdict"] == "inconclusive" and r["n_a"] == 5
    assert (r["lo"], r["hi"]) == pytest.approx(t_ref(values))


def test_threshold_golden_with_derived_metrics():
    runs = make_runs("st", {(16,): [0.45, 0.50, 0.40]}, ("batch_size",), final_train_acc=1.0)
    rule = dict(kind="threshold", metric="generalisation_gap", select={"batch_size": 16})
    r = run_one(claim({**rule, "above": 0.2}), runs)
    lo, hi = t_ref([0.55, 0.50, 0.60])
    assert r["verdict"] == "supported" and r["mean_a"] == pytest.approx(0.55)
    assert (r["lo"], r["hi"]) == pytest.approx((lo, hi))
    assert run_one(claim({**rule, "above": 0.8}), runs)["verdict"] == "contradicted"
    assert run_one(claim({**rule, "above": 0.5}), runs)["verdict"] == "inconclusive"
    drop = make_runs("st", {(64,): [0.3, 0.35, 0.25]}, ("batch_size",), metric="first_epoch_running_loss",
                     final_running_loss=0.05)
    r = run_one(claim(dict(kind="threshold", metric="train_loss_drop", select={"batch_size": 64},
                           above=0.0)), drop)
    assert r["verdict"] == "supported" and (r["lo"], r["hi"]) == pytest.approx(t_ref([0.25, 0.30, 0.20]))


# ------------------------------------------------------------------ not_converged

def convergence_runs(groups: dict[int, list[tuple]], **extra) -> pd.DataFrame:
    """Runs of a 200-epoch sweep with target 98 %: each (outcome, final test accuracy, epoch of the first hit
    of the target or NaN)."""
    rows = []
    for batch, runs in groups.items():
        for seed, (outcome, final, first) in enumerate(runs):
            rows.append(dict(study="st", setting=f"batch_size={batch}", seed=seed, batch_size=batch, status="ok",
                             outcome=outcome, diverged=outcome == "diverged", final_test_acc=final,
                             epochs_to_target=first, target_acc=0.98, epochs=200, epochs_run=200, **extra))
    return pd.DataFrame(rows)


NEVER = dict(kind="not_converged", metric="epochs_to_target")
# Homework 001's batch 16 as the full report's runs have it: each touched 98 % in epoch 1 or 2, became
# unstable and ended as a constant classifier
BATCH16 = [("failed", 0.1135, 2.0), ("failed", 0.1135, 1.0), ("failed", 0.1028, 1.0)]


def test_not_converged_judges_where_the_runs_end_not_their_first_hit():
    """Before: 'contradicted, reached reliably', because each run touched the target early. Now: no run
    ended at the target (it points the claim's way), but 0 of 3 has the exact interval 0-70.8 %
    (1 - 0.025^(1/3)), which contains one half: 3 runs cannot show 'most runs do not converge'."""
    r = run_one(claim({**NEVER, "select": {"batch_size": 16}}), convergence_runs({16: BATCH16}))
    assert r["verdict"] == "inconclusive"
    assert (r["lo"], r["hi"]) == pytest.approx((0.0, 1 - 0.025 ** (1 / 3)))
    assert r["evidence"] == ("batch 16: 0 of 3 runs ended the 200-epoch budget at the target (98 %) (0 trained, "
                             "3 failed; 95% exact interval of the share that converged 0–71 %); final test accuracy "
                             "10.3–11.3 %; all 3 had touched it on the way (first in epoch 1, 1, 2), all of them "
                             "falling back below it")
    assert "reliably" not in r["evidence"] + r["reason"]
    assert r["reason"].endswith("the runs point the claim's way (0 of 3 converged), but 3 runs cannot show it at "
                                "the 95% level: at least 6 would be needed, none of them converging")
    assert r["groups"][0]["mean"] == 0.0 and math.isnan(r["groups"][0]["std"])   # the share, not an accuracy


def test_not_converged_decides_from_six_runs():
    """0 of 6: hi = 1 - 0.025^(1/6) = 0.459 < 1/2, supported; 6 of 6 ending at the target: lo = 0.025^(1/6)
    = 0.541 > 1/2, contradicted; a run that trained but ended below the target (97.9 %, as batch 256 seed 0
    did) did not converge; a diverged run did not either."""
    runs = convergence_runs({16: BATCH16 * 2, 64: [("trained", 0.992, 2.0)] * 6,
                             256: [("trained", 0.9791, 5.0)] + [("trained", 0.99, 4.0)] * 5,
                             1024: [("diverged", math.nan, 3.0)] * 3 + [("failed", 0.1, math.nan)] * 3})
    r = run_one(claim({**NEVER, "select": {"batch_size": 16}}), runs)
    assert r["verdict"] == "supported" and r["hi"] == pytest.approx(1 - 0.025 ** (1 / 6))
    r = run_one(claim({**NEVER, "select": {"batch_size": 64}}), runs)
    assert r["verdict"] == "contradicted" and r["lo"] == pytest.approx(0.025 ** (1 / 6))
    r = run_one(claim({**NEVER, "select": {"batch_size": 256}}), runs)   # 5 of 6: [0.359, 0.996]
    assert r["verdict"] == "inconclusive" and r["mean_a"] == pytest.approx(5 / 6)
    assert (r["lo"], r["hi"]) == pytest.approx(tuple(sps.beta.ppf([0.025, 0.975], [5, 6], [2, 1])))
    r = run_one(claim({**NEVER, "select": {"batch_size": 1024}}), runs)
    assert r["verdict"] == "supported" and r["n_a"] == 6 and "3 diverged" in r["evidence"]
    assert "3 of 6 had touched it on the way (first in epoch 3, 3, 3), all of them falling back" in r["evidence"]


def test_not_converged_counts_a_stop_at_the_target_and_needs_min_runs():
    stopped = convergence_runs({16: [("trained", 0.975, 4.0)] * 6}, stop_at_target=True)   # stopped on a check
    assert run_one(claim({**NEVER, "select": {"batch_size": 16}}), stopped)["verdict"] == "contradicted"
    two = run_one(claim({**NEVER, "select": {"batch_size": 16}}), convergence_runs({16: BATCH16[:2]}))
    assert two["verdict"] == "inconclusive" and two["reason"].startswith("inconclusive by rule: batch 16 has 2 runs")


# ------------------------------------------------------------------ best

INIT = {("default",): [0.99, 0.989, 0.991], ("xavier",): [0.98, 0.981, 0.979], ("zeros",): [0.1135] * 3}


def test_best_golden():
    runs = make_runs("st", INIT, ("init",))
    rule = dict(kind="best", metric="final_test_acc", goal="max")
    r = run_one(claim({**rule, "at": {"init": "default"}}), runs)
    assert r["verdict"] == "supported"
    assert [c["b"] for c in r["comparisons"]] == ["init xavier", "init zeros"]
    # two rivals, both beaten in Holm's first round: each interval at 1 - 0.05 / 2 = 97.5 %
    for c, other in zip(r["comparisons"], ([0.98, 0.981, 0.979], [0.1135] * 3)):
        d, lo, hi, _ = welch_ref(INIT[("default",)], other, 0.975) if other[0] != other[1] else (None,) * 4
        if d is not None:
            assert (c["diff"], c["lo"], c["hi"]) == pytest.approx((d, lo, hi))
        else:  # against a constant group: df = 2, the spread of default alone
            half = sps.t.ppf(0.9875, 2) * np.std(INIT[("default",)], ddof=1) / math.sqrt(3)
            assert (c["lo"], c["hi"]) == pytest.approx((0.99 - 0.1135 - half, 0.99 - 0.1135 + half))
    # the deciding comparison is the weakest win: against xavier
    assert (r["lo"], r["hi"]) == pytest.approx(welch_ref(INIT[("default",)], INIT[("xavier",)], 0.975)[1:3])
    assert "Holm" in r["reason"] and "97.5% Welch t interval" in r["evidence"]
    assert run_one(claim({**rule, "at": {"init": "xavier"}}), runs)["verdict"] == "contradicted"
    assert run_one(claim({**rule, "at": {"init": "zeros"}, "goal": "min"}), runs)["verdict"] == "supported"


def test_best_with_a_tied_rival_is_inconclusive():
    runs = make_runs("st", {(64,): HI, (500,): [0.96, 0.98, 1.00], (1000,): [0.90, 0.91, 0.92]},
                     ("batch_size",))
    r = run_one(claim(dict(kind="best", metric="final_test_acc", at={"batch_size": 64}, goal="max")), runs)
    assert r["verdict"] == "inconclusive" and "not significantly higher than every" in r["reason"]


# ------------------------------------------------------------------ interior_optimum

def test_interior_optimum_golden():
    sweep = {(16,): [0.90, 0.91, 0.90], (64,): [0.99, 0.99, 0.98], (256,): [0.95, 0.95, 0.96]}
    runs = make_runs("st", sweep, ("batch_size",))
    rule = dict(kind="interior_optimum", metric="final_test_acc", over="batch_size", goal="max")
    r = run_one(claim(rule), runs)
    assert r["verdict"] == "supported"
    assert [g["label"] for g in r["groups"]] == ["batch 16", "batch 64", "batch 256"]
    for c, end in zip(r["comparisons"], ((16,), (256,))):
        assert (c["lo"], c["hi"]) == pytest.approx(welch_ref(sweep[(64,)], sweep[end])[1:3])
    flipped = make_runs("st", {(16,): sweep[(64,)], (64,): sweep[(256,)], (256,): sweep[(16,)]},
                        ("batch_size",))
    assert run_one(claim(rule), flipped)["verdict"] == "contradicted"


def test_interior_optimum_never_counts_as_infinite():
    groups = {(16,): [math.nan] * 3, (64,): [10.0, 11.0, 10.5],
              (256,): [20.0, 21.0, 19.0], (60000,): [math.nan] * 3}
    runs = make_runs("st", groups, ("batch_size",), metric="time_to_target_s")
    rule = dict(kind="interior_optimum", metric="time_to_target_s", over="batch_size", goal="min")
    r = run_one(claim(rule), runs)
    assert r["verdict"] == "supported"
    assert all(c["lo"] == c["hi"] == c["diff"] == -math.inf for c in r["comparisons"])
    assert "never reached (0/3 runs; n=3)" in r["evidence"]
    # the best at an endpoint: it beats batch 64 by Welch, and batch 256 (one run never reached)
    # on the bound that run cannot move
    groups = {(16,): [5.0, 5.5, 5.2], (64,): [10.0, 11.0, 10.5],
              (256,): [math.nan, 21.0, 19.0], (60000,): [math.nan] * 3}
    r = run_one(claim(rule), make_runs("st", groups, ("batch_size",), metric="time_to_target_s"))
    assert r["verdict"] == "contradicted" and "reached in 2/3 runs" in r["evidence"]
    c256 = r["comparisons"][1]
    assert c256["lo"] == -math.inf and c256["hi"] == pytest.approx(welch_ref([5.0, 5.5, 5.2], [21.0, 19.0])[2])
    runs = make_runs("st", {(b,): [math.nan] * 3 for b in (16, 64, 256)}, ("batch_size",),
                     metric="time_to_target_s")
    assert run_one(claim(rule), runs)["verdict"] == "inconclusive"


# ------------------------------------------------------------------ monotonic

def test_monotonic_golden():
    inc = {(16,): [2.0, 2.1, 2.0], (64,): [5.0, 5.2, 5.1], (256,): [9.0, 9.5, 9.2]}
    runs = make_runs("st", inc, ("batch_size",), metric="mean_epoch_s")
    rule = dict(kind="monotonic", metric="mean_epoch_s", over="batch_size")
    r = run_one(claim({**rule, "direction": "increasing"}), runs)
    assert r["verdict"] == "supported"
    assert (r["diff"], r["lo"], r["hi"]) == pytest.approx(welch_ref(inc[(256,)], inc[(16,)])[:3])
    assert run_one(claim({**rule, "direction": "decreasing"}), runs)["verdict"] == "contradicted"
    bumpy = {(16,): [2.0, 2.1, 2.0], (64,): [9.0, 9.2, 9.1], (256,): [5.0, 5.5, 5.2]}
    r = run_one(claim({**rule, "direction": "increasing"}),
                make_runs("st", bumpy, ("batch_size",), metric="mean_epoch_s"))
    assert r["verdict"] == "inconclusive" and "not monotone" in r["reason"]


def test_monotonic_plateau_of_never_is_monotone():
    inc = {(16,): [2.0, 2.1, 2.0], (64,): [5.0, 5.2, 5.1], (256,): [math.nan] * 3, (1024,): [math.nan] * 3}
    runs = make_runs("st", inc, ("batch_size",), metric="epochs_to_target")
    r = run_one(claim(dict(kind="monotonic", metric="epochs_to_target", over="batch_size",
                           direction="increasing")), runs)
    assert r["verdict"] == "supported" and r["lo"] == math.inf   # endpoint never vs always reached


# ------------------------------------------------------------------ CSV round trip

def test_selectors_match_after_csv_round_trip(tmp_path):
    groups = {(True, 0.1, 64): [0.978, 0.977, 0.979], (False, 0.1, 64): [0.971, 0.970, 0.972],
              (True, 0.5, 64): [0.5, 0.5, 0.5]}
    runs = make_runs("st", groups, ("bn", "lr", "batch_size"))
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
    assert {c["homework"] for c in claims} >= {"000", "001", "002", "003"}
    assert len({c["id"] for c in claims}) == len(claims)
    for c in claims:
        assert c["rule"]["kind"] in RULE_KINDS
        assert c["study"] in studies, c["id"]
        for study, selector in claim_selectors(c):
            assert study in studies, (c["id"], study)
            known = set(studies[study]["params"]) | set(studies[study]["grid"])
            assert set(selector) <= known, (c["id"], set(selector) - known)
            for key, value in selector.items():  # selected grid values must exist
                if value is not None and key in studies[study]["grid"]:
                    assert value in studies[study]["grid"][key], (c["id"], key, value)


def s2_cnn_table() -> pd.DataFrame:
    """The S2 CNN as the H100 run found it: lr 0.5 without BN trains in 2 of 5 seeds, else stays at
    chance; with BN every seed trains."""
    groups = {(True, 0.01): [0.975, 0.976, 0.977, 0.975, 0.976],
              (False, 0.01): [0.970, 0.971, 0.969, 0.970, 0.972],
              (True, 0.05): [0.985, 0.986, 0.984, 0.985, 0.986],
              (False, 0.05): [0.982, 0.981, 0.983, 0.982, 0.984],
              (True, 0.5): [0.988, 0.989, 0.990, 0.989, 0.988],
              (False, 0.5): [0.961, 0.963, ("failed", 0.1135), ("failed", 0.1028), ("failed", 0.098)]}
    return make_runs("s2_bn_lr_cnn", groups, ("bn", "lr"))


def test_real_s2_claims_on_the_h100_pattern():
    claims = {c["id"]: c for c in load_claims(ROOT / "config" / "claims.yaml")}
    wanted = ["s2-cnn-bn-better-lr-0.01", "s2-cnn-bn-better-lr-0.05", "s2-cnn-no-bn-fails-lr-0.5",
              "s2-cnn-bn-lr-0.5-best", "s4-batch64-best"]
    got = {r["id"]: r for r in evaluate_claims([claims[i] for i in wanted], s2_cnn_table(), **RULES)}
    assert got["s2-cnn-bn-better-lr-0.01"]["verdict"] == "supported"
    assert got["s2-cnn-bn-better-lr-0.05"]["reason"].startswith("supported reliably")
    # no BN at lr 0.5 "stopped working": 2 of 5 trained, exact interval 5-85 % contains one half
    fails = got["s2-cnn-no-bn-fails-lr-0.5"]
    assert fails["verdict"] == "inconclusive" and "2 of 5 trained" in fails["evidence"]
    assert (fails["lo"], fails["hi"]) == pytest.approx(tuple(sps.beta.ppf([0.025, 0.975], [2, 3], [4, 3])))
    # every run of no BN at lr 0.5 counts (before: 2 measured runs, inconclusive by rule); its 3 failures
    # put it below BN at lr 0.5 by rank, the others by Welch, each at Holm's level
    best = got["s2-cnn-bn-lr-0.5-best"]
    assert best["verdict"] == "supported" and best["reason"].startswith("supported counting every run (3 of 30")
    methods = {c["b"]: c["method"] for c in best["comparisons"]}
    assert methods["no BN, lr 0.5"].startswith("rank-sum") and methods["BN, lr 0.05"] == "Welch t"
    assert [c["b"] for c in best["comparisons"]][:2] == ["BN, lr 0.05", "no BN, lr 0.05"]   # strongest first
    assert got["s4-batch64-best"]["verdict"] == "not run yet"
    two = evaluate_claims([claims["s2-cnn-no-bn-fails-lr-0.5"]], s2_cnn_table(), level=0.95, min_runs=2)[0]
    assert two["verdict"] == "inconclusive"  # a share rule counts all 5 runs: min_runs is not what limits it


def test_verdict_rule_text_names_each_test_and_drops_the_old_rules():
    text = verdict_rule_text(0.9, 10000, 4)
    for phrase in ("Welch's t interval", "variances are not pooled", "t quantile", "Wilson score",
                   "fewer than 4 runs", "90%", "'reliably'", "'in k of n runs'", "'counting every run'",
                   "a failed run counts at the accuracy", "worse than any finished one", "never reaching it",
                   "diverged runs never", "width zero", "Holm's step-down correction", "timing bursts",
                   "exact rank-sum", "Hodges-Lehmann", "Clopper-Pearson", "Fisher's exact test", "0.1 + 0.2",
                   "most runs end the budget below the target", "docs/claims-null.md", "'not run yet'"):
        assert phrase in text, phrase
    assert "bootstrap" not in text and "chance" not in text and "resamples" not in text


def test_claims_text_has_no_chance_rule():
    """The old rule "a diverged run counts at chance" is gone: a diverged run is not a measurement."""
    src = "".join(p.read_text() for p in sorted((ROOT / "src" / "batchwise" / "analysis" / "claims").glob("*.py"))) + (ROOT / "config" / "claims.yaml").read_text()
    assert "counts at chance" not in src and "CHANCE_ACC" not in src


def test_real_homework_tables():
    tables = load_homework_tables(ROOT / "config" / "homework.yaml")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    ids = {t["id"] for t in tables}
    assert {"hw002-table1", "hw002-table2", "hw003-final", "hw000-init-times"} <= ids
    for t in tables:
        study = config["studies"][t["study"]]
        assert set(t["key"]) <= set(study["params"]) | set(study["grid"]), t["id"]
        for row in t["rows"]:   # a row names a setting the study can run
            for k in t["key"]:
                allowed = study["grid"].get(k, [study["params"].get(k)])
                assert row[k] in allowed, (t["id"], k, row[k])


# ------------------------------------------------------------------ side_by_side

TABLE = dict(id="t", homework="002", title="T", study="st", key=["bn", "lr"],
             columns=[dict(metric="final_test_acc", label="Accuracy (%)", scale=100, digits=1),
                      dict(metric="train_time_s", label="Time (ms)", scale=1000, digits=0)],
             rows=[dict(bn=False, lr=0.01, final_test_acc=95.7, train_time_s=576),
                   dict(bn=True, lr=0.7, final_test_acc=93.4, train_time_s=130),
                   dict(bn=False, lr=0.7, final_test_acc=96.2, train_time_s=100)])


def test_side_by_side():
    runs = pd.concat([
        make_runs("st", {(False, 0.01): [0.95, 0.96, 0.97]}, ("bn", "lr"), train_time_s=0.5),
        make_runs("st", {(False, 0.7): [0.96, 0.97, ("failed", 0.1), "diverged"]}, ("bn", "lr"),
                  train_time_s=0.6)])
    runs.loc[runs["outcome"] == "diverged", "train_time_s"] = math.nan   # not a measurement
    runs["bn"] = runs["bn"].astype(str)  # as read back from CSV
    shown = side_by_side(TABLE, runs)
    assert list(shown.columns[:2]) == ["bn", "lr"]
    assert shown.loc[0, "Accuracy (%) — homework"] == "95.7"
    assert shown.loc[0, "Accuracy (%) — ours"] == "96.0 ± 1.0 (n=3)"
    assert shown.loc[0, "Accuracy (%) — difference"] == "+0.3"
    assert shown.loc[0, "Time (ms) — ours"] == "500 ± 0 (n=3)"
    # seconds of two machines do not subtract: each source's time relative to its first row
    assert "Time (ms) — difference" not in shown.columns
    assert shown.loc[0, "Time (ms) — ratio to first row (homework; ours)"] == "×1.00; ×1.00"
    assert shown.loc[1, "Time (ms) — ratio to first row (homework; ours)"] == "×0.23; —"
    assert shown.loc[2, "Time (ms) — ratio to first row (homework; ours)"] == "×0.17; ×1.20"
    assert shown.loc[1, "Accuracy (%) — ours"] == "not run"
    # trained runs only: 96.5 ± 0.7 from 2 of 4; the failed run's 10 % and the diverged run stay out
    assert shown.loc[2, "Accuracy (%) — ours"] == "96.5 ± 0.7 (2 of 4 trained, 1 diverged)"
    assert shown.loc[2, "Time (ms) — ours"] == "600 ± 0 (2 of 4 trained, 1 diverged)"
    num = side_by_side(TABLE, runs, numeric=True)
    assert num.loc[0, "final_test_acc_mean"] == pytest.approx(96.0)
    assert num.loc[0, "final_test_acc_std"] == pytest.approx(1.0)
    assert num.loc[0, "final_test_acc_diff"] == pytest.approx(0.3)
    assert num.loc[0, "final_test_acc_n"] == 3
    assert num.loc[2, "train_time_s_ratio_ours"] == pytest.approx(1.2) and math.isnan(num.loc[2, "train_time_s_diff"])
    assert (num.loc[2, "final_test_acc_n"], num.loc[2, "final_test_acc_n_runs"],
            num.loc[2, "final_test_acc_n_trained"]) == (2, 4, 2)
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


def test_unknown_quote_kind_is_rejected(tmp_path):
    bad = claim(dict(kind="near", metric="final_test_acc", select={}, target=0.1, tolerance=0.1), cid="odd-quote")
    bad["quote_kind"] = "rumour"
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [bad]}))
    with pytest.raises(ValueError, match=r"odd-quote.*'quote_kind'"):
        load_claims(path)


def test_homework_quotes_keep_their_hedges_and_say_what_they_are():
    """Words that are not a homework's own result are labelled so: 002's introduction restates the BN
    paper; 003's gap reading fails on the author's own numbers; 003's 'batch 64 best' keeps its hedge."""
    shipped = {c["id"]: c for c in load_claims(ROOT / "config" / "claims.yaml")}
    assert shipped["s2-mlp-bn-allows-high-lr"]["quote_kind"] == "introduction"
    assert shipped["s2-mlp-bn-trains-more-at-lr-0.7"]["quote_kind"] == "introduction"
    assert shipped["s4-batch128-healthy"]["quote_kind"] == "derived"
    assert "這部分仍無法下定論" in shipped["s4-batch64-best"]["quote"]
    assert "tentative" in shipped["s4-batch64-best"]["english"]
    assert "our threshold" in shipped["s1-batch1-much-slower"]["english"]


# ------------------------------------------------------------------ train-or-fail: shares of runs

def test_fisher_exact_by_hand():
    """Hypergeometric tables with 10 runs: 5 of 5 vs 0 of 5 (5 trained in all): only the two extreme splits,
    each 1/C(10,5) = 1/252, are as unlikely: p = 2/252. 5 of 5 vs 2 of 5 (7 trained, 3 not): the split
    putting 0 or 3 of the 3 misses on a side has probability C(5,3)/C(10,3) = 10/120 each, the other
    two 50/120: p = 20/120. 3 of 3 vs 0 of 3: 2/C(6,3) = 0.1, so 3 runs a side never decide."""
    assert stats.fisher_p(5, 5, 0, 5) == pytest.approx(2 / 252)
    assert stats.fisher_p(5, 5, 2, 5) == pytest.approx(20 / 120)
    assert stats.fisher_p(3, 3, 0, 3) == pytest.approx(0.1)
    assert stats.fisher_p(2, 5, 2, 5) == pytest.approx(1.0)


def test_trains_more_golden():
    """Decided on k of n by Fisher's exact test: 5 of 5 vs 0 of 5 (p = 0.008) supported; 5 of 5 vs 2 of 5
    (p = 1/6) inconclusive (Newcombe's approximate interval called it supported); reversed: contradicted."""
    keys = ("bn",)
    c = claim(dict(kind="trains_more", a={"bn": True}, b={"bn": False}, expect="greater"))
    runs = make_runs("st", {(True,): [0.97] * 5, (False,): [("failed", 0.1)] * 2 + ["diverged"] * 3}, keys)
    res = run_one(c, runs)
    assert res["verdict"] == "supported" and res["p"] == pytest.approx(2 / 252) and res["diff"] == 1.0
    assert res["evidence"] == ("BN: 5 of 5 trained vs no BN: 0 of 5 trained (2 failed, 3 diverged); difference in "
                               "the share that trained +100 points, Fisher's exact test p = 0.0079")
    runs = make_runs("st", {(True,): [0.97] * 5, (False,): [0.96, 0.95, "diverged", "diverged", "diverged"]}, keys)
    res = run_one(c, runs)
    assert res["verdict"] == "inconclusive" and res["p"] == pytest.approx(20 / 120)
    assert "equal shares are not rejected" in res["reason"]
    # the groups carry the share that trained, no spread: a page that shows them shows k of n, not 97 %
    assert [(g["mean"], g["n"]) for g in res["groups"]] == [(1.0, 5), (0.4, 5)]
    assert all(math.isnan(g["std"]) for g in res["groups"])
    less = claim(dict(kind="trains_more", a={"bn": False}, b={"bn": True}, expect="greater"))
    runs = make_runs("st", {(True,): [0.97] * 5, (False,): ["diverged"] * 5}, keys)
    assert run_one(less, runs)["verdict"] == "contradicted"
    three = make_runs("st", {(True,): [0.97] * 3, (False,): ["diverged"] * 3}, keys)
    r = run_one(c, three)
    assert r["verdict"] == "inconclusive" and "3 against 3 runs cannot decide it" in r["reason"]


def test_exact_interval_by_hand():
    """Clopper-Pearson: 0 of n reaches up to 1 - (0.025)^(1/n), n of n down to 0.025^(1/n); in between, the
    beta quantiles. 0 of 5: 0.522 > 1/2 (not decisive), 0 of 6: 0.459."""
    for n in (3, 5, 6):
        assert stats.exact_interval(0, n) == pytest.approx((0.0, 1 - 0.025 ** (1 / n)))
        assert stats.exact_interval(n, n) == pytest.approx((0.025 ** (1 / n), 1.0))
    assert stats.exact_interval(2, 5) == pytest.approx((sps.beta.ppf(0.025, 2, 4), sps.beta.ppf(0.975, 3, 3)))
    assert stats.exact_interval(0, 0) == (0.0, 1.0)


def test_trained_share_golden():
    """0 of 5 trained: exact upper bound 52.2 % contains one half: inconclusive, and the reason says 6 runs
    would be needed (before: Wilson's 43.4 %, supported); 0 of 6: supported; 2 of 5: inconclusive; 6 of 6
    'below': contradicted; fewer runs than min_runs: inconclusive by rule."""
    c = claim(dict(kind="trained_share", select={"lr": 0.5}, below=0.5))
    runs = make_runs("st", {(0.5,): [("failed", 0.1135)] * 3 + ["diverged"] * 2}, ("lr",))
    res = run_one(c, runs)
    assert res["verdict"] == "inconclusive" and res["hi"] == pytest.approx(1 - 0.025 ** 0.2)
    assert res["reason"].endswith("the runs point the claim's way (0 of 5 trained), but 5 runs cannot show it "
                                  "at the 95% level: at least 6 would be needed, none of them training")
    assert res["evidence"] == "lr 0.5: 0 of 5 trained (3 failed, 2 diverged) (95% exact interval 0–52 %); " \
                              "expected a share below 50 %"
    six = make_runs("st", {(0.5,): [("failed", 0.1135)] * 4 + ["diverged"] * 2}, ("lr",))
    assert run_one(c, six)["verdict"] == "supported"
    runs = make_runs("st", {(0.5,): [0.96, 0.95, ("failed", 0.1), ("failed", 0.1), "diverged"]}, ("lr",))
    assert run_one(c, runs)["verdict"] == "inconclusive"
    above = claim(dict(kind="trained_share", select={"lr": 0.5}, above=0.5))
    runs = make_runs("st", {(0.5,): [0.96] * 6}, ("lr",))
    assert run_one(above, runs)["verdict"] == "supported"
    assert run_one(c, runs)["verdict"] == "contradicted"
    short = make_runs("st", {(0.5,): [0.96, 0.95]}, ("lr",))
    assert run_one(c, short)["reason"].startswith("inconclusive by rule")


def test_every_rule_kind_is_documented_in_the_claims_header():
    """The registry of rule kinds and the list in config/claims.yaml's header name the same kinds: a kind
    added to the registry without a line in the header (or a line for a kind that does not exist) fails."""
    from batchwise.analysis.claims import REGISTRY, documented_kinds
    listed = documented_kinds(ROOT / "config" / "claims.yaml")
    assert len(listed) == len(set(listed))
    assert set(listed) == set(REGISTRY) == set(RULE_KINDS)


def test_documented_kinds_reads_only_the_header_list(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text("# Rule kinds (text):\n#   compare           a vs b\n#                     (more)\n"
                    "#   best              at beats all\n# Derived metrics: x\n#   monotonic         later\nclaims: []\n")
    from batchwise.analysis.claims import documented_kinds
    assert documented_kinds(path) == ["compare", "best"]


# Each literature quote as checked against the paper (abstract, or the section named in `source`); a
# paraphrase where the exact words could not be checked. A quote edited in claims.yaml fails here.
LITERATURE = {
    "x1-zero-init-collapses": ("paraphrase", "section 8.4", None),
    "x2-mlp-bn-raises-stable-lr": ("verbatim", "heading of section 3.3", "Batch Normalization enables higher learning rates"),
    "x2-cnn-bn-raises-stable-lr": ("verbatim", "abstract", "We conduct several experiments, and show that BN primarily "
                                   "enables training with larger learning rates, which is the cause for faster "
                                   "convergence and better generalization."),
    "x3-linear-scaling-perfect-below-critical": ("verbatim", "section 2.1", "Linear Scaling Rule: When the minibatch "
                                                 "size is multiplied by k, multiply the learning rate by k."),
    "x3-diminishing-returns-past-critical": ("verbatim", "arXiv:1811.03600v1", "Eventually, increasing the batch size "
                                             "will no longer reduce the number of training steps required"),
    "x3-scaled-rate-beats-fixed": ("verbatim", "section 2.1", "Linear Scaling Rule: When the minibatch size is "
                                   "multiplied by k, multiply the learning rate by k."),
    "x3-noise-scale-predicts-critical-batch": ("verbatim", "abstract", "a simple and easy-to-measure statistic called "
                                               "the gradient noise scale predicts the largest useful batch size across "
                                               "many domains and applications"),
}


def test_literature_quotes_are_the_checked_words_with_their_place():
    shipped = {c["id"]: c for c in load_claims(ROOT / "config" / "claims.yaml") if "source" in c}
    assert set(shipped) == set(LITERATURE)
    for cid, (kind, place, words) in LITERATURE.items():
        c = shipped[cid]
        assert c.get("quote_kind", "verbatim") == kind and place in c["source"], cid
        if words is not None:
            assert c["quote"] == words, cid
    assert "symmetry" not in shipped["x1-zero-init-collapses"]["english"].split(".")[0]
    assert "dead saddle" in shipped["x1-zero-init-collapses"]["english"]


# ------------------------------------------------------------------ results/claims.csv

def _same(x, y) -> bool:
    """Equal, NaN equal to NaN, through lists and mappings."""
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y and type(x) is type(y)


def test_verdicts_file_holds_every_verdict_its_numbers_and_rule(tmp_path):
    """judge -> results/claims.csv -> read_verdicts gives back what judge gave, number for number (NaN, inf
    and the homework's '000' included): the report renders the file, not a second judgement."""
    cfg = {"studies": {"s2_bn_lr_cnn": {"grid": {"bn": [False, True], "lr": [0.01, 0.05, 0.5]}}},
           "verdict": {"level": 0.95, "min_runs": 3}}
    runs = s2_cnn_table()
    judged = judge(cfg, runs, ROOT / "config" / "claims.yaml")
    assert [r["id"] for r in judged] == ["s2-cnn-bn-better-lr-0.01", "s2-cnn-bn-better-lr-0.05",
                                         "s2-cnn-no-bn-fails-lr-0.5", "s2-cnn-bn-lr-0.5-best",
                                         "s2-cnn-bn-trains-fastest"]
    assert judged[3]["rule"] == {"kind": "best", "metric": "final_test_acc", "at": {"bn": True, "lr": 0.5},
                                 "goal": "max"} and judged[3]["level"] == 0.95
    path = tmp_path / "claims.csv"
    write_verdicts(judged, path)
    back = read_verdicts(path)
    keys = ("id", "homework", "study", "verdict", "evidence", "reason", "mean_a", "n_a", "diff", "lo", "hi",
            "groups", "comparisons", "rule", "source", "quote_kind", "english", "kind", "metric")
    for got, want in zip(back, judged):
        for k in keys:
            assert _same(got[k], want.get(k, "" if k == "source" else math.nan)), (want["id"], k, got[k], want.get(k))
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns[:10]) == ["id", "homework", "study", "source", "quote_kind", "quote", "english",
                                        "kind", "metric", "verdict"]
    assert frame.loc[0, "homework"] == "002" and frame.loc[3, "verdict"] == "supported"


# ------------------------------------------------------------------ times: shared timing, hardware, goal

def test_a_time_shared_by_its_runs_carries_the_timing_error_and_the_clock_it_was_read_on():
    """Three runs of a setting share one timing (no spread by construction): the evidence gives the
    timing pass's standard error as the ±, not 0, and says which device and threads timed them."""
    solo = dict(time_basis="solo", timing_bursts=5, timed_on="AMD EPYC", timed_threads=1)
    runs = pd.concat([
        make_runs("st", {(64,): [710.0] * 3}, ("batch_size",), "train_time_s", train_time_s_se=30.0, **solo),
        make_runs("st", {(1000,): [980.0] * 3}, ("batch_size",), "train_time_s", train_time_s_se=10.0, **solo)])
    r = run_one(claim(dict(kind="compare", metric="train_time_s", a={"batch_size": 1000},
                           b={"batch_size": 64}, expect="less")), runs)
    # per setting: its 3 runs share one error: (3 x 30 / 3)² -> 30 s, not 30/√3
    assert ("batch 64: 710.0 ± 30.00 s (n=3; ± is the timing standard error, ≥ 5 bursts, one timing "
            "shared by the runs)") in r["evidence"]
    assert r["evidence"].endswith("; times timed alone on AMD EPYC, 1 thread")
    assert r["groups"][0]["one_timing"] and r["groups"][0]["timing_se"] == pytest.approx(10.0)
    assert r["verdict"] == "contradicted"   # 270 s slower, timing errors 10 and 30 s
    wall = runs.assign(time_basis="wall", timed_on="Intel Xeon", timed_threads=2)
    wall.loc[wall["batch_size"] == 64, "train_time_s"] = [700.0, 710.0, 720.0]
    r = run_one(claim(dict(kind="compare", metric="train_time_s", a={"batch_size": 1000},
                           b={"batch_size": 64}, expect="less")), wall)
    assert "batch 64: 710.0 ± 10.0 s (n=3)" in r["evidence"]
    assert r["evidence"].endswith("; times the runs' own wall time on Intel Xeon, 2 threads")


def test_goal_columns_read_the_first_epoch_at_the_goal_off_the_history():
    from batchwise.results.aggregate import goal_columns
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "test_acc": [0.90, 0.949, 0.95, 0.97]})
    # 0.95 is reached in epoch 3 (0.949 is not): 3 epochs x 2.0 s, its error 3 x 0.1 s
    assert goal_columns(history, 0.95, 2.0, 0.1) == {"epochs_to_goal": 3, "time_to_goal_s": 6.0,
                                                     "time_to_goal_s_se": pytest.approx(0.3)}
    assert goal_columns(history, 0.98, 2.0, 0.1) == {"epochs_to_goal": None, "time_to_goal_s": None,
                                                     "time_to_goal_s_se": None}
    assert goal_columns(history, 0.90, 2.0) == {"epochs_to_goal": 1, "time_to_goal_s": 2.0,
                                                "time_to_goal_s_se": None}


def test_time_to_goal_counts_a_run_that_never_got_there_as_never():
    """BN reaches the goal in 1, 1, 2 epochs of 4 s; no BN in 3, 3 epochs of 3 s and one run fails: a
    failed run never reaches it, so BN is faster counting every run (rank-sum, as for any to-target
    metric)."""
    bn = make_runs("st", {(True,): [4.0, 4.0, 8.0]}, ("bn",), "time_to_goal_s", time_basis="wall")
    plain = make_runs("st", {(False,): [9.0, 9.0, ("failed", math.nan)]}, ("bn",), "time_to_goal_s",
                      time_basis="wall")
    r = run_one(claim(dict(kind="compare", metric="time_to_goal_s", a={"bn": True}, b={"bn": False},
                           expect="less")), pd.concat([bn, plain]))
    assert "counted as never" in r["evidence"] or "never" in r["reason"]
    assert r["groups"][1]["n_trained"] == 2 and r["groups"][1]["n_runs"] == 3


def test_a_difference_left_unbounded_by_never_reached_runs_on_both_sides_gives_no_number():
    """BN: 2 of 5 runs reached the goal, no BN: none: the difference has neither bound; the evidence says
    so instead of printing 'difference +0.0 s' (inf - inf), and decides nothing."""
    bn = make_runs("st", {(True,): [13.0, 13.4, ("failed", math.nan), ("failed", math.nan), ("failed", math.nan)]},
                   ("bn",), "time_to_goal_s", time_basis="wall")
    plain = make_runs("st", {(False,): [("failed", math.nan)] * 5}, ("bn",), "time_to_goal_s", time_basis="wall")
    r = run_one(claim(dict(kind="compare", metric="time_to_goal_s", a={"bn": True}, b={"bn": False},
                           expect="less")), pd.concat([bn, plain]))
    assert "difference unbounded (95% interval [−inf, +inf]: runs that never reached it on both sides)" in r["evidence"]
    assert "+0.0 s" not in r["evidence"] and r["verdict"] == "inconclusive"
