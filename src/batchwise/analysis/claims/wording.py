"""Verdict wording: numbers, groups and intervals as the evidence and reason sentences read them,
how far a verdict reaches ("reliably", "in k of n runs"), and the verdict rule for the methods."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from batchwise.analysis import stats
from batchwise.analysis.stats import Interval
from .selection import HIGHER_BETTER, METRICS, NEVER_METRICS, Group, Settings
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
    if g.basis == "all":
        others = "".join(f", {k} {o}" for k, o in ((g.n_failed, "failed"), (g.n_diverged, "diverged")) if k)
        return f"{g.n_trained} of {g.n_runs} trained{others}"
    diverged = f", {g.n_diverged} diverged" if g.n_diverged else ""
    return f"{g.n_trained} of {g.n_runs} trained{diverged}"


def _by_outcome(g: Group) -> str:
    """A group of runs of different outcomes on an accuracy or a loss, told apart: "2 of 5 trained at
    91.3 ± 2.3 %, 3 failed at 11.3 ± 0.0 %, 1 diverged"."""
    scale, unit, _, dg = METRICS[g.metric]
    outcomes = np.asarray(g.outcomes)
    parts = []
    for o in ("trained", "failed", "diverged"):
        v = g.values[outcomes == o] * scale
        if not len(v):
            continue
        head = f"{g.n_trained} of {g.n_runs} trained" if o == "trained" else f"{len(v)} {o}"
        if o == "diverged":
            parts.append(head + " (counted as worse than any finished run)")
            continue
        spread = f" ± {_num(float(np.std(v, ddof=1)), dg)}" if len(v) > 1 else ""
        parts.append(f"{head} at {_num(float(np.mean(v)), dg)}{spread}{unit}")
    if not g.n_trained:
        parts.insert(0, f"0 of {g.n_runs} trained")
    return f"{g.label}: {', '.join(parts)}"


def _fmt_group(g: Group) -> str:
    scale, unit, _, dg = METRICS[g.metric]
    if g.n_runs == 0:
        return f"{g.label}: no runs"
    if g.n == 0:
        why = f"all {g.n_runs} runs diverged" if g.n_diverged == g.n_runs else "no value in any run"
        return f"{g.label}: {why}"
    if g.basis == "all" and g.metric not in NEVER_METRICS and (g.mixed or g.n_diverged == g.n):
        return _by_outcome(g)
    if g.metric in NEVER_METRICS and g.n_reached < g.n:
        if g.n_reached == 0:
            return f"{g.label}: never reached (0/{g.n} runs; {_runs_note(g)})"
        fin = g.values[np.isfinite(g.values)] * scale
        return (f"{g.label}: reached in {g.n_reached}/{g.n} runs "
                f"(those: {_num(float(fin.mean()), dg)}{unit}), counted as never ({_runs_note(g)}"
                f"{_timing_note(g)})")
    if one_timing(g):   # the runs' times are one timing's: its standard error is their uncertainty
        shared = ", one timing shared by the runs" if g.n > 1 else ""
        return (f"{g.label}: {_num(g.mean * scale, dg)} ± {_num(g.timing_se * scale, dg + 1)}{unit} "
                f"({_runs_note(g)}; ± is the timing standard error, ≥ {_bursts(g)} bursts{shared})")
    body = _num(g.mean * scale, dg)
    if not math.isnan(g.std):
        body += f" ± {_num(g.std * scale, dg)}"
    return f"{g.label}: {body}{unit} ({_runs_note(g)}{_timing_note(g)})"


def one_timing(g: Group) -> bool:
    """Whether a group's times are all one shared timing's (its runs took the same steps, so their
    spread is zero by construction and says nothing): then the timing's standard error is the
    number's uncertainty, not the runs' standard deviation."""
    return (g.timing == "bursts" and g.n > 0 and bool(np.isfinite(g.values).all())
            and float(np.ptp(g.values)) <= stats.TIE * abs(g.mean))


def _bursts(g: Group) -> int:
    return min(int(d) + 1 for _, d in g.timing_terms)


def _timing_note(g: Group) -> str:
    """How the times of a group were measured, where they share a timing pass."""
    scale, unit, _, dg = METRICS[g.metric]
    if g.timing == "bursts":
        return f"; timing standard error {_num(g.timing_se * scale, dg + 1)}{unit}, ≥ {_bursts(g)} bursts"
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
    if iv.method.startswith("rank-sum"):   # its estimate is the median of the pairwise differences
        what = what.replace("difference", "shift")
    if iv.lo == -math.inf and iv.hi == math.inf and "unbounded" in iv.method:
        # never-reached runs on both sides: neither bound, and no number to give as the difference
        return f"{what} unbounded ({_pct(level)} interval [−inf, +inf]: runs that never reached it on both sides)"
    return (f"{what} {_num(iv.estimate * scale, dg, True)}{dunit}, {_pct(level)} {_test_name(iv)} "
            f"interval [{_num(iv.lo * scale, dg, True)}, {_num(iv.hi * scale, dg, True)}]")


def _test_name(iv: Interval) -> str:
    """The short name of the rule that made an interval, for the evidence sentence."""
    if iv.method.startswith(("exact", "tie (both")):
        return "exact (no spread)"
    if iv.method.startswith(("tie", "decisive")):
        return "never-reached" if "target" in iv.method else "diverged-as-worst"
    if iv.method.startswith("rank-sum"):
        return "exact rank-sum (Hodges-Lehmann)"
    name = "Welch t" if iv.method.startswith("Welch") else "t"
    return name + (" (runs and timing bursts)" if "timing" in iv.method else "")


def _verdict_words(verdict: str, groups: list[Group]) -> str:
    """The verdict with how far it reaches: "reliably" when every run of every group trained, "counting
    every run" where the metric counts the runs that did not train too (an accuracy, a loss, a time to
    the target), "in k of n runs" (one group) or "in the runs that trained" otherwise (naming the groups
    in which none trained, whose failed runs were measured)."""
    if verdict not in ("supported", "contradicted"):
        return verdict
    if all(g.all_trained for g in groups):
        return f"{verdict} reliably (every run trained)"
    if all(g.basis == "all" for g in groups):
        bad, total = sum(g.n_runs - g.n_trained for g in groups), sum(g.n_runs for g in groups)
        return f"{verdict} counting every run (" + (f"none of the {total} trained)" if bad == total else
                                                     f"{bad} of {total} did not train)")
    if len(groups) == 1:
        g = groups[0]
        return f"{verdict} in {g.n_trained} of {g.n_runs} runs" + (
            " (none trained: on its failed runs)" if g.basis == "failed" else "")
    failed = [g.label for g in groups if g.basis == "failed"]
    return f"{verdict} in the runs that trained" + (
        f", and on the failed runs of {', '.join(failed)}, where none trained" if failed else "")


def _counted_as(metric: str) -> str:
    """How a run that did not train enters a claim on ``metric`` (one of OUTCOME_METRICS)."""
    if metric in NEVER_METRICS:
        return "counted as never reaching the target"
    worst = "accuracy" if metric in HIGHER_BETTER else "loss"
    return f"a failed run at its {worst}, a diverged one as worse than any finished run"


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
                     else "; diverged runs are not measurements" if g.basis == "none"
                     else f"; {_counted_as(g.metric)}" if g.basis == "all" else "")
            notes.append(f"{g.label}: {', '.join(what)}{basis}")
        if g.n_missing:
            notes.append(f"{g.n_missing} run(s) of {g.label} without a value dropped")
    return (". " + "; ".join(notes)) if notes else ""


def _group_fields(groups: list[Group], level: float) -> list[dict]:
    """Each group as numbers: mean, std and n of its values; on an accuracy or a loss, of its finished
    runs (a diverged run, counted as worse than any, has no number to average); on a time from the
    timing pass, the standard error of its shared timing and whether the runs' times are that one
    timing's (`one_timing`)."""
    out = []
    for g in groups:
        lo, hi = stats.wilson_interval(g.n_trained, g.n_runs, level)
        mean, std, n = g.mean, g.std, g.n
        if g.metric not in NEVER_METRICS and np.isinf(g.values).any():
            finite = Group(g.label, g.metric, g.values[np.isfinite(g.values)])
            mean, std, n = finite.mean, finite.std, finite.n
        out.append(dict(label=g.label, mean=mean, std=std, n=n, n_runs=g.n_runs,
                        n_trained=g.n_trained, n_failed=g.n_failed, n_diverged=g.n_diverged,
                        basis=g.basis, trained_lo=lo, trained_hi=hi,
                        n_reached=int(np.isfinite(g.values).sum()) if g.metric in NEVER_METRICS else n,
                        timing_se=g.timing_se if g.timing == "bursts" else math.nan,
                        one_timing=one_timing(g)))
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
    what = "; ".join(f"{g.label} has {g.n} {'' if g.basis == 'all' else 'measured '}run{'s' if g.n != 1 else ''}"
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
    pct, alpha = f"{level:.0%}", f"{1 - level:.0%}"
    need = next(n for n in range(1, 1000) if stats.exact_interval(0, n, level)[1] < 0.5)  # 0 of n decides
    return (
        f"Each homework conclusion is stated as a rule over the runs and judged on two-sided {pct} "
        f"intervals or exact tests built for 3 to 5 runs per setting, so that a claim that is neither true "
        f"nor false (its quantity exactly at the claim's bound) is decided, either way, at most {alpha} of "
        f"the time: a simulation of every rule kind with 3 and 5 runs checks this (docs/claims-null.md). "
        f"Which runs count: on an accuracy, a loss, or the epochs, steps or time to the target accuracy, "
        f"a run that did not train is a worse result, never missing data: a failed run counts at the "
        f"accuracy (loss) it ended with, a diverged run as worse than any finished one, and on a time to the "
        f"target every run that did not train counts as never reaching it (infinitely slow), even if it "
        f"touched the target before it fell back. On the other metrics (times, the generalisation gap) the "
        f"outcome rule above picks the runs: those that trained, or, where none did, the failed ones; "
        f"diverged runs never. A difference of two means gets Welch's t interval: settings differ in spread "
        f"(a learning rate near the edge of stability scatters far more than a safe one), so the variances "
        f"are not pooled, and the t quantile, not the normal one, carries the uncertainty of a spread "
        f"estimated from so few runs. Where a setting mixes runs that trained with runs that did not (97 % "
        f"and 11 %), its mean and spread describe neither kind, and the comparison uses the exact rank-sum "
        f"(Wilcoxon-Mann-Whitney) test instead, as the Hodges-Lehmann interval of the shift: it needs only "
        f"the order of the runs, so its level holds whatever their distribution (with 3 runs a side it "
        f"cannot decide anything). A single mean ('about X', 'above X') gets the t interval, and 'about the "
        f"same' time a Welch interval on log values (a ratio). A comparison is supported when its interval "
        f"lies entirely on the side the homework predicts, contradicted when entirely on the other side, "
        f"inconclusive when it contains zero; 'about the same' needs the interval within the stated margin, "
        f"'about X' within the stated band. 'Best' needs the best mean and a significant win over every other "
        f"setting, its comparisons judged as one family with Holm's step-down correction (as are a "
        f"comparison's values at every setting of a sweep), so that the probability of any wrong decision in "
        f"the family stays at most {alpha}; an optimum inside a sweep, significant wins over both endpoints "
        f"(contradicted when an endpoint beats every interior setting significantly); a monotone trend, "
        f"monotone means and a significant difference between the endpoints. Claims about shares of runs "
        f"are decided on k of n with exact tests, since the approximations overshoot at 3 to 5 runs: a share "
        f"against a bound by its exact (Clopper-Pearson) interval, two shares by Fisher's exact test "
        f"(p below {1 - level:g}). 'Does not converge within the budget' means that most runs end the budget "
        f"below the target accuracy: a run converged when it trained and its final test accuracy is at the "
        f"target; the exact interval of that share must lie below one half (with {need - 1} runs or fewer it "
        f"cannot: 0 of {need - 1} still allows {100 * stats.exact_interval(0, need - 1, level)[1]:.0f} %; it takes "
        f"{need}). How often a setting reached the target first is "
        f"told beside it, but does not decide it. Each setting's 'k of n trained' carries a {pct} Wilson "
        f"score interval, a description. A verdict holds 'reliably' when every run of every setting "
        f"involved trained, 'counting every run' when the runs that did not train entered it as above, and "
        f"'in k of n runs' (or 'in the runs that trained') on a metric that leaves them out. Edge cases: a "
        f"group with fewer than {min_runs} runs makes a claim inconclusive by rule; two groups whose runs "
        f"all gave the same number differ by exactly their difference (an interval of width zero: decisive "
        f"unless the difference is zero); numbers equal to a relative 1e-9 (float rounding, 0.1 + 0.2 "
        f"against 0.3) are equal, and a tie decides nothing; no number depends on the order in which the "
        f"runs are listed. For epochs, steps and time to the target, a setting in which no run reached it "
        f"loses to one in which every run did, and a setting in which only some did is bounded only on the "
        f"side its runs that reached the target can show (likewise a diverged run on an accuracy). Times "
        f"measured by the solo timing pass are one timing per setting, shared by its runs: their "
        f"uncertainty is the spread of the pass's timing bursts, added to the variance of each mean (its "
        f"degrees of freedom the bursts less one), so a difference smaller than the timing noise decides "
        f"nothing; a time from a single timing, with no spread to judge it by, is inconclusive. A claim "
        f"whose study, or a setting it names, has no runs yet is marked 'not run yet'."
    )
