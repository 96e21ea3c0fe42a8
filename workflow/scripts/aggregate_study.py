"""Snakemake script: one study's per-cell files -> runs.csv, summary.csv, history.csv, iterations.csv."""
import sys
from pathlib import Path

from batchwise.results.aggregate import aggregate_study

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 - `snakemake` is injected by Snakemake
timing = snakemake.input.get("timing") or None  # noqa: F821 - absent with `missing_runs: skip` and no timing pass
timing = timing if isinstance(timing, str) or timing is None else timing[0]
aggregate_study(snakemake.params.metrics, snakemake.params.grid_keys, Path(snakemake.output.runs).parent,  # noqa: F821
                snakemake.params.failure_margin, timing=timing, goal_acc=snakemake.params.goal_acc)  # noqa: F821
