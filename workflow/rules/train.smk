rule train_cell:
    message:
        "Training {wildcards.study}/{wildcards.cell}, all seeds"
    input:
        data=lambda w: data_cache(w.study, f"results/{w.study}/{w.cell}/seed={config['studies'][w.study]['seeds'][0]}/metrics.json"),
    output:
        # seed=<n>/{metrics.json,history.csv,iterations.csv} per seed. An interrupted job is re-run and
        # resumes from checkpoints/{study}/{cell}/ (each seed's state after its last finished epoch):
        # outside this folder, which Snakemake deletes before the re-run.
        directory("results/{study}/{cell}"),
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
        "--data {input.data} --out {output} --checkpoints checkpoints/{wildcards.study}/{wildcards.cell} > {log} 2>&1"


rule time_study:
    message:
        "Timing each cell of {wildcards.study} with the device to itself"
    input:
        data=lambda w: data_cache(w.study, f"results/{w.study}/timing.json"),
    output:
        "results/{study}/timing.json",
    log:
        "logs/time_study/{study}.log",
    benchmark:
        "benchmarks/time_study/{study}.tsv"
    params:
        specs=lambda w: timing_specs(w.study),
        steps=config["timing"]["steps"],
        warmup=config["timing"]["warmup"],
    resources:
        # Every GPU slot: no training job shares the device while a setting's speed is measured.
        gpu=GPU_SLOTS,
    threads: 2
    conda:
        "../../envs/batchwise.yaml"
    shell:
        "OMP_NUM_THREADS={threads} \"$BATCHWISE_PYTHON\" -m batchwise time --specs {params.specs:q} "
        "--data {input.data} --out {output} --steps {params.steps} --warmup {params.warmup} > {log} 2>&1"
