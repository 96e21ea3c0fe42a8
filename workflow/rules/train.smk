rule train_cell:
    message:
        "Training {wildcards.study}/{wildcards.cell}, all seeds"
    input:
        data=lambda w: train_inputs(w.study, w.cell),
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
    # The longest jobs first (estimated from docs/benchmarks.json), so the last to finish is short.
    priority: lambda w: cell_priority(w.study, w.cell)
    resources:
        # Concurrent training processes per GPU: `--resources gpu=4` runs four cells on one GPU.
        gpu=1,
    # config train_threads (default 1): on a CPU, one thread per job and a job per core trains more
    # images per hour than fewer jobs with more threads (docs/benchmarks.md); `--resources gpu=N` lets
    # N training jobs run at once.
    threads: config["train_threads"]
    conda:
        "../../envs/batchwise.yaml"
    shell:
        "OMP_NUM_THREADS={threads} \"$BATCHWISE_PYTHON\" -m batchwise train --spec {params.spec:q} "
        "--data {input.data} --out {output} --checkpoints checkpoints/{wildcards.study}/{wildcards.cell} > {log} 2>&1"


# The solo timing pass: one job for every study's settings, first in line. It holds every GPU slot, so
# no training shares the device while a setting is measured, and runs alone; its bursts interleave
# all settings of all studies (a time claim may compare two studies: s1_batch1 with s1_batch_init).
#
# Being one job, it needs the data set of every study in the config. A run of some studies only is
# made with an overlay (`only_studies: [...]`): then the job times those studies and needs their data
# only. A run aimed at one study's files (`snakemake results/<study>/runs.csv`) prepares every data set
# of the config and times every study, on purpose: per-study timing jobs would each wait for the GPU
# to drain, and settings timed in different jobs do not share their drift. A data set that cannot be
# obtained (download: false, strict_data: false) is not an error there: its cache says "not
# available" and its settings get no timing record, as they get no training.
#
# `priority`: Snakemake reserves nothing. The job is ready once every data set is prepared (prepare_data
# runs before any training for that reason); training jobs of a data set prepared earlier may start
# while the last one is prepared. With one GPU slot (`make report`) the timing pass then runs as soon
# as the running training job ends; with several (`--resources gpu=N`) it needs them all free at once,
# which a queue of training jobs may not leave until its end: it still runs alone, only later.
# `missing_runs: skip` (a report of whatever has run) times nothing: a study's imported timing.json is
# read where present, and this one job, whose outputs are every study's file, would otherwise run for
# the studies without one.
if not SKIP_MISSING:

    rule time_settings:
        message:
            "Timing every cell's setting with the device to itself (bursts interleaved across settings)"
        input:
            data=lambda w: timing_inputs(),
        output:
            expand("results/{study}/timing.json", study=STUDIES),
        log:
            "logs/time_settings.log",
        benchmark:
            "benchmarks/time_settings.tsv"
        params:
            # The resolved specs (first seed of each setting): a change to any setting re-times them all.
            specs=timing_specs(),
            bursts=config["timing"]["bursts"],
            steps=config["timing"]["steps"],
            warmup=config["timing"]["warmup"],
        priority: 100
        resources:
            # Every GPU slot: no training job shares the device while a setting's speed is measured.
            gpu=GPU_SLOTS,
        # The thread count the training jobs run with, so each setting is timed as it trains.
        threads: config["train_threads"]
        conda:
            "../../envs/batchwise.yaml"
        script:
            # A script, not a command line: the specs of every study (~66 kB for the default config) would
            # come close to Linux's 128 kB limit on one argument.
            "../scripts/time_settings.py"
