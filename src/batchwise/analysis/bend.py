"""Bend: where steps to target stop halving with the batch size (S_min (1 + B_crit / B)), and the noise scale."""
from __future__ import annotations

import math

import pandas as pd

from . import extensions as ext
from batchwise.config import slug_value
from .common import block, number

KIND = "bend"


def analyse(runs: pd.DataFrame, spec: dict, level: float) -> dict:
    """Per hue value (and for the best value at each x): the runs that reached the target, and the
    fit S_min (1 + B_crit / B) of steps to target; then the measured noise scale. `level` is unused:
    the fit has no interval here (the `critical_batch` claim computes one)."""
    x = spec["x"]
    hue = spec.get("hue") if spec.get("hue") != x else None

    def fit_row(label: str, means: pd.DataFrame, reached: str) -> list[str]:
        s_min, b_crit = ext.bend_fit(list(means[x]), list(means["mean"]))
        return [label, reached, number(s_min) if math.isfinite(s_min) else "–", bend_text(b_crit, means, x)]

    rows = []
    for value, group in (runs.groupby(hue, sort=False) if hue else [(None, runs)]):
        means = ext.to_target_means(group, x, "steps_to_target")
        reached = f"{int(means['n'].sum())} of {int(means['n_runs'].sum())}"
        rows.append(fit_row(slug_value(value) if hue else "all runs", means[means["n"] > 0], reached))
    if hue:
        best = ext.envelope(runs, x, hue, "steps_to_target")
        rows.append(fit_row(f"best {hue} at each {x}", best, f"{len(best)} {x} values where every run reached"))
    noise = ext.noise_scale(runs)
    note = (f"Measured gradient noise scale B_simple: median {noise['median']:,.0f} (interquartile range "
            f"{noise['q25']:,.0f} – {noise['q75']:,.0f}) over {noise['n']} runs that trained."
            if noise["n"] else "No gradient noise scale was measured (noise_scale_batches not set, or no run trained).")
    return block(KIND, "Steps to target: where the curve bends, and the noise scale",
                 [hue or "", "runs that reached the target", "fitted S_min (steps)", f"fitted bend B_crit ({x})"],
                 rows, note=note, method=ext.BEND_METHOD)


def bend_text(b_crit: float, means: pd.DataFrame, x: str) -> str:
    """The fitted bend in words, said plainly where it lies outside the batch sizes tried."""
    if math.isnan(b_crit):
        return "– (steps do not fall with the batch size, or too few points)"
    if math.isinf(b_crit) or b_crit > means[x].max():
        return f"> {means[x].max():g} (still perfect scaling at the largest batch)"
    return f"{b_crit:,.0f}" + (f" (below the smallest batch tried, {means[x].min():g})" if b_crit < means[x].min() else "")
