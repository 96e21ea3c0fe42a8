"""Snakemake script: one study's runs table (and zero-init measurement) -> results/<study>/analysis.json."""
import sys

from batchwise.analysis.registry import write_study_analysis

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 - `snakemake` is injected by Snakemake
write_study_analysis(snakemake.params.study, snakemake.input.runs, snakemake.output[0],  # noqa: F821
                     snakemake.params.level, snakemake.input.get("zero_init"))  # noqa: F821
