"""The claims' error rates, simulated with the project's own `evaluate_claims`: Holm's correction for
`best` and `compare_each` under the null, time claims with the timing bursts' spread (equal speed: not
decisive; 30 % apart: decisive; no spread: inconclusive); rivals from the study's grid keys; claims
whose settings have no runs yet; every rule kind under the null with 3 and 5 runs (claims.null, the
cases of docs/claims-null.md: the share rules and the t rules exactly, the others by a fast simulation).
Seeded, so every number here is the same on every run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from batchwise.analysis import stats
from batchwise.analysis.claims import REGISTRY, evaluate_claims, null

SIMS = 400   # a null rate of 5 % is estimated to about ±1.1 points (one standard error)


def claim(rule: dict, study: str = "st") -> dict:
    return dict(id="c1", homework="000", quote="q", english="e", study=study, rule=rule)


def table(settings: dict[tuple, np.ndarray], keys: tuple[str, ...], metric: str = "final_test_acc",
          **columns) -> pd.DataFrame:
    """One trained run per value: settings map key values to that setting's values."""
    rows = []
    for values, runs in settings.items():
        setting = "_".join(f"{k}={v}" for k, v in zip(keys, values))
        for seed, x in enumerate(runs):
            rows.append(dict(study="st", setting=setting, seed=seed, **dict(zip(keys, values)),
                             status="ok", outcome="trained", **{metric: float(x)}))
    return pd.DataFrame(rows).assign(**columns)


# ------------------------------------------------------------------ Holm: the null contradiction rate

def verdict_rates(make_runs, rule: dict, sims: int = SIMS, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    got = [evaluate_claims([claim(rule)], make_runs(rng))[0]["verdict"] for _ in range(sims)]
    return {v: got.count(v) / sims for v in ("supported", "contradicted", "inconclusive")}


@pytest.mark.parametrize("n", [3, 5])
def test_best_with_six_equal_settings_is_contradicted_at_most_5_percent(n):
    """All six settings equal (normal noise): 'best' is wrong whenever it decides. Without Holm's
    correction (each of the 5 rivals at 95 %) it contradicts 7.6 % of the time at n = 5."""
    rule = dict(kind="best", metric="final_test_acc", goal="max", at={"batch_size": 1})
    rates = verdict_rates(lambda rng: table({(b,): rng.normal(0.9, 0.01, n) for b in range(1, 7)},
                                            ("batch_size",)), rule)
    assert rates["contradicted"] <= 0.05
    assert rates["supported"] <= 0.05
    assert rates["contradicted"] > 0   # the test decides sometimes: not a rule that can never contradict


def test_compare_each_under_the_null_is_decided_at_most_5_percent():
    """Three values, a and b equal at each: without the correction any one of three tests at 95 %
    contradicts 6.8 % of the time."""
    rule = dict(kind="compare_each", metric="final_test_acc", over="lr", a={"bn": True}, b={"bn": False},
                expect="greater")
    rates = verdict_rates(lambda rng: table({(bn, lr): rng.normal(0.9, 0.01, 3) for bn in (True, False)
                                             for lr in (0.01, 0.1, 1.0)}, ("bn", "lr")), rule)
    assert rates["contradicted"] <= 0.05 and rates["supported"] <= 0.05


def test_holm_steps_down_by_hand():
    """Three comparisons with given half widths per level: the first round judges all at 1 - 0.05/3;
    what it decides leaves two, judged at 97.5 %, then one at 95 %."""
    half = {round(1 - 0.05 / 3, 9): 2.4, 0.975: 2.2, 0.95: 1.96}

    def family(ests):
        return [lambda lev, e=e: stats.Interval(e, e - half[round(lev, 9)], e + half[round(lev, 9)]) for e in ests]

    out = stats.holm(family([3.0, 2.1, 2.0]), 0.95)   # 3.0 decided first; then 2.1 - 2.2 < 0: stop
    assert [round(lev, 6) for _, lev in out] == [round(1 - 0.05 / 3, 6), 0.975, 0.975]
    assert [stats.side(iv) for iv, _ in out] == [1, 0, 0]
    out = stats.holm(family([3.0, 2.3, 2.0]), 0.95)   # 2.3 decided at 97.5 %, then 2.0 at 95 %
    assert [stats.side(iv) for iv, _ in out] == [1, 1, 1]
    assert [round(lev, 6) for _, lev in out] == [round(1 - 0.05 / 3, 6), 0.975, 0.95]


# ------------------------------------------------------------------ time claims: the timing bursts

STEPS = 938   # one epoch of MNIST at batch 64; every run of a setting trains as many steps


def timed(rng: np.random.Generator, step_s: dict[str, float], noise: float, bursts: int = 5,
          metric: str = "train_time_s") -> pd.DataFrame:
    """A runs table as the solo timing pass writes it: each setting timed in `bursts` bursts with
    relative noise `noise`; each of its 3 runs gets s/step x steps and that time's standard error."""
    rows = []
    for setting, true in step_s.items():
        burst = true * (1 + noise * rng.standard_normal(bursts))
        mean, se = burst.mean(), burst.std(ddof=1) / math.sqrt(bursts)
        for seed in range(3):
            rows.append(dict(study="st", setting=setting, seed=seed, bn=setting == "bn", status="ok",
                             outcome="trained", time_basis="solo", timing_bursts=bursts,
                             **{metric: mean * STEPS, f"{metric}_se": se * STEPS}))
    return pd.DataFrame(rows)


FASTER = claim(dict(kind="compare", metric="train_time_s", a={"bn": True}, b={"bn": False}, expect="less"))


def test_equal_speed_with_3_percent_timing_noise_is_rarely_decisive():
    """Before: every run of a setting had the same time, the interval was a point, and 100 % of these
    simulations were decisive."""
    rng = np.random.default_rng(1)
    got = [evaluate_claims([FASTER], timed(rng, {"bn": 0.01, "plain": 0.01}, 0.03))[0]["verdict"]
           for _ in range(SIMS)]
    assert sum(v != "inconclusive" for v in got) / SIMS <= 0.05


def test_a_30_percent_difference_with_3_percent_noise_is_decisive():
    rng = np.random.default_rng(2)
    for _ in range(20):
        r = evaluate_claims([FASTER], timed(rng, {"bn": 0.01, "plain": 0.013}, 0.03))[0]
        assert r["verdict"] == "supported"
        assert "timing bursts" in r["evidence"] and "timing standard error" in r["evidence"]


def test_timing_term_enters_the_interval_by_hand():
    runs = timed(np.random.default_rng(3), {"bn": 0.01, "plain": 0.012}, 0.03)
    r = evaluate_claims([FASTER], runs)[0]
    a, b = runs[runs["bn"]], runs[~runs["bn"]]
    ta, tb = a["train_time_s_se"].mean() ** 2, b["train_time_s_se"].mean() ** 2   # runs' spread is 0
    df = (ta + tb) ** 2 / (ta ** 2 / 4 + tb ** 2 / 4)
    d = a["train_time_s"].mean() - b["train_time_s"].mean()
    half = sps.t.ppf(0.975, df) * math.sqrt(ta + tb)
    assert (r["diff"], r["lo"], r["hi"]) == pytest.approx((d, d - half, d + half))
    assert r["comparisons"][0]["df"] == pytest.approx(df)


@pytest.mark.parametrize("drop", [["train_time_s_se", "timing_bursts"], ["train_time_s_se"]])
def test_times_without_a_spread_are_a_single_measurement(drop):
    """Old results (no `<metric>_se`): every run of a setting carries one timing; a 30 % difference is
    then still not decided, and the reason says why."""
    runs = timed(np.random.default_rng(4), {"bn": 0.01, "plain": 0.013}, 0.0).drop(columns=drop)
    r = evaluate_claims([FASTER], runs)[0]
    assert r["verdict"] == "inconclusive" and "single measurement" in r["reason"]
    assert "reliably" not in r["reason"]


def test_one_burst_or_no_spread_is_a_single_measurement():
    runs = timed(np.random.default_rng(5), {"bn": 0.01, "plain": 0.013}, 0.03)
    one = runs.assign(timing_bursts=1)
    flat = runs.assign(train_time_s_se=0.0)
    for t in (one, flat):
        assert evaluate_claims([FASTER], t)[0]["verdict"] == "inconclusive"


def test_wall_clock_runs_are_each_their_own_measurement():
    """Runs that timed themselves (`time_basis` wall) are independent measurements: plain Welch."""
    a, b = [10.0, 10.5, 10.2], [13.0, 13.4, 12.9]
    runs = table({(True,): a, (False,): b}, ("bn",), metric="train_time_s", time_basis="wall")
    r = evaluate_claims([FASTER], runs)[0]
    assert r["verdict"] == "supported"
    lo, hi = stats.welch_interval(a, b).lo, stats.welch_interval(a, b).hi
    assert (r["lo"], r["hi"]) == pytest.approx((lo, hi))


# ------------------------------------------------------------------ rivals from the grid keys

def test_best_rivals_come_from_the_studys_grid_keys():
    """`lr_scaling` is a grid key of x3_scaled_lr but not a column the old fixed list knew: 'best' found
    no rival and said 'nothing to compare with'."""
    runs = table({("linear", 1024): [0.95, 0.96, 0.955], ("none", 1024): [0.80, 0.81, 0.79],
                  ("sqrt", 1024): [0.90, 0.91, 0.905]}, ("lr_scaling", "batch_size"))
    rule = dict(kind="best", metric="final_test_acc", goal="max", at={"lr_scaling": "linear"},
                where={"batch_size": 1024})
    r = evaluate_claims([claim(rule)], runs, grids={"st": {"lr_scaling": ["none", "linear", "sqrt"],
                                                           "batch_size": [1024]}})[0]
    assert r["verdict"] == "supported"
    assert [c["b"] for c in r["comparisons"]] == ["lr_scaling sqrt", "lr_scaling none"]   # strongest first
    old = evaluate_claims([claim(rule)], runs)[0]   # without the config's grid: the old column list
    assert "nothing to compare with" in old["reason"]


# ------------------------------------------------------------------ not run yet

def test_a_claim_whose_settings_have_no_runs_is_not_run_yet():
    runs = table({(64,): [0.99, 0.98, 0.985]}, ("batch_size",))
    rule = dict(kind="compare", metric="final_test_acc", a={"batch_size": 1000}, b={"batch_size": 64},
                expect="less")
    r = evaluate_claims([claim(rule)], runs)[0]
    assert r["verdict"] == "not run yet" and r["evidence"] == "no runs of batch 1000 (st)"
    absent = evaluate_claims([claim(rule, study="other")], runs)[0]
    assert absent["verdict"] == "not run yet" and absent["evidence"] == "no runs of study other"
    # a setting with runs that all failed has runs: judged, not 'not run yet'
    runs.loc[len(runs)] = dict(runs.iloc[0], batch_size=1000, outcome="diverged", final_test_acc=math.nan)
    assert evaluate_claims([claim(rule)], runs)[0]["verdict"] == "inconclusive"


def test_a_half_run_sweep_is_not_run_yet_given_the_grid():
    """A sweep whose grid has values without runs (half of x2's learning rates imported so far) is
    'not run yet', naming the missing values: judged on the half that ran, a monotone trend could
    read 'supported' when the missing half would break it. Without the grid it is judged."""
    lrs = [0.01, 0.1, 1.0, 10.0]
    runs = table({(lr,): [0.90 + 0.01 * i + d for d in (0, 0.001, 0.002)] for i, lr in enumerate(lrs[:2])},
                 ("lr",))
    grids = {"st": {"lr": lrs}}
    rule = dict(kind="monotonic", metric="final_test_acc", over="lr", direction="increasing")
    r = evaluate_claims([claim(rule)], runs, grids=grids)[0]
    assert r["verdict"] == "not run yet"
    assert r["evidence"] == "no runs of lr 1 (st); lr 10 (st)" and r["reason"] == ""  # the evidence says it all
    assert evaluate_claims([claim(rule)], runs)[0]["verdict"] == "supported"
    # best: a rival without runs; compare: a selector pooling several grid points, one of them unrun
    best = dict(kind="best", metric="final_test_acc", goal="max", at={"lr": 0.1})
    assert evaluate_claims([claim(best)], runs, grids=grids)[0]["evidence"] == \
        "no runs of lr 1 (st); lr 10 (st)"
    two = {"st": {"lr": [0.01, 0.1], "bn": [False, True]}}
    pooled = table({(0.01, False): [0.9, 0.91, 0.92], (0.1, False): [0.95, 0.96, 0.97],
                    (0.01, True): [0.93, 0.94, 0.95]}, ("lr", "bn"))
    cmp = dict(kind="compare", metric="final_test_acc", a={"lr": 0.1}, b={"lr": 0.01}, expect="greater")
    r = evaluate_claims([claim(cmp)], pooled, grids=two)[0]
    assert r["verdict"] == "not run yet" and r["evidence"] == "no runs of lr 0.1, BN (st)"
    # every grid point run: judged as before, and a diverged-only setting still counts as run
    pooled.loc[len(pooled)] = dict(pooled.iloc[0], lr=0.1, bn=True, outcome="diverged", final_test_acc=math.nan)
    assert evaluate_claims([claim(cmp)], pooled, grids=two)[0]["verdict"] != "not run yet"
    # a setting outside the grid (a reduced config): not run, and said to be outside this config's grid
    far = dict(kind="compare", metric="final_test_acc", a={"lr": 100}, b={"lr": 0.01}, expect="less")
    assert evaluate_claims([claim(far)], runs, grids=grids)[0]["evidence"] == \
        "no runs of lr 100 (st) (not in this configuration's grid)"
    # more than four missing settings: four named, the rest counted
    many = evaluate_claims([claim(rule)], runs, grids={"st": {"lr": [*lrs, 20, 30, 40]}})[0]
    assert many["evidence"] == "no runs of lr 1 (st); lr 10 (st); lr 20 (st); lr 30 (st); 1 more"


# ------------------------------------------------------------------ critical_batch: coverage

def test_critical_batch_interval_covers_the_true_ratio():
    """Steps S = S_min (1 + B_crit / B) with 5 % (then 15 %) log-normal noise per run, 3 runs per batch size,
    and a log-normal noise scale with median 150: the 95 % interval of B_crit / B_simple must hold the true
    200 / 150 in >= 93 % of the simulations (the percentile bootstrap it replaces: 89-91 %)."""
    from batchwise.analysis import extensions as ext
    batches = (16, 32, 64, 128, 256, 512, 1024, 2048)
    for step_noise, seed in ((0.05, 0), (0.15, 1)):
        rng = np.random.default_rng(seed)
        covered = 0
        for _ in range(SIMS):
            cells = []
            for b in batches:
                steps = 300 * (1 + 200 / b) * np.exp(step_noise * rng.standard_normal(3))
                cells.append((float(b), float(steps.mean()), float(steps.var(ddof=1)) / 3, 3))
            noise = 150 * np.exp(0.3 * rng.standard_normal(3 * len(batches)))
            _, lo, hi, _ = ext.bend_ratio_interval(cells, noise, 0.95)
            covered += lo <= 200 / 150 <= hi
        assert covered / SIMS >= 0.93, (step_noise, covered / SIMS)


# ------------------------------------------------------------------ every rule kind under the null


NULL_DOC = Path(__file__).resolve().parents[1] / "docs" / "claims-null.md"


def _case(kind: str, text: str = "") -> null.Case:
    return next(c for c in null.CASES if c.kind == kind and text in c.null)


def test_every_rule_kind_has_a_null_case():
    assert {c.kind for c in null.CASES} == set(REGISTRY)


@pytest.mark.parametrize("kind", ["not_converged", "trains_more", "trained_share", "collapse"])
@pytest.mark.parametrize("n", [3, 5])
def test_share_rules_decide_at_most_5_percent_exactly(kind, n):
    """Every k of n weighted by its binomial probability at the share on the bound (for two shares, the worst
    common share): with Wilson's and Newcombe's intervals trained_share, collapse and trains_more decided
    6.25 % of the time at n = 5, not_converged (0 of n: supported, n of n: contradicted) 25 % at n = 3."""
    sup, con, _ = null.rates(_case(kind), n, draws=0)
    assert sup + con <= 0.05


def test_share_rule_decides_from_six_runs_at_the_exact_rate():
    """The exact computation sees decisions where there are some: at n = 6, 0 of 6 and 6 of 6 decide a share
    against one half, 2 / 64 of the time."""
    sup, con, _ = null.rates(_case("trained_share"), 6, draws=0)
    assert (sup, con) == pytest.approx((0.5 ** 6, 0.5 ** 6))
    sup, con, _ = null.rates(_case("not_converged"), 6, draws=0)
    assert (sup, con) == pytest.approx((0.5 ** 6, 0.5 ** 6))


@pytest.mark.parametrize("n", [3, 5])
def test_threshold_at_its_bound_decides_exactly_5_percent(n):
    """A t interval against a bound the true mean sits on decides when |t| exceeds the 97.5 % quantile:
    exactly 2.5 % each way, for normal runs, found through the rule's own verdicts."""
    sup, con, _ = null.rates(_case("threshold"), n, draws=0)
    assert (sup, con) == pytest.approx((0.025, 0.025), abs=1e-6)


# A simulated rate of N draws has a standard error of sqrt(p (1 - p) / N): a rule at 5 % passes below
# 0.05 + 2 standard errors, a rule at the old 25 % or 10 % does not.
FAST = 300
SLACK = 2 * math.sqrt(0.05 * 0.95 / FAST)


@pytest.mark.parametrize("kind, text", [("compare", "fails 30 %, diverges"), ("compare", "epochs to target"),
                                        ("equivalent", "margin (1 pp)")])
def test_simulated_rules_under_the_null(kind, text):
    """Settings whose runs mix outcomes (the rank-sum route), times to the target with runs that failed
    (counted as never), and an equivalence margin the true difference sits on: decided at most ~5 %."""
    for n in (3, 5):
        sup, con, _ = null.rates(_case(kind, text), n, FAST, seed=1)
        assert sup + con <= 0.05 + SLACK, (kind, n, sup, con)


def test_the_published_null_table_covers_every_kind_and_stays_within_5_percent():
    """docs/claims-null.md, generated by `python -m batchwise.analysis.claims.null`: a row per rule kind and n,
    every decided rate at most 5 % (a simulated one within its standard error of it)."""
    rows = [line.split("|")[1:-1] for line in NULL_DOC.read_text().splitlines()
            if line.startswith("| ") and not line.startswith(("| rule kind", "| ---"))]
    assert {r[0].strip() for r in rows} == set(REGISTRY)
    assert {(r[0].strip(), r[2].strip()) for r in rows} == {(k, n) for k in REGISTRY for n in ("3", "5")}
    for r in rows:
        decided = r[5].replace("*", "").strip()
        rate = float(decided.split("%")[0])
        se = float(decided.split("±")[1]) if "±" in decided else 0.0
        assert rate <= 5.0 + 2 * se, r
