rule prepare_data:
    message:
        "Preparing data set {wildcards.dataset} (verified, cached as compact uint8)"
    input:
        # The grey CIFAR-10 is derived from the colour cache, not read twice from disk.
        colour=lambda w: ["results/data/cifar10.npz"] if w.dataset == "cifar10_grey" else [],
    output:
        "results/data/{dataset}.npz",
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
    params:
        data_dir=config["data_dir"],
        flags=" ".join(
            f"--{flag}" if config[key] else f"--no-{flag}"
            for flag, key in (("download", "download"), ("synthetic", "synthetic_data"), ("strict", "strict_data"))
        ),
        colour=lambda w, input: f"--colour-cache {input.colour[0]}" if input.colour else "",
    # Before any training job (priority < 1): the timing pass needs every data set, and it is first in
    # line only once they are all prepared; a data set left for last would start it after the training.
    priority: 100
    conda:
        "../../envs/batchwise.yaml"
    shell:
        "\"$BATCHWISE_PYTHON\" -m batchwise prepare --dataset {wildcards.dataset} --out {output} "
        "--data-dir {params.data_dir:q} {params.flags} {params.colour} > {log} 2>&1"
