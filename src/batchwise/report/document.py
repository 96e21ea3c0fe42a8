"""The report: per-study tables, homework-vs-ours tables, figures and claim verdicts -> HTML -> PDF.

Everything shown comes from the config and the aggregated results; the template only lays it out
(and escapes every string: titles in the config are data, not markup).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import os
from pathlib import Path

import pandas as pd

from batchwise.analysis import claims as claims_mod
from batchwise.analysis import extensions as ext
from batchwise.analysis import stats
from batchwise.analysis.common import native
from batchwise.results.aggregate import TIME_BASIS_TEXT, TIME_METRICS, outcome_rule_text, timed_alone, time_label
from batchwise.config import REPO, slug_value
from .figures import LABELS, PERCENT
from batchwise.files import atomic_write_bytes, atomic_write_text
from batchwise.provenance import code_state, device_listing, device_types, mixed_device_note, portable_note

TEMPLATES = REPO / "reports" / "templates"
# Columns of each study's results table; the target columns appear only where a target is set.
RESULT_METRICS = ["final_test_acc", "final_train_acc", "final_test_loss", "train_time_s", "mean_epoch_s"]
TARGET_METRICS = ["epochs_to_target", "time_to_target_s"]
# Where a study names a goal accuracy, the epochs and compute time to it, read off the per-epoch history.
GOAL_METRICS = ["epochs_to_goal", "time_to_goal_s"]
# Where runs stop at the target (or the learning rate is scaled), the exact steps to it (and the rate used).
STOP_METRICS = ["steps_to_target"]
# How and when each number is measured; the report's Methods chapter shows this list.
METRIC_DEFINITIONS = [
    ("test accuracy / loss", "after each epoch, in eval mode (dropout off, batch norm on its running "
     "statistics), on the whole test set; 'final' is after the last epoch."),
    ("training accuracy / loss", "measured exactly like test accuracy, after each epoch in eval mode, on a "
     "fixed subset of the training set as large as the test set (drawn once per run from its seed)."),
    ("generalisation gap", "final training accuracy minus final test accuracy, both as above (in points)."),
    ("running loss / accuracy", "the average over an epoch's steps of each mini-batch's loss and accuracy, "
     "in train mode while the weights move (what Keras and most training logs print as training loss); "
     "the per-iteration loss figures plot its individual steps."),
    ("epoch", "every training image once: a fresh seeded permutation cut into batches, the last one "
     "taking the remainder, so an epoch is the same data at every batch size."),
    ("compute time", "every time in the tables, figures and claims is compute time, measured alone: "
     "s/step x steps + evaluation. One timing job holds the whole device (where and when each study's ran: "
     "the setup table) and measures each setting with the training engine itself, in timing.bursts bursts "
     "interleaved across all settings (burst 1 of every setting, then burst 2, ..., in a seeded order that "
     "changes from burst to burst: a drift of the machine, or a cost tied to a place in the pass, hits every "
     "setting alike): seconds per full-batch step, per remainder step (the epoch's last, smaller batch), per "
     "warm-up step (eager, its learning rate set every step) and per evaluation (test set; training subset; "
     "timed once per burst for the settings that differ only in training parameters, which evaluate the "
     "same network on the same images), each warmed up first. A run's training compute time is its full steps, remainder steps and warm-up steps, each at its "
     "own cost; time per epoch is one epoch's steps after warm-up; time to target the steps up to the "
     "target; 'train + test' adds every evaluation the run made (two at each epoch's end, one per mid-epoch "
     "target check; on a CPU a check stops reading the test set once its errors decide it, and counts as "
     "the share it read). Each is the mean over the bursts, and runs.csv gives its standard error from their "
     "spread (<metric>_se, timing_bursts). Runs share a GPU while they train, so their own wall-clock "
     "times measure the crowd: runs.csv keeps them as wall_* columns, and Provenance lists them."),
    ("epochs / steps / time to target", "the first check (after an epoch, or within it where the study "
     "checks more often) at which test accuracy reaches the study's target_acc: its epoch, the steps and "
     "training images up to then, and the compute time of those steps (evaluation not counted); a check "
     "that stops early gives the verdict the whole test set gives; 'never "
     "(k/n)' where a run did not reach it."),
    ("epochs / time to the goal accuracy", "where a study names a goal_acc (a claim about how fast a "
     "setting trains): the first epoch whose end-of-epoch test accuracy reaches it, read off the run's "
     "per-epoch history, and that many epochs of compute time (time per epoch x epochs, evaluation not "
     "counted). Whole epochs: runs checked once an epoch are told apart by whole epochs only. A run that "
     "never reached it, or did not train, counts as never."),
    ("learning rate used", "lr, scaled with the batch size where lr_scaling asks: x B/base_batch_size (linear) "
     "or x (B/base_batch_size)^1/2 (sqrt); reached after warmup_epochs of linear warm-up."),
    ("gradient noise scale", "B_simple = tr(Σ)/|G|², from the mean squared norm of mini-batch gradients at the two "
     "noise_scale_batches sizes (noise_scale_draws each, at the current weights, nothing updated) after every "
     "epoch; a run's value is its median over epochs (McCandlish et al. 2018)."),
    ("collapsed model", "a finished run that gives one class at least 90 % of its test-set predictions after "
     "the last epoch; it scores that class's share of the test set."),
]


def fmt(value: float | None, metric: str) -> str:
    """A number as the report shows it: accuracies in %, times in s, losses to 4 digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if metric in PERCENT:
        return f"{100 * value:.2f}"
    if metric.startswith("epochs") or metric == "steps_to_target":
        return f"{value:.1f}" if value % 1 else f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _rounding_only(mean: float, std: float) -> bool:
    """Whether a spread is below float rounding of its mean (runs that share one timing, identical
    accuracies): a residue such as 1.4e-13, not a measured one."""
    return abs(std) <= stats.TIE * abs(mean)


def spread(mean: float, std: float, metric: str) -> str:
    """A standard deviation as the report shows it; one below float rounding of the mean is 0."""
    return fmt(0.0 if _rounding_only(mean, std) else std, metric)


def mean_std(group: pd.DataFrame, metric: str) -> str:
    """'mean ± std' over the setting's measured runs (see aggregate.measured_runs), with the count of
    runs that have the metric where not all of them do."""
    row = group[group["metric"] == metric].iloc[0]
    if row["n"] == 0:
        never = metric in TARGET_METRICS + STOP_METRICS + GOAL_METRICS and row["basis"] != "none"
        return f"never (0/{row['n_runs']})" if never else "–"
    text = fmt(row["mean"], metric)
    se = row.get("timing_se")
    if not pd.isna(se) and (pd.isna(row["std"]) or _rounding_only(row["mean"], row["std"])):
        # the runs share one timing (their spread is 0 by construction): its error is the uncertainty
        text += f" (SE {fmt(se, metric)})"
    elif row["n"] > 1 and not pd.isna(row["std"]):
        text += f" ± {spread(row['mean'], row['std'], metric)}"
    measured = row["n_trained"] or row["n_failed"]
    if row["n"] < measured:
        text += f" ({row['n']}/{measured})"
    return text


def outcome_text(first: pd.Series, seeds: int | None = None) -> str:
    """'k of n trained', how the others ended, and, where fewer than the study's `seeds` have run, how
    many: the one wording of the outcome rule."""
    text = f"{first['n_trained']} of {first['n_runs']} trained"
    others = [f"{first[f'n_{o}']} {o}" for o in ("failed", "diverged") if first[f"n_{o}"]]
    if seeds and first["n_runs"] < seeds:
        others.append(f"{first['n_runs']} of {seeds} seeds run")
    return text + (f" ({', '.join(others)})" if others else "")


def result_metrics(study: dict) -> list[str]:
    """The results table's metric columns. Where runs stop at the target, the steps to it replace the
    training accuracy and test loss (numbers of the moment a run stopped, not of a trained model), and
    where the learning rate is scaled, the rate used is shown."""
    params, grid = study["params"], study["grid"]
    metrics = RESULT_METRICS + (TARGET_METRICS if params.get("target_acc") or "target_acc" in grid else [])
    metrics += GOAL_METRICS if study.get("goal_acc") else []
    if params.get("stop_at_target") or any(grid.get("stop_at_target", [])):
        metrics = [m for m in metrics if m not in ("final_train_acc", "final_test_loss")] + STOP_METRICS
    if "lr_scaling" in grid or params.get("lr_scaling", "none") != "none":
        metrics += ["lr_effective"]
    return metrics


def time_note(runs: pd.DataFrame) -> str:
    """What a study's times are, for its results table: compute time from the timing pass, or, where a
    study has none (or only some of its runs are covered), the runs' own wall time."""
    done, solo = timed_alone(runs)
    if not len(done):
        return ""
    if solo == len(done):
        bursts = int(done["timing_bursts"].max())
        return (f"Times: {TIME_BASIS_TEXT} (training time, time per epoch and time to target count the steps "
                f"only; train + test time adds every evaluation), the mean of {bursts} interleaved timing bursts; "
                f"(SE x): the standard error of that timing, in place of a spread, where a setting's runs share "
                f"it; the runs' own wall times are in Provenance.")
    if solo == 0:
        return ("Times: the runs' own wall time (no timing pass yet: other runs may have shared the device; "
                "they are not compute times measured alone).")
    return (f"Times: the runs' own wall time for {len(done) - solo} of {len(done)} completed runs (no timing "
            f"pass for them: other runs may have shared the device), {TIME_BASIS_TEXT} for the others.")


def figure_caption(figure: dict, runs: pd.DataFrame) -> str:
    """A figure's caption from the config, and, where it plots times, what those times are (`time_note`:
    the timing pass's or the runs' own wall time), so that the caption never claims a basis the runs lack."""
    caption = figure.get("caption", "")
    if not set(figure.get("metrics", [])) & set(TIME_METRICS):
        return caption
    note = time_note(runs)
    return f"{caption} {note}" if note else caption


def results_table(study: dict, summary: pd.DataFrame, runs: pd.DataFrame | None = None) -> dict:
    """One row per setting: the grid values, steps per epoch, mean ± std of each result metric over
    the runs that trained (or, where none did, the failed ones), and the outcome counts; with the
    study's runs, a note on what its times are."""
    keys = list(study["grid"])
    metrics = result_metrics(study)
    header = keys + ["steps / epoch"] + [time_label(LABELS.get(m, m), runs) for m in metrics] + ["runs"]
    rows = []
    for setting, group in summary.groupby("setting", sort=False):
        first = group.iloc[0]
        steps = group.loc[group["metric"] == "steps_per_epoch", "max"].iloc[0]
        rows.append({"cells": [slug_value(native(first[k])) for k in keys]
                     + [fmt(steps, "epochs") if not pd.isna(steps) else "–"]
                     + [mean_std(group, m) for m in metrics] + [outcome_text(first, len(study.get("seeds", [])))],
                     "diverged": bool(first["n_trained"] < first["n_runs"])})
    # Settings without a finished run (a report of whatever has run): listed as missing, not as zeros.
    present = set(summary["setting"]) if "setting" in summary else set()
    for values in itertools.product(*study["grid"].values()):
        if "_".join(f"{k}={slug_value(v)}" for k, v in zip(keys, values)) not in present:
            rows.append({"cells": [slug_value(v) for v in values] + ["–"] * (1 + len(metrics)) + ["not run yet"],
                         "diverged": False, "missing": True})
    return {"header": header, "rows": rows, "time_note": time_note(runs) if runs is not None else ""}


def config_hash(config: dict) -> str:
    """sha256 of the config as canonical JSON (first 12 hex digits)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _setup(study: dict, meta: dict, devices: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """The study's setup table: data, model, fixed values, grid, images, seeds, the device types its
    runs came from, and the values the homework left to us."""
    p = study["params"]
    grid = "; ".join(f"{k} ∈ {{{', '.join(slug_value(v) for v in vals)}}}" for k, vals in study["grid"].items())
    rows = [("data set", f"{study['dataset']}" + (f" — {meta['data_note']}" if meta.get("data_note") else "")),
            ("model", f"{study['model']}" + (f", {meta['n_params']:,} parameters" if meta.get("n_params") else "")
             + (f", {meta['weights']}" if meta.get("weights") else "")),
            ("fixed", ", ".join(f"{k} {slug_value(v)}" for k, v in p.items())),
            ("grid", grid),
            ("images per epoch", f"{meta['images_per_epoch']:,} ({_which_images(p)}; the last step of an epoch "
             f"takes the remainder)" if meta.get("images_per_epoch") else "–"),
            ("seeds", ", ".join(map(str, study["seeds"])))]
    if devices:
        rows.append(("device type of the runs", device_listing(devices)))
    rows += [(f"our choice: {k}", v) for k, v in study.get("our_choices", {}).items()]
    return rows


def _counted(values: list[str]) -> str:
    """Distinct values with how many runs had each, most first, then by name: "A (9 runs); B (3 runs)"."""
    counts = sorted(pd.Series(values, dtype=object).value_counts().items(), key=lambda vn: (-vn[1], str(vn[0])))
    return "; ".join(f"{v} ({n} run{'s' if n != 1 else ''})" for v, n in counts) or "–"


def run_records(folder: Path) -> list[tuple[str, str]]:
    """The study's methods as its runs recorded them (every results/<study>/<cell>/[seed=*/]metrics.json,
    and timing.json): machines, threads per job, engine version, the runs' library versions, how a step
    and an evaluation were cut, and where the timing pass ran. Nothing here is assumed from the config."""
    metrics = [json.loads(p.read_text()) for p in sorted(folder.glob("*/seed=*/metrics.json"))
               + sorted(folder.glob("*/metrics.json"))]
    metrics = [m for m in metrics if m.get("status") != "no-data"]
    if not metrics:
        return []
    envs = [m.get("env") or {} for m in metrics]
    engines = [m.get("engine") if isinstance(m.get("engine"), dict) else {} for m in metrics]
    rows = [("machines of the runs", _counted([
                f"{e.get('device_name') or e.get('cpu') or m.get('device')}"
                + (f", {e['cpu_count']} CPUs visible" if m.get("device_type") == "cpu" and e.get("cpu_count") else "")
                for m, e in zip(metrics, envs)])),
            ("threads per job", _counted([str(g.get("threads", "not recorded")) for g in engines])),
            ("engine version", _counted([str(g.get("version", "not recorded")) for g in engines])),
            ("libraries of the runs", _counted([f"Python {e.get('python', '?')}, PyTorch {e.get('torch', '?')}"
                                                + (f", CUDA {e['cuda']}" if m.get("device_type") == "cuda" else "")
                                                for m, e in zip(metrics, envs)]))]
    # The engine records a micro-batch only for the runs whose batch it cut.
    micro = [g["micro_batch"] for g in engines if g.get("micro_batch")]
    if micro:
        mb = min(micro)
        rows.append(("micro-batches", f"{len(micro)} of {len(metrics)} runs: a step of more than {mb} images is "
                                      f"computed as micro-batches of {mb} whose "
                                      f"gradients add up to the full batch's: the same update, but the compute per "
                                      f"image stops falling above batch {mb}, so time per epoch is flat above "
                                      f"batch {mb} by construction"))
    evals = {g.get("eval_batch_size") for g in engines} - {None}
    if evals:
        rows.append(("evaluation batch", f"{', '.join(map(str, sorted(evals)))} images (speed only: the "
                                         f"metrics do not depend on it)"))
    rows.append(("timing pass", _timing_text(folder / "timing.json")))
    return rows


def _timing_text(path: Path) -> str:
    """Where the study's solo timing pass ran (its timing.json), or that it has none."""
    if not path.exists():
        return "none: this study's times are its runs' own wall times, measured while they shared the device"
    doc = json.loads(path.read_text())
    settings = doc.get("settings", [])
    envs = [s.get("env") or {} for s in settings]
    where = _counted([f"{e.get('device_name') or s.get('device')} (host {e.get('hostname', '?')}, PyTorch "
                      f"{e.get('torch', '?')}, commit {str((e.get('git') or {}).get('commit', '?'))[:10]})"
                      for s, e in zip(settings, envs)]).replace(" run)", " setting)").replace(" runs)", " settings)")
    n, steps = len(settings), doc.get("steps", "?")
    threads = f", {doc['threads']} thread{'s' if doc['threads'] != 1 else ''}" if doc.get("threads") else ""
    when = (f"from {doc['started']} to {doc['finished']}" if doc.get("started")
            else "date and threads not recorded (a timing file from before they were kept)")
    return (f"{n} setting{'s' if n != 1 else ''} timed alone, {doc.get('bursts', '?')} bursts of {steps} "
            f"step{'s' if steps != 1 else ''} each, on {where}{threads}; {when}")


def _which_images(params: dict) -> str:
    """The images a study trains and tests on, in words (a subset is train.to_device's fixed sample)."""
    n, m = params.get("train_subset"), params.get("test_subset")
    words = (f"every image of a fixed random sample of {n:,} training images, the same for every run" if n
             else "every training image")
    return words + (f"; tested on a fixed random sample of {m:,} test images" if m else "")


def _study_meta(folder: Path) -> dict:
    """Facts the setup table shows, read from one finished cell's metrics.json (or, in a report of
    whatever has run, one seed that finished in checkpoints/)."""
    waiting = folder.parent.parent / "checkpoints" / folder.name
    for path in sorted(folder.glob("*/seed=*/metrics.json")) + sorted(waiting.glob("*/seed=*/metrics.json")):
        m = json.loads(path.read_text())
        if m.get("status") != "no-data":
            return {"n_params": m.get("n_params"), "weights": m.get("weights"),
                    "data_note": portable_note(m["data"].get("note")),
                    "images_per_epoch": m.get("images_per_epoch"),
                    "env": m.get("env", {}), "device": m.get("device")}
        return {"no_data": portable_note(m.get("reason")) or "data set not available",
                "data_note": portable_note(m["data"].get("note"))}
    return {}


def read_analyses(folder: Path) -> list[dict]:
    """The study's analysis blocks as the workflow computed them (results/<study>/analysis.json, rule
    analyse_study); none where it has not run."""
    path = folder / "analysis.json"
    return json.loads(path.read_text())["blocks"] if path.exists() else []


def build_context(config: dict, results_dir: str | Path, figures_dir: str | Path, *, claims: str | Path,
                  homework: str | Path, command: str = "", verdicts: str | Path | None = None) -> dict:
    """Everything the template shows, from the config and the aggregated results; the claims' verdicts
    from ``verdicts`` (results/claims.csv, rule judge_claims) where given, else judged here alike."""
    results_dir, figures_dir = Path(results_dir), Path(figures_dir)
    all_runs, studies = [], []
    for name, study in config["studies"].items():
        if not (results_dir / name / "runs.csv").exists():  # `missing_runs: skip` and no run of it yet
            studies.append({"id": name, "title": study["title"], "homework": study.get("homework") or study["extends"],
                            "chapter": chapter_key(study), "meta": {"not_run_yet": True}, "setup": _setup(study, {}),
                            "results": None, "figures": [], "analyses": [], "devices": {},
                            "device_note": ""})
            continue
        runs = pd.read_csv(results_dir / name / "runs.csv")
        summary = pd.read_csv(results_dir / name / "summary.csv")
        all_runs.append(runs)
        meta = _study_meta(results_dir / name)
        studies.append({
            "id": name, "title": study["title"], "homework": study.get("homework") or study["extends"],
            "chapter": chapter_key(study), "meta": meta,
            "setup": _setup(study, meta, device_types(runs)) + run_records(results_dir / name),
            "results": results_table(study, summary, runs) if not summary.empty else None,
            "figures": [{"path": str(figures_dir / name / f"fig{i}.svg"), "caption": figure_caption(f, runs)}
                        for i, f in enumerate(study["figures"])],
            "analyses": [] if meta.get("no_data") else read_analyses(results_dir / name),
            "devices": device_types(runs), "device_note": mixed_device_note(device_types(runs)),
        })
    runs = pd.concat(all_runs, ignore_index=True) if all_runs else pd.DataFrame(columns=NO_RUNS_COLUMNS)
    done = runs[runs["status"] != "no-data"]
    verdict = config["verdict"]
    # A config may hold only some studies: its report checks only the claims about those (judge).
    claim_list = claims_mod.read_verdicts(verdicts) if verdicts else claims_mod.judge(config, done, claims)
    chapter_of = {s["id"]: s["chapter"] for s in studies}
    mixed = {s["id"]: s["device_note"] for s in studies if s["device_note"]}
    for c in claim_list:   # a claim from the literature cites its paper: its `source`
        c["chapter"] = chapter_of.get(c["study"], ("homework", c["homework"]))
        c["device_note"] = time_claim_device_note(c, mixed)
    tables = []
    for table in claims_mod.load_homework_tables(Path(homework)):
        if table["study"] in config["studies"]:
            header, rows = homework_table_layout(table, claims_mod.side_by_side(table, done))
            tables.append({**table, "header": header, "rows": rows})
    chapters = _chapters(config, studies, tables, claim_list)
    scoped = findings(chapters, studies)
    for entry, hw in zip(scoped, chapters):
        entry["scope"] = chapter_scope(config, hw, runs)
    return {
        "findings": scoped,
        "run_label": config.get("run_label", ""),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "homeworks": chapters,
        "claims": [c for c in claim_list if not c["source"]],
        "literature_claims": [c for c in claim_list if c["source"]],
        "literature_rules": ext.LITERATURE_RULES.format(level=verdict["level"]),
        "verdict_counts": {v: sum(c["verdict"] == v for c in claim_list)
                           for v in ("supported", "contradicted", "inconclusive", "not run yet")},
        "not_run": [s for s in studies if s["meta"].get("no_data")],
        "verdict_rule": claims_mod.verdict_rule_text(verdict["level"], min_runs=verdict["min_runs"]),
        "data_notes": sorted({s["meta"]["data_note"] for s in studies if s["meta"].get("data_note")}),
        "choices": [(s["id"], k, v) for s in studies for k, v in config["studies"][s["id"]].get("our_choices", {}).items()],
        "provenance": _provenance(config, runs, command),
        "any_gpu": bool((runs.get("device_type", pd.Series(dtype=object)) == "cuda").any()),
        "run_commits": run_commits(runs),
        "progress": progress(config, runs, results_dir),
        "run_times": {"header": RUN_TIMES_HEADER, "rows": run_time_summary(runs)},
        "metric_definitions": METRIC_DEFINITIONS,
        "outcome_rule": outcome_rule_text(verdict["failure_margin"]),
    }


WIDE_TABLE_METRICS = 2  # beyond this, three columns per metric no longer fit an A4 page


def homework_table_layout(table: dict, frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """A homework-vs-ours table's header and rows: as `side_by_side` gives them, or, for a table of more
    than WIDE_TABLE_METRICS metrics, one row per homework row and metric (key..., metric, homework, ours,
    difference)."""
    if len(table["columns"]) <= WIDE_TABLE_METRICS:
        return list(frame.columns), frame.astype(str).values.tolist()
    third = {claims_mod.time_column_part(col["metric"]) for col in table["columns"]}
    rows = [[*(str(row[k]) for k in table["key"]), col["label"],
             *(str(row[f"{col['label']} — {p}"]) for p in ("homework", "ours", claims_mod.time_column_part(col["metric"])))]
            for _, row in frame.iterrows() for col in table["columns"]]
    return [*table["key"], "metric", "homework", "ours", " / ".join(sorted(third))], rows


NO_RUNS_COLUMNS = ["study", "setting", "cell", "seed", "status", "outcome", "device", "commit", "finished",
                   "time_until_stop_s", "train_time_s", "time_basis", "cuda_graphs", "cuda_graphs_note"]


def time_claim_device_note(claim: dict, mixed: dict[str, str]) -> str:
    """For a claim on a time whose study mixes device types, the study's note; '' otherwise."""
    if not str(claim.get("metric", "")).endswith("_s") or claim["study"] not in mixed:
        return ""
    return f"{claim['study']}: {mixed[claim['study']]}"


# How the findings page words each verdict, in one short phrase.
VERDICT_PHRASES = {"supported": "holds up", "contradicted": "does not hold up", "inconclusive": "not settled",
                   "not run yet": "not run yet"}
FINDING_GROUPS = 4   # groups of runs shown per claim on the findings page; the rest are in the chapter


def _group_text(group: dict, metric: str) -> str:
    """'bn=true, lr=0.5: 97.54 ± 0.21 % over 5 runs' (with how many trained, where not all did)."""
    unit = " %" if metric in PERCENT else (" s" if metric.endswith("_s") else "")
    n = group.get("n") or 0
    if not n:
        value = "no measured run"
    elif group["mean"] == math.inf:   # a to-target metric with runs that never got there: no mean
        reached = group.get("n_reached", 0)
        value = "never reached" if not reached else f"reached in {reached} of {n} runs only"
        trained = group.get("n_trained")
        return f"{group['label']}: {value}" + (f" ({trained} of {group.get('n_runs') or n} runs trained)"
                                               if trained is not None else "")
    elif group.get("one_timing"):
        value = f"{fmt(group['mean'], metric)}{unit} (timing SE {fmt(group['timing_se'], metric)}{unit})"
    else:
        value = fmt(group["mean"], metric) + unit
        if n > 1 and not pd.isna(group.get("std")):
            value = f"{fmt(group['mean'], metric)} ± {spread(group['mean'], group['std'], metric)}{unit}"
    return f"{group['label']}: {value}" + (f" ({_count_text(group)})" if n else "")


def _count_text(group: dict) -> str:
    """Which runs a group's mean is over: all of them, the ones that trained, or, where the rule counts
    every run (`basis` "all"), the failed ones too: a reader must know a mean mixes outcomes."""
    n, runs, trained = group["n"], group.get("n_runs") or group["n"], group.get("n_trained")
    runs_word = f"{n} run{'s' if n != 1 else ''}"
    shared = ", one timing shared" if group.get("one_timing") and n > 1 else ""
    if trained is None or trained >= runs:
        return runs_word + shared
    if group.get("basis") == "all":
        over = f"all {runs} runs" if n == runs else f"{n} of {runs} runs (the rest diverged)"
        return f"mean over {over}, {trained} of them trained{shared}"
    if group.get("basis") == "failed":
        return f"none of {runs} trained: mean over the {runs_word} that failed{shared}"
    return f"mean over the {trained} of {runs} runs that trained{shared}"


def findings(chapters: list[dict], studies: list[dict]) -> list[dict]:
    """The findings page, per chapter: each conclusion checked (its verdict, and what the repeated seeds
    show: per group of runs the mean, its spread and the number of runs), then what is not run yet."""
    out = []
    for hw in chapters:
        lines, waiting = [], []
        for c in hw["claims"]:
            if c["verdict"] == "not run yet":
                waiting.append(c["english"])
                continue
            metric = str(c.get("metric", ""))
            # Groups tell the number and its spread over seeds; a rule whose groups carry no spread (a
            # half-failure value, a share) says it better in its evidence.
            spread = any(g.get("n", 0) > 1 and not pd.isna(g.get("std")) for g in c.get("groups", []))
            groups = [_group_text(g, metric) for g in c.get("groups", [])[:FINDING_GROUPS]] if spread else []
            more = len(c.get("groups", [])) - FINDING_GROUPS if groups else 0
            lines.append({"verdict": c["verdict"], "phrase": VERDICT_PHRASES.get(c["verdict"], c["verdict"]),
                          "english": c["english"],
                          "seeds": "; ".join(groups) + (f"; {more} more groups in the chapter" if more > 0 else ""),
                          "evidence": "" if groups else c["evidence"], "device_note": c.get("device_note", ""),
                          "hardware": c.get("hardware", "") if groups else ""})
        unrun = [s["title"] for s in hw["studies"] if s["meta"].get("not_run_yet") or s["meta"].get("no_data")]
        out.append({"id": hw["id"], "title": hw["title"], "homework": hw["homework"], "beyond": hw["beyond"],
                    "lines": lines, "waiting": waiting, "unrun_studies": unrun})
    return out


# A mean gap between training and test accuracy above this (10 points) is named on the first pages as a
# result the runs show, whether or not the homework reported it.
GAP_NOTED = 0.10


def chapter_scope(config: dict, hw: dict, runs: pd.DataFrame) -> dict:
    """What the first pages say of a chapter's scope, all from the config and the runs: complete, partial
    or not run (k of N runs); our choices behind its verdicts (the studies' `our_choices`); and what the
    runs show that a verdict does not carry: settings where no run trained, and settings whose trained
    runs end with a train-test accuracy gap above ``GAP_NOTED`` (means over those runs)."""
    from batchwise.config import cells

    names = [s["id"] for s in hw["studies"]]
    total = sum(len(cells(config, n)) for n in names)
    mine = runs[runs["study"].isin(names) & (runs["status"] != "no-data")] if "study" in runs else runs.iloc[0:0]
    state = "complete" if len(mine) >= total else ("not run" if mine.empty else "partial")
    seen = []
    for (study, setting), group in mine.groupby(["study", "setting"], sort=False):
        outcomes = group["outcome"].value_counts()
        trained = group[group["outcome"] == "trained"]
        if trained.empty:
            parts = ", ".join(f"{n} {o}" for o, n in outcomes.items())
            seen.append(f"{study} {setting}: no run trained ({parts})")
        elif {"final_train_acc", "final_test_acc"} <= set(trained.columns):
            train, test = trained["final_train_acc"].mean(), trained["final_test_acc"].mean()
            if train - test > GAP_NOTED:
                seen.append(f"{study} {setting}: training accuracy {100 * train:.0f} % vs test {100 * test:.0f} % "
                            f"(mean of {len(trained)} trained run{'s' if len(trained) != 1 else ''})")
    return {"state": f"{state} ({len(mine)} of {total} runs)",
            "choices": [f"{study}, {key}: {value}" for study in names
                        for key, value in config["studies"][study].get("our_choices", {}).items()],
            "seen": seen, "gap_noted": round(100 * GAP_NOTED)}


def run_commits(runs: pd.DataFrame) -> list[list[str]]:
    """Per study and commit, the runs made at that commit: [study, commit, runs]."""
    done = runs[runs["status"] != "no-data"] if "status" in runs else runs
    if "commit" not in done or done.empty:
        return []
    counts = done.assign(commit=done["commit"].fillna("unknown").astype(str)).groupby(["study", "commit"], sort=False)
    return [[study, commit[:12], str(len(group))] for (study, commit), group in counts]


def progress(config: dict, runs: pd.DataFrame, results_dir: str | Path) -> dict:
    """How much of the config has run: "k of N runs done" and, per study, where, when and at which
    commit its runs ran and which device timed it; a study without runs is "not run yet". Shown on
    the title page when runs are missing or the report was asked for whatever has run."""
    from batchwise.results.bundles import timing_device
    from batchwise.config import cells

    rows, done = [], 0
    for name in config["studies"]:
        total = len(cells(config, name))
        mine = runs[runs["study"] == name] if "study" in runs else runs.iloc[0:0]
        done += len(mine)
        if mine.empty:
            rows.append([name, f"0 of {total}", "not run yet", "–", "–", "–"])
            continue
        def listed(column: str, width: int | None = None) -> str:
            values = mine[column].dropna().astype(str) if column in mine else pd.Series([], dtype=str)
            return ", ".join(sorted({v[:width] for v in values})) or "–"
        dates = mine["finished"].dropna().astype(str).str[:10] if "finished" in mine else pd.Series([], dtype=str)
        when = f"{dates.min()} – {dates.max()}" if len(dates) and dates.min() != dates.max() else (dates.min() if len(dates) else "–")
        timing = Path(results_dir) / name / "timing.json"
        rows.append([name, f"{len(mine)} of {total}", listed("device"), listed("commit", 10), when,
                     (timing_device(timing) or "–") if timing.exists() else "no timing pass"])
    total = len(cells(config))
    return {"done": done, "total": total, "show": done < total or config.get("missing_runs") == "skip",
            "header": ["study", "runs done", "device(s)", "commit(s)", "finished", "timing device"], "rows": rows}


def chapter_key(study: dict) -> tuple[str, str]:
    """("homework", NNN) for a study that re-runs homework NNN, ("beyond", NNN) for one that `extends` it."""
    return ("homework", study["homework"]) if "homework" in study else ("beyond", study["extends"])


def _chapters(config: dict, studies: list[dict], tables: list[dict], claim_list: list[dict]) -> list[dict]:
    """The report's chapters: one per homework, in the order of the config's studies, then one
    "Beyond homework NNN" per homework that extension studies go beyond, in the homework chapters' order."""
    keys = list(dict.fromkeys(s["chapter"] for s in studies))
    homework = [k for k in keys if k[0] == "homework"]
    order = [hw_id for _, hw_id in homework]
    beyond = sorted((k for k in keys if k[0] == "beyond"),
                    key=lambda k: order.index(k[1]) if k[1] in order else len(order))  # stable: else config order
    keys = homework + beyond
    chapters = []
    for kind, hw_id in keys:
        declared = config["homeworks"].get(hw_id, {})
        beyond = kind == "beyond"
        chapters.append({
            "id": f"{kind}-{hw_id}" if beyond else hw_id, "homework": hw_id, "beyond": beyond,
            "title": declared.get("beyond", "") if beyond else declared.get("title", f"Homework {hw_id}"),
            "source": "" if beyond else declared.get("source", ""),
            "studies": [s for s in studies if s["chapter"] == (kind, hw_id)],
            "tables": [] if beyond else [t for t in tables if t["homework"] == hw_id],
            "claims": [c for c in claim_list if c["chapter"] == (kind, hw_id)],
        })
    return chapters


def _provenance(config: dict, runs: pd.DataFrame, command: str) -> list[tuple[str, str]]:
    """The provenance table (its first three rows are on the title page too)."""
    import platform

    import snakemake
    import torch

    done = runs[runs["status"] != "no-data"]
    return [
        ("report built at commit", commit_text(code_state())),
        ("config hash", config_hash(config)),
        ("command", command or "–"),
        # The builder's own libraries: the runs' (their metrics.json) are in each study's setup table.
        ("report builder: Python", platform.python_version()), ("report builder: PyTorch", torch.__version__),
        ("report builder: Snakemake", snakemake.__version__),
        ("libraries of the runs", "per study, in its setup table, from the runs' metrics.json"),
        ("device", ", ".join(sorted(done["device"].dropna().astype(str).unique())) or "–"),
        ("runs made at commit", ", ".join(f"{c[:10]} ({n} runs)" for c, n in _commit_counts(done)) or "–"),
        ("training runs", ", ".join(f"{int((done['outcome'] == o).sum())} {o}" for o in ("trained", "failed", "diverged"))),
        ("training step", _step_kind(done)),
        ("total training + evaluation time", f"{done['time_until_stop_s'].sum():,.1f} s of wall time, summed over runs "
                                             f"(diverged runs until they stopped; runs overlap on a shared device)"),
        ("times in the tables", _time_basis(done)),
    ]


def commit_text(git: dict) -> str:
    """The commit a report was built at; from a working tree whose code or config differs from it, said so:
    such a report cannot be rebuilt from the commit alone."""
    if not git.get("commit"):
        return "not a git checkout"
    if git.get("dirty"):
        return (f"{git['commit']}, with uncommitted changes to the code or config: this report cannot be rebuilt "
                f"from the commit alone")
    return git["commit"]


def _commit_counts(done: pd.DataFrame) -> list[tuple[str, int]]:
    """(commit, runs) over all studies, most runs first."""
    if "commit" not in done or done.empty:
        return []
    counts = done["commit"].fillna("unknown").astype(str).value_counts()
    return sorted(((str(c), int(n)) for c, n in counts.items()), key=lambda cn: (-cn[1], cn[0]))


def _time_basis(done: pd.DataFrame) -> str:
    """Which times the tables show: the timing pass's compute time, or (where a study has none) the runs' own."""
    solo = int((done["time_basis"] == "solo").sum()) if "time_basis" in done else 0
    trained = int((done["status"] == "ok").sum())
    if solo == trained:
        return f"{TIME_BASIS_TEXT}, from the timing pass, for all {trained} completed runs"
    return (f"{TIME_BASIS_TEXT}, from the timing pass, for {solo} of {trained} completed runs; the others' "
            f"own wall time (device shared)")


def _step_kind(done: pd.DataFrame) -> str:
    """How the runs executed their step: CUDA graph or eager, and any capture that fell back."""
    graphed, n = int((done["cuda_graphs"] == True).sum()), len(done)  # noqa: E712 - the column may hold None
    if graphed == 0:
        text = f"eager in all {n} runs"
    elif graphed == n:
        text = f"one CUDA graph per step in all {n} runs"
    else:
        text = f"one CUDA graph per step in {graphed} of {n} runs, eager in the rest"
    fell_back = int(done["cuda_graphs_note"].notna().sum())
    return text + (f"; {fell_back} of them after a failed capture (see their metrics.json)" if fell_back else "")


RUN_TIMES_HEADER = ["study", "runs", "wall time until stopped, summed (s)", "wall training time per run, median (s)",
                    "compute time per run, training + evaluation, median (s)",
                    "wall ÷ compute (training + evaluation), median"]


def run_time_summary(runs: pd.DataFrame) -> list[list[str]]:
    """Per study, a row of ``RUN_TIMES_HEADER``: the runs' own wall times beside the compute time the tables
    use (the timing pass's, measured alone). One row per study rather than per run, so that the table fits
    a page; each run's times stay in its study's runs.csv. The ratio is over runs with both times: how much
    sharing the device slowed a run (1 where the study has no timing pass, whose tables use wall time)."""
    done = runs[runs["status"] != "no-data"]
    rows = []
    for study, mine in done.groupby("study", sort=False):
        solo = mine["time_basis"] == "solo" if "time_basis" in mine else pd.Series(False, index=mine.index)
        # A study without a timing pass keeps its wall time in train_time_s (the tables' time).
        wall = mine["wall_train_time_s"].where(solo, mine["train_time_s"]) if "wall_train_time_s" in mine \
            else mine["train_time_s"]
        compute = mine["total_time_s"].where(solo) if "total_time_s" in mine else pd.Series(dtype=float)
        wall_total = mine["wall_total_time_s"].where(solo) if "wall_total_time_s" in mine else pd.Series(dtype=float)
        ratio = (wall_total / compute).dropna()
        counts = [f"{int((mine['outcome'] == o).sum())} {o}" for o in ("trained", "failed", "diverged")
                  if (mine["outcome"] == o).any()]

        def med(values: pd.Series, digits: int = 1) -> str:
            values = values.dropna()
            return f"{values.median():,.{digits}f}" if len(values) else "–"
        rows.append([str(study), f"{len(mine)} ({', '.join(counts)})", f"{mine['time_until_stop_s'].sum():,.0f}",
                     med(wall), med(compute) if solo.any() else "no timing pass", med(ratio, 2)])
    return rows


def breakable(name: object) -> "markupsafe.Markup":
    """A name such as a study id, escaped, that a narrow table cell may wrap after an underscore
    (s3_batch_/convergence) rather than inside a word."""
    import markupsafe

    return markupsafe.escape(str(name)).replace("_", markupsafe.Markup("_<wbr>"))


def render_html(context: dict, template_dir: Path = TEMPLATES) -> str:
    """Render the report template with autoescaping on."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["breakable"] = breakable
    css = (template_dir / "report.css").read_text()
    return env.get_template("report.html.j2").render(**context, css=css)


def write_html(config: dict, *, results_dir: str | Path, figures_dir: str | Path, out: str | Path,
               claims: str | Path, homework: str | Path, template_dir: Path = TEMPLATES, command: str = "",
               verdicts: str | Path | None = None) -> None:
    """Build the context and write the HTML report (figure paths relative to the HTML file)."""
    out = Path(out)
    context = build_context(config, results_dir, figures_dir, claims=claims, homework=homework, command=command,
                            verdicts=verdicts)
    for hw in context["homeworks"]:
        for study in hw["studies"]:
            for fig in study["figures"]:
                fig["path"] = os.path.relpath(Path(fig["path"]).resolve(), out.parent.resolve())
    atomic_write_text(out, render_html(context, template_dir))


def write_pdf(html: str | Path, out: str | Path) -> None:
    """Render the HTML report to PDF with WeasyPrint (A4; page numbers and layout from the CSS)."""
    import weasyprint

    pdf = weasyprint.HTML(filename=str(html)).write_pdf()
    atomic_write_bytes(out, pdf)
