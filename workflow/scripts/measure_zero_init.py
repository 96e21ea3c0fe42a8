"""Snakemake script: one backward pass of the study's network at zero initialisation -> zero_init.json."""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one small pass: no thread pool worth starting
sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 - `snakemake` is injected by Snakemake

from batchwise.analysis import zero_init  # noqa: E402 - after the thread count is set

zero_init.write(snakemake.params.study, snakemake.output[0])  # noqa: F821
