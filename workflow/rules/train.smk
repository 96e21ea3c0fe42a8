rule train_cell:
    message:
        "Training {wildcards.study}/{wildcards.cell}"
    input:
        data=lambda w: f"results/data/{config['studies'][w.study]['dataset']}.npz",
    output:
        metrics="results/{study}/{cell}/metrics.json",
        history="results/{study}/{cell}/history.csv",
        iterations="results/{study}/{cell}/iterations.csv",
    log:
        "logs/train_cell/{study}/{cell}.log",
    benchmark:
        "benchmarks/train_cell/{study}/{cell}.tsv"
    params:
        # The full resolved spec: changing any value of a cell re-runs that cell, and only it.
        spec=lambda w: cell_spec(w.study, w.cell),
    resources:
        # Concurrent training processes per GPU: `--resources gpu=4` runs four cells on one GPU.
        gpu=1,
    threads: 2
    conda:
        "../../envs/batchwise.yaml"
    shell:
        "OMP_NUM_THREADS={threads} \"$BATCHWISE_PYTHON\" -m batchwise train --spec {params.spec:q} "
        "--data {input.data} --out $(dirname {output.metrics}) > {log} 2>&1"
