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

from .aggregate import measured_runs
from .config import slug_value

try:  # issue 11 part 1 puts the small-sample statistics in their own module
    from .stats import wilson_interval
except ImportError:  # pragma: no cover - until that module lands
    def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
        """Wilson score interval of k successes in n trials (temporary; replaced by stats')."""
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2)
        p, denom = k / n, 1 + z * z / n
        centre, half = (p + z * z / (2 * n)) / denom, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        return max(0.0, centre - half), min(1.0, centre + half)

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
    at the end of training. Per setting: k of n finished runs collapsed, the class most of them predict,
    its mean share of the predictions, the collapsed runs' mean test accuracy, and the class's share of
    the test set (what a constant prediction of it scores). Diverged runs have no predictions."""
    done = runs[runs["outcome"].isin(["trained", "failed"])]
    out = []
    for setting, group in done.groupby("setting", sort=False):
        hit = group[group["top_pred_share"] >= threshold]
        if hit.empty:
            continue
        top = int(hit["top_pred_class"].mode().iloc[0])
        same = hit[hit["top_pred_class"] == top]
        labels = _counts(same["test_label_counts"].iloc[0]) if "test_label_counts" in same else []
        label_share = labels[top] / sum(labels) if labels else math.nan
        out.append({"study": group["study"].iloc[0], "setting": setting,
                    "values": {k: _plain(group[k].iloc[0]) for k in grid_keys}, "collapsed": len(hit), "n": len(group),
                    "class": top, "same_class": len(same), "pred_share": float(same["top_pred_share"].mean()),
                    "test_acc": float(same["final_test_acc"].mean()), "label_count": labels[top] if labels else None,
                    "test_size": sum(labels) if labels else None, "label_share": label_share})
    return out


def collapse_rows(collapsed: list[dict], dataset: str) -> list[list[str]]:
    """The report's collapse table: setting, collapsed k of n, class, share of predictions, accuracy, and
    the class's share of the test set."""
    rows = []
    for c in collapsed:
        setting = ", ".join(f"{k}={slug_value(v)}" for k, v in c["values"].items())
        share = (f"{c['label_count']:,} of {c['test_size']:,} = {100 * c['label_share']:.2f} %"
                 if c["label_count"] is not None else "–")
        rows.append([setting, f"{c['collapsed']} of {c['n']}", class_name(dataset, c["class"]),
                     f"{100 * c['pred_share']:.1f} %", f"{100 * c['test_acc']:.2f} %", share])
    return rows


def collapse_paragraph(collapsed: list[dict], dataset: str, init_key: str = "init") -> str:
    """Why a zero-initialised network collapses, in one paragraph, with the measured class and shares.
    Empty where no zero-initialised setting collapsed."""
    zeros = [c for c in collapsed if slug_value(c["values"].get(init_key, "")) == "zeros"]
    if not zeros:
        return ""
    c = max(zeros, key=lambda r: r["collapsed"])
    name = class_name(dataset, c["class"])
    shares = (f"{c['label_count']:,} of the {c['test_size']:,} test images are \u201c{name}\u201d "
              f"({100 * c['label_share']:.2f} %)" if c["label_count"] is not None else "")
    return (
        "With every weight and bias at zero, every hidden unit computes the same function of the input, zero, "
        "and so receives the same gradient: the error reaching a hidden unit is its outgoing weights times the "
        "output error, and those weights are zero, so no weight of any layer ever changes (ReLU's zero slope "
        "at 0 closes the same door). Symmetry is never broken. The one parameter that learns is the output "
        "bias: its gradient is the batch's softmax minus one-hot targets, so it settles near the log class "
        "frequencies of the training set, and the network answers the most frequent training class for every "
        f"image. Measured: {c['same_class']} of {c['n']} runs of {', '.join(f'{k}={slug_value(v)}' for k, v in c['values'].items())} "
        f"predict class \u201c{name}\u201d for {100 * c['pred_share']:.1f} % of the test images and score "
        f"{100 * c['test_acc']:.2f} %" + (f"; {shares}, exactly what a constant answer scores." if shares else "."))
