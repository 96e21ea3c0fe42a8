"""Evaluating the claims on the runs table: each claim goes to its rule kind's evaluator."""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import pandas as pd

from .loading import claim_selectors
from batchwise.results.aggregate import TIME_METRICS
from .registry import REGISTRY
from .timing import hardware
from .selection import SELECTOR_RESERVED, Settings, _label, _match, _norm, _study_runs, _with_outcome

Grids = Mapping[str, Mapping[str, Sequence[Any]]]
LISTED = 4   # missing settings named in a verdict's evidence; the rest are counted


def evaluate_claims(claims: list[dict], runs: pd.DataFrame, *, level: float = 0.95,
                    min_runs: int = 3, resamples: int | None = None,
                    seed: int | None = None,
                    grids: Grids | None = None) -> list[dict]:
    """Evaluate every claim on the runs table; one result dict per claim, in order.

    Each result carries the claim's id, homework, quote, english and study, a
    ``verdict`` ("supported" | "contradicted" | "inconclusive" | "not run yet"), a one
    sentence ``evidence`` with the numbers, a ``reason`` naming the rule and the test, the
    numeric fields ``mean_a, std_a, n_a, mean_b, std_b, n_b, diff, lo, hi`` (raw metric units;
    for multi-group rules: the deciding comparison, NaN where not applicable), ``groups`` (label,
    mean, std, n measured, n_runs, n_trained, n_failed, n_diverged, basis, trained_lo/hi: the
    Wilson interval of the trained share; timing_se, one_timing), ``comparisons`` (a, b, diff, lo,
    hi, df, method) and, for a claim on a time, ``hardware``: whose clock the times are (also the
    evidence's last clause).

    A claim is "not run yet" when its study, or a setting it selects, has no run in the table (a
    partial table: runs are imported as they come). ``grids`` maps a study to the config's ``grid``
    (key -> values): with it, a claim is also "not run yet" when any grid point it covers has no run
    (a sweep along ``over``, the rivals of ``best``, a selector that pools several grid points), so a
    half-run sweep is not judged on the half that ran. The grids' keys are also the settings rule
    ``best`` compares with.

    ``resamples`` and ``seed`` belonged to the bootstrap these rules replaced; they are accepted
    and ignored, so that callers written for it keep working. The verdicts are deterministic.
    """
    settings = Settings(level=level, min_runs=min_runs,
                        grid_keys={study: tuple(grid) for study, grid in grids.items()} if grids else None)
    runs = _with_outcome(runs)
    ran = runs[runs["outcome"] != "no-data"] if "outcome" in runs.columns else runs
    studies_present = set(ran["study"].astype(str)) if "study" in ran.columns else set()
    results = []
    for claim in claims:
        rule = claim["rule"]
        res = {k: claim.get(k) for k in ("id", "homework", "quote", "english", "study")}
        res["quote_kind"] = claim.get("quote_kind", "verbatim")
        res.update(kind=rule["kind"], metric=rule.get("metric", "epochs_to_target"),
                   mean_a=math.nan, std_a=math.nan, n_a=0, mean_b=math.nan,
                   std_b=math.nan, n_b=0, diff=math.nan, lo=math.nan, hi=math.nan,
                   groups=[], comparisons=[], hardware="")
        missing = sorted({s for s, _ in claim_selectors(claim)} - studies_present)
        empty = [] if missing else _unrun_selections(claim, ran, grids or {})
        if missing:
            # The evidence names what has no runs; the reason only adds why (never repeats the evidence).
            res.update(verdict="not run yet", evidence=f"no runs of study {', '.join(missing)}",
                       reason="not imported yet, or its data set was not available")
        elif empty:   # settings not run yet, or not in a reduced config's grid at all (said so)
            named = empty[:LISTED] + ([f"{len(empty) - LISTED} more"] if len(empty) > LISTED else [])
            res.update(verdict="not run yet", evidence="no runs of " + "; ".join(named), reason="")
        else:
            res.update(REGISTRY[rule["kind"]].evaluate(claim, rule, runs, settings))
            if res["metric"] in TIME_METRICS:   # a time means little without the clock it was read on
                studies = {s for s, _ in claim_selectors(claim)}
                timed = ran[ran["study"].astype(str).isin(studies)]
                if "outcome" in timed.columns:   # a diverged run's time is not a measurement
                    timed = timed[timed["outcome"] != "diverged"]
                res["hardware"] = hardware(timed)
                res["evidence"] += f"; {res['hardware']}"
        results.append(res)
    return results


def _unrun_selections(claim: dict, ran: pd.DataFrame, grids: Grids) -> list[str]:
    """The settings a claim covers that have no run: each selector (within the rule's ``where``)
    that matches no run, and, where the study's grid is known, each grid point a selector covers
    (every value of ``over``, every rival of ``best``) that has no run."""
    rule = claim["rule"]
    where = {k: v for k, v in rule.get("where", {}).items() if k not in SELECTOR_RESERVED}
    selectors = [{**where, **rule[key]} for key in ("a", "b", "select", "at") if key in rule]
    if "where" in rule or "over" in rule or rule["kind"] == "best":
        selectors.append(rule.get("where", {}))   # the whole sweep, or every rival
    empty: list[str] = []
    for sel in selectors:
        study = sel.get("study", claim["study"])
        runs = _study_runs(ran, study)
        points = _grid_points(grids[study], sel) if study in grids else []
        if not points:   # no grid known, or a selector outside it: the selector itself must match a run
            if _match(runs, sel).empty:
                outside = " (not in this configuration's grid)" if study in grids else ""
                empty.append(f"{_label(sel)} ({study}){outside}")
            continue
        for point in points:
            label = f"{_label(point)} ({study})"
            if label not in empty and _match(runs, point).empty:
                empty.append(label)
    return empty


def _grid_points(grid: Mapping[str, Sequence[Any]], sel: dict) -> list[dict]:
    """The grid points (key -> value, in the grid's order) that agree with a selector on every grid key
    it names; a selector key outside the grid (a fixed parameter) does not narrow them."""
    wanted = {k: _norm(v) for k, v in sel.items() if k in grid and k not in SELECTOR_RESERVED}
    points = (dict(zip(grid, values)) for values in itertools.product(*grid.values()))
    return [p for p in points if all(_norm(p[k]) == v for k, v in wanted.items())]
