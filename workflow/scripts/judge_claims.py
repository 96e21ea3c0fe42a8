"""Snakemake script: the studies' runs tables and the claims file -> results/claims.csv."""
import sys

import pandas as pd

from batchwise.analysis.claims import judge, write_verdicts

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 - `snakemake` is injected by Snakemake
tables = [pd.read_csv(path) for path in snakemake.input.runs]  # noqa: F821
runs = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["study", "status", "outcome"])
write_verdicts(judge(snakemake.config, runs, snakemake.input.claims), snakemake.output[0])  # noqa: F821
