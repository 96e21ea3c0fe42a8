# Batchwise: re-run four homework hyper-parameter studies and report on them.
#   data -> one training job per cell -> per-study tables -> figures -> HTML + PDF report
import os

from snakemake.utils import min_version

min_version("9.27")

# The default config; a --configfile on the command line (config/quick.yaml, config/smoke.yaml,
# your own) is an overlay merged onto it, as Snakemake merges config files: mappings key by key,
# lists replaced. An overlay drops studies with `only_studies: [...]` or `<study>: null`.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/config.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
