"""Analyses of the extension studies ("Beyond homework NNN"), on the runs table alone.

Three questions the homeworks asked but their designs could not answer:

- *How much higher a learning rate does batch normalisation tolerate?* `trained_share` counts, per
  learning rate, the runs that trained (the outcome rule of `aggregate`) with a Wilson interval;
  `half_failure` finds the learning rate at which that share falls to one half, with an interval.
- *Do large batches need more steps, or a larger learning rate?* `bend_fit` fits the empirical model
  of McCandlish et al. (2018), S(B) = S_min (1 + B_crit / B), to the steps to target; `noise_scale`
  summarises the measured gradient noise scale B_simple, its predicted critical batch.
- *Why does zero initialisation give ~11 %?* `collapsed_settings` finds models that predict one class
  for nearly every test image, names the class and that class's share of the test set.

Every function here reads plain columns (grid keys, `outcome`, metrics) so that figures, the report
and claims compute the same number the same way.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scipy.stats import t as t_dist

from batchwise.results.aggregate import measured_runs
from batchwise.config import slug_value
from .stats import exact_interval, wilson_interval

COLLAPSE_SHARE = 0.9   # a model that gives one class to >= 90 % of the test images has collapsed
HALF = 0.5             # the trained share that defines the half-failure learning rate
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
CLASS_NAMES["cifar10_grey"] = CLASS_NAMES["cifar10"]

HALF_FAILURE_METHOD = (
    "The share of runs that trained is counted at each learning rate, with a {level:.0%} Wilson score "
    "interval. The half-failure learning rate is where that share first falls below one half, going up the "
    "grid, interpolated linearly in log learning rate between the last grid value with at least half "
    "trained and the first with fewer. Its interval applies the same rule to the lower and to the upper "
    "Wilson bounds: the pessimistic curve falls below one half first, the optimistic one last. The bounds "
    "are pointwise, not simultaneous, and a crossing outside the grid is reported as '<' the smallest or "
    "'>' the largest learning rate tried.")
BEND_METHOD = (
    "Steps to target S(B) are fitted with the empirical model of McCandlish et al. (2018), "
    "S = S_min (1 + B_crit / B), i.e. perfect scaling (S ∝ 1/B) below the critical batch B_crit and a floor "
    "of S_min steps above it; B_crit is where the measured curve bends (steps twice their floor). The fit is "
    "least squares in S against 1/B with relative weights, on the mean steps of the runs that reached the "
    "target at each batch size. The gradient noise scale B_simple = tr(Σ)/|G|² is measured during training "
    "from mini-batch gradient norms at two batch sizes (McCandlish et al. 2018, appendix A) after every "
    "epoch; a run's value is its median over epochs, and the study's is the median over the runs that "
    "trained, with its interquartile range.")

LITERATURE_RULES = (
    "Three rules are particular to these claims. 'Half-failure' compares the learning rates at which half "
    "of the runs fail to train (method in each chapter): supported when the two {level:.0%} intervals lie "
    "apart in the predicted order, contradicted when apart in the other, inconclusive when they overlap. "
    "'Collapse' counts the runs that answer one class for at least 90 % of the test images: supported when "
    "the {level:.0%} exact (Clopper-Pearson) interval of that share lies above one half (they collapse "
    "reliably), "
    "contradicted when below. 'Critical batch' compares the fitted bend of steps to target with the measured "
    "noise scale: supported when the {level:.0%} interval of their ratio lies within the stated factor, "
    "contradicted when entirely outside it. That interval is computed on log scale: the variance of the fitted "
    "bend by the delta method (how the fit moves with each batch size's mean steps, times the variance of that "
    "mean), plus the variance of the median noise scale, with a t quantile (Welch-Satterthwaite degrees of "
    "freedom); simulated with 3 runs per setting it covers the true ratio in at least 93 % of the cases.")

# --------------------------------------------------------------------------- trained share

def trained_share(runs: pd.DataFrame, x: str, hue: str | None = None, level: float = 0.95) -> pd.DataFrame:
    """Per (hue, x): n runs, k trained, the share k/n and its Wilson interval; sorted by hue then x.
    Runs without data ('no-data') are left out."""
    done = runs[runs["outcome"] != "no-data"]
    keys = [hue, x] if hue else [x]
    rows = []
    for values, group in done.groupby(keys, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        n, k = len(group), int((group["outcome"] == "trained").sum())
        lo, hi = wilson_interval(k, n, level)
        rows.append({**dict(zip(keys, values)), "n": n, "trained": k,
                     "failed": int((group["outcome"] == "failed").sum()),
                     "diverged": int((group["outcome"] == "diverged").sum()), "share": k / n, "lo": lo, "hi": hi})
    table = pd.DataFrame(rows)
    return table.sort_values(keys, kind="stable").reset_index(drop=True) if len(table) else table


def first_crossing(xs: list[float], ys: list[float], level: float = HALF) -> float:
    """The x at which ys first falls below `level`, going up in x, interpolated linearly in log x between
    the last point at or above `level` and the first below it. -inf when the first point is already below,
    +inf when no point is."""
    if ys[0] < level:
        return -math.inf
    for i in range(1, len(xs)):
        if ys[i] < level:
            t = (ys[i - 1] - level) / (ys[i - 1] - ys[i])
            lx0, lx1 = math.log10(xs[i - 1]), math.log10(xs[i])
            return 10 ** (lx0 + t * (lx1 - lx0))
    return math.inf


@dataclass(frozen=True)
class HalfFailure:
    """The half-failure value of one group with its interval; ±inf marks a crossing outside the grid."""

    point: float
    lo: float
    hi: float
    grid_min: float
    grid_max: float

    def conservative(self) -> tuple[float, float]:
        """The interval with ends outside the grid replaced by what is known for certain: a lower end
        past the grid is at least the largest value tried, an upper end before it at most the smallest."""
        lo = self.grid_max if self.lo == math.inf else (0.0 if self.lo == -math.inf else self.lo)
        hi = self.grid_min if self.hi == -math.inf else self.hi
        return lo, hi

    def text(self, value: float | None = None) -> str:
        """'0.56' or '> 10' or '< 0.01' for one of the three numbers (the point by default)."""
        v = self.point if value is None else value
        if v == math.inf:
            return f"> {self.grid_max:g}"
        if v == -math.inf:
            return f"< {self.grid_min:g}"
        return f"{v:.2g}"

    def interval_text(self) -> str:
        return f"[{self.text(self.lo)}, {self.text(self.hi)}]"


def half_failure(share: pd.DataFrame, x: str) -> HalfFailure:
    """The half-failure value of `x` from one group's rows of `trained_share` (see HALF_FAILURE_METHOD)."""
    rows = share.sort_values(x)
    xs = [float(v) for v in rows[x]]
    return HalfFailure(point=first_crossing(xs, list(rows["share"])), lo=first_crossing(xs, list(rows["lo"])),
                       hi=first_crossing(xs, list(rows["hi"])), grid_min=xs[0], grid_max=xs[-1])


def half_failures(runs: pd.DataFrame, x: str, hue: str | None, level: float = 0.95) -> list[tuple[object, HalfFailure]]:
    """(hue value, HalfFailure) for every hue value, in the order of the runs table."""
    share = trained_share(runs, x, hue, level)
    if share.empty:
        return []
    if hue is None:
        return [(None, half_failure(share, x))]
    return [(value, half_failure(group, x)) for value, group in share.groupby(hue, sort=False)]


# --------------------------------------------------------------------------- steps to target

def bend_fit(batch: list[float], steps: list[float]) -> tuple[float, float]:
    """(S_min, B_crit) of S = S_min (1 + B_crit / B), least squares in S against 1/B with weights 1/S
    (relative errors: the curve spans decades). B_crit is +inf where the fit finds no floor (perfect
    scaling over the whole range), NaN with fewer than two points or where steps do not fall with B."""
    b, s = np.asarray(batch, dtype=float), np.asarray(steps, dtype=float)
    keep = np.isfinite(b) & np.isfinite(s) & (s > 0)
    b, s = b[keep], s[keep]
    if len(b) < 2 or len(np.unique(b)) < 2:
        return math.nan, math.nan
    design = np.column_stack([np.ones_like(b), 1 / b]) / s[:, None]
    (s_min, e_min), *_ = np.linalg.lstsq(design, np.ones_like(s), rcond=None)
    if e_min <= 0:
        return float(s_min), math.nan
    if s_min <= 0:
        return float(s_min), math.inf
    return float(s_min), float(e_min / s_min)


def to_target_means(runs: pd.DataFrame, x: str, metric: str) -> pd.DataFrame:
    """Per x: the mean of `metric` over the measured runs (aggregate.measured_runs) that have it, their
    count, and the count of all runs."""
    rows = []
    for value, group in runs[runs["outcome"] != "no-data"].groupby(x, sort=True):
        chosen, _ = measured_runs(group)
        values = chosen[metric].dropna()
        rows.append({x: float(value), "mean": values.mean() if len(values) else math.nan, "n": len(values),
                     "n_runs": len(group)})
    return pd.DataFrame(rows, columns=[x, "mean", "n", "n_runs"])


def envelope(runs: pd.DataFrame, x: str, hue: str, metric: str) -> pd.DataFrame:
    """Per x, the fewest mean `metric` over the hue values whose runs all reached the target: the best of
    the learning-rate rules tried (Shallue et al. 2019 tune the learning rate at every batch size)."""
    parts = []
    for value, group in runs.groupby(hue, sort=False):
        means = to_target_means(group, x, metric)
        parts.append(means[means["n"] == means["n_runs"]].assign(**{hue: value}))
    both = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[x, "mean", hue])
    if both.empty:
        return both
    return both.loc[both.groupby(x)["mean"].idxmin()].sort_values(x).reset_index(drop=True)


def noise_scale(runs: pd.DataFrame) -> dict:
    """The study's measured B_simple: median, quartiles and count over the runs that trained."""
    values = runs.loc[runs["outcome"] == "trained", "noise_scale"].dropna() if "noise_scale" in runs else pd.Series([])
    if values.empty:
        return {"median": math.nan, "q25": math.nan, "q75": math.nan, "n": 0}
    return {"median": float(values.median()), "q25": float(values.quantile(0.25)),
            "q75": float(values.quantile(0.75)), "n": int(len(values))}


# --------------------------------------------------------------------------- collapsed models

def class_name(dataset: str, index: int) -> str:
    """'1' for MNIST, '1 (automobile)' for CIFAR-10."""
    names = CLASS_NAMES.get(dataset)
    if dataset == "mnist" or not names:
        return str(index)
    return f"{index} ({names[index]})"


def _plain(value):
    """A runs-table cell as the config wrote it: numpy scalars to Python (False, not 'False'), 64.0 to 64."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _counts(value) -> list[int]:
    """A runs-table list column (JSON text) back to a list; [] where missing."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return []


def collapsed_settings(runs: pd.DataFrame, grid_keys: list[str], threshold: float = COLLAPSE_SHARE) -> list[dict]:
    """Settings with at least one collapsed run: one class predicted for >= `threshold` of the test images
    at the end of training. Per setting: k of n finished runs collapsed and, in `classes`, each class they
    answer (most runs first): how many runs, their mean share of the predictions, their mean test accuracy,
    and the class's share of the test set (what a constant prediction of it scores). The setting's own
    class, shares and accuracy are those of its first class. Diverged runs have no predictions."""
    done = runs[runs["outcome"].isin(["trained", "failed"])]
    out = []
    for setting, group in done.groupby("setting", sort=False):
        hit = group[group["top_pred_share"] >= threshold]
        if hit.empty:
            continue
        labels = _counts(hit["test_label_counts"].iloc[0]) if "test_label_counts" in hit else []
        classes = []
        for top, same in sorted(hit.groupby("top_pred_class"), key=lambda kv: (-len(kv[1]), kv[0])):
            top = int(top)
            classes.append({"class": top, "same_class": len(same), "pred_share": float(same["top_pred_share"].mean()),
                            "test_acc": float(same["final_test_acc"].mean()),
                            "label_count": labels[top] if labels else None, "test_size": sum(labels) if labels else None,
                            "label_share": labels[top] / sum(labels) if labels else math.nan})
        out.append({"study": group["study"].iloc[0], "setting": setting,
                    "values": {k: _plain(group[k].iloc[0]) for k in grid_keys}, "collapsed": len(hit), "n": len(group),
                    **classes[0], "classes": classes})
    return out


def collapse_rows(collapsed: list[dict], dataset: str) -> list[list[str]]:
    """The report's collapse table, a row per setting and class its collapsed runs answer: setting and
    collapsed k of n (on its first row), class, runs answering it, share of predictions, accuracy, and
    the class's share of the test set."""
    rows = []
    for c in collapsed:
        setting = ", ".join(f"{k}={slug_value(v)}" for k, v in c["values"].items())
        for i, k in enumerate(c["classes"]):
            # a no-break space keeps each percentage whole when a narrow column wraps
            share = (f"{k['label_count']:,} of {k['test_size']:,} = {100 * k['label_share']:.2f}\u00a0%"
                     if k["label_count"] is not None else "–")
            rows.append([setting if i == 0 else "", f"{c['collapsed']} of {c['n']}" if i == 0 else "",
                         class_name(dataset, k["class"]), str(k["same_class"]),
                         f"{100 * k['pred_share']:.1f}\u00a0%", f"{100 * k['test_acc']:.2f}\u00a0%", share])
    return rows


def collapse_paragraph(collapsed: list[dict], dataset: str, init_key: str = "init", measured: str = "") -> str:
    """Why a zero-initialised network collapses, in one paragraph, with the measured class and shares and
    `measured`, the sentence of `saddle.gradient_sentence` (one backward pass at zero initialisation).
    Empty where no zero-initialised setting collapsed."""
    zeros = [c for c in collapsed if slug_value(c["values"].get(init_key, "")) == "zeros"]
    if not zeros:
        return ""
    c = max(zeros, key=lambda r: r["collapsed"])
    name = class_name(dataset, c["class"])
    shares = (f"{c['label_count']:,} of the {c['test_size']:,} test images are \u201c{name}\u201d "
              f"({100 * c['label_share']:.2f} %)" if c["label_count"] is not None else "")
    return (
        "With every weight and bias at zero, every hidden activation is zero and every weight leaving a hidden "
        "unit is zero. A weight's gradient is its input activation times the error reaching its unit, and the "
        "error reaching a hidden unit is its outgoing weights times the error above: zero. So the network sits "
        "on a dead saddle: no weight and no hidden bias ever receives a gradient. "
        + (measured + " " if measured else "")
        + "This is more than symmetry: a constant non-zero initialisation is just as symmetric, but its hidden "
        "units carry signal and gradient, so it does not stall this way. The one parameter that learns is the "
        "output bias: its gradient is the batch's softmax minus one-hot labels, so it settles near the log class "
        "frequencies of the training set, and the network answers the most frequent training class for every "
        f"image. Measured: {c['same_class']} of {c['n']} runs of {', '.join(f'{k}={slug_value(v)}' for k, v in c['values'].items())} "
        f"predict class \u201c{name}\u201d for {100 * c['pred_share']:.1f} % of the test images and score "
        f"{100 * c['test_acc']:.2f} %" + (f"; {shares}, exactly what a constant answer scores." if shares else "."))


# --------------------------------------------------------------------------- verdicts (rule kinds of the claims package)

def _verdict(supported: bool, contradicted: bool) -> str:
    return "supported" if supported else "contradicted" if contradicted else "inconclusive"


def half_failure_verdict(a_runs: pd.DataFrame, b_runs: pd.DataFrame, labels: tuple[str, str], over: str,
                         expect: str, level: float) -> dict:
    """Rule `half_failure`: a's half-failure value of `over` is greater (or less) than b's. Supported when
    the two intervals do not overlap in the expected order, contradicted when they do not overlap in the
    other, inconclusive otherwise; an end outside the grid counts as what is known for certain."""
    halves = []
    for rows in (a_runs, b_runs):
        share = trained_share(rows, over, None, level)
        halves.append((half_failure(share, over), share) if len(share) else (None, share))
    (a, a_share), (b, b_share) = halves
    if a is None or b is None:
        missing = " and ".join(lab for lab, (h, _) in zip(labels, halves) if h is None)
        return {"verdict": "inconclusive", "evidence": f"no runs of {missing}",
                "reason": f"inconclusive: no runs of {missing}"}
    (a_lo, a_hi), (b_lo, b_hi) = a.conservative(), b.conservative()
    above, below = a_lo > b_hi, a_hi < b_lo
    verdict = _verdict(above, below) if expect == "greater" else _verdict(below, above)
    counts = lambda s: " · ".join(f"{k}/{n}" for k, n in zip(s["trained"], s["n"]))  # noqa: E731
    where = "lie apart, a above b" if above else "lie apart, a below b" if below else "overlap"
    return {
        "verdict": verdict, "mean_a": a.point, "mean_b": b.point, "n_a": int(a_share["n"].sum()),
        "n_b": int(b_share["n"].sum()),
        "groups": [{"label": lab, "mean": h.point, "std": math.nan, "n": int(s["n"].sum())}
                   for lab, (h, s) in zip(labels, halves)],
        "evidence": "; ".join(f"{lab}: half-failure {over} {h.text()}, {level:.0%} interval {h.interval_text()} "
                              f"(trained by {over}: {counts(s)})" for lab, (h, s) in zip(labels, halves)),
        "reason": (f"{verdict}: expected the half-failure {over} of {labels[0]} {expect} than that of {labels[1]}; "
                   f"their {level:.0%} intervals (Wilson bounds on the trained share, interpolated in log {over}) "
                   f"{where.replace('a ', labels[0] + ' ').replace(' b', ' ' + labels[1])}"),
    }


def collapse_verdict(rows: pd.DataFrame, label: str, level: float, share: float = COLLAPSE_SHARE,
                     dataset: str = "mnist") -> dict:
    """Rule `collapse`: the selected runs collapse to one class. Supported when the exact (Clopper-Pearson)
    interval of the share of finished runs that collapsed lies above one half (they collapse reliably),
    contradicted when below, inconclusive otherwise. The evidence names the class, its share of the
    predictions, the test accuracy and the class's share of the test set."""
    done = rows[rows["outcome"].isin(["trained", "failed"])]
    n = len(done)
    if n == 0:
        return {"verdict": "inconclusive", "evidence": f"{label}: no finished runs",
                "reason": "inconclusive: no finished runs (diverged runs have no predictions)"}
    hit = done[done["top_pred_share"] >= share]
    k = len(hit)
    # exact: Wilson's interval decides 5 of 5 against one half, which a coin does 6.25 % of the time
    lo, hi = exact_interval(k, n, level)
    verdict = _verdict(lo > HALF, hi < HALF)
    evidence = f"{label}: {k} of {n} runs collapsed ({level:.0%} exact interval {100 * lo:.0f}–{100 * hi:.0f} %)"
    if k:
        top = int(hit["top_pred_class"].mode().iloc[0])
        same = hit[hit["top_pred_class"] == top]
        evidence += (f"; {len(same)} of them answer class \u201c{class_name(dataset, top)}\u201d for "
                     f"{100 * same['top_pred_share'].mean():.1f} % of the test images and score "
                     f"{100 * same['final_test_acc'].mean():.2f} %")
        if "top_class_test_share" in same and same["top_class_test_share"].notna().any():
            evidence += f", the class's share of the test set being {100 * same['top_class_test_share'].mean():.2f} %"
    how = "reliably (most runs, by the interval)" if verdict == "supported" else f"in {k} of {n} runs"
    return {"verdict": verdict, "mean_a": k / n, "n_a": n, "lo": lo, "hi": hi,
            "groups": [{"label": label, "mean": k / n, "std": math.nan, "n": n}], "evidence": evidence,
            "reason": (f"{verdict}: a run collapsed when one class took >= {share:.0%} of its test predictions; "
                       f"the claim holds when the {level:.0%} exact (Clopper-Pearson) interval of the collapsed "
                       f"share lies above one half, fails when it lies below; they collapse {how}")}


def _fitted_cells(runs: pd.DataFrame, over: str, by: str) -> list[tuple[float, float, float, int]]:
    """Per value of `over`, the best `by` among the settings whose runs all trained and reached the target:
    (batch, mean steps, variance of that mean, runs measured). A setting with a run that did not train or
    not reach the target does not count (its mean would hide a never)."""
    best: dict[float, tuple[float, float, float, int]] = {}
    for (_, batch), g in runs.groupby([by, over], sort=True):
        steps = np.where(g["outcome"] == "trained", g["steps_to_target"], np.nan).astype(float)
        if len(steps) and np.isfinite(steps).all():
            var = float(np.var(steps, ddof=1)) / len(steps) if len(steps) > 1 else math.inf
            cell = (float(batch), float(steps.mean()), var, len(steps))
            if cell[1] < best.get(float(batch), (0, math.inf))[1]:
                best[float(batch)] = cell
    return [best[b] for b in sorted(best)]


def _log_bend(cells: list[tuple[float, float, float, int]], means: list[float] | None = None) -> float:
    """log B_crit of the fit to the cells' mean steps (or to `means` in their place)."""
    _, b_crit = bend_fit([c[0] for c in cells], [c[1] for c in cells] if means is None else means)
    return math.log(b_crit) if math.isfinite(b_crit) and b_crit > 0 else math.nan


def bend_ratio_interval(cells: list[tuple[float, float, float, int]], noise: np.ndarray,
                        level: float) -> tuple[float, float, float, float]:
    """(ratio, lo, hi, df) of B_crit / B_simple, a parametric interval on log scale. log B_crit's variance
    by the delta method: the fit's derivative with respect to each batch size's mean steps (numerical),
    squared, times that mean's variance (its runs' spread / n); log median noise scale's variance
    (pi/2) s^2 / n of the log values (the median's large-sample variance). The two add; the t quantile
    takes Welch-Satterthwaite degrees of freedom (each mean's n - 1, the noise runs' n - 1)."""
    noise = noise[np.isfinite(noise) & (noise > 0)]
    point = _log_bend(cells)
    if not math.isfinite(point) or len(noise) < 2:
        return math.nan, math.nan, math.nan, math.nan
    log_median = math.log(float(np.median(noise)))
    terms = []
    means = [c[1] for c in cells]
    for i, (_, mean, var, n) in enumerate(cells):
        h = 1e-4 * mean
        up, down = list(means), list(means)
        up[i], down[i] = mean + h, mean - h
        grad = (_log_bend(cells, up) - _log_bend(cells, down)) / (2 * h)
        if not math.isfinite(grad) or not math.isfinite(var):
            return math.exp(point - log_median), math.nan, math.nan, math.nan
        terms.append((grad ** 2 * var, n - 1))
    logs = np.log(noise)
    terms.append((math.pi / 2 * float(np.var(logs, ddof=1)) / len(logs), len(logs) - 1))
    total = sum(v for v, _ in terms)
    df = total ** 2 / sum(v ** 2 / d for v, d in terms if v > 0) if total > 0 else math.inf
    half = float(t_dist.ppf((1 + level) / 2, df)) * math.sqrt(total) if total > 0 else 0.0
    est = point - log_median
    return math.exp(est), math.exp(est - half), math.exp(est + half), df


def critical_batch_verdict(runs: pd.DataFrame, over: str, by: str, factor: float, level: float,
                           min_runs: int = 3) -> dict:
    """Rule `critical_batch`: the measured noise scale B_simple predicts the bend B_crit of steps to target
    (McCandlish et al. 2018) within `factor`. The ratio B_crit / B_simple gets the parametric interval of
    `bend_ratio_interval`; supported when it lies within [1/factor, factor], contradicted when entirely
    outside, inconclusive otherwise (or with no bend, or a setting of the fit with fewer than `min_runs`
    measured runs)."""
    runs = runs[runs["outcome"] != "no-data"]
    cells = _fitted_cells(runs, over, by)
    noise_values = runs.loc[runs["outcome"] == "trained", "noise_scale"].to_numpy(dtype=float) \
        if "noise_scale" in runs else np.array([])
    best = envelope(runs, over, by, "steps_to_target")
    s_min, b_crit = bend_fit(list(best[over]), list(best["mean"])) if len(best) else (math.nan, math.nan)
    noise = noise_scale(runs)
    evidence = (f"fitted bend B_crit {b_crit:,.0f} {over} (best {by} at each {over}, {len(best)} values); "
                f"B_simple median {noise['median']:,.0f} (IQR {noise['q25']:,.0f}–{noise['q75']:,.0f}, "
                f"{noise['n']} runs)") if math.isfinite(b_crit) and noise["n"] else (
                f"no bend fitted (B_crit {b_crit}) or no noise scale measured ({noise['n']} runs)")
    if not (math.isfinite(b_crit) and b_crit > 0 and noise["n"]):
        return {"verdict": "inconclusive", "evidence": evidence,
                "reason": "inconclusive: no finite bend within the batch sizes tried, or no noise scale measured"}
    if not best[over].min() <= b_crit <= best[over].max():
        return {"verdict": "inconclusive", "evidence": evidence,
                "reason": f"inconclusive: the fitted bend lies outside the {over} values tried "
                          f"({best[over].min():g}–{best[over].max():g}), an extrapolation"}
    few = min([n for *_, n in cells] + [noise["n"]])
    if few < min_runs:  # the spread of fewer runs says too little about the uncertainty
        return {"verdict": "inconclusive", "evidence": evidence,
                "reason": f"inconclusive by rule: a setting of the fit (or the noise scale) has {few} measured "
                          f"run{'s' if few != 1 else ''}, fewer than the {min_runs} required"}
    point, lo, hi, df = bend_ratio_interval(cells, noise_values, level)
    if not math.isfinite(lo):
        return {"verdict": "inconclusive", "evidence": evidence,
                "reason": "inconclusive: the fit's uncertainty could not be computed (a batch size whose runs "
                          "have no spread, or a fit that loses its bend nearby)"}
    verdict = _verdict(lo >= 1 / factor and hi <= factor, hi < 1 / factor or lo > factor)
    where = 'within' if verdict == 'supported' else 'outside' if verdict == 'contradicted' else 'across the edge of'
    return {"verdict": verdict, "mean_a": b_crit, "mean_b": noise["median"], "diff": point, "lo": lo, "hi": hi,
            "evidence": f"{evidence}; ratio B_crit / B_simple {point:.2f}, {level:.0%} interval [{lo:.2f}, {hi:.2f}]",
            "reason": (f"{verdict}: 'predicts' means the fitted bend lies within a factor {factor:g} of the median "
                       f"noise scale; the {level:.0%} interval of their ratio (delta method on log scale, t with "
                       f"{df:.0f} degrees of freedom) lies {where} [{1 / factor:.2g}, {factor:g}]")}
