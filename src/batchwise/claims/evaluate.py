"""Evaluating the claims on the runs table: each claim goes to its rule kind's evaluator."""

from __future__ import annotations

import math

import pandas as pd

from .loading import claim_selectors
from .registry import REGISTRY
from .selection import Settings, _with_outcome


def evaluate_claims(claims: list[dict], runs: pd.DataFrame, *, level: float = 0.95,
                    min_runs: int = 3, resamples: int | None = None,
                    seed: int | None = None) -> list[dict]:
    """Evaluate every claim on the runs table; one result dict per claim, in order.

    Each result carries the claim's id, homework, quote, english and study, a
    ``verdict`` ("supported" | "contradicted" | "inconclusive" | "not run"), a one
    sentence ``evidence`` with the numbers, a ``reason`` naming the rule and the test, the
    numeric fields ``mean_a, std_a, n_a, mean_b, std_b, n_b, diff, lo, hi`` (raw metric units;
    for multi-group rules: the deciding comparison, NaN where not applicable), ``groups`` (label,
    mean, std, n measured, n_runs, n_trained, n_failed, n_diverged, basis, trained_lo/hi: the
    Wilson interval of the trained share) and ``comparisons`` (a, b, diff, lo, hi, df, method).

    ``resamples`` and ``seed`` belonged to the bootstrap these rules replaced; they are accepted
    and ignored, so that callers written for it keep working. The verdicts are deterministic.
    """
    settings = Settings(level=level, min_runs=min_runs)
    runs = _with_outcome(runs)
    ran = runs[runs["outcome"] != "no-data"] if "outcome" in runs.columns else runs
    studies_present = set(ran["study"].astype(str)) if "study" in ran.columns else set()
    results = []
    for claim in claims:
        rule = claim["rule"]
        res = {k: claim.get(k) for k in ("id", "homework", "quote", "english", "study")}
        res.update(kind=rule["kind"], metric=rule.get("metric", "epochs_to_target"),
                   mean_a=math.nan, std_a=math.nan, n_a=0, mean_b=math.nan,
                   std_b=math.nan, n_b=0, diff=math.nan, lo=math.nan, hi=math.nan,
                   groups=[], comparisons=[])
        missing = sorted({s for s, _ in claim_selectors(claim)} - studies_present)
        if missing:
            res.update(verdict="not run",
                       evidence=f"no runs of {', '.join(missing)}",
                       reason=f"not run: the runs table has no runs of study "
                              f"{', '.join(missing)} (e.g. its data set was not available)")
        else:
            res.update(REGISTRY[rule["kind"]].evaluate(claim, rule, runs, settings))
        results.append(res)
    return results
