"""The homeworks' own tables of numbers (``config/homework.yaml``) and ours beside them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from batchwise.results.aggregate import TIME_METRICS
from .selection import METRICS, Group, _fmt_value, _match, _study_runs, _with_outcome
from .wording import _num, _runs_note, one_timing

# --------------------------------------------------------------------------- homework tables

def load_homework_tables(path: Path) -> list[dict]:
    """Read ``homework.yaml``: every numeric table the homeworks printed.

    Each table needs id, homework, title, study, key (list of params), columns (each
    with metric and label; scale defaults to 1, digits to 1) and rows (each naming
    every key). Raises ValueError naming the table id and key otherwise.
    """
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    tables = doc.get("tables") if isinstance(doc, dict) else None
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"{path}: expected a non-empty list under 'tables'")
    for i, t in enumerate(tables):
        tid = t.get("id", f"#{i}") if isinstance(t, dict) else f"#{i}"
        if not isinstance(t, dict):
            raise ValueError(f"table {tid!r}: expected a mapping")
        for key in ("id", "homework", "title", "study", "key", "columns", "rows"):
            if key not in t:
                raise ValueError(f"table {tid!r}: missing key {key!r}")
        t["homework"] = str(t["homework"])
        for c in t["columns"]:
            if "metric" not in c or "label" not in c:
                raise ValueError(f"table {tid!r}: a column is missing 'metric' or 'label'")
            if c["metric"] not in METRICS:
                raise ValueError(f"table {tid!r}: unknown metric {c['metric']!r}")
            c.setdefault("scale", 1)
            c.setdefault("digits", 1)
        for r in t["rows"]:
            for k in t["key"]:
                if k not in r:
                    raise ValueError(f"table {tid!r}: a row is missing key {k!r}")
    return tables


def side_by_side(table: dict, runs: pd.DataFrame, *, numeric: bool = False) -> pd.DataFrame:
    """Homework numbers next to ours, one row per homework row.

    Ours are the means of the runs that trained (or, where none did, of the failed runs), by the
    outcome rule. Default: a DataFrame of display strings with the key columns, then for each
    table column "<label> — homework", "<label> — ours" ("mean ± std (n=k)", std ddof=1; "(k of
    n trained)" where not every run trained) and "<label> — difference" (our mean − theirs, in
    the displayed unit), for a time "<label> — ratio to first row (homework; ours)" (`_time_ratios`:
    seconds of different machines do not subtract); rows without any run of ours read "not run". With ``numeric=True`` the
    same rows as numbers: key columns, then "<metric>_homework", "_mean", "_std", "_n" (runs
    measured), "_n_runs", "_n_trained", "_diff" (displayed unit, i.e. metric × scale; NaN where
    not run, and for times, which have "_ratio_homework" and "_ratio_ours" instead).
    """
    runs = _with_outcome(runs)
    study_rows = (_study_runs(runs, table["study"]) if "study" in runs.columns
                  else runs.iloc[0:0])
    shown, nums = [], []
    for row in table["rows"]:
        sel = {k: row[k] for k in table["key"]}
        rows = _match(study_rows, sel)
        disp: dict[str, Any] = {k: _fmt_value(row[k]) for k in table["key"]}
        num: dict[str, Any] = dict(sel)
        for col in table["columns"]:
            g = Group.of(col["label"], col["metric"], rows)
            d, n = _side_by_side_cell(col, row.get(col["metric"]), g)
            disp.update(d)
            num.update(n)
        shown.append(disp)
        nums.append(num)
    for col in table["columns"]:
        if col["metric"] in TIME_METRICS:
            _time_ratios(col, shown, nums)
    return pd.DataFrame(nums if numeric else shown)


def time_column_part(metric: str) -> str:
    """The third part of a homework column: our mean minus theirs, or, for a time, each source's time
    relative to the table's first row (their clock and ours are different machines: seconds do not
    subtract, ratios within each source compare)."""
    return "ratio to first row (homework; ours)" if metric in TIME_METRICS else "difference"


def _time_ratios(col: dict, shown: list[dict], nums: list[dict]) -> None:
    """Fill a time column's third part: each row's time over the first row's, within each source."""
    metric, label, part = col["metric"], col["label"], time_column_part(col["metric"])
    first = nums[0] if nums else {}
    for disp, num in zip(shown, nums):
        ratios = []
        for source, key in (("homework", f"{metric}_homework"), ("ours", f"{metric}_mean")):
            ratio = num[key] / first[key] if first.get(key) and not math.isnan(first[key]) else math.nan
            num[f"{metric}_ratio_{source}"] = ratio
            ratios.append("—" if math.isnan(ratio) else f"×{ratio:.2f}")
        disp[f"{label} — {part}"] = "—" if len(nums) == 1 else "; ".join(ratios)


def _side_by_side_cell(col: dict, theirs: Any, g: Group) -> tuple[dict, dict]:
    """One homework column of one row: the display strings and the numbers (a time's third part is
    filled by `_time_ratios` once every row is known)."""
    metric, label = col["metric"], col["label"]
    scale, dg = float(col["scale"]), int(col["digits"])
    theirs = math.nan if theirs is None else float(theirs)
    vals = g.values * scale
    mean = float(vals.mean()) if g.n else math.nan
    std = float(vals.std(ddof=1)) if g.n > 1 and np.isfinite(vals).all() else math.nan
    diff = mean - theirs if g.n and metric not in TIME_METRICS else math.nan
    third = f"{label} — {time_column_part(metric)}"
    disp = {f"{label} — homework": "—" if math.isnan(theirs) else f"{theirs:.{dg}f}"}
    if g.n_runs == 0:
        disp[f"{label} — ours"] = disp[third] = "not run"
    elif g.n == 0:
        disp[f"{label} — ours"] = f"— ({_runs_note(g)})"
        disp[third] = "—"
    else:
        spread = "" if math.isnan(std) else f" ± {_num(std, dg)}"
        note = _runs_note(g)
        if one_timing(g):   # the runs share one timing: its standard error, not their zero spread
            spread, note = "", f"SE {_num(g.timing_se * scale, dg)}; {note}"
        disp[f"{label} — ours"] = f"{_num(mean, dg)}{spread} ({note})"
        disp[third] = "—" if math.isnan(diff) else _num(diff, dg, signed=True)
    nums = {f"{metric}_homework": theirs, f"{metric}_mean": mean, f"{metric}_std": std,
            f"{metric}_n": g.n, f"{metric}_n_runs": g.n_runs, f"{metric}_n_trained": g.n_trained,
            f"{metric}_diff": diff}
    return disp, nums
