"""Snakemake script: render the HTML report to an A4 PDF."""
import sys

from batchwise.report.document import write_pdf

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 - `snakemake` is injected by Snakemake
write_pdf(snakemake.input[0], snakemake.output[0])  # noqa: F821
