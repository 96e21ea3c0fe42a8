"""Half-failure: the value of a swept parameter (the learning rate) at which half of the runs fail to train."""
from __future__ import annotations

import pandas as pd

from . import extensions as ext
from batchwise.config import slug_value
from .common import block, native

KIND = "half_failure"


def analyse(runs: pd.DataFrame, spec: dict, level: float) -> dict:
    """The half-failure value of the figure's `x` per hue value, its interval, and where all or none trained."""
    x = spec["x"]
    hue = spec.get("hue") if spec.get("hue") != x else None
    rows = []
    share = ext.trained_share(runs, x, hue, level)
    for value, mine in (share.groupby(hue, sort=False) if hue else [(None, share)]):
        half = ext.half_failure(mine, x)
        all_ok = mine.loc[mine["trained"] == mine["n"], x]
        none_ok = mine.loc[mine["trained"] == 0, x]
        rows.append([slug_value(native(value)) if hue else "all runs", half.text(), half.interval_text(),
                     f"{all_ok.max():g}" if len(all_ok) else "–", f"{none_ok.min():g}" if len(none_ok) else "–",
                     " · ".join(f"{k}/{n}" for k, n in zip(mine["trained"], mine["n"]))])
    return block(KIND, f"Half-failure {x}: where half of the runs fail to train",
                 [hue or "", f"half-failure {x}", f"{level:.0%} interval", f"every run trained at {x}",
                  f"no run trained at {x}", f"runs that trained, by {x}"],
                 rows, method=ext.HALF_FAILURE_METHOD.format(level=level))
