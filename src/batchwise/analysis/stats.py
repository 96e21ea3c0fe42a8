"""Small-sample statistics for the claim verdicts: 2 to 5 runs per setting.

Why these tests
---------------
- **Difference of two means: Welch's t interval.** Settings differ in spread (a learning rate near
  the edge of stability scatters far more than a safe one), so the pooled-variance t interval would
  borrow the calm group's spread for the wild one; Welch's does not. The t quantile, not the normal
  one, because with 3-5 runs the spread itself is uncertain (at n = 3 the 95 % t quantile is 4.30,
  against 1.96). A percentile bootstrap at these n is too narrow: with 3 runs it has 10 distinct
  means to draw from.
- **One mean: the t interval** (n - 1 degrees of freedom), for the same reason.
- **k of n runs, described: the Wilson score interval**
  (``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``): unlike the Wald interval it
  does not collapse to a point at k = 0 or k = n, and it stays inside [0, 1].
- **k of n runs, decided: the exact (Clopper-Pearson) interval**, and for two shares **Fisher's
  exact test**. At 3 to 5 runs the approximations overshoot: Wilson and Newcombe decide 0 of 5 or
  5 of 5 against one half, which happens 6.25 % of the time when the true share is one half. The
  exact ones never exceed their level (0 of 5 is not enough against one half; 0 of 6 is).
- **Two settings whose runs mix those that trained with those that did not: the exact rank-sum
  (Wilcoxon-Mann-Whitney) test**, as the Hodges-Lehmann interval of the shift it inverts to. Such a
  setting has two kinds of run far apart (97 % and 11 %): its mean and spread describe neither, and a
  t interval on them is not exact. The rank-sum test uses only the order of the runs, so its level
  holds whatever their distribution; with 3 runs a side it can decide nothing (its smallest p is 0.1).

Edge cases, decided here once
-----------------------------
- **A group of one run** has no spread estimate: its intervals are (-inf, +inf), so nothing is
  decided on it (the claims also need ``min_runs`` runs per group).
- **n = 2**: a valid t interval with 1 degree of freedom (95 % quantile 12.7): wide, as it should be.
- **Zero variance** (every run of a group gave the same number, e.g. a collapsed model scoring the
  share of one class): in a two-group comparison with *both* groups constant the standard error is
  0 and Welch's degrees of freedom are 0/0. The difference is then taken as known exactly: an
  interval of width zero at the observed difference. A non-zero difference is decisive (both
  groups repeat their value run after run); a zero difference is a tie, which decides nothing.
  With only one group constant, Welch's interval is well defined (its degrees of freedom are the
  other group's n - 1). A single constant group's mean interval is likewise the point itself.
- **Ties** (equal means): the interval of the difference contains 0 and decides nothing. Equal means
  to a relative ``TIE`` (1e-9: float rounding, e.g. 0.1 + 0.2 against 0.3) are equal: a zero-width
  difference that small is a tie, an interval whose end is that close to its bound contains it,
  ``best_index`` picks the first of tied settings, ``is_monotone`` allows equal neighbours. Every
  function sorts its values first, so that the order in which the runs are listed changes no number.
- **Never reached the target** (to-target metrics): such a run has no value; it is +inf here. See
  ``censored_difference``.
- **k = 0 or n = 0**: Wilson handles k = 0 and k = n; n = 0 gives (0, 1): nothing is known.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["Interval", "welch_interval", "mean_interval", "ratio_interval", "censored_difference",
           "censored_mean", "wilson_interval", "exact_interval",
           "fisher_p", "rank_shift_interval", "side", "best_index", "is_monotone", "holm", "TIE"]

UNBOUNDED = (-math.inf, math.inf)
TIE = 1e-9   # relative: two numbers this close are equal (float rounding, not a measured difference)


def _close(x: float, y: float) -> bool:
    """x and y equal to a relative TIE (both finite), or identical."""
    if x == y:
        return True
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    return abs(x - y) <= TIE * max(abs(x), abs(y))


def _sorted(x: Sequence[float]) -> np.ndarray:
    # sorted: every mean and variance below is then the same whatever order the runs came in
    return np.sort(np.asarray(x, dtype=float))


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided interval; ``df`` is the t distribution's degrees of freedom
    (NaN where no t quantile was used) and ``method`` names the rule that produced it."""

    estimate: float
    lo: float
    hi: float
    df: float = math.nan
    method: str = ""


def _constant(x: np.ndarray) -> bool:
    # on the values, not var == 0: the mean of three equal floats can differ from them by one ulp,
    # which would give a tiny non-zero variance and a meaningless df; values equal to a relative TIE
    # (0.1 + 0.2 and 0.3) are the same number
    return bool(np.ptp(x) == 0) or _close(float(np.min(x)), float(np.max(x)))


def _var(x: np.ndarray) -> float:
    return 0.0 if _constant(x) else float(np.var(x, ddof=1))


def _t_quantile(level: float, df: float) -> float:
    return float(sps.t.ppf((1.0 + level) / 2.0, df))


# A further variance term of an estimate with its degrees of freedom: a setting's timing uncertainty,
# shared by all its runs (squared standard error of the timing, bursts - 1).
Extra = tuple[float, float]


def _satterthwaite(terms: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance terms (variance, df)."""
    total = sum(v for v, _ in terms)
    return total ** 2 / sum(v ** 2 / d for v, d in terms if v > 0)


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95,
                   factor: float = 1.0, extra: Sequence[Extra] = ()) -> Interval:
    """Welch's t interval of mean(a) - factor * mean(b).

    ``factor`` scales every value of b (so its variance by factor²): "a is more than twice b" is
    mean(a) - 2 mean(b) > 0. ``extra``: further independent variance terms of the difference, each
    (variance, df), e.g. the timing uncertainty a setting's runs share; they add to the squared
    standard error and enter the degrees of freedom. Everything constant and no extra term: a
    zero-width interval at the difference; either group with fewer than 2 values: (-inf, +inf).
    Degrees of freedom by Welch-Satterthwaite.
    """
    a = _sorted(a)
    b = factor * _sorted(b)
    est = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Interval(est, *UNBOUNDED, method="Welch t (a group of one run: unbounded)")
    ua, ub = _var(a) / len(a), _var(b) / len(b)   # squared standard errors of the two means
    terms = [(ua, len(a) - 1), (ub, len(b) - 1), *[(float(v), float(d)) for v, d in extra if v > 0]]
    total = sum(v for v, _ in terms)
    if total == 0.0:
        if _close(float(a.mean()), float(b.mean())):   # equal to float rounding: a tie, not a difference
            return Interval(0.0, 0.0, 0.0, method="tie (both groups constant and equal)")
        return Interval(est, est, est, method="exact (both groups constant)")
    df = _satterthwaite(terms)
    half = _t_quantile(level, df) * math.sqrt(total)
    return Interval(est, est - half, est + half, df,
                    "Welch t with timing spread" if len(terms) > 2 else "Welch t")


def mean_interval(x: Sequence[float], level: float = 0.95, extra: Sequence[Extra] = ()) -> Interval:
    """The t interval of a mean (n - 1 degrees of freedom; with ``extra`` variance terms, as in
    ``welch_interval``, Welch-Satterthwaite); constant values and no extra term: the point itself;
    fewer than 2 values: (-inf, +inf)."""
    x = _sorted(x)
    est = float(x.mean()) if len(x) else math.nan
    if len(x) < 2:
        return Interval(est, *UNBOUNDED, method="t (one run: unbounded)")
    terms = [(_var(x) / len(x), len(x) - 1), *[(float(v), float(d)) for v, d in extra if v > 0]]
    if sum(v for v, _ in terms) == 0.0:
        return Interval(est, est, est, method="exact (constant)")
    df = _satterthwaite(terms) if len(terms) > 1 else float(len(x) - 1)
    half = _t_quantile(level, df) * math.sqrt(sum(v for v, _ in terms))
    return Interval(est, est - half, est + half, float(df), "t with timing spread" if len(terms) > 1 else "t")


def ratio_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95,
                   extra: Sequence[Extra] = ()) -> Interval:
    """Relative difference of two positive quantities, a / b - 1, as the ratio of geometric means.

    Welch's interval of mean(log a) - mean(log b), exponentiated: times spread multiplicatively,
    and on the log scale the ratio needs no separate treatment of its denominator. A value <= 0
    has no logarithm: the interval is then (-inf, +inf). ``extra`` terms are on the log scale.
    """
    a, b = _sorted(a), _sorted(b)
    if (a <= 0).any() or (b <= 0).any():
        return Interval(math.nan, *UNBOUNDED, method="ratio (a value <= 0: unbounded)")
    iv = welch_interval(np.log(a), np.log(b), level, extra=extra)
    # expm1 maps -inf to -1 (a ratio of 0) and +inf to +inf: unbounded intervals stay unbounded
    return Interval(math.expm1(iv.estimate), math.expm1(iv.lo), math.expm1(iv.hi), iv.df,
                    f"{iv.method} on log values")


def censored_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95,
                        factor: float = 1.0, extra: Sequence[Extra] = (),
                        event: str = "reached the target") -> Interval:
    """mean(a) - factor * mean(b) where +inf marks a run that never reached the target.

    - no +inf on either side: Welch's interval;
    - every run of both never reached: a tie, [0, 0];
    - every run of one side never reached, every run of the other did: decisive, [+inf, +inf]
      (or [-inf, -inf]): the never side is slower, whatever the numbers;
    - otherwise (some runs of a side reached, some not): only what those runs cannot change is
      kept. A never-run can only make its side slower, so with never-runs in a the upper bound is
      +inf, with never-runs in b the lower bound is -inf; the other bound is Welch's bound over the
      runs that reached the target (unbounded where a side has fewer than 2 such runs).
    The estimate is the difference of means with +inf - +inf taken as 0. ``extra``: as in
    ``welch_interval``; ``event``: what a finite value means, for the method's name.
    """
    a = _sorted(a)
    b = factor * _sorted(b)
    never_a, never_b = np.isinf(a), np.isinf(b)
    if not never_a.any() and not never_b.any():
        return welch_interval(a, b, level, extra=extra)
    with np.errstate(invalid="ignore"):
        est = float(a.mean() - b.mean())
    est = 0.0 if math.isnan(est) else est  # +inf - +inf: both sides unbounded, taken as a tie
    if never_a.all() and never_b.all():
        return Interval(0.0, 0.0, 0.0, method=f"tie (no run of either {event})")
    if never_a.all() and not never_b.any():
        return Interval(math.inf, math.inf, math.inf, method=f"decisive (no run of a {event})")
    if never_b.all() and not never_a.any():
        return Interval(-math.inf, -math.inf, -math.inf, method=f"decisive (no run of b {event})")
    reached = welch_interval(a[~never_a], b[~never_b], level, extra=extra)
    lo = -math.inf if never_b.any() else reached.lo
    hi = math.inf if never_a.any() else reached.hi
    return Interval(est, lo, hi, reached.df,
                    f"{reached.method} over the runs that {event}, one side unbounded")


def censored_mean(x: Sequence[float], level: float = 0.95, extra: Sequence[Extra] = ()) -> Interval:
    """The t interval of a mean where +inf marks a run that never reached the target: every run
    never: [+inf, +inf]; some: the lower bound of the runs that reached it, the upper bound +inf."""
    x = _sorted(x)
    never = np.isinf(x)
    if not never.any():
        return mean_interval(x, level, extra)
    if never.all():
        return Interval(math.inf, math.inf, math.inf, method="decisive (no run reached the target)")
    reached = mean_interval(x[~never], level, extra)
    return Interval(math.inf, reached.lo, math.inf, reached.df,
                    f"{reached.method} over the runs that reached the target, upper bound unbounded")


@functools.lru_cache(maxsize=4096)   # a pure function of three numbers, asked for the same few often
def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a share of k in n (scipy's binomtest); n = 0: (0, 1)."""
    if n == 0:
        return 0.0, 1.0
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


@functools.lru_cache(maxsize=4096)
def exact_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a share of k in n: each end from the binomial tail at
    (1 - level) / 2, so that the interval misses the true share at most 1 - level of the time, for
    every share and every n (the approximations do not promise that at 3-5 runs); n = 0: (0, 1)."""
    if n == 0:
        return 0.0, 1.0
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


@functools.lru_cache(maxsize=4096)
def fisher_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of Fisher's exact test that k1 of n1 and k2 of n2 come from the same share: the
    probability, given the k1 + k2 successes, of a split as unlikely as this one. Its level holds for
    every common share (conservatively): 5 of 5 against 0 of 5 gives p = 2/252 = 0.0079."""
    if n1 == 0 or n2 == 0:
        return 1.0
    return float(sps.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


@functools.lru_cache(maxsize=256)
def _rank_sum_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m + n, m) orderings of m and n runs give each Mann-Whitney U = 0..m n."""
    # ways[i][j][u]: orderings of i a-runs and j b-runs with U = u (U counts pairs a above b)
    prev = [[1] + [0] * (m * n) for _ in range(n + 1)]    # i = 0: U is 0
    for i in range(1, m + 1):
        cur = [[0] * (m * n + 1) for _ in range(n + 1)]
        cur[0][0] = 1
        for j in range(1, n + 1):
            for u in range(m * n + 1):
                # the highest run is an a-run (above all j b-runs: U + j) or a b-run
                cur[j][u] = (prev[j][u - j] if u >= j else 0) + cur[j - 1][u]
        prev = cur
    return tuple(prev[n])


def rank_shift_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """The exact rank-sum (Wilcoxon-Mann-Whitney) interval of the shift a - b: the Hodges-Lehmann
    estimate (the median of the m n differences a_i - b_j) within [D_(k), D_(mn+1-k)], the sorted
    differences, with k the largest count whose exact tail P(U < k) stays at most (1 - level) / 2.
    It excludes 0 exactly when the rank-sum test rejects 'a and b come from one distribution' at
    1 - level, whatever that distribution is. Values may be infinite (a run worse than any finite
    one): inf - inf counts as 0, a tie, as do equal values, which makes the test conservative.
    Fewer runs than an exact test can decide on (k = 0, e.g. 3 against 3 at 95 %): (-inf, +inf)."""
    a, b = _sorted(a), _sorted(b)
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        return Interval(math.nan, *UNBOUNDED, method="rank-sum (no runs on one side: unbounded)")
    with np.errstate(invalid="ignore"):
        d = np.subtract.outer(a, b).ravel()
    d = np.sort(np.where(np.isnan(d), 0.0, d))
    est = float(np.median(d))
    counts = _rank_sum_counts(m, n)
    total, alpha, tail, k = math.comb(m + n, m), 1.0 - level, 0, 0
    while k < len(counts) and (tail + counts[k]) / total <= alpha / 2 * (1 + 1e-12):
        tail += counts[k]
        k += 1
    if k == 0:
        return Interval(est, *UNBOUNDED, method="rank-sum (too few runs for an exact test: unbounded)")
    return Interval(est, float(d[k - 1]), float(d[m * n - k]), method="rank-sum (Hodges-Lehmann, exact)")


def side(iv: Interval, bound: float = 0.0) -> int:
    """+1: the interval lies entirely above ``bound``; -1: entirely below; 0: it contains it (a
    zero-width interval at the bound, a tie, contains it; so does an end equal to the bound to a
    relative TIE)."""
    if iv.lo > bound and not _close(iv.lo, bound):
        return 1
    return -1 if iv.hi < bound and not _close(iv.hi, bound) else 0


def best_index(means: Sequence[float], goal: str) -> int:
    """Index of the highest (goal "max") or lowest ("min") mean; the first of the ones tied with it
    (equal to a relative TIE), so that float rounding never picks among equals."""
    m = np.asarray(means, dtype=float)
    top = float(np.max(m) if goal == "max" else np.min(m))
    return next(i for i, x in enumerate(m) if _close(float(x), top) or x == top)


def is_monotone(means: Sequence[float], increasing: bool) -> bool:
    """Whether the means never step against the direction. Equal neighbours (to a relative TIE) are
    allowed: two settings in which no run reached the target (+inf, +inf) tie, and a plateau is not
    a reversal."""
    pairs = list(zip(means, list(means)[1:]))
    return all(_close(m1, m2) or ((m2 >= m1) if increasing else (m2 <= m1)) for m1, m2 in pairs)


def holm(intervals: Sequence[Callable[[float], Interval]], level: float = 0.95,
         bound: float = 0.0) -> list[tuple[Interval, float]]:
    """Holm's step-down correction over a family of m comparisons, on intervals: each entry computes
    its interval at a given level. With r comparisons not yet decided, each is judged at level
    1 - (1 - level) / r; those whose interval excludes ``bound`` are decided, r shrinks, and the rest
    are judged again, until a round decides nothing. Equivalent to Holm (1979) on the p-values of the
    intervals: the chance that any decision of the family is wrong stays at most 1 - level. Returns,
    per comparison, its interval at the level at which it was judged last, and that level."""
    alpha, m = 1.0 - level, len(intervals)
    out: dict[int, tuple[Interval, float]] = {}
    open_ = list(range(m))
    while open_:
        lev = 1.0 - alpha / len(open_)
        judged = {i: intervals[i](lev) for i in open_}
        decided = [i for i, iv in judged.items() if side(iv, bound) != 0]
        out.update({i: (judged[i], lev) for i in open_})
        if not decided:
            break
        open_ = [i for i in open_ if i not in decided]
    return [out[i] for i in range(m)]
