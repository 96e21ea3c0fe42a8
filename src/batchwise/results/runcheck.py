"""One definition of a valid run, used by export, import and publish alike (docs/reliability.md 12).

A finished run is a folder `<study>/<setting>/seed=<n>/` holding
  metrics.json    a JSON object that `METRICS_SCHEMA` accepts, plus the rules in `_metrics_rules`
                  (a run that did not diverge has finite losses and accuracies; a diverged one has
                  none; counts agree with each other and with the spec; ids agree with the folder);
  history.csv     the per-epoch columns train.py writes, one row per epoch run (`epochs_run`),
                  the last row's accuracies equal to the final ones;
  iterations.csv  step,epoch,loss, one row per `every`-th step of the steps run (train.py subsamples
                  to at most MAX_LOSS_POINTS rows), steps and epochs within the run's counts.
An unfinished seed (in checkpoints/) is a folder with `state.pt` and no metrics.json.
A study's timing.json is checked against `TIMING_SCHEMA`.

Only the standard library and jsonschema: export and import import no torch.
Every problem is one line, `FILE: what is wrong`, raised as `RunError`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import jsonschema

RUN_FILES = ("metrics.json", "history.csv", "iterations.csv")  # the order a run is written in: metrics.json last
STATE = "state.pt"
MAX_LOSS_POINTS = 2000  # as train.MAX_LOSS_POINTS: iterations.csv keeps every ceil(steps / 2000)-th step
STUDY_RE = re.compile(r"^[a-z][a-z0-9_]*$")            # config.schema.yaml's study ids
SETTING_RE = re.compile(r"^(?!\.\.?$)[a-z0-9_.=+-]+$")  # config.SLUG_RE, never '.' or '..'
HISTORY_COLUMNS = ("epoch", "running_loss", "running_acc", "train_loss", "train_acc", "test_loss", "test_acc",
                   "epoch_time_s", "elapsed_s")
ITERATION_COLUMNS = ("step", "epoch", "loss")

_ACC = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_LOSS = {"type": ["number", "null"], "minimum": 0}
_SECONDS = {"type": ["number", "null"], "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_COUNT_OR_NULL = {"type": ["integer", "null"], "minimum": 0}
_COUNTS = {"type": ["array", "null"], "items": _COUNT}

_TEXT = {"type": ["string", "null"]}
METRICS_SCHEMA: dict = {
    "type": "object",
    "required": ["study", "setting", "cell", "seed", "spec", "status", "data"],
    "properties": {
        # what the report and the ledger read besides the numbers: objects and plain text
        "data": {"type": "object", "properties": {"note": _TEXT, "source": _TEXT, "name": _TEXT}},
        "env": {"type": "object", "properties": {"device_name": _TEXT, "hostname": _TEXT,
                                                  "git": {"type": ["object", "null"],
                                                          "properties": {"commit": _TEXT,
                                                                         "dirty": {"type": ["boolean", "null"]}}}}},
        "device": _TEXT, "weights": _TEXT, "reason": _TEXT, "cuda_graphs_note": _TEXT,
        "schema": {"type": "integer"},
        "study": {"type": "string", "pattern": STUDY_RE.pattern},
        "setting": {"type": "string", "pattern": SETTING_RE.pattern},
        "cell": {"type": "string"},
        "seed": _COUNT,
        "status": {"enum": ["ok", "diverged", "no-data"]},
        "spec": {
            "type": "object",
            "required": ["study", "setting", "cell", "seed", "dataset", "model", "params"],
            "properties": {"study": {"type": "string"}, "setting": {"type": "string"}, "cell": {"type": "string"},
                           "seed": _COUNT, "dataset": {"type": "string"}, "model": {"type": "string"},
                           "params": {"type": "object", "required": ["epochs", "batch_size"],
                                      "properties": {"epochs": {"type": "integer", "minimum": 1},
                                                     "batch_size": {"type": "integer", "minimum": 1}}}},
        },
    },
    "if": {"properties": {"status": {"enum": ["ok", "diverged"]}}},
    "then": {
        "required": ["diverged", "diverged_epoch", "epochs_run", "steps_per_epoch", "steps_run", "images_per_epoch",
                     "final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc",
                     "final_running_loss", "final_running_acc", "best_test_acc"],
        "properties": {
            "diverged": {"type": "boolean"},
            "diverged_epoch": {"type": ["integer", "null"], "minimum": 1},
            "epochs_run": {"type": "integer", "minimum": 1},
            "steps_per_epoch": {"type": "integer", "minimum": 1},
            "steps_run": _COUNT, "images_per_epoch": {"type": "integer", "minimum": 1},
            "train_eval_images": _COUNT, "warmup_steps": _COUNT, "n_params": _COUNT,
            "test_images": {"type": "integer", "minimum": 1}, "check_images": _COUNT_OR_NULL,
            "final_train_loss": _LOSS, "final_test_loss": _LOSS, "final_running_loss": _LOSS,
            "first_epoch_running_loss": _LOSS,
            "final_train_acc": _ACC, "final_test_acc": _ACC, "final_running_acc": _ACC, "best_test_acc": _ACC,
            "top_pred_share": _ACC, "target_acc": _ACC,
            "epochs_to_target": _COUNT_OR_NULL, "steps_to_target": _COUNT_OR_NULL,
            "examples_to_target": _COUNT_OR_NULL, "top_pred_class": _COUNT_OR_NULL,
            "test_pred_counts": _COUNTS, "test_label_counts": _COUNTS,
            "train_time_s": _SECONDS, "eval_time_s": _SECONDS, "total_time_s": _SECONDS, "mean_epoch_s": _SECONDS,
            "time_until_stop_s": _SECONDS, "time_to_target_s": _SECONDS, "noise_scale": {"type": ["number", "null"]},
            "lr_effective": {"type": ["number", "null"]}, "gpu_mem_peak_mb": _SECONDS,
            "stopped_at_target": {"type": "boolean"},
        },
    },
}

_BURSTS = {"type": "array", "minItems": 1, "items": {"type": "number", "minimum": 0}}
TIMING_SCHEMA: dict = {
    "type": "object",
    "required": ["schema", "settings"],
    "properties": {
        "schema": {"type": "integer"},
        "bursts": _COUNT, "steps": _COUNT, "warmup": _COUNT,
        "settings": {"type": "array", "items": {
            "type": "object",
            "required": ["study", "setting"],
            "properties": {"study": {"type": "string", "pattern": STUDY_RE.pattern},
                           "setting": {"type": "string", "pattern": SETTING_RE.pattern},
                           "error": {"type": "string"},
                           **{f"{k}_s_bursts": _BURSTS for k in ("step", "remainder", "eager_step", "eager_remainder",
                                                                  "eval_test", "eval_train")}},
            "dependentRequired": {"step_s_bursts": ["eval_test_s_bursts", "eval_train_s_bursts"]},
        }},
        "sequence": {"type": "array"},
    },
}

MANIFEST_SCHEMA: dict = {
    "type": "object",
    "required": ["format", "runs"],
    "properties": {
        "format": {"const": 1},
        "runs": {"type": "array", "items": {
            "type": "object", "required": ["path", "study", "setting", "seed"],
            "properties": {"path": {"type": "string"}, "study": {"type": "string"}, "setting": {"type": "string"},
                           "seed": _COUNT, "status": {"type": ["string", "null"]},
                           "commit": {"type": ["string", "null"]}, "device": {"type": ["string", "null"]},
                           "finished": {"type": ["string", "null"]}}}},
        "timing": {"type": "object", "additionalProperties": {"type": "object"}},
        "checkpoints": _COUNT,
        "source": {"type": "string"}, "created": {"type": "string"}, "host": {"type": ["string", "null"]},
    },
}


class RunError(ValueError):
    """A run (or timing or manifest file) that is not valid: `member` names the file, `problem` says what."""

    def __init__(self, member: str, problem: str):
        super().__init__(f"{member}: {problem}")
        self.member, self.problem = member, problem


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"key {next(k for k in keys if keys.count(k) > 1)!r} appears twice")
    return dict(pairs)


def parse_json(data: bytes, member: str) -> Any:
    """Strict JSON from bytes: UTF-8, no NaN or Infinity, no key twice; RunError otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RunError(member, f"not UTF-8 text (byte {err.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise RunError(member, "not JSON (nested too deeply)") from None
    except ValueError as err:
        raise RunError(member, f"not JSON ({str(err).splitlines()[0]})") from None


_VALIDATORS: dict[int, jsonschema.Draft202012Validator] = {}


def _schema_check(doc: Any, schema: dict, member: str) -> None:
    """The first schema violation, as `member: key path: message`."""
    if id(schema) not in _VALIDATORS:  # built once per schema: building is most of a check's cost
        _VALIDATORS[id(schema)] = jsonschema.Draft202012Validator(schema)
    validator = _VALIDATORS[id(schema)]
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    if errors:
        err = errors[0]
        where = ".".join(map(str, err.absolute_path)) or "the document"
        message = err.message if len(err.message) <= 160 else err.message[:157] + "..."
        raise RunError(member, f"{where}: {message}")


def check_metrics(doc: Any, member: str = "metrics.json") -> dict:
    """A metrics.json document against the schema and the rules of a run; returns it."""
    _schema_check(doc, METRICS_SCHEMA, member)
    _metrics_rules(doc, member)
    return doc


def _metrics_rules(m: dict, member: str) -> None:
    def bad(problem: str) -> None:
        raise RunError(member, problem)

    spec, seed = m["spec"], m["seed"]
    for key in ("study", "setting", "seed"):
        if spec[key] != m[key]:
            bad(f"spec.{key} {spec[key]!r} is not its {key} {m[key]!r}")
    if m["cell"] != f"{m['setting']}_seed={seed}" or spec["cell"] != m["cell"]:
        bad(f"cell {m['cell']!r} is not '{m['setting']}_seed={seed}'")
    if m["status"] == "no-data":
        return
    diverged = m["status"] == "diverged"
    if m["diverged"] != diverged:
        bad(f"status {m['status']!r} but diverged {m['diverged']!r}")
    epochs, run = spec["params"]["epochs"], m["epochs_run"]
    if run > epochs:
        bad(f"epochs_run {run} exceeds the spec's epochs {epochs}")
    if diverged and m["diverged_epoch"] != run:
        bad(f"a diverged run stops in the epoch it diverged in: diverged_epoch {m['diverged_epoch']!r}, "
            f"epochs_run {run}")
    if not diverged and m["diverged_epoch"] is not None:
        bad(f"diverged_epoch {m['diverged_epoch']!r} in a run that did not diverge")
    finals = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc",
              "final_running_loss", "final_running_acc")
    for key in finals:
        if diverged and m[key] is not None:
            bad(f"{key} {m[key]!r} in a diverged run (its numbers are not measurements: null)")
        if not diverged and m[key] is None:
            bad(f"{key} is null in a run that did not diverge (status 'ok')")
    labels, preds, top = m.get("test_label_counts"), m.get("test_pred_counts"), m.get("top_pred_class")
    if labels is not None and preds is not None and len(preds) != len(labels):
        bad(f"test_pred_counts has {len(preds)} classes, test_label_counts {len(labels)}")
    if top is not None and (labels is None or top >= len(labels)):
        bad(f"top_pred_class {top} is not one of the {len(labels or [])} classes of test_label_counts")
    per_epoch = m["steps_per_epoch"]
    if not (run - 1) * per_epoch < m["steps_run"] <= run * per_epoch:
        bad(f"steps_run {m['steps_run']} does not fit {run} epoch(s) of {per_epoch} steps")
    expected = math.ceil(m["images_per_epoch"] / spec["params"]["batch_size"])
    if per_epoch != expected:
        bad(f"steps_per_epoch {per_epoch} is not ceil(images_per_epoch {m['images_per_epoch']} / "
            f"batch_size {spec['params']['batch_size']}) = {expected}")


def _rows(data: bytes, member: str, columns: tuple[str, ...] | None) -> tuple[list[str], list[list[str]]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RunError(member, f"not UTF-8 text (byte {err.start})") from None
    if "\x00" in text:
        raise RunError(member, "holds a NUL byte; not a CSV file")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise RunError(member, f"not CSV ({err})") from None
    if not rows:
        raise RunError(member, "empty; a header line is expected")
    if columns is not None and tuple(rows[0]) != columns:
        raise RunError(member, f"header {','.join(rows[0])[:120]!r}, expected {','.join(columns)!r}")
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise RunError(member, f"line {i} has {len(row)} field(s), the header {len(rows[0])}")
    return rows[0], rows[1:]


def _number(text: str, member: str, line: int, column: str, integer: bool = False) -> float:
    try:
        return int(text) if integer else float(text)
    except ValueError:
        raise RunError(member, f"line {line}, {column}: {text[:40]!r} is not "
                               + ("an integer" if integer else "a number")) from None


def check_history(data: bytes, m: dict, member: str = "history.csv") -> None:
    """history.csv against its run's metrics: its columns, one row per epoch run, epochs 1..n, the last
    row's accuracies the final ones (a run that did not diverge), accuracies within [0, 1]."""
    if m["status"] == "no-data":
        _rows(data, member, ("epoch",))
        return
    columns = HISTORY_COLUMNS + (("noise_scale",) if m["spec"]["params"].get("noise_scale_batches") else ())
    _, rows = _rows(data, member, columns)
    if len(rows) != m["epochs_run"]:
        raise RunError(member, f"{len(rows)} row(s), but metrics.json says epochs_run {m['epochs_run']}")
    for line, row in enumerate(rows, start=2):
        values = dict(zip(columns, row))
        if _number(values["epoch"], member, line, "epoch", integer=True) != line - 1:
            raise RunError(member, f"line {line}: epoch {values['epoch']!r}, expected {line - 1}")
        for column in columns[1:]:
            value = _number(values[column], member, line, column)
            if column.endswith("_acc") and not (math.isnan(value) or 0 <= value <= 1):
                raise RunError(member, f"line {line}, {column}: {value!r} is not within [0, 1]")
    if m["status"] == "ok":
        last = dict(zip(columns, rows[-1]))
        for column in ("train_acc", "test_acc"):
            if float(last[column]) != m[f"final_{column}"]:
                raise RunError(member, f"last epoch's {column} {last[column]} is not metrics.json's final_{column} "
                                       f"{m[f'final_{column}']!r}")


def check_iterations(data: bytes, m: dict, member: str = "iterations.csv") -> None:
    """iterations.csv against its run's metrics: step,epoch,loss, every `every`-th step of the steps run
    (train.py's subsampling), increasing, each in its epoch."""
    _, rows = _rows(data, member, ITERATION_COLUMNS)
    if m["status"] == "no-data":
        if rows:
            raise RunError(member, f"{len(rows)} row(s) in a run without its data set; none expected")
        return
    per_epoch, steps = m["steps_per_epoch"], m["steps_run"]
    every = max(1, math.ceil(per_epoch * m["spec"]["params"]["epochs"] / MAX_LOSS_POINTS))
    expected = math.ceil(steps / every)
    if len(rows) != expected:
        raise RunError(member, f"{len(rows)} row(s), but {steps} steps run, one kept in {every}, make {expected}")
    for i, row in enumerate(rows):
        line = i + 2
        step = _number(row[0], member, line, "step", integer=True)
        epoch = _number(row[1], member, line, "epoch", integer=True)
        _number(row[2], member, line, "loss")
        if step != i * every + 1 or epoch != (step - 1) // per_epoch + 1:
            raise RunError(member, f"line {line}: step {row[0]} of epoch {row[1]}, expected step {i * every + 1} of "
                                   f"epoch {i * every // per_epoch + 1}")


def read_run(folder: Path, where: tuple[str, str, int] | None = None) -> dict:
    """Check the finished run in `folder` (its three files) and return its metrics. `where` (study,
    setting, seed) is what its path says; the metrics must agree. RunError names the first problem."""
    for name in RUN_FILES:
        if not (folder / name).is_file():
            raise RunError(name, "missing; a finished run has metrics.json, history.csv and iterations.csv")
    m = check_metrics(parse_json((folder / "metrics.json").read_bytes(), "metrics.json"))
    if where is not None and (m["study"], m["setting"], m["seed"]) != tuple(where):
        raise RunError("metrics.json", f"records {m['study']}/{m['setting']} seed={m['seed']}, but lies in "
                                       f"{where[0]}/{where[1]}/seed={where[2]}")
    check_history((folder / "history.csv").read_bytes(), m)
    check_iterations((folder / "iterations.csv").read_bytes(), m)
    return m


def read_timing(data: bytes, study: str, member: str = "timing.json") -> dict:
    """A study's timing.json, checked: the schema, every record of this study, bursts of one length."""
    doc = parse_json(data, member)
    _schema_check(doc, TIMING_SCHEMA, member)
    for i, record in enumerate(doc["settings"]):
        if record["study"] != study:
            raise RunError(member, f"settings.{i}.study {record['study']!r} in the timing file of {study}")
        lengths = {len(v) for k, v in record.items() if k.endswith("_s_bursts")}
        if len(lengths) > 1:
            raise RunError(member, f"settings.{i} ({record['setting']}): burst lists of different lengths "
                                   f"{sorted(lengths)}")
    return doc


def check_manifest(data: bytes, member: str = "manifest.json") -> dict:
    """A bundle's manifest, checked against `MANIFEST_SCHEMA`."""
    doc = parse_json(data, member)
    _schema_check(doc, MANIFEST_SCHEMA, member)
    return doc
