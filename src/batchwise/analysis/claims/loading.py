"""Reading ``config/claims.yaml``: every claim checked against the registry of rule kinds and the
metrics, with an error that names the claim and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .registry import RULE_KINDS
from .selection import METRICS, NEVER_METRICS, SELECTOR_FIELDS, SELECTOR_RESERVED


CLAIM_KEYS = ("id", "homework", "quote", "english", "study", "rule")
# What a claim's quote is (optional key `quote_kind`; the report labels all but the default): the homework's
# own finding in its words, a paraphrase, a sentence of its introduction restating another paper's claim,
# or its words read by us into a rule their own numbers may not bear out.
QUOTE_KINDS = ("verbatim", "paraphrase", "introduction", "derived")
_CHOICES = {"expect": ("less", "greater"), "goal": ("min", "max"),
            "direction": ("increasing", "decreasing")}


def load_claims(path: Path) -> list[dict]:
    """Read ``claims.yaml`` and validate every claim.

    Raises ValueError naming the claim id and the offending key for a missing key,
    an unknown rule kind or metric, a bad choice (expect/goal/direction), a selector
    that is not a mapping, or a duplicate id.
    """
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    claims = doc.get("claims") if isinstance(doc, dict) else None
    if not isinstance(claims, list) or not claims:
        raise ValueError(f"{path}: expected a non-empty list under 'claims'")
    seen: set[str] = set()
    for i, claim in enumerate(claims):
        _validate_claim(claim, i)
        if claim["id"] in seen:
            raise ValueError(f"claim {claim['id']!r}: duplicate id")
        seen.add(claim["id"])
    return claims


def _validate_claim(claim: Any, index: int) -> None:
    if not isinstance(claim, dict):
        raise ValueError(f"claim #{index}: expected a mapping")
    cid = claim.get("id", f"#{index}")
    for key in CLAIM_KEYS:
        if key not in claim or claim[key] in (None, ""):
            raise ValueError(f"claim {cid!r}: missing key {key!r}")
    claim["homework"] = str(claim["homework"])
    if claim.get("quote_kind", "verbatim") not in QUOTE_KINDS:
        raise ValueError(f"claim {cid!r}: key 'quote_kind' must be one of {QUOTE_KINDS}")
    rule = claim["rule"]
    if not isinstance(rule, dict):
        raise ValueError(f"claim {cid!r}: key 'rule' must be a mapping")
    kind = rule.get("kind")
    if kind not in RULE_KINDS:
        raise ValueError(f"claim {cid!r}: unknown rule kind {kind!r} (key 'kind'); "
                         f"known: {', '.join(RULE_KINDS)}")
    required, optional = RULE_KINDS[kind]
    for key in required:
        if key not in rule:
            raise ValueError(f"claim {cid!r}: rule {kind!r} is missing key {key!r}")
    unknown = set(rule) - set(required) - set(optional) - {"kind"}
    if unknown:
        raise ValueError(f"claim {cid!r}: rule {kind!r} has unknown key(s) "
                         f"{', '.join(map(repr, sorted(unknown)))}")
    metric = rule.get("metric", "epochs_to_target")
    if metric not in METRICS:
        raise ValueError(f"claim {cid!r}: unknown metric {metric!r} (key 'metric')")
    if kind == "not_converged" and metric not in NEVER_METRICS:
        raise ValueError(f"claim {cid!r}: not_converged needs a to-target metric (key 'metric')")
    for key, choices in _CHOICES.items():
        if key in rule and rule[key] not in choices:
            raise ValueError(f"claim {cid!r}: key {key!r} must be one of {choices}")
    if kind == "threshold" and ("above" in rule) == ("below" in rule):
        raise ValueError(f"claim {cid!r}: threshold needs exactly one of keys 'above', 'below'")
    for key in SELECTOR_FIELDS:
        if key in rule and not isinstance(rule[key], dict):
            raise ValueError(f"claim {cid!r}: selector {key!r} must be a mapping")
    for key in ("target", "tolerance", "margin", "factor", "above", "below", "share"):
        if key in rule and not isinstance(rule[key], (int, float)):
            raise ValueError(f"claim {cid!r}: key {key!r} must be a number")


def claim_selectors(claim: dict) -> list[tuple[str, dict]]:
    """Every (study, selector-without-reserved-keys) pair a claim uses.

    The ``over`` key of sweep rules is returned as a selector ``{over: None}`` so a
    config check sees it too.
    """
    rule = claim["rule"]
    out = []
    for key in SELECTOR_FIELDS:
        if key in rule:
            sel = rule[key]
            out.append((sel.get("study", claim["study"]),
                        {k: v for k, v in sel.items() if k not in SELECTOR_RESERVED}))
    if "over" in rule:
        out.append((claim["study"], {rule["over"]: None}))
    return out
