"""Snakemake script: assemble the HTML report from the per-study tables, figures and claims."""
import sys
from pathlib import Path

from batchwise.report.document import write_html

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 - `snakemake` is injected by Snakemake
write_html(
    snakemake.config,  # noqa: F821
    claims=snakemake.input.claims,  # noqa: F821
    verdicts=snakemake.input.verdicts,  # noqa: F821
    homework=snakemake.input.homework,  # noqa: F821
    template_dir=Path(snakemake.input.template).parent,  # noqa: F821
    results_dir="results",
    figures_dir="reports/figures",
    out=snakemake.output[0],  # noqa: F821
    command=snakemake.params.command,  # noqa: F821
)
