"""Snakemake script: the solo timing pass of every study's settings -> results/<study>/timing.json."""
import json
import os
import sys
from pathlib import Path

sm = snakemake  # noqa: F821 - `snakemake` is injected by Snakemake
os.environ["OMP_NUM_THREADS"] = str(sm.threads)  # before torch is imported, as train_cell's command line does
sys.stdout = sys.stderr = open(sm.log[0], "w", buffering=1)

from batchwise.engine import timing  # noqa: E402 - after the thread count is set

timing.time_studies(json.loads(sm.params.specs), {Path(p).stem: p for p in sm.input.data},
                    {Path(p).parent.name: p for p in sm.output}, sm.params.bursts, sm.params.steps,
                    sm.params.warmup, lambda line: print(f"[timing] {line}", flush=True))
