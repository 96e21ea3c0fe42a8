"""Which runs a claim uses: the parameters a runs table may carry, the metrics a claim may name,
matching selectors to rows, and a setting's runs as one `Group`.

On a metric where a run that did not train is a worse result (accuracies, losses, epochs, steps or
time to the target: ``OUTCOME_METRICS``) a claim counts every run: a failed run at the accuracy it
ended with, a diverged run as worse than any finished one (-inf accuracy, +inf loss), and on a
to-target metric every run that did not train as never reaching the target (+inf), even if it
touched the target before it fell back. On the other metrics (times, the generalisation gap, ...) a
run's outcome says nothing about the number, and a group holds what the outcome rule of
`aggregate` measures: the runs that trained, or where none did its failed runs; diverged runs never."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from batchwise.analysis import stats
from batchwise.results.aggregate import measured_runs, outcome as run_outcome
from batchwise.analysis.stats import Interval
from .timing import log_terms, timing_terms

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
    "epochs_to_goal": (1.0, " epochs", " epochs", 0),
    "time_to_goal_s": (1.0, " s", " s", 1),
    "train_time_s": (1.0, " s", " s", 1),
    "eval_time_s": (1.0, " s", " s", 1),
    "mean_epoch_s": (1.0, " s", " s", 2),
    "total_time_s": (1.0, " s", " s", 1),
    "noise_scale": (1.0, "", "", 0),
}
# To-target metrics: a run that never reached the target has no value and counts as +inf.
NEVER_METRICS = frozenset({"epochs_to_target", "steps_to_target", "examples_to_target",
                           "time_to_target_s", "epochs_to_goal", "time_to_goal_s"})
# Metrics with a better end, on which a run that did not train is evidence (a worse result), never a
# missing one: the claims count every run on them (see the module docstring).
HIGHER_BETTER = frozenset({"final_test_acc", "final_train_acc", "final_running_acc"})
LOWER_BETTER = frozenset({"final_test_loss", "final_train_loss", "final_running_loss"})
OUTCOME_METRICS = HIGHER_BETTER | LOWER_BETTER | NEVER_METRICS


SELECTOR_FIELDS = ("a", "b", "select", "at", "where")
SELECTOR_RESERVED = ("study", "label")     # selector keys that are not parameters
FAILURE_MARGIN = 0.02  # only for a runs table without `outcome` (written before the outcome rule)


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

    ``Group.of``: ``values`` come from the runs ``aggregate.measured_runs`` picks (``basis``:
    "trained", or "failed" where none trained; "none" where every run diverged), as the tables show
    them; for a to-target metric a measured run without a value never reached the target and is +inf.
    ``Group.judged`` (the claims): on ``OUTCOME_METRICS`` every run counts (``basis`` "all", see the
    module docstring), the others as ``Group.of``. ``outcomes`` holds each value's run outcome.
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
    timing: str = "none"   # time metrics: "wall", "bursts" or "single" (see claims.timing)
    timing_terms: tuple = ()   # (variance, df) of the mean's shared timing error, per setting
    outcomes: tuple = ()       # the outcome of the run behind each value

    @classmethod
    def of(cls, label: str, metric: str, rows: pd.DataFrame, every_run: bool = False) -> "Group":
        tally = rows["outcome"].value_counts()
        counts = {f"n_{o}": int(tally.get(o, 0)) for o in ("trained", "failed", "diverged")}
        if every_run and metric in OUTCOME_METRICS:
            chosen, basis = rows[rows["outcome"].isin(("trained", "failed", "diverged"))], "all"
        else:
            chosen, basis = measured_runs(rows)
        vals = _metric_values(chosen, metric)
        outcome = chosen["outcome"].astype(str).to_numpy()
        if metric in NEVER_METRICS:
            # a run that did not train never reached the target, whatever it touched on the way
            vals = np.where(np.isnan(vals) | (basis == "all") & (outcome != "trained"), np.inf, vals)
        elif basis == "all":   # a diverged run: worse than any finished one
            vals = np.where(outcome == "diverged", -np.inf if metric in HIGHER_BETTER else np.inf, vals)
        keep = ~np.isnan(vals)
        # sorted (outcomes with them): a group's numbers do not depend on the order its runs are listed in
        order = np.argsort(vals[keep], kind="stable")
        timing, terms = timing_terms(chosen[keep], metric, vals[keep])
        return cls(label, metric, vals[keep][order], n_runs=len(rows), basis=basis,
                   n_missing=int((~keep).sum()), timing=timing, timing_terms=tuple(terms),
                   outcomes=tuple(outcome[keep][order]), **counts)

    @classmethod
    def judged(cls, label: str, metric: str, rows: pd.DataFrame) -> "Group":
        """The group a claim judges: every run on ``OUTCOME_METRICS``, else as ``Group.of``."""
        return cls.of(label, metric, rows, every_run=True)

    @property
    def timing_se(self) -> float:
        """The standard error of the mean's shared timing error (0 without one)."""
        return math.sqrt(sum(v for v, _ in self.timing_terms))

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
    def mixed(self) -> bool:
        """Its values come from runs of more than one outcome (e.g. 97 % runs that trained and 11 %
        runs that failed): two kinds of run, which a mean and a spread describe badly."""
        return len(set(self.outcomes)) > 1

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
    return Group.judged(_label(selector), metric, rows)


def _sweep(claim: dict, rule: dict, runs: pd.DataFrame) -> list[Group]:
    """Groups of the study's runs (after ``where``) by the ordered ``over`` value."""
    over = rule["over"]
    rows = _match(_study_runs(runs, claim["study"]), rule.get("where", {}))
    if over not in rows.columns:
        return []
    keys = [_norm(v) for v in rows[over]]
    values = sorted({k for k in keys if k is not None}, key=_sort_key)
    name = _SHORT.get(over, over)
    return [Group.judged(f"{name} {_fmt_value(v)}", rule["metric"], rows[[k == v for k in keys]])
            for v in values]


def _difference(a: Group, b: Group, level: float, factor: float = 1.0,
                relative: bool = False) -> Interval:
    """The interval of mean(a) - factor * mean(b) (relative: a / b - 1) by the rules of `stats`, with
    each group's shared timing error as a further variance term (claims.timing). Where a group mixes
    runs of different outcomes on an accuracy or a loss, the exact rank-sum interval of the shift
    (stats.rank_shift_interval). A diverged run (-inf accuracy, +inf loss) or a never-reached target
    (+inf) can only make its side worse: stats.censored_difference keeps what it cannot move."""
    if relative:
        extra = log_terms(list(a.timing_terms), a.values) + log_terms(list(b.timing_terms), b.values)
        return stats.ratio_interval(a.values, b.values, level, extra)
    if a.metric in HIGHER_BETTER | LOWER_BETTER and (a.mixed or b.mixed):
        return stats.rank_shift_interval(a.values, factor * b.values, level)
    extra = list(a.timing_terms) + [(factor ** 2 * v, d) for v, d in b.timing_terms]
    event = "reached the target" if a.metric in NEVER_METRICS else "finished"
    if np.isneginf(a.values).any() or np.isneginf(b.values).any():   # diverged, on an accuracy
        iv = stats.censored_difference(-a.values, -b.values, level, factor, extra, event)
        return Interval(-iv.estimate, -iv.hi, -iv.lo, iv.df, iv.method)
    return stats.censored_difference(a.values, b.values, level, factor, extra, event)


def _mean(a: Group, level: float) -> Interval:
    """The interval of one group's mean (stats.censored_mean) with its shared timing error; diverged
    runs on an accuracy (-inf) as never-reached ones, mirrored."""
    if np.isneginf(a.values).any():
        iv = stats.censored_mean(-a.values, level, list(a.timing_terms))
        return Interval(-iv.estimate, -iv.hi, -iv.lo, iv.df, iv.method)
    return stats.censored_mean(a.values, level, list(a.timing_terms))


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


@dataclass(frozen=True)
class Settings:
    """What every evaluator needs besides the claim: the interval level, the runs a group needs, and
    each study's grid keys (from the config; None: not given)."""

    level: float = 0.95
    min_runs: int = 3
    grid_keys: Mapping[str, tuple[str, ...]] | None = None
