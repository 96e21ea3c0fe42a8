"""Verdict wording: numbers, groups and intervals as the evidence and reason sentences read them,
how far a verdict reaches ("reliably", "in k of n runs"), and the verdict rule for the methods."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from batchwise.analysis import stats
from batchwise.analysis.stats import Interval
from .selection import METRICS, NEVER_METRICS, Group, Settings
from .timing import SINGLE_NOTE

# --------------------------------------------------------------------------- wording

def _num(x: float, digits: int, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return ("+" if x > 0 and signed else "" if x > 0 else "−") + "inf"
    s = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return s.replace("-", "−")


def _runs_note(g: Group) -> str:
    """How many runs a group's numbers stand for, where that is not simply all of them."""
    if g.basis == "failed":
        return f"0 of {g.n_runs} trained: {g.n_failed} failed runs measured"
    if g.all_trained:
        return f"n={g.n}"
    diverged = f", {g.n_diverged} diverged" if g.n_diverged else ""
    return f"{g.n_trained} of {g.n_runs} trained{diverged}"


def _fmt_group(g: Group) -> str:
    scale, unit, _, dg = METRICS[g.metric]
    if g.n_runs == 0:
        return f"{g.label}: no runs"
    if g.n == 0:
        why = f"all {g.n_runs} runs diverged" if g.n_diverged == g.n_runs else "no value in any run"
        return f"{g.label}: {why}"
    if g.metric in NEVER_METRICS and g.n_reached < g.n:
        if g.n_reached == 0:
            return f"{g.label}: never reached (0/{g.n} runs; {_runs_note(g)})"
        fin = g.values[np.isfinite(g.values)] * scale
        return (f"{g.label}: reached in {g.n_reached}/{g.n} runs "
                f"(those: {_num(float(fin.mean()), dg)}{unit}), counted as never ({_runs_note(g)}"
                f"{_timing_note(g)})")
    body = _num(g.mean * scale, dg)
    if not math.isnan(g.std):
        body += f" ± {_num(g.std * scale, dg)}"
    return f"{g.label}: {body}{unit} ({_runs_note(g)}{_timing_note(g)})"


def _timing_note(g: Group) -> str:
    """How the times of a group were measured, where they share a timing pass."""
    scale, unit, _, dg = METRICS[g.metric]
    if g.timing == "bursts":
        bursts = min(int(d) + 1 for _, d in g.timing_terms)
        return f"; timing standard error {_num(g.timing_se * scale, dg + 1)}{unit}, ≥ {bursts} bursts"
    if g.timing == "single":
        return "; one timing, no spread"
    return ""


def _pct(level: float) -> str:
    """95%, 97.5%, 98.75%: an interval's level with the digits it needs."""
    return f"{100 * level:.4g}%"


def _fmt_interval(metric: str, iv: Interval, level: float, what: str = "difference",
                  relative: bool = False) -> str:
    scale, _, dunit, dg = METRICS[metric]
    if relative:
        scale, dunit, dg = 100.0, " %", 1
    return (f"{what} {_num(iv.estimate * scale, dg, True)}{dunit}, {_pct(level)} {_test_name(iv)} "
            f"interval [{_num(iv.lo * scale, dg, True)}, {_num(iv.hi * scale, dg, True)}]")


def _test_name(iv: Interval) -> str:
    """The short name of the rule that made an interval, for the evidence sentence."""
    if iv.method.startswith("exact"):
        return "exact (no spread)"
    if iv.method.startswith(("tie", "decisive")):
        return "never-reached"
    name = "Welch t" if iv.method.startswith("Welch") else "t"
    return name + (" (runs and timing bursts)" if "timing" in iv.method else "")


def _verdict_words(verdict: str, groups: list[Group]) -> str:
    """The verdict with how far it reaches: "reliably" when every run of every group trained,
    "in k of n runs" (one group) or "in the runs that trained" otherwise (naming the groups in which none
    trained, whose failed runs were measured)."""
    if verdict not in ("supported", "contradicted"):
        return verdict
    if all(g.all_trained for g in groups):
        return f"{verdict} reliably (every run trained)"
    if len(groups) == 1:
        g = groups[0]
        return f"{verdict} in {g.n_trained} of {g.n_runs} runs" + (
            " (none trained: on its failed runs)" if g.basis == "failed" else "")
    failed = [g.label for g in groups if g.basis == "failed"]
    return f"{verdict} in the runs that trained" + (
        f", and on the failed runs of {', '.join(failed)}, where none trained" if failed else "")


def _notes(groups: Iterable[Group], level: float) -> str:
    """The outcome counts behind the numbers, with a Wilson interval of the trained share, for
    every group in which not every run trained; and values that were missing."""
    notes = []
    for g in groups:
        if g.n_runs and not g.all_trained:
            lo, hi = stats.wilson_interval(g.n_trained, g.n_runs, level)
            what = [f"{g.n_trained} of {g.n_runs} runs trained ({level:.0%} Wilson interval "
                    f"{100 * lo:.0f}–{100 * hi:.0f} %)"]
            what += [f"{n} {o}" for n, o in ((g.n_failed, "failed"), (g.n_diverged, "diverged")) if n]
            basis = ("; none trained, so its failed runs are measured" if g.basis == "failed"
                     else "; diverged runs are not measurements" if g.basis == "none" else "")
            notes.append(f"{g.label}: {', '.join(what)}{basis}")
        if g.n_missing:
            notes.append(f"{g.n_missing} run(s) of {g.label} without a value dropped")
    return (". " + "; ".join(notes)) if notes else ""


def _group_fields(groups: list[Group], level: float) -> list[dict]:
    out = []
    for g in groups:
        lo, hi = stats.wilson_interval(g.n_trained, g.n_runs, level)
        out.append(dict(label=g.label, mean=g.mean, std=g.std, n=g.n, n_runs=g.n_runs,
                        n_trained=g.n_trained, n_failed=g.n_failed, n_diverged=g.n_diverged,
                        basis=g.basis, trained_lo=lo, trained_hi=hi))
    return out


def _ab_fields(a: Group, b: Group, iv: Interval | None = None) -> dict:
    diff, lo, hi = (iv.estimate, iv.lo, iv.hi) if iv else (math.nan, math.nan, math.nan)
    return dict(mean_a=a.mean, std_a=a.std, n_a=a.n, mean_b=b.mean, std_b=b.std, n_b=b.n,
                diff=diff, lo=lo, hi=hi)


def _comparison(a: Group, b: Group, iv: Interval) -> dict:
    return dict(a=a.label, b=b.label, diff=iv.estimate, lo=iv.lo, hi=iv.hi, df=iv.df,
                method=iv.method)

def _too_few(groups: Iterable[Group], min_runs: int) -> str | None:
    few = [g for g in groups if g.n < min_runs]
    if not few:
        return None
    what = "; ".join(f"{g.label} has {g.n} measured run{'s' if g.n != 1 else ''}"
                     + (f" ({_runs_note(g)})" if not g.all_trained and g.n_runs else "") for g in few)
    return f"inconclusive by rule: {what}, fewer than the {min_runs} required"


def _single_timing(groups: Iterable[Group]) -> str | None:
    """Why a time claim cannot be decided: a group's times rest on one timing of unknown error."""
    single = [g.label for g in groups if g.timing == "single"]
    if not single:
        return None
    return f"inconclusive: the times of {', '.join(single)} are a single measurement ({SINGLE_NOTE})"


def _inconclusive_by_rule(out: dict, groups: list[Group], evidence: str, s: Settings) -> dict | None:
    """The early result of a rule whose groups have too few measured runs, or whose times are a single
    measurement, else None."""
    few = _too_few(groups, s.min_runs) or _single_timing(groups)
    if few is None:
        return None
    return {**out, "verdict": "inconclusive", "evidence": evidence,
            "reason": few + _notes(groups, s.level)}


def _decide(sign: int, want: int) -> str:
    """supported when the interval lies on the predicted side of the bound, contradicted when on
    the other, inconclusive when it contains the bound."""
    return "supported" if sign == want else "contradicted" if sign == -want else "inconclusive"


_WHERE = {1: "lies entirely above", -1: "lies entirely below", 0: "contains"}

def verdict_rule_text(level: float, resamples: int | None = None, min_runs: int = 3) -> str:
    """One paragraph for the report's methods section stating the verdict rule and its tests.

    ``resamples`` belonged to the bootstrap these rules replaced; accepted and ignored.
    """
    pct = f"{level:.0%}"
    return (
        f"Each homework conclusion is stated as a rule over the runs and judged on two-sided {pct} "
        f"intervals built for 3 to 5 runs per setting. A difference of two means gets Welch's t "
        f"interval: settings differ in spread (a learning rate near the edge of stability scatters "
        f"far more than a safe one), so the variances are not pooled, and the t quantile, not the "
        f"normal one, carries the uncertainty of a spread estimated from so few runs. A single mean "
        f"('about X', 'above X') gets the t interval, and 'about the same' time a Welch interval on "
        f"log values (a ratio). A comparison is supported when its interval lies entirely on the side "
        f"the homework predicts, contradicted when entirely on the other side, inconclusive when it "
        f"contains zero; 'about the same' needs the interval within the stated margin, 'about X' within "
        f"the stated band. 'Best' needs the best mean and a significant win over every other setting, its "
        f"comparisons judged as one family with Holm's step-down correction (as are a comparison's values at "
        f"every setting of a sweep), so that the probability of any wrong decision in the family stays at most "
        f"{1 - level:.0%}; "
        f"an optimum inside a sweep, significant wins over both endpoints (contradicted when an "
        f"endpoint beats every interior setting significantly); a monotone trend, monotone means and a "
        f"significant difference between the endpoints. Claims use the runs that trained (the outcome "
        f"rule above): where no run of a setting trained, its failed runs; diverged runs never. Each "
        f"setting's 'k of n trained' carries a {pct} Wilson score interval, which stays inside 0-100 % "
        f"at k = 0 and k = n. A verdict holds 'reliably' when every run of every setting involved "
        f"trained, and 'in k of n runs' (or 'in the runs that trained') otherwise. Edge cases: a group "
        f"with fewer than {min_runs} measured runs makes a claim inconclusive by rule; two groups "
        f"whose runs all gave the same number differ by exactly their difference (an interval of width "
        f"zero: decisive unless the difference is zero); equal means are a tie, which decides nothing. "
        f"For epochs, steps and time to the target accuracy, a run that never reached it counts as "
        f"infinitely slow: a setting in which no run reached it loses to one in which every run did, "
        f"and a setting in which only some did is bounded only on the side its runs that reached the "
        f"target can show. Times measured by the solo timing pass are one timing per setting, shared by its "
        f"runs: their uncertainty is the spread of the pass's timing bursts, added to the variance of each "
        f"mean (its degrees of freedom the bursts less one), so a difference smaller than the timing noise "
        f"decides nothing; a time from a single timing, with no spread to judge it by, is inconclusive. "
        f"A claim whose study, or a setting it names, has no runs yet is marked 'not run yet'."
    )
