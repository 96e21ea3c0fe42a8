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

Statistics
----------
Every comparison is a percentile bootstrap of a difference of means, each side
resampled independently (numpy Generator seeded from ``seed`` and the claim id, so a
claim's verdict does not depend on the order of the list). The interval is read from
order statistics, never interpolated, so that infinite values stay well defined.

Metrics with "never" semantics (``epochs_to_target``, ``time_to_target_s``): a NaN
means the run never reached the target and counts as +inf. A side with any such run
has an infinite mean (the expected time to target is unbounded); inf - inf is taken
as 0 (both never reached: a tie). Hence an all-never side against an all-finite side
gives an interval of [+inf, +inf], a decisive difference, and two all-never sides tie.

Accuracy metrics of a diverged run whose value is missing count as chance
(``CHANCE_ACC``: every data set here has 10 classes); any other missing value is
dropped and the reason says how many.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml

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
    "final_train_acc": (100.0, " %", " pp", 1),
    "best_test_acc": (100.0, " %", " pp", 1),
    "generalisation_gap": (100.0, " pp", " pp", 1),   # derived: train acc - test acc
    "final_test_loss": (1.0, "", "", 3),
    "final_train_loss": (1.0, "", "", 3),
    "final_running_acc": (100.0, " %", " pp", 1),
    "final_running_loss": (1.0, "", "", 3),
    "first_epoch_running_loss": (1.0, "", "", 3),
    "train_loss_drop": (1.0, "", "", 3),              # derived: first-epoch - final running loss
    "epochs_run": (1.0, " epochs", " epochs", 1),
    "epochs_to_target": (1.0, " epochs", " epochs", 1),
    "time_to_target_s": (1.0, " s", " s", 1),
    "train_time_s": (1.0, " s", " s", 1),
    "mean_epoch_s": (1.0, " s", " s", 2),
    "total_time_s": (1.0, " s", " s", 1),
}
NEVER_METRICS = frozenset({"epochs_to_target", "time_to_target_s"})
ACC_METRICS = frozenset({"final_test_acc", "final_train_acc", "best_test_acc"})
CHANCE_ACC = 0.10

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
}
SELECTOR_FIELDS = ("a", "b", "select", "at", "where")
SELECTOR_RESERVED = ("study", "label")     # selector keys that are not parameters
CLAIM_KEYS = ("id", "homework", "quote", "english", "study", "rule")
_CHOICES = {"expect": ("less", "greater"), "goal": ("min", "max"),
            "direction": ("increasing", "decreasing")}


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
    for key in ("target", "tolerance", "margin", "factor", "above", "below"):
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


def _done(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that trained: the aggregation also writes "no-data" rows for skipped cells."""
    if "status" not in runs.columns:
        return runs
    return runs[runs["status"].astype(str).str.strip().str.lower() != "no-data"]


def _study_runs(runs: pd.DataFrame, study: str) -> pd.DataFrame:
    runs = _done(runs)
    return runs[runs["study"].astype(str) == study]


# --------------------------------------------------------------------------- samples

class _Sample:
    """The values of one metric over a group of runs, with bookkeeping for the reason."""

    def __init__(self, label: str, metric: str, rows: pd.DataFrame):
        self.label, self.metric = label, metric
        vals = _metric_values(rows, metric)
        diverged = (np.array([_is_true(v) for v in rows["diverged"]], dtype=bool)
                    if "diverged" in rows.columns else np.zeros(len(rows), dtype=bool))
        self.n_chance = 0
        if metric in NEVER_METRICS:
            vals = np.where(np.isnan(vals), np.inf, vals)
        elif metric in ACC_METRICS:
            fill = np.isnan(vals) & diverged
            self.n_chance = int(fill.sum())
            vals = np.where(fill, CHANCE_ACC, vals)
        keep = ~np.isnan(vals)
        self.n_dropped = int((~keep).sum())
        self.values = vals[keep]
        self.n_diverged = int(diverged.sum())

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


def _metric_values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    def col(name: str) -> np.ndarray:
        if name not in rows.columns:
            return np.full(len(rows), np.nan)
        return pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)

    if metric == "generalisation_gap" and "final_train_acc" in rows.columns:
        return col("final_train_acc") - col("final_test_acc")
    if metric == "train_loss_drop":
        return col("first_epoch_running_loss") - col("final_running_loss")
    return col(metric)


# --------------------------------------------------------------------------- bootstrap

def _boot_means(x: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    idx = rng.integers(0, len(x), size=(resamples, len(x)))
    with np.errstate(invalid="ignore"):
        return x[idx].mean(axis=1)


def _sub(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """a - b with inf - inf taken as 0 (both never reached the target: a tie)."""
    with np.errstate(invalid="ignore"):
        d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return np.where(np.isnan(d), 0.0, d)


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval from order statistics (no interpolation, so inf is safe)."""
    d = np.sort(draws)
    alpha = (1.0 - level) / 2.0
    lo_i = int(math.floor(alpha * len(d)))
    hi_i = max(int(math.ceil((1.0 - alpha) * len(d))) - 1, lo_i)
    return float(d[lo_i]), float(d[min(hi_i, len(d) - 1)])


def _diff_ci(a: _Sample, b: _Sample, rng: np.random.Generator, resamples: int,
             level: float, factor: float = 1.0, relative: bool = False
             ) -> tuple[float, float, float]:
    """Point estimate and interval of mean(a) - factor*mean(b) (or mean(a)/mean(b) - 1)."""
    da, db = _boot_means(a.values, rng, resamples), _boot_means(b.values, rng, resamples)
    if relative:
        with np.errstate(invalid="ignore", divide="ignore"):
            draws = np.nan_to_num(da / db - 1.0, nan=0.0)
            point = float(np.nan_to_num(a.mean / b.mean - 1.0, nan=0.0))
    else:
        draws = _sub(da, factor * db)
        point = float(_sub(a.mean, factor * b.mean))
    lo, hi = _interval(draws, level)
    return point, lo, hi


def _mean_ci(a: _Sample, rng: np.random.Generator, resamples: int, level: float
             ) -> tuple[float, float]:
    return _interval(_boot_means(a.values, rng, resamples), level)


def _sign(lo: float, hi: float) -> int:
    """+1: interval entirely above 0; -1: entirely below; 0: contains 0."""
    return 1 if lo > 0 else (-1 if hi < 0 else 0)


# --------------------------------------------------------------------------- formatting

def _num(x: float, digits: int, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return ("+" if x > 0 and signed else "" if x > 0 else "−") + "inf"
    s = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return s.replace("-", "−")


def _fmt_sample(s: _Sample) -> str:
    scale, unit, _, dg = METRICS[s.metric]
    if s.n == 0:
        return f"{s.label}: no runs"
    extra = f", {s.n_diverged} diverged" if s.n_diverged else ""
    if s.metric in NEVER_METRICS and s.n_reached < s.n:
        if s.n_reached == 0:
            return f"{s.label}: never reached (0/{s.n} runs{extra})"
        fin = s.values[np.isfinite(s.values)] * scale
        return (f"{s.label}: reached in {s.n_reached}/{s.n} runs "
                f"(those: {_num(float(fin.mean()), dg)}{unit}), counted as never{extra}")
    body = _num(s.mean * scale, dg)
    if not math.isnan(s.std):
        body += f" ± {_num(s.std * scale, dg)}"
    return f"{s.label}: {body}{unit} (n={s.n}{extra})"


def _fmt_diff(metric: str, point: float, lo: float, hi: float, level: float,
              relative: bool = False, what: str = "difference") -> str:
    scale, _, dunit, dg = METRICS[metric]
    if relative:
        scale, dunit, dg = 100.0, " %", 1
    return (f"{what} {_num(point * scale, dg, True)}{dunit}, {level:.0%} interval "
            f"[{_num(lo * scale, dg, True)}, {_num(hi * scale, dg, True)}]")


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


# --------------------------------------------------------------------------- evaluation

def evaluate_claims(claims: list[dict], runs: pd.DataFrame, *, level: float = 0.95,
                    resamples: int = 10000, min_runs: int = 3, seed: int = 0) -> list[dict]:
    """Evaluate every claim on the runs table; one result dict per claim, in order.

    Each result carries the claim's id, homework, quote, english and study, a
    ``verdict`` ("supported" | "contradicted" | "inconclusive" | "not run"), a one
    sentence ``evidence`` with the numbers, a ``reason`` naming the rule, the numeric
    fields ``mean_a, std_a, n_a, mean_b, std_b, n_b, diff, lo, hi`` (raw metric units;
    for multi-group rules: the deciding comparison, NaN where not applicable) and
    ``groups`` (label, mean, std, n per group) and ``comparisons`` (a, b, diff, lo, hi).
    """
    ctx = dict(level=level, resamples=resamples, min_runs=min_runs)
    studies_present = set(_done(runs)["study"].astype(str)) if "study" in runs.columns else set()
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
            rng = np.random.default_rng([seed, zlib.crc32(str(claim["id"]).encode())])
            res.update(_EVALUATORS[rule["kind"]](claim, rule, runs, rng, **ctx))
        results.append(res)
    return results


def _select(claim: dict, runs: pd.DataFrame, selector: dict, metric: str,
            label: str | None = None) -> _Sample:
    rows = _match(_study_runs(runs, selector.get("study", claim["study"])), selector)
    return _Sample(label or _label(selector), metric, rows)


def _too_few(samples: Iterable[_Sample], min_runs: int) -> str | None:
    few = [s for s in samples if s.n < min_runs]
    if not few:
        return None
    what = "; ".join(f"{s.label} has {s.n} run{'s' if s.n != 1 else ''}" for s in few)
    return f"inconclusive by rule: {what}, fewer than the {min_runs} required"


def _group_fields(samples: list[_Sample]) -> list[dict]:
    return [dict(label=s.label, mean=s.mean, std=s.std, n=s.n) for s in samples]


def _ab_fields(a: _Sample, b: _Sample, diff: float = math.nan, lo: float = math.nan,
               hi: float = math.nan) -> dict:
    return dict(mean_a=a.mean, std_a=a.std, n_a=a.n, mean_b=b.mean, std_b=b.std, n_b=b.n,
                diff=diff, lo=lo, hi=hi)


def _notes(samples: Iterable[_Sample]) -> str:
    notes = []
    for s in samples:
        if s.n_chance:
            notes.append(f"{s.n_chance} diverged run(s) of {s.label} scored at chance "
                         f"({CHANCE_ACC:.0%})")
        if s.n_dropped:
            notes.append(f"{s.n_dropped} run(s) of {s.label} without a value dropped")
    return ("; " + "; ".join(notes)) if notes else ""


def _eval_compare(claim, rule, runs, rng, *, level, resamples, min_runs) -> dict:
    metric, expect = rule["metric"], rule["expect"]
    factor = float(rule.get("factor", 1.0))
    a = _select(claim, runs, rule["a"], metric)
    b = _select(claim, runs, rule["b"], metric)
    out = dict(groups=_group_fields([a, b]))
    few = _too_few([a, b], min_runs)
    if few:
        out.update(_ab_fields(a, b), verdict="inconclusive",
                   evidence=f"{_fmt_sample(a)} vs {_fmt_sample(b)}", reason=few + _notes([a, b]))
        return out
    point, lo, hi = _diff_ci(a, b, rng, resamples, level, factor)
    want = -1 if expect == "less" else 1
    sign = _sign(lo, hi)
    verdict = ("supported" if sign == want else "contradicted" if sign == -want
               else "inconclusive")
    what = "difference" if factor == 1 else f"difference to {factor:g} × {b.label}"
    rel = "<" if expect == "less" else ">"
    expected = (f"{a.label} {rel} {b.label}" if factor == 1
                else f"{a.label} {rel} {factor:g} × {b.label}")
    where = {1: "lies entirely above 0", -1: "lies entirely below 0", 0: "contains 0"}[sign]
    out.update(_ab_fields(a, b, point, lo, hi), verdict=verdict,
               comparisons=[dict(a=a.label, b=b.label, diff=point, lo=lo, hi=hi)],
               evidence=f"{_fmt_sample(a)} vs {_fmt_sample(b)}; "
                        f"{_fmt_diff(metric, point, lo, hi, level, what=what)}",
               reason=f"{verdict}: expected {expected}; the {level:.0%} bootstrap interval "
                      f"of the {what} {where}" + _notes([a, b]))
    return out


def _eval_compare_each(claim, rule, runs, rng, *, level, resamples, min_runs) -> dict:
    over = rule["over"]
    values = rule.get("values")
    if values is None:
        col = _study_runs(runs, claim["study"]).get(over, pd.Series(dtype=object))
        values = sorted({_norm(v) for v in col if _norm(v) is not None}, key=_sort_key)
    parts, comps, verdicts, groups = [], [], [], []
    first = None
    for v in values:
        sub = {k: rule[k] for k in ("metric", "expect")}
        sub.update(kind="compare", a={**rule["a"], over: v}, b={**rule["b"], over: v})
        r = _eval_compare(claim, sub, runs, rng, level=level, resamples=resamples,
                          min_runs=min_runs)
        verdicts.append(r["verdict"])
        groups += r.get("groups", [])
        comps += r.get("comparisons", [])
        parts.append(f"at {_SHORT.get(over, over)} {_fmt_value(v)}: {r['evidence']} "
                     f"({r['verdict']})")
        # the deciding comparison: the first contradicted, else first inconclusive
        rank = {"contradicted": 0, "supported": 2}.get(r["verdict"], 1)
        if first is None or rank < first[0]:
            first = (rank, r)
    if not values:
        return dict(verdict="inconclusive", evidence=f"no values of {over}",
                    reason=f"inconclusive: the study has no values of {over!r}")
    verdict = ("contradicted" if "contradicted" in verdicts else
               "supported" if all(v == "supported" for v in verdicts) else "inconclusive")
    out = {k: first[1].get(k) for k in ("mean_a", "std_a", "n_a", "mean_b", "std_b", "n_b",
                                   "diff", "lo", "hi")}
    out.update(verdict=verdict, groups=groups, comparisons=comps, evidence="; ".join(parts),
               reason=f"{verdict}: the comparison must hold at every {over} "
                      f"(supported only if each is supported, contradicted if any is "
                      f"contradicted); per value: {', '.join(verdicts)}")
    return out


def _eval_equivalent(claim, rule, runs, rng, *, level, resamples, min_runs) -> dict:
    metric, margin = rule["metric"], float(rule["margin"])
    relative = bool(rule.get("relative", False))
    a = _select(claim, runs, rule["a"], metric)
    b = _select(claim, runs, rule["b"], metric)
    out = dict(groups=_group_fields([a, b]))
    few = _too_few([a, b], min_runs)
    if few:
        out.update(_ab_fields(a, b), verdict="inconclusive",
                   evidence=f"{_fmt_sample(a)} vs {_fmt_sample(b)}", reason=few + _notes([a, b]))
        return out
    point, lo, hi = _diff_ci(a, b, rng, resamples, level, relative=relative)
    if -margin <= lo and hi <= margin:
        verdict, where = "supported", "lies within"
    elif lo > margin or hi < -margin:
        verdict, where = "contradicted", "lies entirely outside"
    else:
        verdict, where = "inconclusive", "straddles the edge of"
    if relative:
        m_txt, what = f"±{margin:.0%}", "relative difference"
    else:
        scale, _, dunit, dg = METRICS[metric]
        m_txt, what = f"±{_num(margin * scale, dg)}{dunit}", "difference"
    out.update(_ab_fields(a, b, point, lo, hi), verdict=verdict,
               comparisons=[dict(a=a.label, b=b.label, diff=point, lo=lo, hi=hi)],
               evidence=f"{_fmt_sample(a)} vs {_fmt_sample(b)}; "
                        f"{_fmt_diff(metric, point, lo, hi, level, relative, what)}",
               reason=f"{verdict}: 'about the same' means a {what} within {m_txt}; the "
                      f"{level:.0%} bootstrap interval {where} that margin" + _notes([a, b]))
    return out


def _eval_near(claim, rule, runs, rng, *, level, resamples, min_runs) -> dict:
    metric = rule["metric"]
    target, tol = float(rule["target"]), float(rule["tolerance"])
    a = _select(claim, runs, rule["select"], metric)
    scale, unit, _, dg = METRICS[metric]
    band = f"{_num(target * scale, dg)} ± {_num(tol * scale, dg)}{unit}"
    out = dict(groups=_group_fields([a]), mean_a=a.mean, std_a=a.std, n_a=a.n)
    few = _too_few([a], min_runs)
    if few:
        out.update(verdict="inconclusive", evidence=f"{_fmt_sample(a)}; expected {band}",
                   reason=few + _notes([a]))
        return out
    lo, hi = _mean_ci(a, rng, resamples, level)
    if target - tol <= lo and hi <= target + tol:
        verdict, where = "supported", "lies inside"
    elif hi < target - tol or lo > target + tol:
        verdict, where = "contradicted", "lies entirely outside"
    else:
        verdict, where = "inconclusive", "overlaps the edge of"
    out.update(lo=lo, hi=hi, diff=a.mean - target, verdict=verdict,
               evidence=f"{_fmt_sample(a)}; {level:.0%} interval of the mean "
                        f"[{_num(lo * scale, dg)}, {_num(hi * scale, dg)}]{unit}; "
                        f"expected {band}",
               reason=f"{verdict}: the {level:.0%} bootstrap interval of the mean {where} "
                      f"the band {band}" + _notes([a]))
    return out


def _eval_threshold(claim, rule, runs, rng, *, level, resamples, min_runs) -> dict:
    metric = rule["metric"]
    above = "above" in rule
    bound = float(rule["above"] if above else rule["below"])
    a = _select(claim, runs, rule["select"], metric)
    scale, unit, _, dg = METRICS[metric]
    txt = f"{'above' if above else 'below'} {_num(bound * scale, dg)}{unit}"
    out = dict(groups=_group_fields([a]), mean_a=a.mean, std_a=a.std, n_a=a.n)
    few = _too_few([a], min_runs)
    if few:
        out.update(verdict="inconclusive", evidence=f"{_fmt_sample(a)}; expected {txt}",
                   reason=few + _notes([a]))
        return out
    lo, hi = _mean_ci(a, rng, resamples, level)
    sign = _sign(lo - bound, hi - bound)
    want = 1 if above else -1
    verdict = ("supported" if sign == want else "contradicted" if sign == -want
               else "inconclusive")
    where = {1: "lies entirely above", -1: "lies entirely below", 0: "contains"}[sign]
    out.update(lo=lo, hi=hi, diff=a.mean - bound, verdict=verdict,
               evidence=f"{_fmt_sample(a)}; {level:.0%} interval of the mean "
                        f"[{_num(lo * scale, dg)}, {_num(hi * scale, dg)}]{unit}; expected {txt}",
               reason=f"{verdict}: expected the mean {txt}; its {level:.0%} bootstrap "
                      f"interval {where} {_num(bound * scale, dg)}{unit}" + _notes([a]))
    return out


def _eval_never(claim, rule, runs, rng, *, level, resamples, min_runs) -> dict:
    metric = rule.get("metric", "epochs_to_target")
    a = _select(claim, runs, rule["select"], metric)
    rows = _match(_study_runs(runs, rule["select"].get("study", claim["study"])), rule["select"])
    epochs = pd.to_numeric(rows.get("epochs_run", pd.Series(dtype=float)), errors="coerce")
    within = f" within {int(epochs.max())} epochs" if epochs.notna().any() else ""
    out = dict(groups=_group_fields([a]), mean_a=a.mean, std_a=a.std, n_a=a.n,
               evidence=_fmt_sample(a) + within)
    few = _too_few([a], min_runs)
    if few:
        return {**out, "verdict": "inconclusive", "reason": few}
    if a.n_reached == 0:
        verdict = "supported"
    elif a.n_reached == a.n:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return {**out, "verdict": verdict,
            "reason": f"{verdict}: the claim holds if no run reaches the target{within} and "
                      f"fails if every run does; {a.n_reached} of {a.n} reached it"}


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, float) else (1, 0.0, str(v))


def _sweep(claim, rule, runs, metric) -> list[tuple[Any, _Sample]]:
    """Groups of the study's runs (after ``where``) by the ordered ``over`` value."""
    over = rule["over"]
    rows = _match(_study_runs(runs, claim["study"]), rule.get("where", {}))
    if over not in rows.columns:
        return []
    keys = [_norm(v) for v in rows[over]]
    values = sorted({k for k in keys if k is not None}, key=_sort_key)
    name = _SHORT.get(over, over)
    return [(v, _Sample(f"{name} {_fmt_value(v)}", metric,
                        rows[[k == v for k in keys]])) for v in values]


def _better(a: _Sample, b: _Sample, goal: str, rng, resamples, level) -> dict:
    """Compare a with b; ``sig`` is +1 if a is significantly better, -1 if worse."""
    point, lo, hi = _diff_ci(a, b, rng, resamples, level)
    sign = _sign(lo, hi) * (1 if goal == "max" else -1)
    return dict(a=a.label, b=b.label, diff=point, lo=lo, hi=hi, sig=sign,
                _a=a, _b=b)


def _best_index(samples: list[_Sample], goal: str) -> int:
    means = np.array([s.mean for s in samples])
    return int(np.argmax(means) if goal == "max" else np.argmin(means))


def _decider(comps: list[dict], goal: str) -> dict:
    # the weakest comparison for the winner: the bound closest to (or past) zero
    return min(comps, key=lambda c: (c["lo"] if goal == "max" else -c["hi"]))


def _finish(out: dict, comps: list[dict], decider: dict | None) -> dict:
    out["comparisons"] = [{k: v for k, v in c.items() if not k.startswith("_")} for c in comps]
    if decider is not None:
        out.update(_ab_fields(decider["_a"], decider["_b"], decider["diff"], decider["lo"],
                              decider["hi"]))
    return out


def _comps_text(comps: list[dict], metric: str, level: float) -> str:
    return "; ".join(f"{c['a']} − {c['b']}: "
                     f"{_fmt_diff(metric, c['diff'], c['lo'], c['hi'], level)}" for c in comps)


def _eval_best(claim, rule, runs, rng, *, level, resamples, min_runs) -> dict:
    metric, goal = rule["metric"], rule["goal"]
    rows = _match(_study_runs(runs, claim["study"]), rule.get("where", {}))
    at_rows = _match(rows, rule["at"])
    at = _Sample(_label(rule["at"]), metric, at_rows)
    rest = rows.drop(index=at_rows.index)
    # competitors: one group per combination of the parameters that vary in the rest
    # labelled in the order of the `at` selector, so "BN, lr 0.5" reads like its rivals
    order = [k for k in rule["at"] if k in PARAM_COLUMNS] + list(PARAM_COLUMNS)
    varying = [c for c in dict.fromkeys(order) if c in rows.columns
               and len({_norm(v) for v in rows[c]}) > 1]
    others: list[_Sample] = []
    if len(rest) and varying:
        keys = [tuple(_norm(r[c]) for c in varying) for _, r in rest.iterrows()]
        for key in sorted(set(keys), key=lambda k: tuple(_sort_key(x) for x in k)):
            sel = {c: rest[c].iloc[keys.index(key)] for c in varying}
            others.append(_Sample(_label(sel), metric, rest[[k == key for k in keys]]))
    samples = [at] + others
    word = "highest" if goal == "max" else "lowest"
    out = dict(groups=_group_fields(samples))
    listing = "; ".join(_fmt_sample(s) for s in samples)
    if not others:
        return {**out, "verdict": "inconclusive", "evidence": listing,
                "reason": "inconclusive: nothing to compare with"}
    few = _too_few(samples, min_runs)
    if few:
        return {**out, **_ab_fields(at, others[0]), "verdict": "inconclusive",
                "evidence": listing, "reason": few + _notes(samples)}
    comps = [_better(at, o, goal, rng, resamples, level) for o in others]
    is_best = _best_index(samples, goal) == 0
    beaten_by = [c["b"] for c in comps if c["sig"] == -1]
    if is_best and all(c["sig"] == 1 for c in comps):
        verdict, why = "supported", f"{at.label} has the {word} mean and is significantly " \
                                    f"better than every other setting"
    elif beaten_by:
        verdict, why = "contradicted", f"{', '.join(beaten_by)} significantly better " \
                                       f"than {at.label}"
    else:
        verdict, why = "inconclusive", (f"{at.label} is not significantly better than every "
                                        f"other setting" if is_best else
                                        f"{at.label} does not have the {word} mean, but no "
                                        f"setting is significantly better")
    out.update(verdict=verdict, evidence=f"{listing}; {_comps_text(comps, metric, level)}",
               reason=f"{verdict}: {why} ({level:.0%} bootstrap intervals of the "
                      f"differences)" + _notes(samples))
    return _finish(out, comps, _decider(comps, goal))


def _sweep_start(claim, rule, runs, min_runs: int, need: int, what: str):
    """The common start of the sweep rules: the samples along `over`, the output skeleton, a
    listing for the evidence, and an early 'inconclusive' result when there is too little data."""
    samples = [s for _, s in _sweep(claim, rule, runs, rule["metric"])]
    out = dict(groups=_group_fields(samples))
    listing = "; ".join(_fmt_sample(s) for s in samples)
    early = None
    if len(samples) < need:
        early = {**out, "verdict": "inconclusive", "evidence": listing or "no runs",
                 "reason": f"inconclusive: {what} needs at least {need} values of "
                           f"{rule['over']}, found {len(samples)}"}
    elif few := _too_few(samples, min_runs):
        early = {**out, "verdict": "inconclusive", "evidence": listing, "reason": few + _notes(samples)}
    return samples, out, listing, early


def _eval_interior(claim, rule, runs, rng, *, level, resamples, min_runs) -> dict:
    metric, goal, over = rule["metric"], rule["goal"], rule["over"]
    samples, out, listing, early = _sweep_start(claim, rule, runs, min_runs, 3, "an interior optimum")
    if early:
        return early
    best = _best_index(samples, goal)
    if goal == "min" and math.isinf(samples[best].mean):
        return {**out, "verdict": "inconclusive", "evidence": listing,
                "reason": "inconclusive: no setting reached the target in every run"}
    word = "highest" if goal == "max" else "lowest"
    top = samples[best]
    if 0 < best < len(samples) - 1:
        comps = [_better(top, samples[i], goal, rng, resamples, level)
                 for i in (0, len(samples) - 1)]
        ok = all(c["sig"] == 1 for c in comps)
        verdict = "supported" if ok else "inconclusive"
        why = (f"the {word} mean is at {top.label}, inside the sweep, and it is "
               f"{'' if ok else 'not '}significantly better than both endpoints")
    else:
        comps = [_better(top, samples[i], goal, rng, resamples, level)
                 for i in range(1, len(samples) - 1)]
        ok = all(c["sig"] == 1 for c in comps)
        verdict = "contradicted" if ok else "inconclusive"
        why = (f"the {word} mean is at the endpoint {top.label}, and it is "
               f"{'' if ok else 'not '}significantly better than every interior setting")
    never = (" A setting whose runs did not all reach the target counts as never (+inf)."
             if metric in NEVER_METRICS else "")
    out.update(verdict=verdict, evidence=f"{listing}; {_comps_text(comps, metric, level)}",
               reason=f"{verdict}: {why} ({level:.0%} bootstrap intervals).{never}"
                      + _notes(samples))
    return _finish(out, comps, _decider(comps, goal))


def _eval_monotonic(claim, rule, runs, rng, *, level, resamples, min_runs) -> dict:
    metric, over, direction = rule["metric"], rule["over"], rule["direction"]
    samples, out, listing, early = _sweep_start(claim, rule, runs, min_runs, 2, "a trend")
    if early:
        return early
    means = [s.mean for s in samples]
    up = direction == "increasing"
    # non-strict, so that two settings that never reached the target (inf, inf) tie
    mono = all((m2 >= m1) if up else (m2 <= m1) for m1, m2 in zip(means, means[1:]))
    last, first = samples[-1], samples[0]
    point, lo, hi = _diff_ci(last, first, rng, resamples, level)
    sign = _sign(lo, hi) * (1 if up else -1)
    if mono and sign == 1:
        verdict, why = "supported", "the means are monotone and the endpoint difference " \
                                    "is significant"
    elif sign == -1:
        verdict, why = "contradicted", "the endpoint difference is significant in the " \
                                       "opposite direction"
    else:
        verdict, why = "inconclusive", ("the endpoint difference is not significant"
                                        if mono else "the means are not monotone")
        if not mono and sign == 1:
            why = "the endpoint difference is significant but the means are not monotone"
    never = (" Runs that never reached the target count as +inf."
             if metric in NEVER_METRICS else "")
    comp = dict(a=last.label, b=first.label, diff=point, lo=lo, hi=hi)
    out.update(_ab_fields(last, first, point, lo, hi), verdict=verdict, comparisons=[comp],
               evidence=f"{listing}; {last.label} − {first.label}: "
                        f"{_fmt_diff(metric, point, lo, hi, level)}",
               reason=f"{verdict}: expected {metric} {direction} in {over}; {why} "
                      f"({level:.0%} bootstrap interval).{never}" + _notes(samples))
    return out


_EVALUATORS = {
    "compare": _eval_compare,
    "compare_each": _eval_compare_each,
    "equivalent": _eval_equivalent,
    "near": _eval_near,
    "threshold": _eval_threshold,
    "best": _eval_best,
    "interior_optimum": _eval_interior,
    "monotonic": _eval_monotonic,
    "never_reaches": _eval_never,
}


def verdict_rule_text(level: float, resamples: int, min_runs: int) -> str:
    """One paragraph for the report's methods section stating the verdict rule."""
    pct = f"{level:.0%}"
    return (
        f"Each homework conclusion is stated as a rule over the runs and judged on a "
        f"two-sided {pct} percentile bootstrap interval ({resamples:,} resamples, each "
        f"group of runs resampled independently, fixed seed). A comparison of two "
        f"settings is supported when the interval of the difference of their means lies "
        f"entirely on the side the homework predicts, contradicted when it lies entirely "
        f"on the other side, and inconclusive when it contains zero. 'About the same' "
        f"claims are supported when the interval lies within a stated margin, 'about X' "
        f"claims when the interval of the mean lies within the stated band (contradicted "
        f"when entirely outside it). A claim that one setting is the best needs the best "
        f"mean and a significant win over every other setting; an optimum inside a sweep "
        f"needs a significant win over both endpoints (contradicted when an endpoint wins "
        f"significantly over every interior setting); a monotone trend needs monotone "
        f"means and a significant difference between the endpoints. A group with fewer "
        f"than {min_runs} runs makes a claim inconclusive by rule, and a claim whose study "
        f"was not run is marked 'not run'. For epochs and time to the target accuracy, a "
        f"run that never reached the target counts as infinitely slow, so a setting in "
        f"which no run reached it loses to any setting in which every run did. A diverged "
        f"run without an accuracy counts at chance ({CHANCE_ACC:.0%})."
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

    Default: a DataFrame of display strings with the key columns, then for each table
    column "<label> — homework", "<label> — ours" ("mean ± std (n=k)", std ddof=1) and
    "<label> — difference" (our mean − theirs, in the displayed unit); rows without any
    run of ours read "not run". With ``numeric=True`` the same rows as numbers: key
    columns, then "<metric>_homework", "_mean", "_std", "_n", "_diff" (displayed unit,
    i.e. metric × scale; NaN where not run).
    """
    study_rows = (_study_runs(runs, table["study"]) if "study" in runs.columns
                  else runs.iloc[0:0])
    shown, nums = [], []
    for row in table["rows"]:
        sel = {k: row[k] for k in table["key"]}
        rows = _match(study_rows, sel)
        disp: dict[str, Any] = {k: _fmt_value(row[k]) for k in table["key"]}
        num: dict[str, Any] = dict(sel)
        for col in table["columns"]:
            metric, label = col["metric"], col["label"]
            scale, dg = float(col["scale"]), int(col["digits"])
            theirs = row.get(metric)
            theirs = math.nan if theirs is None else float(theirs)
            s = _Sample(label, metric, rows)
            vals = s.values * scale
            mean = float(vals.mean()) if s.n else math.nan
            std = float(vals.std(ddof=1)) if s.n > 1 and np.isfinite(vals).all() else math.nan
            diff = mean - theirs if s.n else math.nan
            disp[f"{label} — homework"] = "—" if math.isnan(theirs) else f"{theirs:.{dg}f}"
            if s.n == 0:
                disp[f"{label} — ours"] = disp[f"{label} — difference"] = "not run"
            else:
                extra = f", {s.n_diverged} diverged" if s.n_diverged else ""
                spread = "" if math.isnan(std) else f" ± {_num(std, dg)}"
                disp[f"{label} — ours"] = f"{_num(mean, dg)}{spread} (n={s.n}{extra})"
                disp[f"{label} — difference"] = ("—" if math.isnan(diff)
                                                  else _num(diff, dg, signed=True))
            num.update({f"{metric}_homework": theirs, f"{metric}_mean": mean,
                        f"{metric}_std": std, f"{metric}_n": s.n, f"{metric}_diff": diff})
        shown.append(disp)
        nums.append(num)
    return pd.DataFrame(nums if numeric else shown)
