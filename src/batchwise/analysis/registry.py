"""Which analyses a study gets: one per figure whose kind calls for one, then the collapse check."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd

from batchwise.files import atomic_write_text
from . import bend, collapse, half_failure, zero_init

# figure kind -> analysis(runs, figure spec, level) -> block
FIGURE_ANALYSES: dict[str, Callable[[pd.DataFrame, dict, float], dict]] = {
    "trained_share": half_failure.analyse,
    "to_target": bend.analyse,
}


def analyse_study(study: dict, runs: pd.DataFrame, level: float, zero_init_sentence: str = "") -> dict:
    """Every analysis block of one study, in the order the report shows them: one per figure that calls
    for one, in the figures' order, then collapsed models (with the zero-init sentence where explained).
    A study whose runs all lacked data gets none."""
    runs = runs[runs["status"] != "no-data"] if "status" in runs else runs
    if runs.empty:
        return {"blocks": []}
    blocks = [FIGURE_ANALYSES[spec["kind"]](runs, spec, level)
              for spec in study["figures"] if spec["kind"] in FIGURE_ANALYSES]
    collapsed = collapse.analyse(study, runs, measured=zero_init_sentence)
    return {"blocks": blocks + ([collapsed] if collapsed else [])}


def write_study_analysis(study: dict, runs: str | Path, out: str | Path, level: float,
                         zero_init_file: str | Path | None = None) -> dict:
    """results/<study>/runs.csv (+ zero_init.json) -> results/<study>/analysis.json; returns what it wrote."""
    result = analyse_study(study, pd.read_csv(runs), level, zero_init.sentence(zero_init_file))
    atomic_write_text(Path(out), json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result
