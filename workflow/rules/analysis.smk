# Each study's analyses (half-failure, bend, collapsed models), computed from its runs table into
# results/<study>/analysis.json, which the report shows as it is. The zero-initialisation measurement
# the collapse explanation quotes needs torch: it is its own job, cached in results/<study>/zero_init.json.
from batchwise.analysis import zero_init as bw_zero_init


localrules:
    analyse_study,
    measure_zero_init,


rule measure_zero_init:
    message:
        "Measuring {wildcards.study}'s network at zero initialisation (one backward pass)"
    output:
        "results/{study}/zero_init.json",
    log:
        "logs/measure_zero_init/{study}.log",
    benchmark:
        "benchmarks/measure_zero_init/{study}.tsv"
    params:
        study=lambda w: config["studies"][w.study],
    conda:
        "../../envs/batchwise.yaml"
    script:
        "../scripts/measure_zero_init.py"


rule analyse_study:
    message:
        "Analysing {wildcards.study}: the analyses its figures call for, and collapsed models"
    input:
        # the zero-init measurement, for a study whose collapse explanation quotes it
        unpack(lambda w: {"zero_init": f"results/{w.study}/zero_init.json"}
               if bw_zero_init.needed(config["studies"][w.study]) else {}),
        runs="results/{study}/runs.csv",
    output:
        "results/{study}/analysis.json",
    log:
        "logs/analyse_study/{study}.log",
    benchmark:
        "benchmarks/analyse_study/{study}.tsv"
    params:
        study=lambda w: config["studies"][w.study],
        level=config["verdict"]["level"],
    conda:
        "../../envs/batchwise.yaml"
    script:
        "../scripts/analyse_study.py"
