"""Rules that compare means: compare, compare_each, equivalent, near, threshold, best (Welch t and
t intervals; to-target metrics with never-reached runs as +inf, see `stats.censored_difference`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from batchwise.analysis import stats
from batchwise.analysis.stats import Interval, side
from .selection import (METRICS, OUTCOME_METRICS, PARAM_COLUMNS, Group, Settings, _SHORT, _difference, _fmt_value,
                        _label, _match, _mean, _norm, _select, _sort_key, _study_runs)
from .wording import (_WHERE, _pct, _ab_fields, _comparison, _decide, _fmt_group, _fmt_interval, _group_fields,
                      _inconclusive_by_rule, _notes, _num, _test_name, _verdict_words)


def _compare_start(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings
                   ) -> tuple[Group, Group, dict, str, dict | None]:
    """The two groups of a comparison, the output skeleton, the listing, and an early 'inconclusive'
    result (too few runs, or times from a single measurement)."""
    a = _select(claim, runs, rule["a"], rule["metric"])
    b = _select(claim, runs, rule["b"], rule["metric"])
    out = dict(groups=_group_fields([a, b], s.level), **_ab_fields(a, b))
    listing = f"{_fmt_group(a)} vs {_fmt_group(b)}"
    return a, b, out, listing, _inconclusive_by_rule(out, [a, b], listing, s)


def _compare_verdict(a: Group, b: Group, rule: dict, iv: Interval, level: float, out: dict, listing: str,
                     s: Settings, how: str = "") -> dict:
    """A comparison's verdict from its interval (at ``level``; ``how`` names a multiplicity correction)."""
    metric, expect = rule["metric"], rule["expect"]
    factor = float(rule.get("factor", 1.0))
    sign = side(iv)
    verdict = _decide(sign, -1 if expect == "less" else 1)
    what = "difference" if factor == 1 else f"difference to {factor:g} × {b.label}"
    if iv.method.startswith("rank-sum"):   # the rank-sum interval is of the shift, not of the means
        what = what.replace("difference", "shift")
    rel = "<" if expect == "less" else ">"
    expected = f"{a.label} {rel} {b.label}" if factor == 1 else f"{a.label} {rel} {factor:g} × {b.label}"
    return {**out, **_ab_fields(a, b, iv), "verdict": verdict, "comparisons": [_comparison(a, b, iv)],
            "evidence": f"{listing}; {_fmt_interval(metric, iv, level, what)}",
            "reason": f"{_verdict_words(verdict, [a, b])}: expected {expected}; the {_pct(level)}{how} "
                      f"{_test_name(iv)} interval of the {what} {_WHERE[sign]} 0" + _notes([a, b], s.level)}


def eval_compare(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """Rule `compare`: Welch's interval of mean(a) - factor * mean(b) on the predicted side of 0."""
    a, b, out, listing, early = _compare_start(claim, rule, runs, s)
    if early:
        return early
    iv = _difference(a, b, s.level, float(rule.get("factor", 1.0)))
    return _compare_verdict(a, b, rule, iv, s.level, out, listing, s)


def eval_compare_each(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """Rule `compare_each`: `compare` at every value of `over`; supported only if each holds,
    contradicted if any is contradicted. The comparisons are one family, judged with Holm's step-down
    correction (stats.holm), so that 'any contradicted' keeps its error rate."""
    over = rule["over"]
    values = rule.get("values")
    if values is None:
        col = _study_runs(runs, claim["study"]).get(over, pd.Series(dtype=object))
        values = sorted({_norm(v) for v in col if _norm(v) is not None}, key=_sort_key)
    if not values:
        return dict(verdict="inconclusive", evidence=f"no values of {over}",
                    reason=f"inconclusive: the study has no values of {over!r}")
    subs = []
    for v in values:
        sub = dict(kind="compare", metric=rule["metric"], expect=rule["expect"],
                   a={**rule["a"], over: v}, b={**rule["b"], over: v})
        subs.append((v, sub, *_compare_start(claim, sub, runs, s)))
    live = [x for x in subs if x[-1] is None]
    judged = dict(zip((id(x) for x in live), stats.holm(
        [lambda lev, x=x: _difference(x[2], x[3], lev) for x in live], s.level)))
    how = f" (Holm-corrected over {len(live)})" if len(live) > 1 else ""
    parts, comps, verdicts, groups, reliable = [], [], [], [], []
    decider = None   # the deciding comparison: the first contradicted, else first inconclusive
    for x in subs:
        v, sub, a, b, out, listing, early = x
        r = early or _compare_verdict(a, b, sub, *judged[id(x)], out, listing, s, how)
        verdicts.append(r["verdict"])
        reliable.append("reliably" in r["reason"])
        groups += r["groups"]
        comps += r.get("comparisons", [])
        parts.append(f"at {_SHORT.get(over, over)} {_fmt_value(v)}: {r['evidence']} ({r['verdict']})")
        rank = {"contradicted": 0, "supported": 2}.get(r["verdict"], 1)
        if decider is None or rank < decider[0]:
            decider = (rank, r)
    verdict = ("contradicted" if "contradicted" in verdicts else
               "supported" if all(v == "supported" for v in verdicts) else "inconclusive")
    # reliably when every comparison that makes the verdict is itself reliable
    deciding = [ok for v, ok in zip(verdicts, reliable) if v == verdict]
    counted = rule["metric"] in OUTCOME_METRICS   # every run counts, those that did not train too
    reach = ("" if verdict == "inconclusive" else " reliably (every run trained)" if all(deciding)
             else " counting every run" if counted else " in the runs that trained")
    out = {k: decider[1].get(k) for k in ("mean_a", "std_a", "n_a", "mean_b", "std_b", "n_b",
                                         "diff", "lo", "hi")}
    holm = (f"; the {len(live)} comparisons are judged together with Holm's step-down correction, so "
            f"that the probability of any wrong decision stays at most {1 - s.level:.0%}" if len(live) > 1 else "")
    out.update(verdict=verdict, groups=groups, comparisons=comps, evidence="; ".join(parts),
               reason=f"{verdict}{reach}: the comparison must hold at every {over} "
                      f"(supported only if each is supported, contradicted if any is "
                      f"contradicted){holm}; per value: {', '.join(verdicts)}")
    return out


def eval_equivalent(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """Rule `equivalent`: the interval of the difference (or ratio) lies within the margin."""
    metric, margin = rule["metric"], float(rule["margin"])
    relative = bool(rule.get("relative", False))
    a = _select(claim, runs, rule["a"], metric)
    b = _select(claim, runs, rule["b"], metric)
    out = dict(groups=_group_fields([a, b], s.level), **_ab_fields(a, b))
    listing = f"{_fmt_group(a)} vs {_fmt_group(b)}"
    if early := _inconclusive_by_rule(out, [a, b], listing, s):
        return early
    iv = _difference(a, b, s.level, relative=relative)
    if -margin <= iv.lo and iv.hi <= margin:
        verdict, where = "supported", "lies within"
    elif iv.lo > margin or iv.hi < -margin:
        verdict, where = "contradicted", "lies entirely outside"
    else:
        verdict, where = "inconclusive", "straddles the edge of"
    if relative:
        m_txt, what = f"±{margin:.0%}", "relative difference"
    else:
        scale, _, dunit, dg = METRICS[metric]
        m_txt, what = f"±{_num(margin * scale, dg)}{dunit}", "difference"
    test = _test_name(iv) + " interval" + (" on log values (a ratio of geometric means)" if relative else "")
    out.update(_ab_fields(a, b, iv), verdict=verdict, comparisons=[_comparison(a, b, iv)],
               evidence=f"{listing}; {_fmt_interval(metric, iv, s.level, what, relative)}",
               reason=f"{_verdict_words(verdict, [a, b])}: 'about the same' means a {what} within "
                      f"{m_txt}; the {s.level:.0%} {test} {where} that margin"
                      + _notes([a, b], s.level))
    return out


def _one_group_start(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings,
                     expected: str) -> tuple[Group, dict, dict | None]:
    """The common start of the single-group rules (near, threshold): the group, the output
    skeleton and an early 'inconclusive' result when it has too few measured runs."""
    a = _select(claim, runs, rule["select"], rule["metric"])
    out = dict(groups=_group_fields([a], s.level), mean_a=a.mean, std_a=a.std, n_a=a.n)
    return a, out, _inconclusive_by_rule(out, [a], f"{_fmt_group(a)}; expected {expected}", s)


def _mean_evidence(a: Group, iv: Interval, s: Settings, expected: str) -> str:
    scale, unit, _, dg = METRICS[a.metric]
    return (f"{_fmt_group(a)}; {s.level:.0%} {_test_name(iv)} interval of the mean "
            f"[{_num(iv.lo * scale, dg)}, {_num(iv.hi * scale, dg)}]{unit}; expected {expected}")


def eval_near(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """Rule `near`: the t interval of the mean lies inside target ± tolerance."""
    target, tol = float(rule["target"]), float(rule["tolerance"])
    scale, unit, _, dg = METRICS[rule["metric"]]
    band = f"{_num(target * scale, dg)} ± {_num(tol * scale, dg)}{unit}"
    a, out, early = _one_group_start(claim, rule, runs, s, band)
    if early:
        return early
    iv = _mean(a, s.level)
    if target - tol <= iv.lo and iv.hi <= target + tol:
        verdict, where = "supported", "lies inside"
    elif iv.hi < target - tol or iv.lo > target + tol:
        verdict, where = "contradicted", "lies entirely outside"
    else:
        verdict, where = "inconclusive", "overlaps the edge of"
    out.update(lo=iv.lo, hi=iv.hi, diff=a.mean - target, verdict=verdict,
               evidence=_mean_evidence(a, iv, s, band),
               reason=f"{_verdict_words(verdict, [a])}: the {s.level:.0%} {_test_name(iv)} interval "
                      f"of the mean {where} the band {band}" + _notes([a], s.level))
    return out


def eval_threshold(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """Rule `threshold`: the t interval of the mean lies above (below) the bound."""
    above = "above" in rule
    bound = float(rule["above"] if above else rule["below"])
    scale, unit, _, dg = METRICS[rule["metric"]]
    txt = f"{'above' if above else 'below'} {_num(bound * scale, dg)}{unit}"
    a, out, early = _one_group_start(claim, rule, runs, s, txt)
    if early:
        return early
    iv = _mean(a, s.level)
    sign = side(iv, bound)
    verdict = _decide(sign, 1 if above else -1)
    out.update(lo=iv.lo, hi=iv.hi, diff=a.mean - bound, verdict=verdict,
               evidence=_mean_evidence(a, iv, s, txt),
               reason=f"{_verdict_words(verdict, [a])}: expected the mean {txt}; its {s.level:.0%} "
                      f"{_test_name(iv)} interval {_WHERE[sign]} {_num(bound * scale, dg)}{unit}"
                      + _notes([a], s.level))
    return out


def _better(a: Group, b: Group, goal: str, level: float, iv: Interval | None = None) -> dict:
    """Compare a with b; ``sig`` is +1 if a is significantly better (by ``goal``), -1 if worse. ``iv``:
    the interval already computed (at ``level``, e.g. a Holm-corrected one)."""
    iv = _difference(a, b, level) if iv is None else iv
    return dict(_comparison(a, b, iv), sig=side(iv) * (1 if goal == "max" else -1), _a=a, _b=b, _iv=iv,
                _level=level)


def _decider(comps: list[dict], goal: str) -> dict:
    # the weakest comparison for the winner: the bound closest to (or past) zero
    return min(comps, key=lambda c: (c["lo"] if goal == "max" else -c["hi"]))


def _finish(out: dict, comps: list[dict], decider: dict | None) -> dict:
    out["comparisons"] = [{k: v for k, v in c.items() if not k.startswith("_")} for c in comps]
    if decider is not None:
        out.update(_ab_fields(decider["_a"], decider["_b"], decider["_iv"]))
    return out


def _comps_text(comps: list[dict], metric: str, level: float) -> str:
    """The comparisons for the evidence, each at the level it was judged at."""
    return "; ".join(f"{c['a']} − {c['b']}: {_fmt_interval(metric, c['_iv'], c.get('_level', level))}"
                     for c in comps)


def _rivals(rows: pd.DataFrame, at: dict, metric: str, keys: tuple[str, ...] | None = None) -> list[Group]:
    """One group per combination of the study's grid keys (``keys``, from the config; without them
    the columns of PARAM_COLUMNS) that vary among the runs outside ``at``, labelled in the order of
    the ``at`` selector, so that "BN, lr 0.5" reads like its rivals."""
    keys = tuple(keys) if keys else PARAM_COLUMNS
    rest = rows.drop(index=_match(rows, at).index)
    order = [k for k in at if k in keys] + list(keys)
    varying = [c for c in dict.fromkeys(order) if c in rows.columns
               and len({_norm(v) for v in rows[c]}) > 1]
    if not len(rest) or not varying:
        return []
    keys = list(zip(*[[_norm(v) for v in rest[c]] for c in varying]))
    groups = []
    for key in sorted(set(keys), key=lambda k: tuple(_sort_key(x) for x in k)):
        mask = np.array([k == key for k in keys])
        sel = {c: rest[c].to_numpy()[mask][0] for c in varying}
        groups.append(Group.judged(_label(sel), metric, rest[mask]))
    return groups


def _strongest_first(groups: list[Group], goal: str) -> list[Group]:
    """The rivals, the best mean first (ties, and groups without a mean, in grid order): the evidence
    and the findings page, which shows the first few, lead with the rivals that matter."""
    def key(g: Group) -> float:
        return np.inf if np.isnan(g.mean) else -g.mean if goal == "max" else g.mean
    return sorted(groups, key=key)


def eval_best(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """Rule `best`: setting `at` has the best mean and beats every rival setting significantly."""
    metric, goal = rule["metric"], rule["goal"]
    rows = _match(_study_runs(runs, claim["study"]), rule.get("where", {}))
    at = Group.judged(_label(rule["at"]), metric, _match(rows, rule["at"]))
    others = _strongest_first(_rivals(rows, rule["at"], metric, s.grid_keys.get(claim["study"])
                                      if s.grid_keys else None), goal)
    groups = [at] + others
    word, than = ("highest", "higher") if goal == "max" else ("lowest", "lower")
    out = dict(groups=_group_fields(groups, s.level))
    listing = "; ".join(_fmt_group(g) for g in groups)
    if not others:
        return {**out, "verdict": "inconclusive", "evidence": listing,
                "reason": "inconclusive: nothing to compare with"}
    if early := _inconclusive_by_rule({**out, **_ab_fields(at, others[0])}, groups, listing, s):
        return early
    # the rivals are one family: Holm's step-down correction keeps 'any rival significantly better'
    # at the stated error rate (each comparison judged at the level Holm gives it)
    judged = stats.holm([lambda lev, o=o: _difference(at, o, lev) for o in others], s.level)
    comps = [_better(at, o, goal, lev, iv) for o, (iv, lev) in zip(others, judged)]
    is_best = stats.best_index([g.mean for g in groups], goal) == 0
    beaten_by = [c["b"] for c in comps if c["sig"] == -1]
    if is_best and all(c["sig"] == 1 for c in comps):
        verdict, why = "supported", f"{at.label} has the {word} mean and is significantly " \
                                    f"{than} than every other setting"
    elif beaten_by:
        verdict, why = "contradicted", (f"{', '.join(beaten_by)} {'is' if len(beaten_by) == 1 else 'are'} "
                                         f"significantly {than} than {at.label}")
    else:
        verdict, why = "inconclusive", (f"{at.label} is not significantly {than} than every "
                                        f"other setting" if is_best else
                                        f"{at.label} does not have the {word} mean, but no "
                                        f"setting is significantly {than}")
    out.update(verdict=verdict, evidence=f"{listing}; {_comps_text(comps, metric, s.level)}",
               reason=f"{_verdict_words(verdict, groups)}: {why} ({_intervals_named(comps, s.level)})"
                      + _notes(groups, s.level))
    return _finish(out, comps, _decider(comps, goal))


def _intervals_named(comps: list[dict], level: float, holm: bool = True) -> str:
    """'95 % Welch t intervals of the differences', naming Holm's correction where there was a family
    (``holm``), and the tests that made them (a comparison with a setting of mixed outcomes is a
    rank-sum one)."""
    names = " and ".join(dict.fromkeys(_test_name(c["_iv"]) for c in comps))
    if len(comps) < 2 or not holm:
        return f"{level:.0%} {names} interval{'s' if len(comps) > 1 else ''} of the difference" + \
            ("s, every one of which must hold" if len(comps) > 1 else "")
    alpha = 1 - level
    return (f"{names} intervals of the {len(comps)} differences, Holm-corrected: each judged at 1 − "
            f"{alpha:.0%}/r with r comparisons still undecided (from {_pct(1 - alpha / len(comps))}), so that "
            f"the probability of any wrong decision stays at most {alpha:.0%}")
