# Batchwise: re-run four homework hyper-parameter studies and report on them.
#   data -> one training job per cell -> per-study tables -> figures -> HTML + PDF report
from snakemake.utils import min_version

min_version("9.27")

# A --configfile on the command line replaces the default config rather than merging into it,
# so that the smaller configs (quick, smoke) never inherit studies from the full one.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
