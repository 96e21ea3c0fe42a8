"""Zero-init: one backward pass of the study's own network at zero initialisation (`saddle`), the
measurement the collapse explanation quotes. It needs torch, so the workflow runs it as its own job
(rule `measure_zero_init`, cached in `results/<study>/zero_init.json`); torch is imported only in `measure`."""
from __future__ import annotations

import json
from pathlib import Path

from batchwise.files import atomic_write_text
from .common import explains


def needed(study: dict) -> bool:
    """Whether the study's collapse explanation quotes the measurement: it explains its collapsed models
    (a `predictions` figure) and trains a zero-initialised model."""
    inits = [str(v) for v in study["grid"].get("init", [])] + [str(study.get("params", {}).get("init"))]
    return explains(study) and "zeros" in inits


def measure(study: dict) -> dict:
    """The measurement on the study's model and input shape: per-tensor largest gradients and the sentence."""
    from . import saddle   # torch
    from batchwise.data.prepare import input_shape

    measured = saddle.zero_init_gradients(study["model"], input_shape(study["dataset"]))
    return {"model": study["model"], "dataset": study["dataset"], "measured": measured,
            "sentence": saddle.gradient_sentence(measured, study["model"])}


def write(study: dict, out: str | Path) -> None:
    """Measure and write the result as JSON."""
    atomic_write_text(Path(out), json.dumps(measure(study), indent=1) + "\n")


def sentence(path: str | Path | None) -> str:
    """The measured sentence from a written measurement; '' without one."""
    return json.loads(Path(path).read_text())["sentence"] if path else ""
