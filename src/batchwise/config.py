"""Load and check the study configuration, and expand each study's grid into cells.

A *study* is a dataset, a model, fixed `params`, a `grid` (cartesian product of lists) and `seeds`.
A *cell* is one point of the grid with one seed: one training run, one job, one folder
`results/<study>/<cell>/`. Cell ids are readable slugs such as `bn=true_lr=0.1_seed=0`.
"""
from __future__ import annotations

import copy
import functools
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
# The default config; every other config file is an overlay merged onto it (as Snakemake merges
# --configfile onto the Snakefile's `configfile:`).
BASE_CONFIG = REPO / "config" / "config.yaml"

# Values every run gets unless the study sets them.
DEFAULT_PARAMS: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 64,
    "lr": 0.01,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "init": "default",
    "target_acc": None,
    "train_subset": None,
    "test_subset": None,
    "eval_batch_size": 2000,
    "lr_scaling": "none",          # none | linear | sqrt: lr x (batch_size / base_batch_size)^(1 | 1/2)
    "base_batch_size": 256,        # the batch size at which the scaled learning rate equals `lr`
    "warmup_epochs": 0.0,          # linear lr warm-up from lr/steps to lr (graph replays on CUDA)
    "stop_at_target": False,       # stop a run once test accuracy reaches target_acc
    "target_checks_per_epoch": 1,  # test-accuracy checks per epoch for the target (steps to target)
    "noise_scale_batches": None,   # [small, big]: measure the gradient noise scale after each epoch
    "noise_scale_draws": 8,        # mini-batch gradients per batch size for that estimate
}
# Parameters a study may set that are absent from a run's spec unless it does: a default here would
# enter every resolved spec, and runs recorded before the key existed would then no longer match it.
OPTIONAL_PARAMS: dict[str, Any] = {
    "micro_batch": None,           # run batches larger than this in chunks of it (gradients summed)
}
# Models whose outputs depend on how a batch is cut (batch norm, dropout): no `micro_batch`.
CHUNK_SENSITIVE = {"mnist_cnn": "dropout", "mobilenet_v2": "batch norm and dropout"}
# Parameters that only some models take.
MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "mnist_cnn": {},
    "mlp": {"bn": False},
    "cnn2": {"bn": False},
    "lenet5": {},
    "mobilenet_v2": {"pretrained": False},
}
# Training-set sizes, to reject a batch larger than the data before any job starts.
TRAIN_SIZES = {"mnist": 60000, "cifar10": 50000, "cifar10_grey": 50000}
TEST_SIZES = {"mnist": 10000, "cifar10": 10000, "cifar10_grey": 10000}
SYNTHETIC_TRAIN_SIZE = 1200  # must match data._synthetic's n_train
SYNTHETIC_TEST_SIZE = 400    # and its n_test

# Per-run results (the runs table's metric columns) and per-epoch curves: what figures may name.
RUN_METRICS = (
    "final_test_acc", "final_test_loss", "final_train_acc", "final_train_loss", "final_running_acc",
    "final_running_loss", "first_epoch_running_loss", "best_test_acc", "generalisation_gap", "epochs_run",
    "epochs_to_target", "time_to_target_s", "train_time_s", "eval_time_s", "total_time_s", "mean_epoch_s",
    "steps_per_epoch", "images_per_epoch", "gpu_mem_peak_mb",
    # the extension studies: learning rate after scaling, exact steps and images to the target (stop at
    # target), median gradient noise scale over epochs, share of test images given to the top class
    "lr_effective", "steps_to_target", "examples_to_target", "noise_scale", "top_pred_share",
    # read off the per-epoch history at a study's `goal_acc` (aggregate.goal_columns), not from metrics.json
    "epochs_to_goal", "time_to_goal_s",
)
# Figure kinds that need an `x` (a grid key on their horizontal axis).
FIGURES_WITH_X = ("sweep", "trained_share", "to_target")
# train_* and test_*: eval mode after the epoch; running_*: in-epoch averages in train mode.
CURVE_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "running_loss", "running_acc")
METRICS = RUN_METRICS + CURVE_METRICS
SLUG_RE = re.compile(r"^[a-z0-9_.=+-]+$")


class ConfigError(ValueError):
    """A configuration mistake, as one line: the key path, the bad value, and what is allowed."""


@dataclass(frozen=True)
class Cell:
    """One training run: a study, one grid point and one seed."""

    study: str
    setting: str  # grid point slug, without the seed
    seed: int
    grid_values: tuple[tuple[str, Any], ...]

    @property
    def id(self) -> str:
        return f"{self.setting}_seed={self.seed}"


def slug_value(value: Any) -> str:
    """Render a parameter value for a cell id: booleans lower-case, numbers shortest form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _apply_defaults(config: dict) -> dict:
    config.setdefault("download", True)
    config.setdefault("strict_data", False)
    config.setdefault("synthetic_data", False)
    config.setdefault("missing_runs", "train")
    config.setdefault("device", "auto")
    config.setdefault("cuda_graphs", "auto")
    config.setdefault("deterministic", False)
    # One thread per job, as many jobs as cores: measured on 2 cores, two 1-thread jobs train 1.2-1.9x
    # the images of one 2-thread job (docs/benchmarks.md). Not part of a run's spec: it changes the
    # time, and metrics.json records it (engine.threads).
    config.setdefault("train_threads", 1)
    config.setdefault("run_label", "")
    config.setdefault("claims", "config/claims.yaml")
    config.setdefault("homework_tables", "config/homework.yaml")
    config.setdefault("homeworks", {})
    verdict = config.setdefault("verdict", {})
    verdict.setdefault("level", 0.95)
    verdict.setdefault("min_runs", 3)
    verdict.setdefault("failure_margin", 0.02)
    timing = config.setdefault("timing", {})
    timing.setdefault("bursts", 5)
    timing.setdefault("steps", 20)
    timing.setdefault("warmup", 10)
    for study in config.get("studies", {}).values():
        # JSON Schema's integer accepts 2.0; training needs a Python int (range(), tensor shapes).
        for key in INTEGER_PARAMS:
            if isinstance(study["params"].get(key), float):
                study["params"][key] = int(study["params"][key])
            if key in study["grid"]:
                study["grid"][key] = [int(v) if isinstance(v, float) else v for v in study["grid"][key]]
        study["seeds"] = [int(v) if isinstance(v, float) else v for v in study["seeds"]]
        study.setdefault("our_choices", {})
        study.setdefault("figures", [])
    return config


def _show(value: Any) -> str:
    """A bad value as the user wrote it, short enough for one line."""
    text = repr(value) if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("\n...").replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed(schema: dict) -> str:
    """What a (leaf) schema accepts, in words: 'an integer >= 1', 'a number > 0 and <= 1', 'one of a, b'."""
    if "enum" in schema:
        return "one of " + ", ".join(_show(v).strip("'") for v in schema["enum"])
    kind = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string",
            "array": "a list", "object": "a mapping"}.get(schema.get("type"), "a value")
    bounds = [f"{op} {schema[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                      ("maximum", "<="), ("exclusiveMaximum", "<"))
              if key in schema]
    return f"{kind} {' and '.join(bounds)}" if bounds else kind


def _schema_line(err, where: str) -> list[str]:
    """One line per problem for one jsonschema error: key path, bad value, what is allowed."""
    v, inst, schema = err.validator, err.instance, err.schema
    prefix = "" if where == "<top level>" else f"{where}."  # for errors that name a key inside `where`
    if v == "additionalProperties":
        allowed = ", ".join(sorted(schema.get("properties", {})))
        unknown = [k for k in inst if k not in schema.get("properties", {})]
        return [f"config: {prefix}{k}: unknown key (allowed here: {allowed})" for k in unknown]
    if v == "required":
        return [f"config: {prefix}{k}: missing; this key is required" for k in err.validator_value if k not in inst]
    if v == "pattern" and "propertyNames" in err.schema_path:
        return [f"config: {where}: name {_show(inst)} is not allowed: use lower-case letters, digits and '_', "
                f"starting with a letter"]
    if v == "enum":
        return [f"config: {where}: {_show(inst)} is not a known value; allowed: {_allowed(schema)}"]
    if v == "type":
        got = {bool: "a boolean", str: "text", int: "an integer", float: "a number", list: "a list",
               dict: "a mapping", type(None): "empty"}.get(type(inst), type(inst).__name__)
        if inst is None:
            return [f"config: {where}: has no value; allowed: {_allowed(schema)}"]
        return [f"config: {where}: {_show(inst)} is {got}; allowed: {_allowed(schema)}"]
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return [f"config: {where}: {_show(inst)} is out of range; allowed: {_allowed(schema)}"]
    if v in ("minItems", "minProperties"):
        if schema.get("properties"):
            need = f"at least one of the keys {', '.join(sorted(schema['properties']))}"
        else:
            need = f"at least {err.validator_value} {'entry' if v == 'minProperties' else 'value'}"
        return [f"config: {where}: is empty; allowed: {need}"]
    if v == "uniqueItems":
        seen, dup = set(), None
        for item in inst:
            key = repr(item)
            if key in seen:
                dup = item
                break
            seen.add(key)
        return [f"config: {where}: {_show(dup)} is listed twice; allowed: each value once"]
    if v == "minLength":
        return [f"config: {where}: must not be empty"]
    return [f"config: {where}: {err.message}"]


@functools.cache
def _schema() -> dict:
    """The workflow's JSON schema, parsed once per process (both checks below read it)."""
    return yaml.safe_load(SCHEMA.read_text())


def schema_errors(config: dict) -> list[str]:
    """Check `config` against the JSON schema; one line per problem, naming the key path, the bad
    value and what is allowed."""
    import jsonschema

    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        leaf = min([err, *err.context], key=lambda e: len(e.message)) if err.context else err
        lines += _schema_line(leaf, _key_path(leaf.absolute_path))
    return lines


INTEGER_PARAMS = ("epochs", "batch_size", "train_subset", "test_subset", "eval_batch_size", "base_batch_size",
                  "target_checks_per_epoch", "noise_scale_draws", "micro_batch")


def _numbers(study: dict):
    """(key path, parameter name, value) of every value in a study's params and grid lists."""
    for key, value in study["params"].items():
        yield f"params.{key}", key, value
    for key, values in study["grid"].items():
        for i, value in enumerate(values):
            yield f"grid.{key}[{i}]", key, value


def _micro_batch_errors(where: str, study: dict) -> list[str]:
    """`micro_batch` only where a batch cut in chunks gives the same gradient: no batch norm, no dropout."""
    params, grid = study["params"], study["grid"]
    if "micro_batch" not in params:
        return []
    why = CHUNK_SENSITIVE.get(study["model"])
    # A model that takes no `bn` has that error of its own; one mistake, one line.
    takes_bn = "bn" in MODEL_PARAMS[study["model"]]
    if why is None and takes_bn and True in [params.get("bn"), *grid.get("bn", [])]:
        why = "batch norm (bn: true)"
    return [f"{where}.params.micro_batch: model '{study['model']}' has {why}, whose outputs depend on how a batch is cut; "
            f"allowed: no micro_batch for this model"] if why else []


def semantic_errors(config: dict) -> list[str]:
    """Checks a schema cannot express: model/parameter fit, batch vs data size, duplicate cells,
    non-finite numbers. One line per problem: key path, bad value, what is allowed."""
    lines = []
    defs = _schema()["$defs"]
    homeworks = config.get("homeworks") or {}
    for name, study in config["studies"].items():
        where = f"config: studies.{name}"
        model, params, grid = study["model"], study["params"], study["grid"]
        lines += _homework_errors(where, study, homeworks)
        lines += _subset_errors(config, name, study)
        for path, key, value in _numbers(study):
            # YAML's .nan passes every schema bound (NaN compares false) and .inf passes lower bounds.
            if isinstance(value, float) and not math.isfinite(value):
                rule = defs.get(key, {})
                lines.append(f"{where}.{path}: {slug_value(value)} is not a finite number; "
                             f"allowed: {_allowed(rule).replace('a number', 'a finite number')}")
        for key in sorted(set(params) & set(grid)):
            lines.append(f"{where}.params.{key}: '{key}' is also in grid; allowed: one of params or grid, not both")
        allowed = set(DEFAULT_PARAMS) | set(OPTIONAL_PARAMS) | set(MODEL_PARAMS[model])
        lines += _micro_batch_errors(where, study)
        for section, keys in (("params", params), ("grid", grid)):
            for key in keys:
                if key not in allowed:
                    lines.append(f"{where}.{section}.{key}: model '{model}' takes no '{key}'; "
                                 f"allowed: {', '.join(sorted(allowed))}")
        n_data = SYNTHETIC_TRAIN_SIZE if config.get("synthetic_data") else TRAIN_SIZES[study["dataset"]]
        subsets = [s for s in grid.get("train_subset", [params.get("train_subset")]) if s]
        n_train = min([n_data, *subsets])
        what = (f"the {n_train} training images of '{study['dataset']}'" if n_train == n_data else
                f"train_subset {n_train} (of the {n_data} training images of '{study['dataset']}')")
        if "batch_size" in grid:
            sizes = [(f"grid.batch_size[{i}]", bs) for i, bs in enumerate(grid["batch_size"])]
        else:
            sizes = [("params.batch_size", params.get("batch_size", DEFAULT_PARAMS["batch_size"]))]
        for path, bs in sizes:
            if isinstance(bs, (int, float)) and bs > n_train:
                lines.append(f"{where}.{path}: {bs} is larger than {what}; allowed: at most {n_train}")
        for key, values in grid.items():
            seen = [slug_value(v) for v in values]
            dup = sorted({v for v in seen if seen.count(v) > 1})
            if dup:
                lines.append(f"{where}.grid.{key}: {dup[0]} is listed twice (duplicate cell ids); "
                             f"allowed: each value once")
        for i, fig in enumerate(study.get("figures", [])):
            if fig["kind"] in FIGURES_WITH_X and "x" not in fig:
                lines.append(f"{where}.figures[{i}].x: missing; figure kind '{fig['kind']}' needs it; "
                             f"allowed: {', '.join(grid)}")
            for key in ("x", "hue", "panel", "split"):
                if key in fig and fig[key] not in grid:
                    lines.append(f"{where}.figures[{i}].{key}: '{fig[key]}' is not a grid key of this study; "
                                 f"allowed: {', '.join(grid)}")
            for metric in fig.get("metrics", []):
                if metric not in METRICS:
                    lines.append(f"{where}.figures[{i}].metrics: unknown metric '{metric}'; "
                                 f"allowed: {', '.join(METRICS)}")
    level = config.get("verdict", {}).get("level")
    if isinstance(level, float) and not math.isfinite(level):
        lines.append(f"config: verdict.level: {level} is not a finite number; allowed: a number > 0 and < 1")
    return lines


def _homework_errors(where: str, study: dict, homeworks: dict) -> list[str]:
    """A study re-runs a homework (`homework`) or goes beyond one (`extends`): exactly one, declared."""
    keys = [k for k in ("homework", "extends") if k in study]
    if len(keys) != 1:
        return [f"{where}: {'both homework and extends' if keys else 'neither homework nor extends'} "
                f"is set; allowed: exactly one of homework (the study re-runs it) or extends (it goes beyond it)"]
    key = keys[0]
    if study[key] not in homeworks:
        return [f"{where}.{key}: {_show(study[key])} is not declared under homeworks; "
                f"allowed: {', '.join(map(repr, homeworks)) or 'an id declared under homeworks (none is)'}"]
    return []


def _subset_errors(config: dict, name: str, study: dict) -> list[str]:
    """train_subset / test_subset larger than the data set: training would silently use all of it."""
    synthetic = bool(config.get("synthetic_data"))
    lines = []
    for key, sizes, fixed, kind in (("train_subset", TRAIN_SIZES, SYNTHETIC_TRAIN_SIZE, "training"),
                                    ("test_subset", TEST_SIZES, SYNTHETIC_TEST_SIZE, "test")):
        size = fixed if synthetic else sizes[study["dataset"]]
        what = f"the {size} {kind} images of {'synthetic ' if synthetic else ''}'{study['dataset']}'"
        if key in study["grid"]:
            values = [(f"grid.{key}[{i}]", v) for i, v in enumerate(study["grid"][key])]
        else:
            values = [(f"params.{key}", study["params"].get(key))]
        for path, value in values:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > size:
                lines.append(f"config: studies.{name}.{path}: {slug_value(value)} is larger than {what}; "
                             f"allowed: at most {size}")
    return lines


def select_studies(config: dict) -> list[str]:
    """Apply an overlay's choice of studies, in place: a study set to null is dropped, and
    `only_studies` keeps just the studies it names (in the config's order). Returns error lines."""
    studies = config.get("studies")
    if not isinstance(studies, dict):
        return []  # the schema check says what is wrong
    only = config.get("only_studies")
    only = only if isinstance(only, list) else list(studies)  # the schema reports a wrong type
    lines = [f"config: only_studies[{i}]: {_show(name)} is not a study of this config; "
             f"allowed: {', '.join(studies)}" for i, name in enumerate(only) if name not in studies]
    if not lines:  # a study both listed and set to null is dropped: null is the later word
        for name in [n for n, spec in studies.items() if spec is None or n not in only]:
            del studies[name]
    return lines


def validate(config: dict) -> dict:
    """Select studies, fill defaults and check `config`; raise ConfigError with every problem, one per line."""
    errors = select_studies(config)
    errors += schema_errors(config)
    if not errors:
        _apply_defaults(config)
        errors = semantic_errors(config)
    if errors:
        raise ConfigError("\n".join(errors))
    return config


def merge(base: dict, overlay: dict) -> dict:
    """Merge `overlay` into `base` in place, as Snakemake merges several config files: mappings key by
    key, every other value (a list too) replaced; a study set to null is dropped later, by validate."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def order_like(config: dict, template: dict) -> dict:
    """Reorder `config`'s keys in place, at every level, as in `template` (its new keys last).

    Snakemake merges the --configfile overlays before the Snakefile's default config, so a merged
    mapping lists the overlay's keys first; grid key order makes cell ids, so restore the default's."""
    for key in [k for k in template if k in config] + [k for k in config if k not in template]:
        value = config.pop(key)
        if isinstance(value, dict) and isinstance(template.get(key), dict):
            order_like(value, template[key])
        config[key] = value
    return config


def read(path: str | Path) -> dict:
    """One config file as a mapping; ConfigError (one line) where it is missing or not a mapping."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"config: {path}: cannot be read ({err.strerror}); allowed: a YAML config file") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"config: {path}: not valid YAML{line}; allowed: a YAML mapping") from None
    if not isinstance(doc, (dict, type(None))):
        raise ConfigError(f"config: {path}: {_show(doc)} is not a mapping; allowed: a YAML mapping of config keys")
    return doc or {}


def resolve_files(*paths: str | Path, overrides: dict | None = None) -> dict:
    """The config Snakemake resolves for `--configfile paths... --config overrides`: config/config.yaml
    with each file merged onto it in turn, then `overrides`; not yet validated."""
    config = read(BASE_CONFIG)
    for path in paths:
        merge(config, read(path))
    return merge(config, overrides or {})


def load(*paths: str | Path, overrides: dict | None = None) -> dict:
    """The resolved config (see resolve_files), validated, with defaults filled in."""
    return validate(resolve_files(*paths, overrides=overrides))


def cells(config: dict, study: str | None = None) -> list[Cell]:
    """All cells of one study (or of every study), in a stable order."""
    out = []
    for name, spec in config["studies"].items():
        if study not in (None, name):
            continue
        keys = list(spec["grid"])
        for values in itertools.product(*(spec["grid"][k] for k in keys)):
            setting = "_".join(f"{k}={slug_value(v)}" for k, v in zip(keys, values))
            for seed in spec["seeds"]:
                out.append(Cell(name, setting, seed, tuple(zip(keys, values))))
    return out


@dataclass(frozen=True)
class Setting:
    """One grid point of a study with all of its seeds: one training job, one folder
    `results/<study>/<setting>/` holding a `seed=<n>/` folder per seed."""

    study: str
    id: str  # grid point slug, e.g. bn=true_lr=0.1
    seeds: tuple[int, ...]
    grid_values: tuple[tuple[str, Any], ...]


def settings(config: dict, study: str | None = None) -> list[Setting]:
    """All grid points of one study (or of every study), in the order of `cells`."""
    out: dict[tuple[str, str], Setting] = {}
    for cell in cells(config, study):
        seeds = tuple(config["studies"][cell.study]["seeds"])
        out.setdefault((cell.study, cell.setting), Setting(cell.study, cell.setting, seeds, cell.grid_values))
    return list(out.values())


def setting_by_id(config: dict, study: str, setting_id: str) -> Setting:
    """Look a grid point up by its id; ConfigError if the config has no such setting."""
    for setting in settings(config, study):
        if setting.id == setting_id:
            return setting
    raise ConfigError(f"config: studies.{study}: no cell '{setting_id}' in this config's grid")


def resolve_setting(config: dict, setting: Setting) -> dict:
    """The resolved spec of a grid point's job: one cell's spec (its first seed) plus all `seeds`."""
    first = Cell(setting.study, setting.id, setting.seeds[0], setting.grid_values)
    return {**resolve(config, first), "seeds": list(setting.seeds)}


def resolve(config: dict, cell: Cell) -> dict:
    """Everything one training run needs, as plain values: the cell's full, resolved spec."""
    spec = config["studies"][cell.study]
    params = {**DEFAULT_PARAMS, **MODEL_PARAMS[spec["model"]], **spec["params"], **dict(cell.grid_values)}
    return {
        "study": cell.study,
        "cell": cell.id,
        "setting": cell.setting,
        "seed": cell.seed,
        "dataset": spec["dataset"],
        "model": spec["model"],
        "params": params,
        "device": config["device"],
        "cuda_graphs": config["cuda_graphs"],
        "deterministic": config["deterministic"],
    }


def dump(config: dict) -> str:
    """The resolved config as YAML, as the run records it (results/config.yaml)."""
    head = "# The resolved configuration of this run: config/config.yaml, overlays and --config merged.\n"
    return head + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120)
