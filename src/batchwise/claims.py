"""Check the homeworks' conclusions against repeated runs.

Two inputs, both data: ``config/claims.yaml`` states each homework conclusion as a
rule over the runs table (``results/runs.csv``: one row per training run), and
``config/homework.yaml`` holds every table of numbers the homeworks printed.

Public API
----------
``load_claims(path)``            read and validate the claims (ValueError names claim and key)
``evaluate_claims(claims, runs)`` one result dict per claim, verdict and evidence
``verdict_rule_text(...)``        the verdict rule as a paragraph for the report's methods
``load_homework_tables(path)``    read and validate the homework tables
``side_by_side(table, runs)``     homework numbers next to ours (strings; ``numeric=True``
                                  gives the same rows as numbers)
``claim_selectors(claim)``        every (study, selector) a claim uses, for config checks
``RULE_KINDS``, ``METRICS``       what a claim may say (the config gate reads them too)

Which runs a claim uses
-----------------------
The outcome rule of ``aggregate`` (column ``outcome``: trained, failed, diverged, no-data):
a setting's numbers are those of its trained runs or, where none trained, of its failed runs
(``aggregate.measured_runs``); diverged runs have no numbers and enter nothing. Every group
also reports "k of n trained" with a Wilson interval, and a decisive verdict reads "reliably"
when every run of every group trained, "in k of n runs" otherwise.

The statistics (Welch and t intervals, Wilson, the edge cases) live in ``stats``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import yaml

from . import extensions as ext
from . import stats
from .aggregate import measured_runs, outcome as run_outcome
from .stats import Interval, side

__all__ = [
    "load_claims",
    "evaluate_claims",
    "verdict_rule_text",
    "load_homework_tables",
    "side_by_side",
    "claim_selectors",
    "RULE_KINDS",
    "METRICS",
    "PARAM_COLUMNS",
]

# Resolved parameters the runs table may carry (one column each).
PARAM_COLUMNS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "init",
                 "bn", "pretrained", "target_acc")

# Metric -> (display scale, value unit, difference unit, digits).
METRICS: dict[str, tuple[float, str, str, int]] = {
    "final_test_acc": (100.0, " %", " pp", 1),
    "final_train_acc": (100.0, " %", " pp", 1),          # eval mode, on a fixed training subset
    "final_running_acc": (100.0, " %", " pp", 1),        # in-epoch average, train mode
    "best_test_acc": (100.0, " %", " pp", 1),
    "generalisation_gap": (100.0, " pp", " pp", 1),      # train acc - test acc, both eval mode
    "top_pred_share": (100.0, " %", " pp", 1),
    "final_test_loss": (1.0, "", "", 3),
    "final_train_loss": (1.0, "", "", 3),
    "final_running_loss": (1.0, "", "", 3),
    "first_epoch_running_loss": (1.0, "", "", 3),
    "train_loss_drop": (1.0, "", "", 3),                 # derived: first-epoch - final running loss
    "epochs_run": (1.0, " epochs", " epochs", 1),
    "epochs_to_target": (1.0, " epochs", " epochs", 1),
    "steps_to_target": (1.0, " steps", " steps", 0),
    "examples_to_target": (1.0, " images", " images", 0),
    "time_to_target_s": (1.0, " s", " s", 1),
    "train_time_s": (1.0, " s", " s", 1),
    "eval_time_s": (1.0, " s", " s", 1),
    "mean_epoch_s": (1.0, " s", " s", 2),
    "total_time_s": (1.0, " s", " s", 1),
    "noise_scale": (1.0, "", "", 0),
}
# To-target metrics: a run that never reached the target has no value and counts as +inf.
NEVER_METRICS = frozenset({"epochs_to_target", "steps_to_target", "examples_to_target",
                           "time_to_target_s"})

# kind -> (required rule keys, optional rule keys); `kind` itself is implied.
RULE_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "compare": (("metric", "a", "b", "expect"), ("factor",)),
    "compare_each": (("metric", "over", "a", "b", "expect"), ("values",)),
    "equivalent": (("metric", "a", "b", "margin"), ("relative",)),
    "near": (("metric", "select", "target", "tolerance"), ()),
    "threshold": (("metric", "select"), ("above", "below")),
    "best": (("metric", "at", "goal"), ("where",)),
    "interior_optimum": (("metric", "over", "goal"), ("where",)),
    "monotonic": (("metric", "over", "direction"), ("where",)),
    "never_reaches": (("select",), ("metric",)),
    # train-or-fail outcomes: the share of runs that trained (the outcome rule), not a mean
    "trains_more": (("a", "b", "expect"), ()),
    "trained_share": (("select",), ("above", "below")),
    # the extension studies' literature claims (statistics in extensions.py, shared with figures and report)
    "half_failure": (("over", "a", "b", "expect"), ()),
    "collapse": (("select",), ("share",)),
    "critical_batch": (("over", "by", "factor"), ("where",)),
}
SELECTOR_FIELDS = ("a", "b", "select", "at", "where")
SELECTOR_RESERVED = ("study", "label")     # selector keys that are not parameters
CLAIM_KEYS = ("id", "homework", "quote", "english", "study", "rule")
_CHOICES = {"expect": ("less", "greater"), "goal": ("min", "max"),
            "direction": ("increasing", "decreasing")}
FAILURE_MARGIN = 0.02  # only for a runs table without `outcome` (written before the outcome rule)


# --------------------------------------------------------------------------- loading

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
    if kind == "never_reaches" and metric not in NEVER_METRICS:
        raise ValueError(f"claim {cid!r}: never_reaches needs a to-target metric (key 'metric')")
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


# --------------------------------------------------------------------------- matching

def _norm(value: Any) -> Any:
    """Normalise a parameter value so YAML, pandas and CSV spellings compare equal.

    Booleans and their string spellings become 1.0/0.0, numbers and numeric strings
    become floats rounded to 12 significant digits (0.1 read back from CSV equals the
    YAML 0.1), missing values become None, other strings are lower-cased.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return float(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        return None if math.isnan(v) else float(f"{v:.12g}")
    s = str(value).strip()
    low = s.lower()
    if low in ("true", "false"):
        return 1.0 if low == "true" else 0.0
    if low in ("", "nan", "none", "null"):
        return None
    try:
        return float(f"{float(s):.12g}")
    except ValueError:
        return low


def _match(df: pd.DataFrame, selector: dict) -> pd.DataFrame:
    """Rows of ``df`` whose parameters equal every (non-reserved) selector value."""
    mask = np.ones(len(df), dtype=bool)
    for key, want in selector.items():
        if key in SELECTOR_RESERVED:
            continue
        if key not in df.columns:
            return df.iloc[0:0]
        want_n = _norm(want)
        mask &= np.array([_norm(v) == want_n for v in df[key]], dtype=bool)
    return df[mask]


def _is_true(value: Any) -> bool:
    return _norm(value) == 1.0


def _with_outcome(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs table with its `outcome` column; a table written before the outcome rule gets
    one from `status`, `diverged` and `final_test_acc` by that same rule (aggregate.outcome)."""
    if "outcome" in runs.columns:
        return runs
    if runs.empty:
        return runs.assign(outcome=pd.Series(dtype=object))
    def row_outcome(row: pd.Series) -> str:
        acc = pd.to_numeric(row.get("final_test_acc"), errors="coerce")
        metrics = {"status": str(row.get("status", "ok")).strip().lower(),
                   "diverged": _is_true(row.get("diverged", False)),
                   "final_test_acc": math.inf if pd.isna(acc) else float(acc)}
        return run_outcome(metrics, FAILURE_MARGIN)
    return runs.assign(outcome=runs.apply(row_outcome, axis=1))


def _study_runs(runs: pd.DataFrame, study: str) -> pd.DataFrame:
    """The runs of one study that ran (the aggregation also writes "no-data" rows for cells it
    could not run)."""
    return runs[(runs["study"].astype(str) == study) & (runs["outcome"] != "no-data")]


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, float) else (1, 0.0, str(v))


# --------------------------------------------------------------------------- groups

@dataclass
class Group:
    """One setting's runs for one metric: the measured values and the outcome counts.

    ``values`` come from the runs ``aggregate.measured_runs`` picks (``basis``: "trained", or
    "failed" where none trained; "none" where every run diverged); for a to-target metric a
    measured run without a value never reached the target and is +inf.
    """

    label: str
    metric: str
    values: np.ndarray
    n_runs: int = 0
    n_trained: int = 0
    n_failed: int = 0
    n_diverged: int = 0
    basis: str = "none"
    n_missing: int = 0     # measured runs without a value (not a to-target metric): dropped

    @classmethod
    def of(cls, label: str, metric: str, rows: pd.DataFrame) -> "Group":
        counts = {f"n_{o}": int((rows["outcome"] == o).sum()) for o in ("trained", "failed", "diverged")}
        chosen, basis = measured_runs(rows)
        vals = _metric_values(chosen, metric)
        if metric in NEVER_METRICS:
            vals = np.where(np.isnan(vals), np.inf, vals)
        keep = ~np.isnan(vals)
        return cls(label, metric, vals[keep], n_runs=len(rows), basis=basis,
                   n_missing=int((~keep).sum()), **counts)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.n else math.nan

    @property
    def std(self) -> float:
        if self.n < 2 or np.isinf(self.values).any():
            return math.nan
        return float(np.std(self.values, ddof=1))

    @property
    def n_reached(self) -> int:
        return int(np.isfinite(self.values).sum())

    @property
    def all_trained(self) -> bool:
        return self.n_runs > 0 and self.n_trained == self.n_runs


def _metric_values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    def col(name: str) -> np.ndarray:
        if name not in rows.columns:
            return np.full(len(rows), np.nan)
        return pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)

    if metric == "generalisation_gap" and "generalisation_gap" not in rows.columns:
        return col("final_train_acc") - col("final_test_acc")
    if metric == "train_loss_drop":
        return col("first_epoch_running_loss") - col("final_running_loss")
    return col(metric)


def _select(claim: dict, runs: pd.DataFrame, selector: dict, metric: str) -> Group:
    rows = _match(_study_runs(runs, selector.get("study", claim["study"])), selector)
    return Group.of(_label(selector), metric, rows)


def _sweep(claim: dict, rule: dict, runs: pd.DataFrame) -> list[Group]:
    """Groups of the study's runs (after ``where``) by the ordered ``over`` value."""
    over = rule["over"]
    rows = _match(_study_runs(runs, claim["study"]), rule.get("where", {}))
    if over not in rows.columns:
        return []
    keys = [_norm(v) for v in rows[over]]
    values = sorted({k for k in keys if k is not None}, key=_sort_key)
    name = _SHORT.get(over, over)
    return [Group.of(f"{name} {_fmt_value(v)}", rule["metric"], rows[[k == v for k in keys]])
            for v in values]


def _difference(a: Group, b: Group, level: float, factor: float = 1.0,
                relative: bool = False) -> Interval:
    """The interval of mean(a) - factor * mean(b) (relative: a / b - 1) by the rules of `stats`."""
    if relative:
        return stats.ratio_interval(a.values, b.values, level)
    return stats.censored_difference(a.values, b.values, level, factor)


# --------------------------------------------------------------------------- wording

def _num(x: float, digits: int, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return ("+" if x > 0 and signed else "" if x > 0 else "−") + "inf"
    s = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return s.replace("-", "−")


def _runs_note(g: Group) -> str:
    """How many runs a group's numbers stand for, where that is not simply all of them."""
    if g.basis == "failed":
        return f"0 of {g.n_runs} trained: {g.n_failed} failed runs measured"
    if g.all_trained:
        return f"n={g.n}"
    diverged = f", {g.n_diverged} diverged" if g.n_diverged else ""
    return f"{g.n_trained} of {g.n_runs} trained{diverged}"


def _fmt_group(g: Group) -> str:
    scale, unit, _, dg = METRICS[g.metric]
    if g.n_runs == 0:
        return f"{g.label}: no runs"
    if g.n == 0:
        why = f"all {g.n_runs} runs diverged" if g.n_diverged == g.n_runs else "no value in any run"
        return f"{g.label}: {why}"
    if g.metric in NEVER_METRICS and g.n_reached < g.n:
        if g.n_reached == 0:
            return f"{g.label}: never reached (0/{g.n} runs; {_runs_note(g)})"
        fin = g.values[np.isfinite(g.values)] * scale
        return (f"{g.label}: reached in {g.n_reached}/{g.n} runs "
                f"(those: {_num(float(fin.mean()), dg)}{unit}), counted as never ({_runs_note(g)})")
    body = _num(g.mean * scale, dg)
    if not math.isnan(g.std):
        body += f" ± {_num(g.std * scale, dg)}"
    return f"{g.label}: {body}{unit} ({_runs_note(g)})"


def _fmt_interval(metric: str, iv: Interval, level: float, what: str = "difference",
                  relative: bool = False) -> str:
    scale, _, dunit, dg = METRICS[metric]
    if relative:
        scale, dunit, dg = 100.0, " %", 1
    return (f"{what} {_num(iv.estimate * scale, dg, True)}{dunit}, {level:.0%} {_test_name(iv)} "
            f"interval [{_num(iv.lo * scale, dg, True)}, {_num(iv.hi * scale, dg, True)}]")


def _test_name(iv: Interval) -> str:
    """The short name of the rule that made an interval, for the evidence sentence."""
    if iv.method.startswith("exact"):
        return "exact (no spread)"
    if iv.method.startswith(("tie", "decisive")):
        return "never-reached"
    return "Welch t" if iv.method.startswith("Welch") else "t"


def _fmt_value(v: Any) -> str:
    """A parameter value for display: 64.0 -> "64", True / "True" -> "true"."""
    if isinstance(v, (bool, np.bool_)) or str(v).strip().lower() in ("true", "false"):
        return str(v).strip().lower()
    n = _norm(v)
    if isinstance(n, float):
        return str(int(n)) if n.is_integer() else f"{n:g}"
    return str(v)


_SHORT = {"batch_size": "batch", "init": "init", "lr": "lr", "bn": "BN"}


def _label(selector: dict) -> str:
    if "label" in selector:
        return str(selector["label"])
    parts = []
    for k, v in selector.items():
        if k in SELECTOR_RESERVED:
            continue
        if k == "bn":
            parts.append("BN" if _is_true(v) else "no BN")
        else:
            parts.append(f"{_SHORT.get(k, k)} {_fmt_value(v)}")
    return ", ".join(parts) or "all runs"


def _verdict_words(verdict: str, groups: list[Group]) -> str:
    """The verdict with how far it reaches: "reliably" when every run of every group trained,
    "in k of n runs" (one group) or "in the runs that trained" otherwise."""
    if verdict not in ("supported", "contradicted"):
        return verdict
    if all(g.all_trained for g in groups):
        return f"{verdict} reliably (every run trained)"
    if len(groups) == 1:
        g = groups[0]
        return f"{verdict} in {g.n_trained} of {g.n_runs} runs" + (
            " (none trained: on its failed runs)" if g.basis == "failed" else "")
    return f"{verdict} in the runs that trained"


def _notes(groups: Iterable[Group], level: float) -> str:
    """The outcome counts behind the numbers, with a Wilson interval of the trained share, for
    every group in which not every run trained; and values that were missing."""
    notes = []
    for g in groups:
        if g.n_runs and not g.all_trained:
            lo, hi = stats.wilson_interval(g.n_trained, g.n_runs, level)
            what = [f"{g.n_trained} of {g.n_runs} runs trained ({level:.0%} Wilson interval "
                    f"{100 * lo:.0f}–{100 * hi:.0f} %)"]
            what += [f"{n} {o}" for n, o in ((g.n_failed, "failed"), (g.n_diverged, "diverged")) if n]
            basis = ("; none trained, so its failed runs are measured" if g.basis == "failed"
                     else "; diverged runs are not measurements" if g.basis == "none" else "")
            notes.append(f"{g.label}: {', '.join(what)}{basis}")
        if g.n_missing:
            notes.append(f"{g.n_missing} run(s) of {g.label} without a value dropped")
    return (". " + "; ".join(notes)) if notes else ""


def _group_fields(groups: list[Group], level: float) -> list[dict]:
    out = []
    for g in groups:
        lo, hi = stats.wilson_interval(g.n_trained, g.n_runs, level)
        out.append(dict(label=g.label, mean=g.mean, std=g.std, n=g.n, n_runs=g.n_runs,
                        n_trained=g.n_trained, n_failed=g.n_failed, n_diverged=g.n_diverged,
                        basis=g.basis, trained_lo=lo, trained_hi=hi))
    return out


def _ab_fields(a: Group, b: Group, iv: Interval | None = None) -> dict:
    diff, lo, hi = (iv.estimate, iv.lo, iv.hi) if iv else (math.nan, math.nan, math.nan)
    return dict(mean_a=a.mean, std_a=a.std, n_a=a.n, mean_b=b.mean, std_b=b.std, n_b=b.n,
                diff=diff, lo=lo, hi=hi)


def _comparison(a: Group, b: Group, iv: Interval) -> dict:
    return dict(a=a.label, b=b.label, diff=iv.estimate, lo=iv.lo, hi=iv.hi, df=iv.df,
                method=iv.method)


# --------------------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class Settings:
    """What every evaluator needs besides the claim: the interval level and the runs a group needs."""

    level: float = 0.95
    min_runs: int = 3


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
            res.update(_EVALUATORS[rule["kind"]](claim, rule, runs, settings))
        results.append(res)
    return results


def _too_few(groups: Iterable[Group], min_runs: int) -> str | None:
    few = [g for g in groups if g.n < min_runs]
    if not few:
        return None
    what = "; ".join(f"{g.label} has {g.n} measured run{'s' if g.n != 1 else ''}"
                     + (f" ({_runs_note(g)})" if not g.all_trained and g.n_runs else "") for g in few)
    return f"inconclusive by rule: {what}, fewer than the {min_runs} required"


def _inconclusive_by_rule(out: dict, groups: list[Group], evidence: str, s: Settings) -> dict | None:
    """The early result of a rule whose groups have too few measured runs, else None."""
    few = _too_few(groups, s.min_runs)
    if few is None:
        return None
    return {**out, "verdict": "inconclusive", "evidence": evidence,
            "reason": few + _notes(groups, s.level)}


def _decide(sign: int, want: int) -> str:
    """supported when the interval lies on the predicted side of the bound, contradicted when on
    the other, inconclusive when it contains the bound."""
    return "supported" if sign == want else "contradicted" if sign == -want else "inconclusive"


_WHERE = {1: "lies entirely above", -1: "lies entirely below", 0: "contains"}


def _eval_compare(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    metric, expect = rule["metric"], rule["expect"]
    factor = float(rule.get("factor", 1.0))
    a = _select(claim, runs, rule["a"], metric)
    b = _select(claim, runs, rule["b"], metric)
    out = dict(groups=_group_fields([a, b], s.level), **_ab_fields(a, b))
    listing = f"{_fmt_group(a)} vs {_fmt_group(b)}"
    if early := _inconclusive_by_rule(out, [a, b], listing, s):
        return early
    iv = _difference(a, b, s.level, factor)
    sign = side(iv)
    verdict = _decide(sign, -1 if expect == "less" else 1)
    what = "difference" if factor == 1 else f"difference to {factor:g} × {b.label}"
    rel = "<" if expect == "less" else ">"
    expected = f"{a.label} {rel} {b.label}" if factor == 1 else f"{a.label} {rel} {factor:g} × {b.label}"
    out.update(_ab_fields(a, b, iv), verdict=verdict, comparisons=[_comparison(a, b, iv)],
               evidence=f"{listing}; {_fmt_interval(metric, iv, s.level, what)}",
               reason=f"{_verdict_words(verdict, [a, b])}: expected {expected}; the {s.level:.0%} "
                      f"{_test_name(iv)} interval of the {what} {_WHERE[sign]} 0"
                      + _notes([a, b], s.level))
    return out


def _eval_compare_each(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    over = rule["over"]
    values = rule.get("values")
    if values is None:
        col = _study_runs(runs, claim["study"]).get(over, pd.Series(dtype=object))
        values = sorted({_norm(v) for v in col if _norm(v) is not None}, key=_sort_key)
    if not values:
        return dict(verdict="inconclusive", evidence=f"no values of {over}",
                    reason=f"inconclusive: the study has no values of {over!r}")
    parts, comps, verdicts, groups, reliable = [], [], [], [], []
    decider = None   # the deciding comparison: the first contradicted, else first inconclusive
    for v in values:
        sub = dict(kind="compare", metric=rule["metric"], expect=rule["expect"],
                   a={**rule["a"], over: v}, b={**rule["b"], over: v})
        r = _eval_compare(claim, sub, runs, s)
        verdicts.append(r["verdict"])
        reliable.append("reliably" in r["reason"])
        groups += r["groups"]
        comps += r.get("comparisons", [])
        parts.append(f"at {_SHORT.get(over, over)} {_fmt_value(v)}: {r['evidence']} ({r['verdict']})")
        rank = {"contradicted": 0, "supported": 2}.get(r["verdict"], 1)
        if decider is None or rank < decider[0]:
            decider = (rank, r)
    verdict = ("contradicted" if "contradicted" in verdicts else
               "supported" if all(v == "supported" for v in verdicts) else "inconclusive")
    # reliably when every comparison that makes the verdict is itself reliable
    deciding = [ok for v, ok in zip(verdicts, reliable) if v == verdict]
    reach = ("" if verdict == "inconclusive" else " reliably (every run trained)" if all(deciding)
             else " in the runs that trained")
    out = {k: decider[1].get(k) for k in ("mean_a", "std_a", "n_a", "mean_b", "std_b", "n_b",
                                         "diff", "lo", "hi")}
    out.update(verdict=verdict, groups=groups, comparisons=comps, evidence="; ".join(parts),
               reason=f"{verdict}{reach}: the comparison must hold at every {over} "
                      f"(supported only if each is supported, contradicted if any is "
                      f"contradicted); per value: {', '.join(verdicts)}")
    return out


def _eval_equivalent(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    metric, margin = rule["metric"], float(rule["margin"])
    relative = bool(rule.get("relative", False))
    a = _select(claim, runs, rule["a"], metric)
    b = _select(claim, runs, rule["b"], metric)
    out = dict(groups=_group_fields([a, b], s.level), **_ab_fields(a, b))
    listing = f"{_fmt_group(a)} vs {_fmt_group(b)}"
    if early := _inconclusive_by_rule(out, [a, b], listing, s):
        return early
    iv = _difference(a, b, s.level, relative=relative)
    if -margin <= iv.lo and iv.hi <= margin:
        verdict, where = "supported", "lies within"
    elif iv.lo > margin or iv.hi < -margin:
        verdict, where = "contradicted", "lies entirely outside"
    else:
        verdict, where = "inconclusive", "straddles the edge of"
    if relative:
        m_txt, what = f"±{margin:.0%}", "relative difference"
    else:
        scale, _, dunit, dg = METRICS[metric]
        m_txt, what = f"±{_num(margin * scale, dg)}{dunit}", "difference"
    test = _test_name(iv) + " interval" + (" on log values (a ratio of geometric means)" if relative else "")
    out.update(_ab_fields(a, b, iv), verdict=verdict, comparisons=[_comparison(a, b, iv)],
               evidence=f"{listing}; {_fmt_interval(metric, iv, s.level, what, relative)}",
               reason=f"{_verdict_words(verdict, [a, b])}: 'about the same' means a {what} within "
                      f"{m_txt}; the {s.level:.0%} {test} {where} that margin"
                      + _notes([a, b], s.level))
    return out


def _one_group_start(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings,
                     expected: str) -> tuple[Group, dict, dict | None]:
    """The common start of the single-group rules (near, threshold): the group, the output
    skeleton and an early 'inconclusive' result when it has too few measured runs."""
    a = _select(claim, runs, rule["select"], rule["metric"])
    out = dict(groups=_group_fields([a], s.level), mean_a=a.mean, std_a=a.std, n_a=a.n)
    return a, out, _inconclusive_by_rule(out, [a], f"{_fmt_group(a)}; expected {expected}", s)


def _mean_evidence(a: Group, iv: Interval, s: Settings, expected: str) -> str:
    scale, unit, _, dg = METRICS[a.metric]
    return (f"{_fmt_group(a)}; {s.level:.0%} {_test_name(iv)} interval of the mean "
            f"[{_num(iv.lo * scale, dg)}, {_num(iv.hi * scale, dg)}]{unit}; expected {expected}")


def _eval_near(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    target, tol = float(rule["target"]), float(rule["tolerance"])
    scale, unit, _, dg = METRICS[rule["metric"]]
    band = f"{_num(target * scale, dg)} ± {_num(tol * scale, dg)}{unit}"
    a, out, early = _one_group_start(claim, rule, runs, s, band)
    if early:
        return early
    iv = stats.censored_mean(a.values, s.level)
    if target - tol <= iv.lo and iv.hi <= target + tol:
        verdict, where = "supported", "lies inside"
    elif iv.hi < target - tol or iv.lo > target + tol:
        verdict, where = "contradicted", "lies entirely outside"
    else:
        verdict, where = "inconclusive", "overlaps the edge of"
    out.update(lo=iv.lo, hi=iv.hi, diff=a.mean - target, verdict=verdict,
               evidence=_mean_evidence(a, iv, s, band),
               reason=f"{_verdict_words(verdict, [a])}: the {s.level:.0%} {_test_name(iv)} interval "
                      f"of the mean {where} the band {band}" + _notes([a], s.level))
    return out


def _eval_threshold(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    above = "above" in rule
    bound = float(rule["above"] if above else rule["below"])
    scale, unit, _, dg = METRICS[rule["metric"]]
    txt = f"{'above' if above else 'below'} {_num(bound * scale, dg)}{unit}"
    a, out, early = _one_group_start(claim, rule, runs, s, txt)
    if early:
        return early
    iv = stats.censored_mean(a.values, s.level)
    sign = side(iv, bound)
    verdict = _decide(sign, 1 if above else -1)
    out.update(lo=iv.lo, hi=iv.hi, diff=a.mean - bound, verdict=verdict,
               evidence=_mean_evidence(a, iv, s, txt),
               reason=f"{_verdict_words(verdict, [a])}: expected the mean {txt}; its {s.level:.0%} "
                      f"{_test_name(iv)} interval {_WHERE[sign]} {_num(bound * scale, dg)}{unit}"
                      + _notes([a], s.level))
    return out


def _trained_text(g: Group) -> str:
    others = [f"{n} {o}" for n, o in ((g.n_failed, "failed"), (g.n_diverged, "diverged")) if n]
    return f"{g.label}: {g.n_trained} of {g.n_runs} trained" + (f" ({', '.join(others)})" if others else "")


def _too_few_runs(out: dict, groups: list[Group], evidence: str, s: Settings) -> dict | None:
    """A share rule counts every run, diverged ones included; fewer than min_runs: inconclusive."""
    few = [g for g in groups if g.n_runs < s.min_runs]
    if not few:
        return None
    return {**out, "verdict": "inconclusive", "evidence": evidence,
            "reason": f"inconclusive by rule: {'; '.join(f'{g.label} has {g.n_runs} runs' for g in few)}, "
                      f"fewer than the {s.min_runs} required"}


def _eval_trains_more(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The share of runs that trained is higher (or lower) in a than in b: Newcombe's interval of
    the difference of the two shares."""
    a = _select(claim, runs, rule["a"], "final_test_acc")
    b = _select(claim, runs, rule["b"], "final_test_acc")
    listing = f"{_trained_text(a)} vs {_trained_text(b)}"
    out = dict(groups=_group_fields([a, b], s.level), n_a=a.n_runs, n_b=b.n_runs,
               mean_a=a.n_trained / a.n_runs if a.n_runs else math.nan,
               mean_b=b.n_trained / b.n_runs if b.n_runs else math.nan)
    if early := _too_few_runs(out, [a, b], listing, s):
        return early
    iv = stats.share_difference_interval(a.n_trained, a.n_runs, b.n_trained, b.n_runs, s.level)
    sign = side(iv)
    verdict = _decide(sign, -1 if rule["expect"] == "less" else 1)
    rel = "less" if rule["expect"] == "less" else "more"
    out.update(diff=iv.estimate, lo=iv.lo, hi=iv.hi, verdict=verdict,
               comparisons=[_comparison(a, b, iv)],
               evidence=f"{listing}; {s.level:.0%} {iv.method} of the difference in the share that trained "
                        f"[{100 * iv.lo:+.0f}, {100 * iv.hi:+.0f}] points",
               reason=f"{verdict}: expected {a.label} to train {rel} often than {b.label}; the interval "
                      f"{_WHERE[sign]} 0")
    return out


def _eval_trained_share(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The share of runs that trained lies above (or below) a bound: its Wilson interval."""
    above = "above" in rule
    bound = float(rule["above"] if above else rule["below"])
    a = _select(claim, runs, rule["select"], "final_test_acc")
    out = dict(groups=_group_fields([a], s.level), n_a=a.n_runs,
               mean_a=a.n_trained / a.n_runs if a.n_runs else math.nan)
    expected = f"a share {'above' if above else 'below'} {100 * bound:g} %"
    if early := _too_few_runs(out, [a], f"{_trained_text(a)}; expected {expected}", s):
        return early
    lo, hi = stats.wilson_interval(a.n_trained, a.n_runs, s.level)
    sign = side(Interval(a.n_trained / a.n_runs, lo, hi), bound)
    verdict = _decide(sign, 1 if above else -1)
    out.update(diff=a.n_trained / a.n_runs - bound, lo=lo, hi=hi, verdict=verdict,
               evidence=f"{_trained_text(a)} ({s.level:.0%} Wilson interval {100 * lo:.0f}–{100 * hi:.0f} %); "
                        f"expected {expected}",
               reason=f"{verdict}: the Wilson interval of the share that trained {_WHERE[sign]} "
                      f"{100 * bound:g} %")
    return out


def _eval_never(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """No finished run (trained or failed) reaches the target. A diverged run stopped early: it
    "diverged first" and is not counted as never reaching the target within the budget."""
    metric = rule.get("metric", "epochs_to_target")
    select = rule["select"]
    rows = _match(_study_runs(runs, select.get("study", claim["study"])), select)
    finished = rows[rows["outcome"].isin(["trained", "failed"])]
    values = _metric_values(finished, metric)
    n, k = len(finished), int(np.isfinite(values).sum())
    a = Group.of(_label(select), metric, rows)
    epochs = pd.to_numeric(finished.get("epochs_run", pd.Series(dtype=float)), errors="coerce")
    within = f" within {int(epochs.max())} epochs" if epochs.notna().any() else ""
    lo, hi = stats.wilson_interval(k, n, s.level)
    diverged = a.n_diverged
    evidence = (f"{a.label}: reached the target in {k} of {n} finished runs{within} "
                f"({s.level:.0%} Wilson interval {100 * lo:.0f}–{100 * hi:.0f} %)"
                + (f"; {diverged} diverged first (not counted)" if diverged else ""))
    out = dict(groups=_group_fields([a], s.level), mean_a=k / n if n else math.nan, n_a=n,
               lo=lo, hi=hi, evidence=evidence)
    if n < s.min_runs:
        return {**out, "verdict": "inconclusive",
                "reason": f"inconclusive by rule: {a.label} has {n} finished run{'s' if n != 1 else ''}, "
                          f"fewer than the {s.min_runs} required"}
    verdict = "supported" if k == 0 else "contradicted" if k == n else "inconclusive"
    how = ("reliably (no finished run reached it)" if k == 0 else
           "reliably (every finished run reached it)" if k == n else f"in {k} of {n} runs")
    return {**out, "verdict": verdict,
            "reason": f"{verdict}: the claim holds if no finished run reaches the target{within} "
                      f"and fails if every one does; it was reached {how}"}


def _better(a: Group, b: Group, goal: str, level: float) -> dict:
    """Compare a with b; ``sig`` is +1 if a is significantly better (by ``goal``), -1 if worse."""
    iv = _difference(a, b, level)
    return dict(_comparison(a, b, iv), sig=side(iv) * (1 if goal == "max" else -1), _a=a, _b=b, _iv=iv)


def _decider(comps: list[dict], goal: str) -> dict:
    # the weakest comparison for the winner: the bound closest to (or past) zero
    return min(comps, key=lambda c: (c["lo"] if goal == "max" else -c["hi"]))


def _finish(out: dict, comps: list[dict], decider: dict | None) -> dict:
    out["comparisons"] = [{k: v for k, v in c.items() if not k.startswith("_")} for c in comps]
    if decider is not None:
        out.update(_ab_fields(decider["_a"], decider["_b"], decider["_iv"]))
    return out


def _comps_text(comps: list[dict], metric: str, level: float) -> str:
    return "; ".join(f"{c['a']} − {c['b']}: {_fmt_interval(metric, c['_iv'], level)}" for c in comps)


def _rivals(rows: pd.DataFrame, at: dict, metric: str) -> list[Group]:
    """One group per combination of the parameters that vary among the runs outside ``at``,
    labelled in the order of the ``at`` selector, so that "BN, lr 0.5" reads like its rivals."""
    rest = rows.drop(index=_match(rows, at).index)
    order = [k for k in at if k in PARAM_COLUMNS] + list(PARAM_COLUMNS)
    varying = [c for c in dict.fromkeys(order) if c in rows.columns
               and len({_norm(v) for v in rows[c]}) > 1]
    if not len(rest) or not varying:
        return []
    keys = [tuple(_norm(r[c]) for c in varying) for _, r in rest.iterrows()]
    groups = []
    for key in sorted(set(keys), key=lambda k: tuple(_sort_key(x) for x in k)):
        sel = {c: rest[c].iloc[keys.index(key)] for c in varying}
        groups.append(Group.of(_label(sel), metric, rest[[k == key for k in keys]]))
    return groups


def _eval_best(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    metric, goal = rule["metric"], rule["goal"]
    rows = _match(_study_runs(runs, claim["study"]), rule.get("where", {}))
    at = Group.of(_label(rule["at"]), metric, _match(rows, rule["at"]))
    others = _rivals(rows, rule["at"], metric)
    groups = [at] + others
    word = "highest" if goal == "max" else "lowest"
    out = dict(groups=_group_fields(groups, s.level))
    listing = "; ".join(_fmt_group(g) for g in groups)
    if not others:
        return {**out, "verdict": "inconclusive", "evidence": listing,
                "reason": "inconclusive: nothing to compare with"}
    if early := _inconclusive_by_rule({**out, **_ab_fields(at, others[0])}, groups, listing, s):
        return early
    comps = [_better(at, o, goal, s.level) for o in others]
    is_best = stats.best_index([g.mean for g in groups], goal) == 0
    beaten_by = [c["b"] for c in comps if c["sig"] == -1]
    if is_best and all(c["sig"] == 1 for c in comps):
        verdict, why = "supported", f"{at.label} has the {word} mean and is significantly " \
                                    f"better than every other setting"
    elif beaten_by:
        verdict, why = "contradicted", f"{', '.join(beaten_by)} significantly better than {at.label}"
    else:
        verdict, why = "inconclusive", (f"{at.label} is not significantly better than every "
                                        f"other setting" if is_best else
                                        f"{at.label} does not have the {word} mean, but no "
                                        f"setting is significantly better")
    out.update(verdict=verdict, evidence=f"{listing}; {_comps_text(comps, metric, s.level)}",
               reason=f"{_verdict_words(verdict, groups)}: {why} ({s.level:.0%} Welch t intervals "
                      f"of the differences)" + _notes(groups, s.level))
    return _finish(out, comps, _decider(comps, goal))


def _sweep_start(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings, need: int, what: str
                 ) -> tuple[list[Group], dict, str, dict | None]:
    """The common start of the sweep rules: the groups along `over`, the output skeleton, a
    listing for the evidence, and an early 'inconclusive' result when there is too little data."""
    groups = _sweep(claim, rule, runs)
    out = dict(groups=_group_fields(groups, s.level))
    listing = "; ".join(_fmt_group(g) for g in groups)
    if len(groups) < need:
        return groups, out, listing, {
            **out, "verdict": "inconclusive", "evidence": listing or "no runs",
            "reason": f"inconclusive: {what} needs at least {need} values of {rule['over']}, "
                      f"found {len(groups)}"}
    return groups, out, listing, _inconclusive_by_rule(out, groups, listing, s)


def _never_note(metric: str) -> str:
    return (" A run that never reached the target counts as never (+inf)."
            if metric in NEVER_METRICS else "")


def _eval_interior(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    metric, goal = rule["metric"], rule["goal"]
    groups, out, listing, early = _sweep_start(claim, rule, runs, s, 3, "an interior optimum")
    if early:
        return early
    best = stats.best_index([g.mean for g in groups], goal)
    if goal == "min" and math.isinf(groups[best].mean):
        return {**out, "verdict": "inconclusive", "evidence": listing,
                "reason": "inconclusive: no setting reached the target in every run"}
    word = "highest" if goal == "max" else "lowest"
    top = groups[best]
    interior = 0 < best < len(groups) - 1
    rivals = (0, len(groups) - 1) if interior else range(1, len(groups) - 1)
    comps = [_better(top, groups[i], goal, s.level) for i in rivals]
    ok = all(c["sig"] == 1 for c in comps)
    if interior:
        verdict = "supported" if ok else "inconclusive"
        why = (f"the {word} mean is at {top.label}, inside the sweep, and it is "
               f"{'' if ok else 'not '}significantly better than both endpoints")
    else:
        verdict = "contradicted" if ok else "inconclusive"
        why = (f"the {word} mean is at the endpoint {top.label}, and it is "
               f"{'' if ok else 'not '}significantly better than every interior setting")
    out.update(verdict=verdict, evidence=f"{listing}; {_comps_text(comps, metric, s.level)}",
               reason=f"{_verdict_words(verdict, groups)}: {why} ({s.level:.0%} Welch t intervals)."
                      f"{_never_note(metric)}" + _notes(groups, s.level))
    return _finish(out, comps, _decider(comps, goal))


def _eval_monotonic(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    metric, over, direction = rule["metric"], rule["over"], rule["direction"]
    groups, out, listing, early = _sweep_start(claim, rule, runs, s, 2, "a trend")
    if early:
        return early
    up = direction == "increasing"
    mono = stats.is_monotone([g.mean for g in groups], up)
    last, first = groups[-1], groups[0]
    iv = _difference(last, first, s.level)
    sign = side(iv) * (1 if up else -1)
    if mono and sign == 1:
        verdict, why = "supported", "the means are monotone and the endpoint difference is significant"
    elif sign == -1:
        verdict, why = "contradicted", "the endpoint difference is significant in the opposite direction"
    elif mono:
        verdict, why = "inconclusive", "the endpoint difference is not significant"
    else:
        verdict, why = "inconclusive", ("the endpoint difference is significant but the means are "
                                        "not monotone" if sign == 1 else "the means are not monotone")
    out.update(_ab_fields(last, first, iv), verdict=verdict, comparisons=[_comparison(last, first, iv)],
               evidence=f"{listing}; {last.label} − {first.label}: {_fmt_interval(metric, iv, s.level)}",
               reason=f"{_verdict_words(verdict, groups)}: expected {metric} {direction} in {over}; "
                      f"{why} ({s.level:.0%} {_test_name(iv)} interval).{_never_note(metric)}"
                      + _notes(groups, s.level))
    return out


# --------------------------------------------------------------------------- extension studies
# The rules of the literature claims on the extension studies. Their statistics live beside the
# analyses the figures and the report draw (extensions.py), so a verdict and a figure never compute
# the same number two ways.

def _eval_half_failure(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """a's half-failure value of `over` (where half of the runs fail to train) above / below b's: the
    two Wilson-based intervals apart in the expected order."""
    a, b = (_match(_study_runs(runs, rule[k].get("study", claim["study"])), rule[k]) for k in ("a", "b"))
    return ext.half_failure_verdict(a, b, (_label(rule["a"]), _label(rule["b"])), rule["over"],
                                    rule["expect"], s.level)


def _eval_collapse(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The selected runs collapse to one class: the Wilson interval of the collapsed share above 1/2."""
    rows = _match(_study_runs(runs, rule["select"].get("study", claim["study"])), rule["select"])
    return ext.collapse_verdict(rows, _label(rule["select"]), s.level, float(rule.get("share", ext.COLLAPSE_SHARE)))


def _eval_critical_batch(claim: dict, rule: dict, runs: pd.DataFrame, s: Settings) -> dict:
    """The fitted bend of steps to target within `factor` of the measured noise scale. Its interval is a
    bootstrap over a fit across every setting of the sweep (not a mean of 3 runs), seeded by the claim
    id so that the verdict is the same on every evaluation."""
    rows = _match(_study_runs(runs, claim["study"]), rule.get("where", {}))
    rng = np.random.default_rng(zlib.crc32(str(claim["id"]).encode()))
    return ext.critical_batch_verdict(rows, rule["over"], rule["by"], float(rule["factor"]), s.level, 1000, rng,
                                      s.min_runs)


_EVALUATORS: dict[str, Callable[[dict, dict, pd.DataFrame, Settings], dict]] = {
    "trains_more": _eval_trains_more,
    "trained_share": _eval_trained_share,
    "compare": _eval_compare,
    "compare_each": _eval_compare_each,
    "equivalent": _eval_equivalent,
    "near": _eval_near,
    "threshold": _eval_threshold,
    "best": _eval_best,
    "interior_optimum": _eval_interior,
    "monotonic": _eval_monotonic,
    "never_reaches": _eval_never,
    "half_failure": _eval_half_failure,
    "collapse": _eval_collapse,
    "critical_batch": _eval_critical_batch,
}


def verdict_rule_text(level: float, resamples: int | None = None, min_runs: int = 3) -> str:
    """One paragraph for the report's methods section stating the verdict rule and its tests.

    ``resamples`` belonged to the bootstrap these rules replaced; accepted and ignored.
    """
    pct = f"{level:.0%}"
    return (
        f"Each homework conclusion is stated as a rule over the runs and judged on two-sided {pct} "
        f"intervals built for 3 to 5 runs per setting. A difference of two means gets Welch's t "
        f"interval: settings differ in spread (a learning rate near the edge of stability scatters "
        f"far more than a safe one), so the variances are not pooled, and the t quantile, not the "
        f"normal one, carries the uncertainty of a spread estimated from so few runs. A single mean "
        f"('about X', 'above X') gets the t interval, and 'about the same' time a Welch interval on "
        f"log values (a ratio). A comparison is supported when its interval lies entirely on the side "
        f"the homework predicts, contradicted when entirely on the other side, inconclusive when it "
        f"contains zero; 'about the same' needs the interval within the stated margin, 'about X' within "
        f"the stated band. 'Best' needs the best mean and a significant win over every other setting; "
        f"an optimum inside a sweep, significant wins over both endpoints (contradicted when an "
        f"endpoint beats every interior setting significantly); a monotone trend, monotone means and a "
        f"significant difference between the endpoints. Claims use the runs that trained (the outcome "
        f"rule above): where no run of a setting trained, its failed runs; diverged runs never. Each "
        f"setting's 'k of n trained' carries a {pct} Wilson score interval, which stays inside 0-100 % "
        f"at k = 0 and k = n. A verdict holds 'reliably' when every run of every setting involved "
        f"trained, and 'in k of n runs' (or 'in the runs that trained') otherwise. Edge cases: a group "
        f"with fewer than {min_runs} measured runs makes a claim inconclusive by rule; two groups "
        f"whose runs all gave the same number differ by exactly their difference (an interval of width "
        f"zero: decisive unless the difference is zero); equal means are a tie, which decides nothing. "
        f"For epochs, steps and time to the target accuracy, a run that never reached it counts as "
        f"infinitely slow: a setting in which no run reached it loses to one in which every run did, "
        f"and a setting in which only some did is bounded only on the side its runs that reached the "
        f"target can show. A claim whose study was not run is marked 'not run'."
    )


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
    the displayed unit); rows without any run of ours read "not run". With ``numeric=True`` the
    same rows as numbers: key columns, then "<metric>_homework", "_mean", "_std", "_n" (runs
    measured), "_n_runs", "_n_trained", "_diff" (displayed unit, i.e. metric × scale; NaN where
    not run).
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
    return pd.DataFrame(nums if numeric else shown)


def _side_by_side_cell(col: dict, theirs: Any, g: Group) -> tuple[dict, dict]:
    """One homework column of one row: the display strings and the numbers."""
    metric, label = col["metric"], col["label"]
    scale, dg = float(col["scale"]), int(col["digits"])
    theirs = math.nan if theirs is None else float(theirs)
    vals = g.values * scale
    mean = float(vals.mean()) if g.n else math.nan
    std = float(vals.std(ddof=1)) if g.n > 1 and np.isfinite(vals).all() else math.nan
    diff = mean - theirs if g.n else math.nan
    disp = {f"{label} — homework": "—" if math.isnan(theirs) else f"{theirs:.{dg}f}"}
    if g.n_runs == 0:
        disp[f"{label} — ours"] = disp[f"{label} — difference"] = "not run"
    elif g.n == 0:
        disp[f"{label} — ours"] = f"— ({_runs_note(g)})"
        disp[f"{label} — difference"] = "—"
    else:
        spread = "" if math.isnan(std) else f" ± {_num(std, dg)}"
        disp[f"{label} — ours"] = f"{_num(mean, dg)}{spread} ({_runs_note(g)})"
        disp[f"{label} — difference"] = "—" if math.isnan(diff) else _num(diff, dg, signed=True)
    nums = {f"{metric}_homework": theirs, f"{metric}_mean": mean, f"{metric}_std": std,
            f"{metric}_n": g.n, f"{metric}_n_runs": g.n_runs, f"{metric}_n_trained": g.n_trained,
            f"{metric}_diff": diff}
    return disp, nums
