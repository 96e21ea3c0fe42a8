"""The verdicts as a workflow output: every claim about a config's studies judged on their runs
(``judge``), written to ``results/claims.csv`` with its numbers and its rule (``write_verdicts``), and read
back as the report renders them (``read_verdicts``). One row per claim; lists and mappings (the claim's
rule, its groups and comparisons) are JSON, numbers are written exactly (NaN and inf as such)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from batchwise.files import atomic_write_text
from .evaluate import evaluate_claims
from .loading import claim_selectors, load_claims

# The columns of results/claims.csv, in order: what the claim says, the verdict, the numbers of the deciding
# comparison (raw metric units; diff is a difference of means, or of shares, or the Hodges-Lehmann shift
# where the comparison's method is rank-sum; p where an exact test decided), the text, the rule.
TEXT = ("id", "homework", "study", "source", "quote_kind", "quote", "english", "kind", "metric", "verdict")
NUMBERS = ("mean_a", "std_a", "n_a", "mean_b", "std_b", "n_b", "diff", "lo", "hi", "p")
WORDS = ("evidence", "reason", "hardware")
JSON = ("rule", "groups", "comparisons")
COLUMNS = TEXT + ("level",) + NUMBERS + WORDS + JSON


def judge(config: dict, runs: pd.DataFrame, claims: str | Path) -> list[dict]:
    """Every claim of the claims file whose studies the config holds, judged on the runs (no-data rows
    left out) by the config's verdict rule; each result also carries its ``source`` (a paper, for a claim
    from the literature, else "") and its ``rule``."""
    wanted = [c for c in load_claims(Path(claims))
              if {c["study"], *(s for s, _ in claim_selectors(c))} <= set(config["studies"])]
    done = runs[runs["status"] != "no-data"] if "status" in runs.columns else runs
    verdict = config["verdict"]
    results = evaluate_claims(wanted, done, level=verdict["level"], min_runs=verdict["min_runs"],
                              grids={name: s["grid"] for name, s in config["studies"].items()})
    for res, claim in zip(results, wanted):
        res.update(source=claim.get("source", ""), rule=claim["rule"], level=verdict["level"])
    return results


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)   # exact, and 'nan' / 'inf' as such
    return "" if value is None else str(value)


def write_verdicts(results: list[dict], path: str | Path) -> None:
    """``results/claims.csv``: one row per judged claim (``judge``), the columns of ``COLUMNS``."""
    def cell(res: dict, column: str) -> str:
        if column in JSON:   # numpy numbers (a group's count) as plain ones
            return json.dumps(res.get(column), ensure_ascii=False, default=lambda x: x.item())
        return _cell(res.get(column, math.nan if column in NUMBERS else ""))

    rows = [{c: cell(r, c) for c in COLUMNS} for r in results]
    atomic_write_text(Path(path), pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(index=False))


def _number(text: str) -> float | int:
    value = float(text) if text else math.nan
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def read_verdicts(path: str | Path) -> list[dict]:
    """The judged claims as ``judge`` returned them, from ``results/claims.csv``."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    out = []
    for row in frame.to_dict("records"):
        res: dict[str, Any] = {c: row.get(c, "") for c in TEXT + WORDS}   # "": a column added since
        res.update({c: _number(row[c]) for c in NUMBERS + ("level",)})
        res.update({c: json.loads(row[c]) for c in JSON})
        out.append(res)
    return out
