"""Rules on shares of runs, each decided on k of n with an exact test: trains_more (Fisher's exact test
of two shares that trained), trained_share (the exact Clopper-Pearson interval of one share that
trained) and not_converged (the runs do not converge: the exact interval of the share that ended the
budget at the target). Their evidence and their groups give k of n, never a mean of a metric."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchwise.analysis import stats
from batchwise.analysis.stats import Interval, side
from .selection import Group, Settings, _is_true, _label, _match, _metric_values, _select, _study_runs
from .wording import _WHERE, _decide, _num, _pct

HALF = 0.5   # 'most runs': a share above one half


def _trained_text(g: Group) -> str:
    others = [f"{n} {o}" for n, o in ((g.n_failed, "failed"), (g.n_diverged, "diverged")) if n]
    return f"{g.label}: {g.n_trained} of {g.n_runs} trained" + (f" ({', '.join(others)})" if others else "")


def _share_fields(groups: list[Group], level: float, k: list[int] | None = None) -> list[dict]:
    """The groups of a share rule: ``mean`` is the share (k / n, by default the share that trained)
    with its exact interval, never a mean of a metric; no spread (``std`` NaN), so that a page showing
    a claim's groups shows its evidence, k of n, instead."""
    out = []
    for i, g in enumerate(groups):
        hits = g.n_trained if k is None else k[i]
        lo, hi = stats.exact_interval(hits, g.n_runs, level)
        out.append(dict(label=g.label, mean=hits / g.n_runs if g.n_runs else math.nan, std=math.nan,
                        n=g.n_runs, n_runs=g.n_runs, n_trained=g.n_trained, n_failed=g.n_failed,
                        n_diverged=g.n_diverged, basis="share", trained_lo=lo, trained_hi=hi))
    return out


def _too_few_runs(out: dict, groups: list[Group], evidence: str, s: Settings) -> dict | None:
    """A share rule counts every run, diverged ones included; fewer than min_runs: inconclusive."""
    few = [g for g in groups if g.n_runs < s.min_runs]
    if not few:
        return None
    return {**out, "verdict": "inconclusive", "evidence": evidence,
            "reason": f"inconclusive by rule: {'; '.join(f'{g.label} has {g.n_runs} runs' for g in few)}, "
                      f"fewer than the {s.min_runs} required"}


def runs_needed(bound: float, below: bool, level: float) -> int:
    """The fewest runs that, all on the claim's side (0 of n for 'below', n of n for 'above'), put the
    exact interval of a share past ``bound``: with fewer, no outcome can decide the claim."""
    n = 1
    while True:
        lo, hi = stats.exact_interval(0 if below else n, n, level)
        if (hi < bound) if below else (lo > bound):
            return n
        n += 1


def _too_few_to_show(k: int, n: int, bound: float, below: bool, level: float, what: str) -> str:
    """Where every run points the claim's way but their number cannot show it: say so, and how many
    would."""
    if k != (0 if below else n):
        return ""
    need = runs_needed(bound, below, level)
    if n >= need:
        return ""
    doing = {"trained": "training", "converged": "converging"}[what]
    return (f"; the runs point the claim's way ({k} of {n} {what}), but {n} runs cannot show it at the "
            f"{_pct(level)} level: at least {need} would be needed, {'none' if below else 'all'} of them {doing}")


def _share_verdict(k: int, n: int, bound: float, below: bool, level: float) -> tuple[str, int, float, float]:
    """Verdict, side and exact interval of a share k of n against ``bound`` ('below' or 'above')."""
    lo, hi = stats.exact_interval(k, n, level)
    sign = side(Interval(k / n, lo, hi), bound)
    return _decide(sign, -1 if below else 1), sign, lo, hi


def eval_trains_more(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The share of runs that trained is higher (or lower) in a than in b: Fisher's exact test of equal
    shares, decided in the direction of the observed difference when p < 1 - level."""
    a = _select(claim, runs, rule["a"], "final_test_acc")
    b = _select(claim, runs, rule["b"], "final_test_acc")
    listing = f"{_trained_text(a)} vs {_trained_text(b)}"
    out = dict(groups=_share_fields([a, b], s.level), n_a=a.n_runs, n_b=b.n_runs,
               mean_a=a.n_trained / a.n_runs if a.n_runs else math.nan,
               mean_b=b.n_trained / b.n_runs if b.n_runs else math.nan, std_a=math.nan, std_b=math.nan)
    if early := _too_few_runs(out, [a, b], listing, s):
        return early
    alpha = 1 - s.level
    diff = out["mean_a"] - out["mean_b"]
    p = stats.fisher_p(a.n_trained, a.n_runs, b.n_trained, b.n_runs)
    sign = int(np.sign(diff)) if p < alpha else 0
    verdict = _decide(sign, -1 if rule["expect"] == "less" else 1)
    rel = "less" if rule["expect"] == "less" else "more"
    found = ("equal shares are rejected, " + (f"{a.label} trains more often" if sign > 0 else
                                             f"{b.label} trains more often")) if sign else \
        "equal shares are not rejected"
    extreme = stats.fisher_p(a.n_runs, a.n_runs, 0, b.n_runs)   # every run of a trained, none of b
    cannot = (f"; {a.n_runs} against {b.n_runs} runs cannot decide it: even all of one side training and "
              f"none of the other gives p = {extreme:.2g}") if not sign and extreme >= alpha else ""
    out.update(diff=diff, p=p, verdict=verdict,
               comparisons=[dict(a=a.label, b=b.label, diff=diff, lo=math.nan, hi=math.nan, df=math.nan,
                                 method="Fisher's exact test", p=p)],
               evidence=f"{listing}; difference in the share that trained {_num(100 * diff, 0, True)} points, "
                        f"Fisher's exact test p = {p:.2g}",
               reason=f"{verdict}: expected {a.label} to train {rel} often than {b.label}; by Fisher's exact "
                      f"test (two-sided, decisive at p < {alpha:g}) {found}{cannot}")
    return out


def eval_trained_share(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The share of runs that trained lies above (or below) a bound: its exact (Clopper-Pearson) interval."""
    above = "above" in rule
    bound = float(rule["above"] if above else rule["below"])
    a = _select(claim, runs, rule["select"], "final_test_acc")
    out = dict(groups=_share_fields([a], s.level), n_a=a.n_runs, std_a=math.nan,
               mean_a=a.n_trained / a.n_runs if a.n_runs else math.nan)
    expected = f"a share {'above' if above else 'below'} {100 * bound:g} %"
    if early := _too_few_runs(out, [a], f"{_trained_text(a)}; expected {expected}", s):
        return early
    verdict, sign, lo, hi = _share_verdict(a.n_trained, a.n_runs, bound, not above, s.level)
    out.update(diff=a.n_trained / a.n_runs - bound, lo=lo, hi=hi, verdict=verdict,
               evidence=f"{_trained_text(a)} ({_pct(s.level)} exact interval {100 * lo:.0f}–{100 * hi:.0f} %); "
                        f"expected {expected}",
               reason=f"{verdict}: the {_pct(s.level)} exact (Clopper-Pearson) interval of the share that trained "
                      f"{_WHERE[sign]} {100 * bound:g} %"
                      + (_too_few_to_show(a.n_trained, a.n_runs, bound, not above, s.level, "trained")
                         if verdict == "inconclusive" else ""))
    return out


def _converged(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per run: whether it ended its budget at the target (it trained, and its final test accuracy is at
    least its target_acc; a run that stopped at the target ended there), and whether that is known (a
    run without a target or a final accuracy is not; a diverged run did not converge)."""
    outcome = rows["outcome"].astype(str).to_numpy()
    final, target = _metric_values(rows, "final_test_acc"), _metric_values(rows, "target_acc")
    stopped = np.array([_is_true(v) for v in rows.get("stop_at_target", pd.Series(False, index=rows.index))])
    reached = np.isfinite(_metric_values(rows, "epochs_to_target"))
    with np.errstate(invalid="ignore"):
        ended = (outcome == "trained") & ((final >= target) | (stopped & reached))
    known = (outcome == "diverged") | (np.isfinite(final) & np.isfinite(target))
    return ended, known


def eval_not_converged(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """'The runs do not converge within the budget': most runs end the budget below the target. A run
    converged when it trained and ended at the target (final test accuracy >= target_acc); a run that
    failed or diverged did not, whatever it touched on the way. Decided on the exact (Clopper-Pearson)
    interval of the share that converged against one half; the first hit of the target (``metric``,
    epochs to target by default) is evidence beside it, not the decider."""
    metric = rule.get("metric", "epochs_to_target")
    select = rule["select"]
    rows = _match(_study_runs(runs, select.get("study", claim["study"])), select)
    a = Group.judged(_label(select), metric, rows)
    ended, known = _converged(rows)
    n, k = int(known.sum()), int((ended & known).sum())
    epochs = pd.to_numeric(rows.get("epochs", rows.get("epochs_run", pd.Series(dtype=float))), errors="coerce")
    budget = f"{int(epochs.max())}-epoch budget" if epochs.notna().any() else "budget"
    target = pd.to_numeric(rows.get("target_acc", pd.Series(dtype=float)), errors="coerce").dropna()
    target_txt = f" ({100 * target.iloc[0]:g} %)" if len(target) and target.nunique() == 1 else ""
    finished = rows[(rows["outcome"] != "diverged").to_numpy() & known]
    final = _metric_values(finished, "final_test_acc") * 100
    span = (_num(float(final.min()), 1) + ("" if final.min() == final.max() else f"–{_num(float(final.max()), 1)}")
            if len(final) else "")
    ends = f"; final test accuracy {span} %" if len(final) else ""
    first = _metric_values(rows, metric)
    touched = np.isfinite(first)
    when = ", ".join(_num(float(x), 0 if metric == "epochs_to_target" else 1) for x in np.sort(first[touched]))
    at = {"epochs_to_target": "in epoch {}", "steps_to_target": "at step {}", "examples_to_target": "after {} images",
          "time_to_target_s": "after {} s", "epochs_to_goal": "in epoch {}",
          "time_to_goal_s": "after {} s"}[metric].format(when)
    fell, hit = int((touched & ~ended).sum()), int(touched.sum())
    back = (f", {'all' if fell == hit else fell} of them falling back below it") if fell else ""
    first_txt = (f"; {f'all {hit}' if hit == len(rows) > 1 else f'{hit} of {len(rows)}'} had touched it on the way "
                 f"(first {at}){back}") if hit else "; none touched it on the way"
    outcomes = "".join(f", {c} {o}" for c, o in ((a.n_failed, "failed"), (a.n_diverged, "diverged")) if c)
    out = dict(groups=_share_fields([a], s.level, [k]), mean_a=k / n if n else math.nan, n_a=n, std_a=math.nan)
    if n < s.min_runs:
        return {**out, "verdict": "inconclusive",
                "evidence": f"{a.label}: {k} of {n} runs ended the {budget} at the target{target_txt}{outcomes}"
                            f"{ends}{first_txt}",
                "reason": f"inconclusive by rule: {a.label} has {n} run{'s' if n != 1 else ''} to judge, "
                          f"fewer than the {s.min_runs} required"}
    verdict, sign, lo, hi = _share_verdict(k, n, HALF, True, s.level)
    evidence = (f"{a.label}: {k} of {n} runs ended the {budget} at the target{target_txt} ({a.n_trained} "
                f"trained{outcomes}; {_pct(s.level)} exact interval of the share that converged "
                f"{100 * lo:.0f}–{100 * hi:.0f} %){ends}{first_txt}")
    return {**out, "verdict": verdict, "lo": lo, "hi": hi, "diff": k / n - HALF, "evidence": evidence,
            "reason": f"{verdict}: 'does not converge' means that most runs end the {budget} below the target "
                      f"(a run that failed or diverged did not converge, whatever it touched on the way); the "
                      f"{_pct(s.level)} exact (Clopper-Pearson) interval of the share that ended at the target "
                      f"{_WHERE[sign]} one half"
                      + (_too_few_to_show(k, n, HALF, True, s.level, "converged") if verdict == "inconclusive"
                         else "")}
