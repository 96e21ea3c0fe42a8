"""The registry of rule kinds: each kind's evaluator and the keys its rule takes. ``RULE_KINDS`` (the
keys) is what ``load_claims`` and the config checks read; ``documented_kinds`` reads the list of kinds
in the header of ``config/claims.yaml``, so that a test can hold the two together."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from . import literature, means, shares, sweeps
from .selection import Settings

Evaluator = Callable[[dict, dict, pd.DataFrame, Settings], dict]


@dataclass(frozen=True)
class RuleKind:
    """One rule kind: its evaluator, the keys a rule of it must have and may have (`kind` implied)."""

    evaluate: Evaluator
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


REGISTRY: dict[str, RuleKind] = {
    "compare": RuleKind(means.eval_compare, ("metric", "a", "b", "expect"), ("factor",)),
    "compare_each": RuleKind(means.eval_compare_each, ("metric", "over", "a", "b", "expect"), ("values",)),
    "equivalent": RuleKind(means.eval_equivalent, ("metric", "a", "b", "margin"), ("relative",)),
    "near": RuleKind(means.eval_near, ("metric", "select", "target", "tolerance")),
    "threshold": RuleKind(means.eval_threshold, ("metric", "select"), ("above", "below")),
    "best": RuleKind(means.eval_best, ("metric", "at", "goal"), ("where",)),
    "interior_optimum": RuleKind(sweeps.eval_interior, ("metric", "over", "goal"), ("where",)),
    "monotonic": RuleKind(sweeps.eval_monotonic, ("metric", "over", "direction"), ("where",)),
    "not_converged": RuleKind(shares.eval_not_converged, ("select",), ("metric",)),
    # train-or-fail outcomes: the share of runs that trained (the outcome rule), not a mean
    "trains_more": RuleKind(shares.eval_trains_more, ("a", "b", "expect")),
    "trained_share": RuleKind(shares.eval_trained_share, ("select",), ("above", "below")),
    # the extension studies' literature claims (statistics in extensions.py, shared with figures and report)
    "half_failure": RuleKind(literature.eval_half_failure, ("over", "a", "b", "expect")),
    "collapse": RuleKind(literature.eval_collapse, ("select",), ("share",)),
    "critical_batch": RuleKind(literature.eval_critical_batch, ("over", "by", "factor"), ("where",)),
}

# kind -> (required rule keys, optional rule keys): what a claim may say (the config gate reads it too)
RULE_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (k.required, k.optional) for name, k in REGISTRY.items()}

_KIND_LINE = re.compile(r"^#   ([a-z_]+)\s{2,}\S")


def documented_kinds(path: Path) -> list[str]:
    """The rule kinds listed in the header of a claims file: after '# Rule kinds', the comment lines that
    start with a kind's name, up to the first line that no longer belongs to the indented list."""
    kinds: list[str] = []
    inside = False
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("# Rule kinds"):
            inside = True
        elif inside and (m := _KIND_LINE.match(line)):
            kinds.append(m.group(1))
        elif inside and kinds and not line.startswith("#  "):
            break
    return kinds
