"""The rules of the literature claims on the extension studies: half_failure, collapse, critical_batch.
Their statistics live beside the analyses the figures and the report draw (``extensions``), so a verdict
and a figure never compute the same number two ways."""

from __future__ import annotations

import pandas as pd

from batchwise.analysis import extensions as ext
from .selection import Settings, _label, _match, _study_runs


def eval_half_failure(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """a's half-failure value of `over` (where half of the runs fail to train) above / below b's: the
    two Wilson-based intervals apart in the expected order."""
    a, b = (_match(_study_runs(runs, rule[k].get("study", claim["study"])), rule[k]) for k in ("a", "b"))
    return ext.half_failure_verdict(a, b, (_label(rule["a"]), _label(rule["b"])), rule["over"],
                                    rule["expect"], s.level)


def eval_collapse(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The selected runs collapse to one class: the Wilson interval of the collapsed share above 1/2."""
    rows = _match(_study_runs(runs, rule["select"].get("study", claim["study"])), rule["select"])
    return ext.collapse_verdict(rows, _label(rule["select"]), s.level, float(rule.get("share", ext.COLLAPSE_SHARE)))


def eval_critical_batch(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The fitted bend of steps to target within `factor` of the measured noise scale. Its interval comes
    from a fit across every setting of the sweep (delta method on log scale: extensions.bend_ratio_interval);
    `min_runs` counts the measured runs of each setting the fit uses."""
    rows = _match(_study_runs(runs, claim["study"]), rule.get("where", {}))
    return ext.critical_batch_verdict(rows, rule["over"], rule["by"], float(rule["factor"]), s.level, s.min_runs)
