localrules:
    aggregate_study,


rule aggregate_study:
    message:
        "Aggregating {wildcards.study}: runs, mean/std/n over seeds, curves"
    input:
        unpack(lambda w: aggregate_inputs(w.study)),
    output:
        runs=report("results/{study}/runs.csv", category="Tables", subcategory="{study}", labels={"study": "{study}", "table": "runs"}),
        summary=report("results/{study}/summary.csv", category="Tables", subcategory="{study}", labels={"study": "{study}", "table": "summary"}),
        history="results/{study}/history.csv",
        iterations="results/{study}/iterations.csv",
    log:
        "logs/aggregate_study/{study}.log",
    benchmark:
        "benchmarks/aggregate_study/{study}.tsv"
    params:
        grid_keys=lambda w: list(config["studies"][w.study]["grid"]),
        failure_margin=config["verdict"]["failure_margin"],
        goal_acc=lambda w: config["studies"][w.study].get("goal_acc"),
        metrics=lambda w: metrics_files(w.study),
    conda:
        "../../envs/batchwise.yaml"
    script:
        "../scripts/aggregate_study.py"
