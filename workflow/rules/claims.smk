# The homework claims judged on the runs tables of the studies the report covers: every verdict, its
# numbers and its rule in results/claims.csv, which the report renders as it is.


localrules:
    judge_claims,


rule judge_claims:
    message:
        "Judging the claims on the runs"
    input:
        runs=expand("results/{study}/runs.csv", study=REPORTED),
        claims=repo_file(config["claims"]),
    output:
        "results/claims.csv",
    log:
        "logs/judge_claims.log",
    benchmark:
        "benchmarks/judge_claims.tsv"
    conda:
        "../../envs/batchwise.yaml"
    script:
        "../scripts/judge_claims.py"
