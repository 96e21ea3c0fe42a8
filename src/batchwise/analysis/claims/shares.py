"""Rules on shares of runs: trains_more and trained_share (the share that trained, by the outcome
rule: Newcombe's and Wilson's intervals) and never_reaches (the share of finished runs that reached the
target)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchwise.analysis import stats
from batchwise.analysis.stats import Interval, side
from .selection import Group, Settings, _label, _match, _metric_values, _select, _study_runs
from .wording import _WHERE, _comparison, _decide, _group_fields, _num


def _trained_text(g: Group) -> str:
    others = [f"{n} {o}" for n, o in ((g.n_failed, "failed"), (g.n_diverged, "diverged")) if n]
    return f"{g.label}: {g.n_trained} of {g.n_runs} trained" + (f" ({', '.join(others)})" if others else "")


def _too_few_runs(out: dict, groups: list[Group], evidence: str, s: Settings) -> dict | None:
    """A share rule counts every run, diverged ones included; fewer than min_runs: inconclusive."""
    few = [g for g in groups if g.n_runs < s.min_runs]
    if not few:
        return None
    return {**out, "verdict": "inconclusive", "evidence": evidence,
            "reason": f"inconclusive by rule: {'; '.join(f'{g.label} has {g.n_runs} runs' for g in few)}, "
                      f"fewer than the {s.min_runs} required"}


def eval_trains_more(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The share of runs that trained is higher (or lower) in a than in b: Newcombe's interval of
    the difference of the two shares."""
    a = _select(claim, runs, rule["a"], "final_test_acc")
    b = _select(claim, runs, rule["b"], "final_test_acc")
    listing = f"{_trained_text(a)} vs {_trained_text(b)}"
    out = dict(groups=_group_fields([a, b], s.level), n_a=a.n_runs, n_b=b.n_runs,
               mean_a=a.n_trained / a.n_runs if a.n_runs else math.nan,
               mean_b=b.n_trained / b.n_runs if b.n_runs else math.nan)
    if early := _too_few_runs(out, [a, b], listing, s):
        return early
    iv = stats.share_difference_interval(a.n_trained, a.n_runs, b.n_trained, b.n_runs, s.level)
    sign = side(iv)
    verdict = _decide(sign, -1 if rule["expect"] == "less" else 1)
    rel = "less" if rule["expect"] == "less" else "more"
    out.update(diff=iv.estimate, lo=iv.lo, hi=iv.hi, verdict=verdict,
               comparisons=[_comparison(a, b, iv)],
               evidence=f"{listing}; {s.level:.0%} {iv.method} of the difference in the share that trained "
                        f"[{_num(100 * iv.lo, 0, True)}, {_num(100 * iv.hi, 0, True)}] points",
               reason=f"{verdict}: expected {a.label} to train {rel} often than {b.label}; the interval "
                      f"{_WHERE[sign]} 0")
    return out


def eval_trained_share(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The share of runs that trained lies above (or below) a bound: its Wilson interval."""
    above = "above" in rule
    bound = float(rule["above"] if above else rule["below"])
    a = _select(claim, runs, rule["select"], "final_test_acc")
    out = dict(groups=_group_fields([a], s.level), n_a=a.n_runs,
               mean_a=a.n_trained / a.n_runs if a.n_runs else math.nan)
    expected = f"a share {'above' if above else 'below'} {100 * bound:g} %"
    if early := _too_few_runs(out, [a], f"{_trained_text(a)}; expected {expected}", s):
        return early
    lo, hi = stats.wilson_interval(a.n_trained, a.n_runs, s.level)
    sign = side(Interval(a.n_trained / a.n_runs, lo, hi), bound)
    verdict = _decide(sign, 1 if above else -1)
    out.update(diff=a.n_trained / a.n_runs - bound, lo=lo, hi=hi, verdict=verdict,
               evidence=f"{_trained_text(a)} ({s.level:.0%} Wilson interval {100 * lo:.0f}–{100 * hi:.0f} %); "
                        f"expected {expected}",
               reason=f"{verdict}: the Wilson interval of the share that trained {_WHERE[sign]} "
                      f"{100 * bound:g} %")
    return out


def eval_never(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """No finished run (trained or failed) reaches the target. A diverged run stopped early: it
    "diverged first" and is not counted as never reaching the target within the budget."""
    metric = rule.get("metric", "epochs_to_target")
    select = rule["select"]
    rows = _match(_study_runs(runs, select.get("study", claim["study"])), select)
    finished = rows[rows["outcome"].isin(["trained", "failed"])]
    values = _metric_values(finished, metric)
    n, k = len(finished), int(np.isfinite(values).sum())
    a = Group.of(_label(select), metric, rows)
    epochs = pd.to_numeric(finished.get("epochs_run", pd.Series(dtype=float)), errors="coerce")
    within = f" within {int(epochs.max())} epochs" if epochs.notna().any() else ""
    lo, hi = stats.wilson_interval(k, n, s.level)
    diverged = a.n_diverged
    evidence = (f"{a.label}: reached the target in {k} of {n} finished runs{within} "
                f"({s.level:.0%} Wilson interval {100 * lo:.0f}–{100 * hi:.0f} %)"
                + (f"; {diverged} diverged first (not counted)" if diverged else ""))
    out = dict(groups=_group_fields([a], s.level), mean_a=k / n if n else math.nan, n_a=n,
               lo=lo, hi=hi, evidence=evidence)
    if n < s.min_runs:
        return {**out, "verdict": "inconclusive",
                "reason": f"inconclusive by rule: {a.label} has {n} finished run{'s' if n != 1 else ''}, "
                          f"fewer than the {s.min_runs} required"}
    verdict = "supported" if k == 0 else "contradicted" if k == n else "inconclusive"
    how = ("reliably (no finished run reached it)" if k == 0 else
           "reliably (every finished run reached it)" if k == n else f"in {k} of {n} runs")
    return {**out, "verdict": verdict,
            "reason": f"{verdict}: the claim holds if no finished run reaches the target{within} "
                      f"and fails if every one does; it was reached {how}"}
