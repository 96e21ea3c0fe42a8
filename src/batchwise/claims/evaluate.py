"""Evaluating the claims on the runs table: each claim goes to its rule kind's evaluator."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

from .loading import claim_selectors
from .registry import REGISTRY
from .selection import SELECTOR_RESERVED, Settings, _label, _match, _study_runs, _with_outcome


def evaluate_claims(claims: list[dict], runs: pd.DataFrame, *, level: float = 0.95,
                    min_runs: int = 3, resamples: int | None = None,
                    seed: int | None = None,
                    grid_keys: Mapping[str, Sequence[str]] | None = None) -> list[dict]:
    """Evaluate every claim on the runs table; one result dict per claim, in order.

    Each result carries the claim's id, homework, quote, english and study, a
    ``verdict`` ("supported" | "contradicted" | "inconclusive" | "not run yet"), a one
    sentence ``evidence`` with the numbers, a ``reason`` naming the rule and the test, the
    numeric fields ``mean_a, std_a, n_a, mean_b, std_b, n_b, diff, lo, hi`` (raw metric units;
    for multi-group rules: the deciding comparison, NaN where not applicable), ``groups`` (label,
    mean, std, n measured, n_runs, n_trained, n_failed, n_diverged, basis, trained_lo/hi: the
    Wilson interval of the trained share) and ``comparisons`` (a, b, diff, lo, hi, df, method).

    A claim is "not run yet" when its study, or a setting it selects, has no run in the table (a
    partial table: runs are imported as they come). ``grid_keys`` maps a study to its grid keys (the
    config's ``grid``): the settings rule ``best`` compares with.

    ``resamples`` and ``seed`` belonged to the bootstrap these rules replaced; they are accepted
    and ignored, so that callers written for it keep working. The verdicts are deterministic.
    """
    settings = Settings(level=level, min_runs=min_runs,
                        grid_keys={k: tuple(v) for k, v in grid_keys.items()} if grid_keys else None)
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
                   groups=[], comparisons=[])
        missing = sorted({s for s, _ in claim_selectors(claim)} - studies_present)
        empty = [] if missing else _unrun_selections(claim, ran)
        if missing:
            res.update(verdict="not run yet",
                       evidence=f"no runs of {', '.join(missing)}",
                       reason=f"not run yet: the runs table has no runs of study "
                              f"{', '.join(missing)} (not imported yet, or its data set was not available)")
        elif empty:
            res.update(verdict="not run yet", evidence="; ".join(f"{e}: no runs" for e in empty),
                       reason=f"not run yet: the runs table has no runs of {', '.join(empty)}")
        else:
            res.update(REGISTRY[rule["kind"]].evaluate(claim, rule, runs, settings))
        results.append(res)
    return results


def _unrun_selections(claim: dict, ran: pd.DataFrame) -> list[str]:
    """The settings a claim selects (each selector within the rule's ``where``) that have no run."""
    rule = claim["rule"]
    where = {k: v for k, v in rule.get("where", {}).items() if k not in SELECTOR_RESERVED}
    empty = []
    for key in ("a", "b", "select", "at", "where"):
        if key not in rule:
            continue
        sel = {**where, **rule[key]} if key != "where" else rule[key]
        study = sel.get("study", claim["study"])
        if _match(_study_runs(ran, study), sel).empty:
            empty.append(f"{_label(sel)} ({study})")
    return empty
