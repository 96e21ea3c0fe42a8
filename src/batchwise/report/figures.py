"""Figures as the config's `figures` list describes them; every line is a mean over seeds with a
min-max band, and a setting keeps its colour across all figures of a study. Means and bands follow
the outcome rule (`aggregate`): the runs that trained (or, where none did, the failed ones); a
diverged run is drawn alone, dashed, up to its last finite point, marked ×.

Kinds:
  curves           per-epoch `metrics` (train_loss, train_acc, test_loss, test_acc) vs epoch, a line per `hue`
  loss_iterations  per-iteration training loss; a row per `split` value, a column per `panel` value
  bars             final `metrics` per `x`, bars grouped by `hue`, seeds as dots
  sweep            final `metrics` vs numeric `x` (log scale), a line per `hue`
  trained_share    share of runs that trained vs `x` (log) with Wilson bands, a line per `hue`, the
                   half-failure value marked; beside it the final test accuracy of the trained runs
  to_target        `metrics` (steps_to_target, examples_to_target) vs `x` (log-log), a line per `hue`, with
                   perfect scaling, the fitted bend B_crit and the measured noise scale B_simple
  predictions      share of the test images given to each class (final epoch), bars per `hue`, a
                   panel per `panel` value, the test labels' shares as reference
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from batchwise.analysis import extensions as ext  # noqa: E402
from batchwise.results.aggregate import measured_runs, time_label  # noqa: E402
from batchwise.config import slug_value  # noqa: E402

LABELS = {
    "train_loss": "training loss (eval mode)", "test_loss": "test loss", "train_acc": "training accuracy (%, eval mode)",
    "running_loss": "running training loss", "running_acc": "running training accuracy (%)",
    "final_running_loss": "final running training loss", "final_running_acc": "final running training accuracy (%)",
    "first_epoch_running_loss": "first-epoch running loss", "steps_per_epoch": "steps per epoch",
    "test_acc": "test accuracy (%)", "loss": "training loss (per iteration)",
    "final_test_acc": "final test accuracy (%)", "final_train_acc": "final training accuracy (%, eval mode)",
    "final_test_loss": "final test loss", "final_train_loss": "final training loss (eval mode)",
    "best_test_acc": "best test accuracy (%)", "generalisation_gap": "train - test accuracy (pp)",
    # times: compute time, measured alone (the timing pass): s/step x steps (+ evaluation)
    "train_time_s": "training compute time (s)", "mean_epoch_s": "compute time per epoch (s)",
    "total_time_s": "train + test compute time (s)", "eval_time_s": "evaluation compute time (s)",
    "epochs_to_target": "epochs to target accuracy", "time_to_target_s": "compute time to target (s)",
    "steps_to_target": "steps to target accuracy", "epochs_to_goal": "epochs to the goal accuracy",
    "time_to_goal_s": "compute time to the goal accuracy (s)", "examples_to_target": "images to target accuracy",
    "noise_scale": "gradient noise scale B_simple", "lr_effective": "learning rate used",
    "top_pred_share": "share of the most predicted class (%)",
}
PERCENT = {"train_acc", "test_acc", "running_acc", "final_test_acc", "final_train_acc", "final_running_acc",
           "best_test_acc", "generalisation_gap", "top_pred_share"}
PALETTE = plt.get_cmap("tab10").colors


MARKERS = ("o", "s", "^", "D", "v", "P")


def colours(values: list) -> dict:
    """A fixed colour per value, in config order, so the same setting looks the same everywhere."""
    return {slug_value(v): PALETTE[i % len(PALETTE)] for i, v in enumerate(values)}


def _axis_label(metric: str, runs: pd.DataFrame) -> str:
    """The axis label of a final metric; time axes say whose times they plot (`time_label`)."""
    return time_label(LABELS.get(metric, metric), runs)


def _log_x(ax, values: list) -> None:
    """A log x axis ticked at the grid's values, the same in every panel (and no crowded minor labels
    where a panel's data span little more than a decade)."""
    ax.set_xscale("log")
    ax.set_xticks([float(v) for v in values], [slug_value(v) for v in values],
                  rotation=45 if len(values) > 4 else 0, fontsize=7 if len(values) > 4 else None)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _scale(metric: str) -> float:
    return 100.0 if metric in PERCENT else 1.0


def _label(key: str, value) -> str:
    return f"{key}={slug_value(value)}"


def _band(ax, frame: pd.DataFrame, x: str, y: str, colour, label: str, marker: str | None = None) -> None:
    """Mean line with a min-max band over seeds (with `marker` at about ten points along it)."""
    stats = frame.groupby(x)[y].agg(["mean", "min", "max"]).reset_index()
    ax.plot(stats[x], stats["mean"], color=colour, label=label, lw=1.4, marker=marker, ms=3.5,
            markevery=max(1, len(stats) // 10))
    ax.fill_between(stats[x], stats["min"], stats["max"], color=colour, alpha=0.2, lw=0)


def _setting(ax, group: pd.DataFrame, x: str, y: str, colour, label: str | None,
             marker: str | None = None) -> list[tuple[pd.DataFrame, Any]]:
    """One setting's curves by the outcome rule: a band over its measured runs; its diverged runs (their
    finite points, with the colour) are returned for ``_diverged`` to draw once every band is drawn."""
    chosen, basis = measured_runs(group.drop_duplicates(["seed"]))
    if basis != "none":
        suffix = " (all failed)" if basis == "failed" and label else ""
        _band(ax, group[group["seed"].isin(chosen["seed"])], x, y, colour, (label or "") + suffix or None, marker)
    runs = [run[np.isfinite(run[y])] for _, run in group[group["outcome"] == "diverged"].groupby("seed")]
    return [(run, colour) for run in runs if len(run)]


def _diverged(ax, runs: list[tuple[pd.DataFrame, Any]], x: str, y: str,
              fallback: tuple[float, float] | None = None) -> None:
    """Each diverged run dashed up to its last finite point, marked ×. The y-axis keeps the range of the
    runs that did not diverge (a loss that reached 1e36 would flatten them all): a run that leaves it is
    cut at the edge, its × drawn on the edge and labelled. An axis with no other run takes `fallback` (the
    range of the figure's other panels of the same quantity), or else scales to the diverged runs."""
    if not runs:
        return
    bounded = bool(ax.lines)   # bands drawn: their range is the axis's
    limits = ax.get_ylim() if bounded else fallback
    lo, hi = limits or (-np.inf, np.inf)
    for run, colour in runs:
        ax.plot(run[x], run[y], color=colour, lw=0.8, ls="--")
        last = float(run[y].iloc[-1])
        edge = min(max(last, lo), hi)
        ax.plot(run[x].iloc[-1:], [edge], "x", color=colour, ms=6, mew=1.5, clip_on=False)
        if edge != last:
            ax.annotate("diverged", (run[x].iloc[-1], edge), xytext=(-4, -8), textcoords="offset points",
                        ha="right", va="top", fontsize=7, color=colour)
    if limits:
        ax.set_ylim(lo, hi)


def _panels(n: int) -> tuple[plt.Figure, np.ndarray]:
    """A figure of `n` metric panels, at most two a row: a row of four shrinks to half size on an A4 page,
    its lettering too small to read in print."""
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[n:]:   # an odd count leaves one cell of the grid empty
        fig.delaxes(ax)
    return fig, axes


def _others(row: pd.Series, keys: list[str]) -> tuple:
    """A setting's values of `keys`, as `markers` is keyed."""
    return tuple(slug_value(row[k]) for k in keys)


def _with_params(frame: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    params = runs.drop_duplicates("setting").set_index("setting")[keys]
    return frame.join(params, on="setting")


def _values(study: dict, key: str | None) -> list:
    return list(study["grid"][key]) if key else [None]


def _select(frame: pd.DataFrame, key: str | None, value) -> pd.DataFrame:
    if key is None:
        return frame
    return frame[frame[key].map(slug_value) == slug_value(value)]


def plot_figure(study: dict, index: int, *, runs: str | Path, history: str | Path,
                iterations: str | Path, out: str | Path) -> None:
    """Draw figure `index` of `study` (its config dict) from the study's aggregated tables to `out` (SVG)."""
    fig = draw_figure(study, index, runs=runs, history=history, iterations=iterations)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="svg", bbox_inches="tight")
    plt.close(fig)


def draw_figure(study: dict, index: int, *, runs: str | Path, history: str | Path,
                iterations: str | Path) -> plt.Figure:
    """Figure `index` of `study` drawn from the study's aggregated tables, not yet saved."""
    spec = study["figures"][index]
    runs_df = pd.read_csv(runs)
    runs_df = runs_df[runs_df["status"] != "no-data"]
    keys = list(study["grid"])
    hue = spec.get("hue") or (spec.get("x") and next((k for k in keys if k != spec["x"]), None)) or keys[0]
    palette = colours(_values(study, hue))
    kind = spec["kind"]
    if runs_df.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no runs: the data set was not available", ha="center", va="center")
    elif kind == "curves":
        fig = _curves(study, spec, _with_params(pd.read_csv(history), runs_df, keys), hue, palette)
    elif kind == "loss_iterations":
        fig = _loss_iterations(study, spec, _with_params(pd.read_csv(iterations), runs_df, keys), hue, palette)
    elif kind == "bars":
        fig = _bars(study, spec, runs_df, hue, palette)
    elif kind == "sweep":
        fig = _sweep(study, spec, runs_df, hue, palette)
    elif kind == "trained_share":
        fig = _trained_share(study, spec, runs_df, hue, palette)
    elif kind == "to_target":
        fig = _to_target(study, spec, runs_df, hue, palette)
    elif kind == "predictions":
        fig = _predictions(study, spec, runs_df, hue, palette)
    else:
        raise ValueError(f"unknown figure kind '{kind}'")
    return fig


def _legend(fig, axes) -> None:
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        # Long labels (whole setting names) in three columns: one row of six would shrink the plots.
        ncol = min(len(labels), 6 if max(map(len, labels)) <= 16 else 3)
        if len(labels) <= ncol:
            fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False,
                       bbox_to_anchor=(0.5, -0.02))
            fig.subplots_adjust(bottom=0.2)
        else:  # several rows: below the figure, where the saved (tight) picture takes them in whole
            fig.legend(handles, labels, loc="upper center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 0.0))


def _curves(study, spec, frame, hue, palette):
    metrics = spec.get("metrics", ["train_loss", "test_acc"])
    fig, axes = _panels(len(metrics))
    # The grid's other keys pick the marker, in config order: the same marker means the same value everywhere.
    others = [k for k in study["grid"] if k != hue]
    combos = itertools.product(*(study["grid"][k] for k in others))
    markers = {tuple(slug_value(v) for v in c): MARKERS[i % len(MARKERS)] for i, c in enumerate(combos)}
    for ax, metric in zip(axes.flat, metrics):
        frame[f"_{metric}"] = frame[metric] * _scale(metric)
        diverged: list[tuple[pd.DataFrame, Any]] = []
        for value in _values(study, hue):
            sub = _select(frame, hue, value)
            several = sub["setting"].nunique() > 1  # settings that share the hue's colour differ by marker
            for setting, group in sub.groupby("setting", sort=False):
                label = setting if several else _label(hue, value)
                diverged += _setting(ax, group, "epoch", f"_{metric}", palette[slug_value(value)], label,
                                     markers[_others(group.iloc[0], others)] if several else None)
        _diverged(ax, diverged, "epoch", f"_{metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _loss_iterations(study, spec, frame, hue, palette):
    split, panel = spec.get("split"), spec.get("panel")
    rows, cols = _values(study, split), _values(study, panel)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.6 * len(cols), 2.6 * len(rows)), squeeze=False)
    pending = []   # diverged runs per panel, drawn once every panel's range is known
    for r, row_value in enumerate(rows):
        for c, col_value in enumerate(cols):
            ax = axes[r, c]
            sub = _select(_select(frame, split, row_value), panel, col_value)
            ax.set_yscale("log")   # before any line, so that the axis range is taken on the log scale
            diverged: list[tuple[pd.DataFrame, Any]] = []
            for value in _values(study, hue if hue not in (split, panel) else None):
                part = _select(sub, hue if hue not in (split, panel) else None, value)
                if not part.empty:
                    colour = palette.get(slug_value(value), PALETTE[c % len(PALETTE)])
                    label = _label(hue, value) if value is not None else None
                    for _, group in part.groupby("setting", sort=False):
                        diverged += _setting(ax, group, "step", "loss", colour, label)
            pending.append((ax, diverged))
            title = ", ".join(_label(k, v) for k, v in ((split, row_value), (panel, col_value)) if k)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("iteration")
            ax.set_ylabel("training loss")
            ax.grid(alpha=0.3)
    ranges = [ax.get_ylim() for ax in axes.flat if ax.lines]
    fallback = (min(lo for lo, _ in ranges), max(hi for _, hi in ranges)) if ranges else None
    for ax, diverged in pending:
        _diverged(ax, diverged, "step", "loss", fallback)
    fig.tight_layout()
    return fig


def _bars(study, spec, runs, hue, palette):
    metrics, x = spec.get("metrics", ["final_test_acc"]), spec.get("x") or hue
    xs, hues = _values(study, x), _values(study, hue if hue != x else None)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.8 * len(metrics), 3.0), squeeze=False)
    width = 0.8 / len(hues)
    for ax, metric in zip(axes.flat, metrics):
        for j, value in enumerate(hues):
            colour = palette.get(slug_value(value), PALETTE[j]) if value is not None else PALETTE[0]
            for i, xv in enumerate(xs):
                chosen, _ = measured_runs(_select(_select(runs, x, xv), hue if hue != x else None, value))
                vals = chosen[metric].dropna() * _scale(metric)
                pos = i - 0.4 + width * (j + 0.5)
                if len(vals):
                    ax.bar(pos, vals.mean(), width * 0.9, color=colour, alpha=0.8,
                           label=_label(hue, value) if i == 0 and value is not None else None)
                    ax.plot(np.full(len(vals), pos), vals, "k.", ms=3)
        ax.set_xticks(range(len(xs)), [slug_value(v) for v in xs])
        ax.set_xlabel(x)
        ax.set_ylabel(_axis_label(metric, runs))
        ax.grid(alpha=0.3, axis="y")
    _legend(fig, axes)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _sweep(study, spec, runs, hue, palette):
    metrics, x = spec.get("metrics", ["final_test_acc"]), spec["x"]
    hues = _values(study, hue if hue != x else None)
    fig, axes = _panels(len(metrics))
    for ax, metric in zip(axes.flat, metrics):
        for j, value in enumerate(hues):
            mine = _select(runs, hue if hue != x else None, value)
            sub = pd.concat([measured_runs(g)[0] for _, g in mine.groupby("setting", sort=False)])
            sub[f"_{metric}"] = sub[metric] * _scale(metric)
            colour = palette.get(slug_value(value), PALETTE[j]) if value is not None else PALETTE[0]
            _band(ax, sub.dropna(subset=[f"_{metric}"]), x, f"_{metric}", colour,
                  _label(hue, value) if value is not None else None)
            for xv, group in mine.groupby(x):  # mark settings where not every run has the value
                n_have, n_all, n_div = group[metric].notna().sum(), len(group), (group["outcome"] == "diverged").sum()
                if n_have < n_all:
                    ax.annotate(f"{n_have}/{n_all}" + (f" ({n_div} div.)" if n_div else ""), (xv, ax.get_ylim()[1]),
                                fontsize=7, ha="center", va="top", color="0.3")
        _log_x(ax, _values(study, x))
        ax.set_xlabel(x)
        ax.set_ylabel(_axis_label(metric, runs))
        ax.grid(alpha=0.3, which="both")
    if len(hues) > 1:
        _legend(fig, axes)
    fig.tight_layout()
    return fig


def _hue_label(hue: str | None, value) -> str | None:
    return _label(hue, value) if hue is not None and value is not None else None


def _trained_share(study, spec, runs, hue, palette, level: float = 0.95):
    """Left: share of runs that trained vs x, Wilson band, half-failure value with its interval at one
    half. Right: final test accuracy of the runs that trained, mean with min-max band, dots per run."""
    x = spec["x"]
    hue = hue if hue != x else None
    share = ext.trained_share(runs, x, hue, level)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.2))
    for j, value in enumerate(_values(study, hue)):
        colour = palette.get(slug_value(value), PALETTE[j]) if value is not None else PALETTE[0]
        rows = _select(share, hue, value).sort_values(x)
        if rows.empty:
            continue
        label = _hue_label(hue, value)
        left.plot(rows[x], 100 * rows["share"], "o-", color=colour, ms=3.5, lw=1.4, label=label)
        left.fill_between(rows[x], 100 * rows["lo"], 100 * rows["hi"], color=colour, alpha=0.15, lw=0)
        half = ext.half_failure(rows, x)
        if math.isfinite(half.point):
            lo, hi = (min(max(v, half.grid_min), half.grid_max) for v in (half.lo, half.hi))
            left.errorbar([half.point], [50], xerr=[[half.point - lo], [hi - half.point]], fmt="D", color=colour,
                          ms=5, capsize=3, lw=1.2)
        trained = _select(runs, hue, value)
        trained = trained[trained["outcome"] == "trained"].assign(_acc=lambda f: 100 * f["final_test_acc"])
        if len(trained):
            _band(right, trained, x, "_acc", colour, label)
            right.plot(trained[x], trained["_acc"], ".", color=colour, ms=3, alpha=0.7)
    left.axhline(50, color="0.4", lw=0.8, ls=":")
    left.set_ylim(-3, 103)
    left.set_ylabel(f"runs that trained (%, {level:.0%} Wilson band)")
    right.set_ylabel("final test accuracy, runs that trained (%)")
    for ax in (left, right):
        _log_x(ax, _values(study, x))
        ax.set_xlabel(x)
        ax.grid(alpha=0.3, which="both")
    axes = np.array([left, right])
    _legend(fig, axes)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _to_target(study, spec, runs, hue, palette):
    """Steps and images to the target vs x, log-log: a line per hue (runs that reached it; 'k/n' where
    not all did), perfect scaling from the smallest x of the best rule, the fitted model
    S_min (1 + B_crit / B) with its bend B_crit, and the measured noise scale B_simple (median, IQR)."""
    x = spec["x"]
    hue = hue if hue != x else None
    metrics = spec.get("metrics", ["steps_to_target", "examples_to_target"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    best = ext.envelope(runs, x, hue, "steps_to_target") if hue else ext.to_target_means(runs, x, "steps_to_target")
    s_min, b_crit = ext.bend_fit(list(best[x]), list(best["mean"])) if len(best) else (math.nan, math.nan)
    noise = ext.noise_scale(runs)
    for ax, metric in zip(axes.flat, metrics):
        per_image = metric == "examples_to_target"  # images = steps x batch size
        for j, value in enumerate(_values(study, hue)):
            colour = palette.get(slug_value(value), PALETTE[j]) if value is not None else PALETTE[0]
            means = ext.to_target_means(_select(runs, hue, value), x, metric)
            shown = means[means["n"] > 0]
            ax.plot(shown[x], shown["mean"], "o-", color=colour, ms=3.5, lw=1.4, label=_hue_label(hue, value))
            for row in means[means["n"] < means["n_runs"]].itertuples():
                y = getattr(row, "mean") if row.n else (shown["mean"].max() if len(shown) else 1)
                ax.annotate(f"{row.n}/{row.n_runs}", (getattr(row, x), y), fontsize=6.5, color=colour,
                            textcoords="offset points", xytext=(0, 5), ha="center")
        if len(best):
            b0, s0 = float(best[x].iloc[0]), float(best["mean"].iloc[0])
            grid = np.geomspace(best[x].min(), best[x].max(), 100)
            ideal = s0 * b0 * (np.ones_like(grid) if per_image else 1 / grid)
            ax.plot(grid, ideal, ":", color="k", lw=1, label="perfect scaling (steps ∝ 1/B)")
            if math.isfinite(b_crit):
                model = s_min * (1 + b_crit / grid) * (grid if per_image else 1)
                ax.plot(grid, model, "--", color="0.45", lw=1, label="fit S_min (1 + B_crit/B)")
                ax.axvline(b_crit, color="0.45", lw=1, ls="--")
                ax.annotate(f"bend B_crit ≈ {b_crit:,.0f}", (b_crit, 0.98), xycoords=("data", "axes fraction"),
                            fontsize=7, rotation=90, va="top", ha="right", color="0.35")
        if noise["n"]:
            ax.axvspan(noise["q25"], noise["q75"], color="tab:red", alpha=0.12, lw=0)
            ax.axvline(noise["median"], color="tab:red", lw=1.2, label="noise scale B_simple (median, IQR)")
            ax.annotate(f"B_simple ≈ {noise['median']:,.0f}", (noise["median"], 0.02),
                        xycoords=("data", "axes fraction"), fontsize=7, rotation=90, va="bottom", ha="left",
                        color="tab:red")
        _log_x(ax, _values(study, x))
        if (runs[metric] > 0).any():
            ax.set_yscale("log")
        else:  # a log axis needs a positive value
            ax.text(0.5, 0.5, "no run reached the target", transform=ax.transAxes, ha="center", color="0.4")
        ax.set_xlabel(x)
        ax.set_ylabel(_axis_label(metric, runs))
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def _mean_shares(runs: pd.DataFrame, column: str) -> np.ndarray | None:
    """Mean over runs of the per-class shares in a JSON count column; None where no run has one."""
    shares = [np.array(c) / sum(c) for c in map(ext._counts, runs[column]) if c and sum(c)]
    return np.mean(shares, axis=0) if shares else None


def _predictions(study, spec, runs, hue, palette):
    """Share of test images given to each class at the end, bars per hue value (mean over finished
    runs, dots per run), one panel per `panel` value; the test labels' shares as a black step."""
    panel = spec.get("panel")
    hue = hue if hue != panel else None
    done = runs[runs["outcome"].isin(["trained", "failed"])]
    panels, hues = _values(study, panel), _values(study, hue)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.0), squeeze=False, sharey=True)
    names = ext.CLASS_NAMES.get(study["dataset"], [str(i) for i in range(10)])
    width = 0.8 / len(hues)
    for ax, panel_value in zip(axes.flat, panels):
        sub = _select(done, panel, panel_value)
        for j, value in enumerate(hues):
            colour = palette.get(slug_value(value), PALETTE[j]) if value is not None else PALETTE[0]
            part = _select(sub, hue, value)
            mean = _mean_shares(part, "test_pred_counts")
            if mean is None:
                continue
            pos = np.arange(len(mean)) - 0.4 + width * (j + 0.5)
            ax.bar(pos, 100 * mean, width * 0.9, color=colour, alpha=0.8, label=_hue_label(hue, value))
            for counts in map(ext._counts, part["test_pred_counts"]):
                if counts:
                    ax.plot(pos, 100 * np.array(counts) / sum(counts), "k.", ms=2)
        labels = _mean_shares(sub, "test_label_counts")
        if labels is not None:
            ax.step(np.arange(len(labels) + 1) - 0.5, 100 * np.append(labels, labels[-1]), where="post", color="k",
                    lw=1, label="share of the test labels")
        ax.axhline(100 * ext.COLLAPSE_SHARE, color="0.5", lw=0.8, ls=":")
        ax.set_xticks(range(len(names)), names, rotation=0 if len(names[0]) < 3 else 60, fontsize=7)
        ax.set_title(_label(panel, panel_value) if panel else "", fontsize=9)
        ax.set_xlabel("predicted class")
        ax.grid(alpha=0.3, axis="y")
    axes.flat[0].set_ylabel("test images predicted as the class (%)")
    _legend(fig, axes)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
