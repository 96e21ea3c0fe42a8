"""The gate before any job: the config, and the claims and homework-tables files checked against it.

`config.validate` checks the config alone. This module adds what needs the other two files: every
claim and table names a declared homework and an existing study, a rule kind and metrics the
evaluator knows, and selectors whose keys are parameters of the study and whose values its grid can
produce. Every mistake is one line: `<file>: <key path>: <bad value> ...; allowed: ...`.

A smaller config (an overlay such as quick.yaml) may leave out studies or grid values: a claim about
them stays allowed, since the report marks it "not run yet". So keys and values are checked against the
config in use together with the default config/config.yaml, and only what no config can produce is
refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import yaml

from batchwise.analysis import claims as claims_mod
from .config import (BASE_CONFIG, DEFAULT_PARAMS, MODEL_PARAMS, REPO, ConfigError, _show, cells, read,
                     slug_value, validate)

FILE_KEYS = {"claims": "the claims file", "homework_tables": "the homework-tables file"}
TABLE_KEYS = ("id", "homework", "title", "study", "key", "columns", "rows")


def resolve_path(path: str) -> Path:
    """A file named in the config: relative to the working directory if it exists there, else to the
    repository (as the workflow's rules resolve it)."""
    return Path(path) if Path(path).exists() else REPO / path


def _norm(value: Any) -> str:
    """A parameter value as cell ids spell it, so YAML's 64, 64.0 and '64' compare equal."""
    if isinstance(value, str):
        value = yaml.safe_load(value) if value.strip() else value
    return slug_value(float(value) if isinstance(value, int) and not isinstance(value, bool) else value).lower()


class Studies:
    """The studies a claim may name: those of the config in use, and of the default config."""

    def __init__(self, config: dict):
        self.specs: dict[str, list[dict]] = {}
        try:
            base = read(BASE_CONFIG).get("studies") or {}
        except ConfigError:
            base = {}
        for source in (config["studies"], base):
            for name, spec in source.items():
                if isinstance(spec, dict) and isinstance(spec.get("grid"), dict):
                    self.specs.setdefault(name, []).append(spec)

    def names(self) -> list[str]:
        return list(self.specs)

    def keys(self, study: str) -> list[str]:
        """Every column of the runs table a selector may name: the resolved parameters, and `seed`."""
        keys = set(DEFAULT_PARAMS) | {"seed"}
        for spec in self.specs[study]:
            keys |= set(MODEL_PARAMS.get(spec.get("model"), {})) | set(spec.get("params") or {}) | set(spec["grid"])
        return sorted(keys)

    def grid_keys(self, study: str) -> list[str]:
        return sorted({k for spec in self.specs[study] for k in spec["grid"]})

    def values(self, study: str, key: str) -> list[Any]:
        """The values of `key` some config's grid (or fixed params, or defaults) gives this study."""
        out: list[Any] = []
        for spec in self.specs[study]:
            params = {**DEFAULT_PARAMS, **MODEL_PARAMS.get(spec.get("model"), {}), **(spec.get("params") or {})}
            found = spec.get("seeds", []) if key == "seed" else spec["grid"].get(key, [params.get(key)])
            out += [v for v in found if _norm(v) not in map(_norm, out)]
        return out


def _selector_errors(studies: Studies, where: str, study: str, selector: Any) -> Iterator[str]:
    """One selector ({param: value}, plus optional study and label) of a claim or a table row."""
    if not isinstance(selector, dict):
        yield f"{where}: {_show(selector)} is not a mapping; allowed: a mapping of parameter: value"
        return
    study = selector.get("study", study)
    if study not in studies.specs:
        yield f"{where}.study: {_show(study)} is not a study; allowed: {', '.join(studies.names())}"
        return
    for key, value in selector.items():
        if key in claims_mod.SELECTOR_RESERVED:
            continue
        if key not in studies.keys(study):
            yield (f"{where}.{key}: {_show(key)} is not a parameter of study {study}; "
                   f"allowed: {', '.join(studies.keys(study))}")
        elif _norm(value) not in map(_norm, studies.values(study, key)):
            yield (f"{where}.{key}: {_show(value)} is not a value study {study} runs; "
                   f"allowed: {', '.join(_show(v) for v in studies.values(study, key))}")


def _common_errors(config: dict, studies: Studies, where: str, item: dict) -> Iterator[str]:
    """The homework and study a claim or table names."""
    homeworks = config.get("homeworks") or {}
    if str(item["homework"]) not in homeworks:
        yield (f"{where}.homework: {_show(str(item['homework']))} is not declared under homeworks in the config; "
               f"allowed: {', '.join(map(repr, homeworks)) or 'an id declared under homeworks (none is)'}")
    if item["study"] not in studies.specs:
        yield f"{where}.study: {_show(item['study'])} is not a study; allowed: {', '.join(studies.names())}"


def _items(doc: Any, label: str, key: str) -> tuple[list, list[str]]:
    """The list under `key` of a claims or tables document, or the line saying it is not there."""
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        return [], [f"{label}: {key}: {_show(items)} is not a list; allowed: a non-empty list under '{key}'"]
    return items, []


def _missing(where: str, item: Any, keys: tuple[str, ...]) -> list[str]:
    if not isinstance(item, dict):
        return [f"{where}: {_show(item)} is not a mapping; allowed: a mapping with keys {', '.join(keys)}"]
    return [f"{where}.{k}: missing; this key is required" for k in keys if item.get(k) in (None, "")]


def claim_errors(config: dict, studies: Studies, label: str, claim: Any, index: int) -> list[str]:
    """Every mistake of one claim that makes it impossible to evaluate."""
    cid = claim.get("id") if isinstance(claim, dict) else None
    where = f"{label}: claims[{cid or index}]"
    lines = _missing(where, claim, claims_mod.CLAIM_KEYS)
    if lines:
        return lines
    lines += _common_errors(config, studies, where, claim)
    rule = claim["rule"]
    if not isinstance(rule, dict):
        return lines + [f"{where}.rule: {_show(rule)} is not a mapping; allowed: a mapping with a 'kind'"]
    kind = rule.get("kind")
    if kind not in claims_mod.RULE_KINDS:
        return lines + [f"{where}.rule.kind: {_show(kind)} is not a known rule kind; "
                        f"allowed: {', '.join(claims_mod.RULE_KINDS)}"]
    required, optional = claims_mod.RULE_KINDS[kind]
    lines += [f"{where}.rule.{k}: missing; rule '{kind}' requires it" for k in required if k not in rule]
    lines += [f"{where}.rule.{k}: unknown key for rule '{kind}'; allowed: {', '.join(('kind', *required, *optional))}"
              for k in rule if k not in (*required, *optional, "kind")]
    metrics = claims_mod.NEVER_METRICS if kind == "not_converged" else claims_mod.METRICS
    if "metric" in rule and rule["metric"] not in metrics:
        lines.append(f"{where}.rule.metric: {_show(rule['metric'])} is not a metric rule '{kind}' can use; "
                     f"allowed: {', '.join(sorted(metrics))}")
    if claim["study"] not in studies.specs:
        return lines
    for key in claims_mod.SELECTOR_FIELDS:
        if key in rule:
            lines += _selector_errors(studies, f"{where}.rule.{key}", claim["study"], rule[key])
    over = rule.get("over")
    if over is not None and over not in studies.grid_keys(claim["study"]):
        lines.append(f"{where}.rule.over: {_show(over)} is not a grid key of study {claim['study']}; "
                     f"allowed: {', '.join(studies.grid_keys(claim['study']))}")
    elif over is not None and isinstance(rule.get("values"), list):
        for i, value in enumerate(rule["values"]):
            lines += _selector_errors(studies, f"{where}.rule.values[{i}]", claim["study"], {over: value})
    return lines


def table_errors(config: dict, studies: Studies, label: str, table: Any, index: int) -> list[str]:
    """Every mistake of one homework table that makes it impossible to show beside our numbers."""
    tid = table.get("id") if isinstance(table, dict) else None
    where = f"{label}: tables[{tid or index}]"
    lines = _missing(where, table, TABLE_KEYS)
    if lines:
        return lines
    lines += _common_errors(config, studies, where, table)
    for i, column in enumerate(table["columns"] if isinstance(table["columns"], list) else []):
        metric = column.get("metric") if isinstance(column, dict) else None
        if metric not in claims_mod.METRICS:
            lines.append(f"{where}.columns[{i}].metric: {_show(metric)} is not a known metric; "
                         f"allowed: {', '.join(claims_mod.METRICS)}")
    if table["study"] not in studies.specs:
        return lines
    keys = table["key"] if isinstance(table["key"], list) else [table["key"]]
    for i, row in enumerate(table["rows"] if isinstance(table["rows"], list) else []):
        if not isinstance(row, dict) or any(k not in row for k in keys):
            lines.append(f"{where}.rows[{i}]: {_show(row)} does not name every key; allowed: a mapping with "
                         f"{', '.join(map(str, keys))} and the columns' metrics")
            continue
        lines += _selector_errors(studies, f"{where}.rows[{i}]", table["study"], {k: row[k] for k in keys})
    return lines


def _file_errors(config: dict, key: str, check, items_key: str, loader) -> list[str]:
    """Check one of the two files against the config: its items one by one, then the loader itself
    (which may know a rule the checks above do not), each mistake as one line."""
    path = resolve_path(config[key])
    label = config[key]
    if not path.is_file():
        places = " and ".join(dict.fromkeys(map(str, (Path.cwd(), REPO))))
        return [f"config: {key}: {config[key]!r} does not exist (looked in {places}); "
                f"allowed: the path of {FILE_KEYS[key]}, relative to the working directory or the repository"]
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        return [f"{label}: not valid YAML{f' at line {mark.line + 1}' if mark else ''}; allowed: a YAML mapping"]
    items, lines = _items(doc, label, items_key)
    studies = Studies(config)
    for i, item in enumerate(items):
        lines += check(config, studies, label, item, i)
    seen: set[str] = set()
    for item in items:
        if isinstance(item, dict) and item.get("id") in seen:
            lines.append(f"{label}: {items_key}[{item['id']}].id: {_show(item['id'])} is used twice; allowed: each id once")
        seen.add(item.get("id") if isinstance(item, dict) else None)
    if not lines:
        try:
            loader(path)
        except ValueError as err:
            lines.append(f"{label}: {err}")
    return lines


def run_errors(config: dict) -> list[str]:
    """Mistakes of the claims and homework-tables files against a validated config, one line each."""
    return (_file_errors(config, "claims", claim_errors, "claims", claims_mod.load_claims)
            + _file_errors(config, "homework_tables", table_errors, "tables", claims_mod.load_homework_tables))


def check(config: dict) -> dict:
    """The gate: validate the config, then the two files against it; ConfigError with every mistake."""
    validate(config)
    errors = run_errors(config)
    if errors:
        raise ConfigError("\n".join(errors))
    return config


def summary(config: dict) -> str:
    """What a passed check covered, for `python -m batchwise check`."""
    n_claims = len(yaml.safe_load(resolve_path(config["claims"]).read_text(encoding="utf-8"))["claims"])
    n_tables = len(yaml.safe_load(resolve_path(config["homework_tables"]).read_text(encoding="utf-8"))["tables"])
    return (f"OK, {len(cells(config))} training cells in {len(config['studies'])} studies; "
            f"{n_claims} claims and {n_tables} homework tables checked against it")
