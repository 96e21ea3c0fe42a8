"""Collect a study's per-cell files into tidy tables: runs, summary (mean, std, n over seeds), curves.

The outcome rule, used by tables, figures and claims alike (`outcome` in runs.csv):
  diverged  the loss or the logits became non-finite; the run's accuracy, loss and time are not
            measurements and are left empty;
  failed    it finished, but its final test accuracy is below chance + `failure_margin`;
  trained   every other finished run.
Means are over the trained runs of a setting; where none trained, over its failed runs (and the
summary says which, in `basis`). Diverged runs never enter a mean.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from pathlib import Path

import pandas as pd

from batchwise.config import RUN_METRICS
from batchwise.provenance import device_type

CHANCE = 0.1  # every data set here has 10 balanced classes
OUTCOMES = ("trained", "failed", "diverged")


def outcome(metrics: dict, failure_margin: float) -> str:
    """A run's outcome by the rule in this module's docstring (`no-data` where it never ran)."""
    if metrics["status"] == "no-data":
        return "no-data"
    if metrics.get("diverged"):
        return "diverged"
    threshold = round(CHANCE + failure_margin, 9)  # 0.1 + 0.02 is 0.12000000000000001 in binary
    return "failed" if metrics["final_test_acc"] < threshold else "trained"


def outcome_rule_text(failure_margin: float) -> str:
    """The outcome rule in words, as the report states it (once) for tables, figures and claims."""
    return (f"A run diverged when its loss or its logits became NaN or infinite; it stops at the end of that "
            f"epoch, and its accuracy, loss and time are not measurements: they enter no mean, figure line or "
            f"claim. A run failed when it finished below chance + {100 * failure_margin:g} points of test "
            f"accuracy ({100 * (CHANCE + failure_margin):g} % for 10 classes); every other run trained. Tables "
            f"say 'k of n trained'; means and bands use the runs that trained, or, for a setting where "
            f"none did, its failed runs (their accuracy is real, e.g. a collapsed model). Claims on an accuracy, "
            f"a loss or a time to the target count every run, a run that did not train as a worse result (the "
            f"verdict rule). Figures stop a diverged run's curve at its last finite epoch and mark it with ×.")


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


TIME_METRICS = ("train_time_s", "eval_time_s", "total_time_s", "mean_epoch_s", "time_to_target_s", "time_to_goal_s")
TIME_BASIS_TEXT = "compute time, measured alone: s/step x steps + evaluation"


def timed_alone(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A study's completed runs, and how many of them have the timing pass's compute times."""
    done = runs[runs["status"] == "ok"]
    return done, int((done["time_basis"] == "solo").sum()) if "time_basis" in done else 0


def time_label(label: str, runs: pd.DataFrame | None) -> str:
    """A table column's or figure axis's label that names the times it holds: "compute time" where every
    completed run has the timing pass's, "wall time" where none has, plain "time" where some have."""
    if runs is None or "compute time" not in label:
        return label
    done, solo = timed_alone(runs)
    if not len(done) or solo == len(done):
        return label
    return label.replace("compute time", "wall time" if solo == 0 else "time")


def step_mix(n_steps: int, steps_per_epoch: int, has_remainder: bool, warmup_steps: int) -> dict[str, int]:
    """How many of a run's first `n_steps` steps were of each kind the timing pass times: full-batch
    and remainder steps (the last step of each epoch, where the batch does not divide the images),
    and, among the first `warmup_steps`, the eager warm-up ones. Epochs start at step 0, so the
    remainder steps are those numbered steps_per_epoch - 1 (mod steps_per_epoch)."""
    def split(n: int) -> tuple[int, int]:
        rest = n // steps_per_epoch if has_remainder else 0
        return n - rest, rest
    warm_full, warm_rest = split(min(warmup_steps, n_steps))
    full, rest = split(n_steps)
    return {"step": full - warm_full, "remainder": rest - warm_rest,
            "eager_step": warm_full, "eager_remainder": warm_rest}


def mid_epoch_checks(m: dict) -> int:
    """The test-set evaluations a run made between steps (target_checks_per_epoch > 1): after every
    `ceil(steps / checks)` steps of an epoch but its last, until the target was first reached."""
    p = m["spec"]["params"]
    if not p.get("target_acc"):
        return 0
    steps = m["steps_per_epoch"]
    every = math.ceil(steps / p.get("target_checks_per_epoch", 1))
    per_epoch = (steps - 1) // every
    if m.get("epochs_to_target") is None:
        return m["epochs_run"] * per_epoch
    into_last = m["steps_to_target"] - (m["epochs_to_target"] - 1) * steps  # steps into the epoch it was reached in
    return (m["epochs_to_target"] - 1) * per_epoch + min(into_last // every, per_epoch)


def checks_read(m: dict) -> float:
    """The mid-epoch checks of a run in test sets read: the images its checks read over the test set's
    size where it recorded them, else `mid_epoch_checks` (each check read the whole test set)."""
    if m.get("check_images") is not None and m.get("test_images"):
        return m["check_images"] / m["test_images"]
    return mid_epoch_checks(m)


def solo_times(m: dict, timing: dict) -> dict:
    """A run's compute times from its setting's solo timing record (`timing.record`), each with its
    standard error from the spread of the timing bursts.

    Each burst b gives a time: full steps x step_s[b] + remainder steps x remainder_s[b] + eager
    warm-up steps x eager_step_s[b] (+ eager remainder steps) for training; epochs x (eval_test_s[b] +
    eval_train_s[b]) + mid-epoch target checks x eval_test_s[b] for evaluation, a check counted as the
    share of the test set it read where the run recorded it (`check_images`: a CPU's check stops once
    its errors decide it). A time is the mean over
    the bursts and its `_se` their standard deviation / sqrt(bursts): the uncertainty of the timing,
    which every run of the setting shares. Counts are what the run did: steps_run, epochs_run, its
    checks; time to target counts the steps up to the target, without evaluation; time per epoch is
    one epoch's steps after warm-up."""
    steps, per_epoch = m["steps_per_epoch"], m["images_per_epoch"]
    has_remainder = per_epoch % m["spec"]["params"]["batch_size"] != 0
    warmup = m.get("warmup_steps") or 0

    def step_time(n_steps: int) -> list[float]:
        total = [0.0] * len(timing["step_s_bursts"])
        for kind, count in step_mix(n_steps, steps, has_remainder, warmup).items():
            if count:
                if f"{kind}_s_bursts" not in timing:
                    raise ValueError(f"timing of {timing['setting']}: no {kind} steps timed, the run took {count}")
                total = [t + count * s for t, s in zip(total, timing[f"{kind}_s_bursts"])]
        return total

    checks, n = checks_read(m), len(timing["step_s_bursts"])
    remainder = timing.get("remainder_s_bursts") or [0.0] * n
    bursts = {
        "train_time_s": step_time(m["steps_run"]),
        "eval_time_s": [m["epochs_run"] * (test + train) + checks * test
                        for test, train in zip(timing["eval_test_s_bursts"], timing["eval_train_s_bursts"])],
        "mean_epoch_s": [(steps - has_remainder) * s + has_remainder * r
                         for s, r in zip(timing["step_s_bursts"], remainder)],
        "time_to_target_s": step_time(m["steps_to_target"]) if m.get("steps_to_target") else None,
    }
    bursts["total_time_s"] = [a + b for a, b in zip(bursts["train_time_s"], bursts["eval_time_s"])]
    out = {"timing_bursts": n}
    for metric in bursts:
        values = bursts[metric]
        out[metric] = statistics.fmean(values) if values is not None else None
        out[f"{metric}_se"] = (statistics.stdev(values) / math.sqrt(len(values))
                               if values is not None and len(values) > 1 else None)
    return out


def goal_columns(history: pd.DataFrame, goal_acc: float, mean_epoch_s: float | None,
                 mean_epoch_s_se: float | None = None) -> dict:
    """Epochs and compute time to a study's goal accuracy, read off a run's per-epoch history: the first
    epoch whose end-of-epoch test accuracy is at least `goal_acc`, and that many epochs of steps
    (`mean_epoch_s`, the run's time per epoch, with its timing standard error where it has one). Whole
    epochs: a run checked once an epoch can be told apart from another only by a whole epoch. None
    where the run never reached it."""
    reached = history.loc[pd.to_numeric(history["test_acc"], errors="coerce") >= round(goal_acc, 9), "epoch"]
    if reached.empty:
        return {"epochs_to_goal": None, "time_to_goal_s": None, "time_to_goal_s_se": None}
    k = int(reached.iloc[0])
    time = k * mean_epoch_s if mean_epoch_s is not None and not pd.isna(mean_epoch_s) else None
    se = k * mean_epoch_s_se if time is not None and mean_epoch_s_se is not None and not pd.isna(mean_epoch_s_se) else None
    return {"epochs_to_goal": k, "time_to_goal_s": time, "time_to_goal_s_se": se}


def load_timing(path: str | Path | None) -> dict[str, dict]:
    """The solo timing records of a study, by setting ({} without a timing file; records of settings
    that were not timed, or of an older format without bursts, are left out)."""
    if not path or not Path(path).exists():
        return {}
    doc = json.loads(Path(path).read_text())
    # the pass's thread count is recorded once for the file (None in files from before it was kept)
    return {r["setting"]: {**r, "threads": doc.get("threads")} for r in doc["settings"] if "step_s_bursts" in r}


def runs_table(metrics_files: list[str | Path], grid_keys: list[str], failure_margin: float = 0.02,
               timing: str | Path | None = None, goal_acc: float | None = None) -> pd.DataFrame:
    """One row per run: identity, resolved parameters, outcome and final metrics. With the study's
    timing file, the time metrics are the solo ones (`solo_times`) and the run's own wall-clock
    figures move to `wall_*` columns (provenance). With a `goal_acc`, epochs and time to it from each
    run's history.csv (`goal_columns`)."""
    solo = load_timing(timing)
    rows = []
    for path in metrics_files:
        m = json.loads(Path(path).read_text())
        row = {"study": m["study"], "setting": m["setting"], "cell": m["cell"], "seed": m["seed"],
               **m["spec"]["params"], "status": m["status"], "outcome": outcome(m, failure_margin),
               "diverged": m.get("diverged", False), "diverged_epoch": m.get("diverged_epoch")}
        for key in RUN_METRICS:
            row[key] = m.get(key)
        if m.get("final_train_acc") is not None and m.get("final_test_acc") is not None:
            row["generalisation_gap"] = m["final_train_acc"] - m["final_test_acc"]  # both eval mode
        row["time_until_stop_s"] = m.get("time_until_stop_s")  # provenance: wall time, diverged runs included
        row["time_basis"] = "wall"
        if m["setting"] in solo and m.get("status") == "ok":
            row.update({f"wall_{k}": row[k] for k in TIME_METRICS})
            row.update(solo_times(m, solo[m["setting"]]), time_basis="solo")
        if goal_acc is not None and m.get("status") == "ok" and not row["diverged"]:
            row.update(goal_columns(pd.read_csv(Path(path).parent / "history.csv"), goal_acc,
                                    row.get("mean_epoch_s"), row.get("mean_epoch_s_se")))
        # whose clock the times are: the timing pass's device and threads, else the run's own
        timed = solo[m["setting"]] if row["time_basis"] == "solo" else m
        row["timed_on"] = (timed.get("env") or {}).get("device_name")
        row["timed_threads"] = timed.get("threads") if row["time_basis"] == "solo" else (m.get("engine") or {}).get("threads")
        row.update(prediction_columns(m))
        row["device"] = m.get("env", {}).get("device_name")
        row["device_type"] = device_type(m.get("device"))   # cpu / cuda / mps: whose arithmetic, not which chip
        # TF32 in force (None: a run from before fp32 was pinned); pinned off since, on every device
        row["tf32"] = None if "precision" not in m else bool(
            m["precision"].get("cudnn_allow_tf32") or m["precision"].get("matmul_allow_tf32"))
        row["commit"] = (m.get("env", {}).get("git") or {}).get("commit")
        row["finished"] = _utc(Path(path).stat().st_mtime)  # metrics.json is written last: the run's end
        row["cuda_graphs"], row["cuda_graphs_note"] = m.get("cuda_graphs"), m.get("cuda_graphs_note")
        rows.append(row)
    runs = pd.DataFrame(rows)
    for key in RUN_METRICS:
        runs[key] = pd.to_numeric(runs[key], errors="coerce")
    return runs.sort_values([*grid_keys, "seed"], kind="stable").reset_index(drop=True)


def prediction_columns(metrics: dict) -> dict:
    """The final test-set prediction histogram of a run (JSON lists, one count per class), its most
    predicted class, and that class's share of the test labels: what a model that always answers that
    class would score (the collapsed-model check of `extensions`)."""
    preds, labels = metrics.get("test_pred_counts"), metrics.get("test_label_counts")
    top = metrics.get("top_pred_class")
    return {"top_pred_class": top,
            "top_class_test_share": labels[top] / sum(labels) if labels and top is not None else None,
            "test_pred_counts": json.dumps(preds) if preds else None,
            "test_label_counts": json.dumps(labels) if labels else None}


def measured_runs(group: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs of one setting whose numbers enter its means, and which they are: the trained ones,
    or, where none trained, the failed ones."""
    for basis in ("trained", "failed"):
        chosen = group[group["outcome"] == basis]
        if len(chosen):
            return chosen, basis
    return group.iloc[0:0], "none"


def timing_se(runs: pd.DataFrame, metric: str) -> float | None:
    """The timing pass's standard error of a time metric, for runs of one setting that have it
    (`solo_times`: one timing, shared by the setting's runs); None for other metrics and wall times."""
    column = f"{metric}_se"
    if metric not in TIME_METRICS or column not in runs.columns:
        return None
    se = pd.to_numeric(runs[column], errors="coerce").dropna()
    return float(se.mean()) if len(se) else None


def summary_table(runs: pd.DataFrame, grid_keys: list[str]) -> pd.DataFrame:
    """Tidy summary: one row per (setting, metric) with mean, std (ddof 1), min, max and n over the
    runs `measured_runs` picks, the setting's outcome counts, and for a time from the timing pass its
    standard error (`timing_se`).

    n counts the runs that have the metric (e.g. runs that reached the target accuracy), and
    n_runs all runs of the setting, so "reached in 2 of 3 runs" and "2 of 3 trained" can be said.
    """
    done = runs[runs["outcome"] != "no-data"]
    rows = []
    for setting, group in done.groupby("setting", sort=False):
        counts = {f"n_{o}": int((group["outcome"] == o).sum()) for o in OUTCOMES}
        ident = {"study": group["study"].iloc[0], "setting": setting, **{k: group[k].iloc[0] for k in grid_keys}}
        chosen, basis = measured_runs(group)
        for metric in RUN_METRICS:
            values = chosen[metric].dropna()
            rows.append({**ident, "metric": metric, "mean": values.mean() if len(values) else None,
                         "std": values.std(ddof=1) if len(values) > 1 else None,
                         "min": values.min() if len(values) else None, "max": values.max() if len(values) else None,
                         "n": len(values), "n_runs": len(group), **counts, "basis": basis,
                         "timing_se": timing_se(chosen, metric)})
    return pd.DataFrame(rows)


def long_curves(run_dirs: list[str | Path], filename: str, runs: pd.DataFrame) -> pd.DataFrame:
    """Concatenate each run's `history.csv` or `iterations.csv` (the files beside its metrics.json),
    tagged with setting, seed and outcome. A diverged run's rows stop at the epoch it diverged in."""
    by_cell = runs.set_index("cell")
    frames = []
    for folder in map(Path, run_dirs):
        frame = pd.read_csv(folder / filename)
        cell = json.loads((folder / "metrics.json").read_text())["cell"]
        if frame.empty or cell not in by_cell.index:
            continue
        for key in ("outcome", "seed", "setting"):
            frame.insert(0, key, by_cell.loc[cell, key])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["setting", "seed", "outcome"])


def aggregate_study(metrics_files: list[str | Path], grid_keys: list[str], out_dir: str | Path,
                    failure_margin: float = 0.02, timing: str | Path | None = None,
                    goal_acc: float | None = None) -> None:
    """Write runs.csv, summary.csv, history.csv and iterations.csv of one study into `out_dir`."""
    from batchwise.files import atomic_write_text

    out_dir = Path(out_dir)
    runs = runs_table(metrics_files, grid_keys, failure_margin, timing, goal_acc)
    cell_dirs = [Path(p).parent for p in metrics_files]
    tables = {
        "runs.csv": runs,
        "summary.csv": summary_table(runs, grid_keys),
        "history.csv": long_curves(cell_dirs, "history.csv", runs),
        "iterations.csv": long_curves(cell_dirs, "iterations.csv", runs),
    }
    for name, table in tables.items():
        atomic_write_text(out_dir / name, table.to_csv(index=False))
