"""The timing uncertainty of a time metric, for the claims on times.

A run's time metrics (``aggregate.TIME_METRICS``) come either from its own wall clock (``time_basis``
"wall": each run is a measurement of its own, so the spread of the runs carries the timing noise) or
from the study's solo timing pass (``time_basis`` "solo"): one timing of the setting, seconds per
step x the run's steps. The runs of a setting then share one timing measurement, and their spread
says nothing about its error. The timing pass measures each setting in several bursts and writes,
per run and time metric, ``<metric>_se`` (the standard error of that run's time from the spread of
the bursts) and ``timing_bursts`` (their count). A setting's timing error is common to its runs, so
it adds its own term to the variance of a group's mean: (mean of the runs' ``<metric>_se``)², with
bursts - 1 degrees of freedom (Welch-Satterthwaite combines it with the runs' spread). Without those
columns, or with fewer than 2 bursts or no spread, the time is a single measurement of unknown error,
and a claim on it is inconclusive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from batchwise.results.aggregate import TIME_METRICS

SE_SUFFIX = "_se"
BURSTS = "timing_bursts"
# Group.timing: "none" (not a time metric), "wall" (every run timed itself), "bursts" (timing terms
# from the bursts), "single" (a shared timing of unknown error: nothing can be decided on it)
SINGLE_NOTE = ("one timing measurement per setting with no spread across timing bursts, so the "
               "uncertainty of the times is unknown")


def _numbers(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name not in rows.columns:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)


def timing_terms(rows: pd.DataFrame, metric: str, values: np.ndarray) -> tuple[str, list[tuple[float, float]]]:
    """(state, terms) for one group: ``rows`` are its measured runs, ``values`` their metric values
    (NaN: no value, +inf: never reached; neither enters). ``terms`` are (variance, df) of the group
    mean's timing error, one per setting whose runs share a timing (none for wall-clock runs)."""
    if metric not in TIME_METRICS:
        return "none", []
    used = np.isfinite(values)
    if not used.any():
        return "none", []
    basis = (rows["time_basis"].astype(str).str.lower().to_numpy() if "time_basis" in rows.columns
             else np.full(len(rows), "solo"))
    shared = used & (basis != "wall")
    if not shared.any():
        return "wall", []
    se, bursts = _numbers(rows, metric + SE_SUFFIX), _numbers(rows, BURSTS)
    setting = rows["setting"].astype(str).to_numpy() if "setting" in rows.columns else np.full(len(rows), "")
    n, terms = int(used.sum()), []
    for s in dict.fromkeys(setting[shared]):
        mine = shared & (setting == s)
        b = bursts[mine]
        if not (np.isfinite(se[mine]).all() and (se[mine] > 0).all() and np.isfinite(b).all() and b.min() >= 2):
            return "single", []
        # the runs of a setting share its timing error: their errors add up, not in quadrature
        terms.append(((float(se[mine].sum()) / n) ** 2, float(b.min()) - 1.0))
    return "bursts", terms


def log_terms(terms: list[tuple[float, float]], values: np.ndarray) -> list[tuple[float, float]]:
    """The timing terms on the log scale (a ratio of times): relative to the mean of the finite
    ``values``, by the delta method."""
    finite = values[np.isfinite(values)]
    if not terms or not len(finite) or finite.mean() <= 0:
        return []
    mean = float(finite.mean())
    return [(v / mean ** 2, d) for v, d in terms]


def hardware(rows: pd.DataFrame) -> str:
    """Whose clock a claim's times are, in words: "timed alone on AMD EPYC, 1 thread" for times from
    the timing pass, "the runs' own wall time on ..." for the others; distinct sources joined by "; "
    with their run counts where there are several."""
    if rows.empty:
        return ""
    def words(row: pd.Series) -> str:
        solo = str(row.get("time_basis", "solo")).lower() != "wall"
        device = row.get("timed_on")
        if not (isinstance(device, str) and device):   # a runs table from before `timed_on` was kept
            device = "an unrecorded device" if solo or not isinstance(row.get("device"), str) else row.get("device")
        threads = pd.to_numeric(pd.Series([row.get("timed_threads")]), errors="coerce").iloc[0]
        t = "" if pd.isna(threads) else f", {int(threads)} thread{'s' if int(threads) != 1 else ''}"
        return f"timed alone on {device}{t}" if solo else f"the runs' own wall time on {device}{t}"
    counts = rows.apply(words, axis=1).value_counts()
    if len(counts) == 1:
        return "times " + counts.index[0]
    return "times " + "; ".join(f"{w} ({n} runs)" for w, n in counts.items())
