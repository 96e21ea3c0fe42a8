"""Snakemake script: draw one figure of a study, as the config's `figures` list describes it."""
import sys

from batchwise.report.figures import plot_figure

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 - `snakemake` is injected by Snakemake
study = snakemake.wildcards.study  # noqa: F821
plot_figure(
    snakemake.config["studies"][study],  # noqa: F821
    int(snakemake.wildcards.index),  # noqa: F821
    runs=snakemake.input.runs,  # noqa: F821
    history=snakemake.input.history,  # noqa: F821
    iterations=snakemake.input.iterations,  # noqa: F821
    out=snakemake.output[0],  # noqa: F821
)
