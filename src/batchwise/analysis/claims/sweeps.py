"""Rules on the shape of a sweep: interior_optimum and monotonic, over the ordered values of `over`."""

from __future__ import annotations

import math

import pandas as pd

from batchwise.analysis import stats
from batchwise.analysis.stats import side
from .means import _better, _comps_text, _decider, _finish, _intervals_named
from .selection import NEVER_METRICS, Group, Settings, _difference, _sweep
from .wording import (_ab_fields, _comparison, _fmt_group, _fmt_interval, _group_fields, _inconclusive_by_rule,
                      _notes, _test_name, _verdict_words)


def _sweep_start(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings, need: int, what: str
                 ) -> tuple[list[Group], dict, str, dict | None]:
    """The common start of the sweep rules: the groups along `over`, the output skeleton, a
    listing for the evidence, and an early 'inconclusive' result when there is too little data."""
    groups = _sweep(claim, rule, runs)
    out = dict(groups=_group_fields(groups, s.level))
    listing = "; ".join(_fmt_group(g) for g in groups)
    if len(groups) < need:
        return groups, out, listing, {
            **out, "verdict": "inconclusive", "evidence": listing or "no runs",
            "reason": f"inconclusive: {what} needs at least {need} values of {rule['over']}, "
                      f"found {len(groups)}"}
    return groups, out, listing, _inconclusive_by_rule(out, groups, listing, s)


def _never_note(metric: str) -> str:
    return (" A run that never reached the target counts as never (+inf)."
            if metric in NEVER_METRICS else "")


def eval_interior(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """Rule `interior_optimum`: the best mean lies inside the sweep, beating both endpoints."""
    metric, goal = rule["metric"], rule["goal"]
    groups, out, listing, early = _sweep_start(claim, rule, runs, s, 3, "an interior optimum")
    if early:
        return early
    best = stats.best_index([g.mean for g in groups], goal)
    if goal == "min" and math.isinf(groups[best].mean):
        return {**out, "verdict": "inconclusive", "evidence": listing,
                "reason": "inconclusive: no setting reached the target in every run"}
    word, than = ("highest", "higher") if goal == "max" else ("lowest", "lower")
    top = groups[best]
    interior = 0 < best < len(groups) - 1
    rivals = (0, len(groups) - 1) if interior else range(1, len(groups) - 1)
    comps = [_better(top, groups[i], goal, s.level) for i in rivals]
    ok = all(c["sig"] == 1 for c in comps)
    if interior:
        verdict = "supported" if ok else "inconclusive"
        why = (f"the {word} mean is at {top.label}, inside the sweep, and it is "
               f"{'' if ok else 'not '}significantly {than} than both endpoints")
    else:
        verdict = "contradicted" if ok else "inconclusive"
        why = (f"the {word} mean is at the endpoint {top.label}, and it is "
               f"{'' if ok else 'not '}significantly {than} than every interior setting")
    out.update(verdict=verdict, evidence=f"{listing}; {_comps_text(comps, metric, s.level)}",
               reason=f"{_verdict_words(verdict, groups)}: {why} ({_intervals_named(comps, s.level, holm=False)})."
                      f"{_never_note(metric)}" + _notes(groups, s.level))
    return _finish(out, comps, _decider(comps, goal))


def eval_monotonic(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """Rule `monotonic`: monotone means and a significant difference of the endpoints."""
    metric, over, direction = rule["metric"], rule["over"], rule["direction"]
    groups, out, listing, early = _sweep_start(claim, rule, runs, s, 2, "a trend")
    if early:
        return early
    up = direction == "increasing"
    mono = stats.is_monotone([g.mean for g in groups], up)
    last, first = groups[-1], groups[0]
    iv = _difference(last, first, s.level)
    sign = side(iv) * (1 if up else -1)
    if mono and sign == 1:
        verdict, why = "supported", "the means are monotone and the endpoint difference is significant"
    elif sign == -1:
        verdict, why = "contradicted", "the endpoint difference is significant in the opposite direction"
    elif mono:
        verdict, why = "inconclusive", "the endpoint difference is not significant"
    else:
        verdict, why = "inconclusive", ("the endpoint difference is significant but the means are "
                                        "not monotone" if sign == 1 else "the means are not monotone")
    out.update(_ab_fields(last, first, iv), verdict=verdict, comparisons=[_comparison(last, first, iv)],
               evidence=f"{listing}; {last.label} − {first.label}: {_fmt_interval(metric, iv, s.level)}",
               reason=f"{_verdict_words(verdict, groups)}: expected {metric} {direction} in {over}; "
                      f"{why} ({s.level:.0%} {_test_name(iv)} interval).{_never_note(metric)}"
                      + _notes(groups, s.level))
    return out
