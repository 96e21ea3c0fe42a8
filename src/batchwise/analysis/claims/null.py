"""How often each rule kind decides a claim that is neither true nor false, with 3 and 5 runs a setting.

Under the null a claim's quantity lies exactly on its bound (two settings equal, a share at one half,
a mean at the edge of its band): every decision, supported or contradicted, is then wrong, and the verdict
rule promises it at most 1 - level (5 %) of the time. Each case builds runs tables under such a null and
judges them with ``evaluate_claims``, the report's own function. Claims on k of n runs are computed
exactly (every outcome weighted by its binomial probability, at the worst true share); the others are
simulated, seeded. Regenerate the table of docs/claims-null.md with

    python -m batchwise.analysis.claims.null --draws 2000 > docs/claims-null.md
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats as sps

from .evaluate import evaluate_claims
from .registry import REGISTRY

COLLAPSED = (0.1135, 0.1028, 0.098)   # what a constant classifier of MNIST scores: one class's share


def _claim(rule: dict) -> dict:
    return dict(id="null", homework="000", quote="q", english="e", study="st", rule=rule)


def _table(cells: dict[tuple, list], keys: tuple[str, ...], metric: str = "final_test_acc", **extra) -> pd.DataFrame:
    """A runs table: each cell (key values) -> its runs, each a number (a trained run's value) or a tuple
    (outcome, value, optional dict of further columns)."""
    rows = []
    for values, runs in cells.items():
        setting = "_".join(f"{k}={v}" for k, v in zip(keys, values))
        for seed, run in enumerate(runs):
            outcome, value, more = ("trained", run, {}) if not isinstance(run, tuple) else \
                (run[0], run[1], run[2] if len(run) > 2 else {})
            rows.append(dict(study="st", setting=setting, seed=seed, **dict(zip(keys, values)), status="ok",
                             outcome=outcome, diverged=outcome == "diverged", **{metric: value}, **extra, **more))
    return pd.DataFrame(rows)


def _verdict(rule: dict, runs: pd.DataFrame) -> str:
    return evaluate_claims([_claim(rule)], runs)[0]["verdict"]


@dataclass(frozen=True)
class Case:
    """One null: the rule kind, what is equal, the claim's rule, and either ``draw`` (rng, n -> a runs table,
    simulated) or ``exact`` (n -> rates of supported and contradicted, computed)."""

    kind: str
    null: str
    rule: dict
    draw: Callable[[np.random.Generator, int], pd.DataFrame] | None = None
    exact: Callable[[int], tuple[float, float, str]] | None = None


# ------------------------------------------------------------------ the simulated nulls

def _normal(rng: np.random.Generator, n: int, mean: float = 0.97, sd: float = 0.005) -> list[float]:
    return list(rng.normal(mean, sd, n))


def _mixed_run(rng: np.random.Generator) -> float | tuple:
    """A run of a setting at the edge of stability: trains (97 %) half of the time, fails as a constant
    classifier 30 %, diverges 20 %."""
    u = rng.random()
    if u < 0.5:
        return float(rng.normal(0.97, 0.005))
    if u < 0.8:
        return ("failed", float(rng.choice(COLLAPSED)))
    return ("diverged", math.nan)


def _to_target_run(rng: np.random.Generator) -> float | tuple:
    """Epochs to the target of a setting that fails 30 % of the time (a failed run may have touched it)."""
    first = float(rng.integers(2, 7))
    return ("failed", first if rng.random() < 0.5 else math.nan) if rng.random() < 0.3 else first


def _sweep(rng: np.random.Generator, n: int, values: tuple, metric: str = "final_test_acc") -> pd.DataFrame:
    return _table({(v,): _normal(rng, n) for v in values}, ("batch_size",), metric)


LRS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _half_failure(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """BN and no BN with the same failure curve: half of the runs train at lr 0.5."""
    cells = {}
    for bn in (True, False):
        for lr in LRS:
            p = 1 / (1 + (lr / 0.5) ** 4)
            cells[(bn, lr)] = [0.97 if rng.random() < p else ("failed", 0.1135) for _ in range(n)]
    return _table(cells, ("bn", "lr"))


BATCHES = (16, 32, 64, 128, 256, 512, 1024, 2048)


def _critical_batch(rng: np.random.Generator, n: int, factor: float = 4.0) -> pd.DataFrame:
    """Steps to target S = 300 (1 + 200 / B) with 5 % noise per run; the noise scale's median 200 / factor:
    the ratio B_crit / B_simple lies exactly on the claim's bound."""
    cells = {("linear", b): [(
        "trained", float(300 * (1 + 200 / b) * math.exp(0.05 * rng.standard_normal())),
        {"noise_scale": float(200 / factor * math.exp(0.3 * rng.standard_normal()))}) for _ in range(n)]
        for b in BATCHES}
    return _table(cells, ("lr_scaling", "batch_size"), "steps_to_target", final_test_acc=0.99)


def _timed(rng: np.random.Generator, n: int, ratio: float) -> pd.DataFrame:
    """Wall times (each run timed itself) of two settings, log-normal with 3 % spread, a / b = ratio."""
    return _table({(True,): list(1.0 * ratio * np.exp(0.03 * rng.standard_normal(n))),
                   (False,): list(np.exp(0.03 * rng.standard_normal(n)))}, ("bn",), "train_time_s", time_basis="wall")


# ------------------------------------------------------------------ the exact nulls (k of n)

def _binom(k: int, n: int, p: float) -> float:
    return float(sps.binom.pmf(k, n, p))


def _one_share(rule: dict, runs_of: Callable[[int, int], pd.DataFrame], p: float) -> Callable[[int], tuple]:
    """Rates of a one-share rule at true share p: the verdict at every k, weighted by its probability."""
    def rates(n: int) -> tuple[float, float, str]:
        got = {k: _verdict(rule, runs_of(k, n)) for k in range(n + 1)}
        return (sum(_binom(k, n, p) for k, v in got.items() if v == "supported"),
                sum(_binom(k, n, p) for k, v in got.items() if v == "contradicted"), f"share {p:g}")
    return rates


def _trains_more_rates(rule: dict) -> Callable[[int], tuple]:
    """Both settings train with the same share p; the worst p on a grid of 0.01 steps."""
    def rates(n: int) -> tuple[float, float, str]:
        got = {(ka, kb): _verdict(rule, _table({(True,): [0.97] * ka + [("failed", 0.1135)] * (n - ka),
                                                (False,): [0.97] * kb + [("failed", 0.1135)] * (n - kb)}, ("bn",)))
               for ka in range(n + 1) for kb in range(n + 1)}
        best = (0.0, 0.0, 0.5)
        for p in np.arange(0.01, 1.0, 0.01):
            sup = sum(_binom(ka, n, p) * _binom(kb, n, p) for (ka, kb), v in got.items() if v == "supported")
            con = sum(_binom(ka, n, p) * _binom(kb, n, p) for (ka, kb), v in got.items() if v == "contradicted")
            if sup + con > best[0] + best[1]:
                best = (sup, con, float(p))
        return best[0], best[1], f"worst share {best[2]:.2f}"
    return rates


def _trained(k: int, n: int) -> pd.DataFrame:
    return _table({(0.5,): [0.97] * k + [("failed", 0.1135)] * (n - k)}, ("lr",))


def _collapsed(k: int, n: int) -> pd.DataFrame:
    runs = [("failed", 0.1135, {"top_pred_share": 1.0, "top_pred_class": 1})] * k + \
           [("trained", 0.97, {"top_pred_share": 0.12, "top_pred_class": 1})] * (n - k)
    return _table({("zeros",): runs}, ("init",))


def _converged(k: int, n: int) -> pd.DataFrame:
    """k runs end at the target (98 %); the others touched it in epoch 2 and ended as constant classifiers."""
    return _table({(16,): [("trained", 2.0, {"final_test_acc": 0.99})] * k
                   + [("failed", 2.0, {"final_test_acc": 0.1135})] * (n - k)},
                  ("batch_size",), "epochs_to_target", target_acc=0.98, epochs=200)


def _t_rates(rule: dict, bound: float, sd: float = 0.002, reach: float = 40.0) -> Callable[[int], tuple]:
    """A one-group t rule (near, threshold) with the true mean on ``bound``, exactly: its verdict depends on
    the runs only through t = (mean - bound) / (s / sqrt n). The rule's own verdict on runs of a fixed
    spread, shifted, is followed outward from t = 0 on each side (steps of 1/4, each change of verdict
    located by bisection); each stretch of t with a decision adds its probability under Student's t with
    n - 1 degrees of freedom (normal runs). Beyond |t| = ``reach`` the probability is below 1e-9."""
    def rates(n: int) -> tuple[float, float, str]:
        z = np.arange(n) - (n - 1) / 2
        z = z / z.std(ddof=1)

        def verdict(t: float) -> str:
            return _verdict(rule, _table({(True,): list(bound + sd * (z + t / math.sqrt(n)))}, ("bn",)))

        mass = {"supported": 0.0, "contradicted": 0.0, "inconclusive": 0.0}
        for sign in (1, -1):
            start, now = 0.0, verdict(0.0)
            for step in np.arange(0.25, reach + 0.25, 0.25):
                nxt = verdict(sign * step)
                if nxt != now:
                    lo, hi = step - 0.25, step
                    for _ in range(40):
                        mid = (lo + hi) / 2
                        lo, hi = (mid, hi) if verdict(sign * mid) == now else (lo, mid)
                    mass[now] += float(sps.t.cdf(hi, n - 1) - sps.t.cdf(start, n - 1))
                    start, now = hi, nxt
            mass[now] += float(sps.t.sf(start, n - 1))
        return mass["supported"], mass["contradicted"], "Student's t"
    return rates


# ------------------------------------------------------------------ the cases

A, B = {"bn": True}, {"bn": False}
ACC = dict(metric="final_test_acc")
CASES: list[Case] = [
    Case("compare", "two settings equal (normal, sd 0.5 pp)", dict(kind="compare", a=A, b=B, expect="greater", **ACC),
         draw=lambda rng, n: _table({(True,): _normal(rng, n), (False,): _normal(rng, n)}, ("bn",))),
    Case("compare", "two settings equal, each run trains 50 %, fails 30 %, diverges 20 %",
         dict(kind="compare", a=A, b=B, expect="greater", **ACC),
         draw=lambda rng, n: _table({(bn,): [_mixed_run(rng) for _ in range(n)] for bn in (True, False)}, ("bn",))),
    Case("compare", "epochs to target equal, each run fails 30 % (counted as never)",
         dict(kind="compare", a=A, b=B, expect="less", metric="epochs_to_target"),
         draw=lambda rng, n: _table({(bn,): [_to_target_run(rng) for _ in range(n)] for bn in (True, False)},
                                    ("bn",), "epochs_to_target")),
    Case("compare_each", "equal at each of 3 learning rates",
         dict(kind="compare_each", over="lr", a=A, b=B, expect="greater", **ACC),
         draw=lambda rng, n: _table({(bn, lr): _normal(rng, n) for bn in (True, False) for lr in (0.01, 0.1, 1.0)},
                                    ("bn", "lr"))),
    Case("equivalent", "difference exactly the margin (1 pp)",
         dict(kind="equivalent", a=A, b=B, margin=0.01, **ACC),
         draw=lambda rng, n: _table({(True,): _normal(rng, n, 0.98), (False,): _normal(rng, n, 0.97)}, ("bn",))),
    Case("equivalent", "ratio of times exactly the margin (relative, 10 %)",
         dict(kind="equivalent", a=A, b=B, margin=0.10, relative=True, metric="train_time_s"),
         draw=lambda rng, n: _timed(rng, n, 1.10)),
    Case("near", "mean exactly at the edge of the band (98 ± 1 %, mean 99 %), normal runs",
         dict(kind="near", select=A, target=0.98, tolerance=0.01, **ACC),
         exact=_t_rates(dict(kind="near", select=A, target=0.98, tolerance=0.01, **ACC), 0.99)),
    Case("threshold", "mean exactly at the bound, normal runs",
         dict(kind="threshold", select=A, above=0.97, **ACC),
         exact=_t_rates(dict(kind="threshold", select=A, above=0.97, **ACC), 0.97)),
    Case("best", "six settings equal", dict(kind="best", at={"batch_size": 1}, goal="max", **ACC),
         draw=lambda rng, n: _sweep(rng, n, (1, 2, 3, 4, 5, 6))),
    Case("interior_optimum", "four settings equal", dict(kind="interior_optimum", over="batch_size", goal="max", **ACC),
         draw=lambda rng, n: _sweep(rng, n, (16, 64, 256, 1024))),
    Case("monotonic", "four settings equal",
         dict(kind="monotonic", over="batch_size", direction="increasing", **ACC),
         draw=lambda rng, n: _sweep(rng, n, (16, 64, 256, 1024))),
    Case("not_converged", "half of the runs end at the target (all touch it)",
         dict(kind="not_converged", metric="epochs_to_target", select={"batch_size": 16}),
         exact=_one_share(dict(kind="not_converged", metric="epochs_to_target", select={"batch_size": 16}),
                          _converged, 0.5)),
    Case("trains_more", "both settings train with the same share",
         dict(kind="trains_more", a=A, b=B, expect="greater"),
         exact=_trains_more_rates(dict(kind="trains_more", a=A, b=B, expect="greater"))),
    Case("trained_share", "the share that trains exactly the bound (1/2)",
         dict(kind="trained_share", select={"lr": 0.5}, below=0.5),
         exact=_one_share(dict(kind="trained_share", select={"lr": 0.5}, below=0.5), _trained, 0.5)),
    Case("collapse", "half of the runs collapse", dict(kind="collapse", select={"init": "zeros"}),
         exact=_one_share(dict(kind="collapse", select={"init": "zeros"}), _collapsed, 0.5)),
    Case("half_failure", "the same failure curve (half train at lr 0.5), 10 learning rates",
         dict(kind="half_failure", over="lr", a=A, b=B, expect="greater"), draw=_half_failure),
    Case("critical_batch", "B_crit / B_simple exactly the factor (4), 8 batch sizes",
         dict(kind="critical_batch", over="batch_size", by="lr_scaling", factor=4), draw=_critical_batch),
]


def rates(case: Case, n: int, draws: int, seed: int = 0) -> tuple[float, float, str]:
    """(supported, contradicted, how) of one case with n runs a setting: exact, or from ``draws`` seeded
    simulations."""
    if case.exact is not None:
        return case.exact(n)
    rng = np.random.default_rng([seed, n, CASES.index(case)])
    got = [_verdict(case.rule, case.draw(rng, n)) for _ in range(draws)]
    return got.count("supported") / draws, got.count("contradicted") / draws, f"{draws} draws"


def table(draws: int, ns: tuple[int, ...] = (3, 5)) -> str:
    """The markdown table of docs/claims-null.md."""
    lines = ["| rule kind | null (the claim neither true nor false) | runs | supported | contradicted | "
             "decided | how |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for case in CASES:
        for n in ns:
            sup, con, how = rates(case, n, draws)
            se = "" if case.exact else f" ± {100 * math.sqrt((sup + con) * (1 - sup - con) / draws):.1f}"
            lines.append(f"| {case.kind} | {case.null} | {n} | {100 * sup:.2f} % | {100 * con:.2f} % | "
                         f"**{100 * (sup + con):.2f} %**{se} | {'exact, ' + how if case.exact else how} |")
    missing = sorted(set(REGISTRY) - {c.kind for c in CASES})
    assert not missing, f"rule kinds without a null case: {missing}"
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000, help="simulations per case and n (default 2000)")
    args = parser.parse_args()
    print(HEADER.format(draws=args.draws))
    print(table(args.draws))
    print(FOOTER)


HEADER = """# The claims under the null

How often each rule kind decides (supported or contradicted) a claim that is neither true nor false: its
quantity exactly on the claim's bound, where every decision is wrong. The verdict rule promises at most 5 %
(two-sided 95 % intervals and tests). Computed with the rules' own functions (`evaluate_claims`) by
`src/batchwise/analysis/claims/null.py`; claims on k of n runs exactly (every k weighted by its binomial
probability; for two shares at the worst common share), the others from {draws} seeded simulations a
case (± one standard error). Regenerate with

    python -m batchwise.analysis.claims.null --draws {draws} > docs/claims-null.md

`tests/test_claims_calibration.py` checks the exact rows and a fast simulation of the others.
"""

FOOTER = """
A rate of 0 % means that the rule cannot decide at that number of runs at all. A share of 3 or 5 runs
against one half (not_converged, trained_share, collapse) needs 6 runs, all on one side (0 of 5 still
allows 52 %); two shares of 3 runs each cannot give Fisher's test p < 0.05 (3 of 3 against 0 of 3 gives
0.1). Before these exact tests (Wilson's and Newcombe's intervals, and not_converged, then named never_reaches, deciding at 0 of n
and n of n) the share rules decided 6.1-6.3 % of the time at 5 runs, and not_converged 25 % at 3 runs
when half of the runs reach the target."""


if __name__ == "__main__":
    main()
