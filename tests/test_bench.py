"""The training-speed benchmark, in its --small CPU mode: it runs and writes complete outputs.
No timing is asserted (a shared CI machine says nothing about speed)."""
import json
import math

from batchwise.speed import bench
from conftest import REPO


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_small_cpu_run_writes_json_and_markdown(tmp_path):
    argv = ["--device", "cpu", "--small", "--steps", "5", "--concurrency", "2", "--cells", "2",
            "--out", str(tmp_path / "bench"), "--data", str(tmp_path / "no-data"),
            "--config", str(REPO / "config" / "config.yaml")]
    assert bench.main(argv) == 0
    records = json.loads((tmp_path / "bench.json").read_text())

    timings = [r for r in records if r.get("variant") in ("dataloader0", "dataloader4", "eager", "graph")]
    assert {r["variant"] for r in timings} == {"dataloader0", "dataloader4", "eager"}  # no graph on CPU
    assert {r["workload"] for r in timings} == {w[0] for w in bench.SMALL_WORKLOADS}
    for r in timings:
        assert {"workload", "batch_size", "variant", "ms_per_step", "s_per_epoch", "device", "torch"} <= set(r)
        assert positive(r["ms_per_step"]) and positive(r["s_per_epoch"]) and r["device"] == "cpu"

    by_kind = {r["workload"]: r for r in records if r["workload"] in ("per-job-overhead", "projection")}
    assert by_kind["per-job-overhead"]["variant"] == "cli" and positive(by_kind["per-job-overhead"]["seconds"])
    projection = by_kind["projection"]
    assert projection["variant"] == "default-config" and positive(projection["minutes"])
    assert projection["partial"] and 0 < projection["cells_covered"] < projection["cells"]
    concurrency = {r["variant"]: r for r in records if r["workload"] == "concurrency"}
    assert set(concurrency) == {"gpu=1", "gpu=2"} and all(positive(r["cells_per_hour"]) for r in concurrency.values())

    md = (tmp_path / "bench.md").read_text()
    assert "PYTHONPATH=src python -m batchwise.speed.bench " + " ".join(argv) in md
    assert "CPU run" in md and "Projection" in md and "Partial" in md and "| MLP-BN | 64 | eager |" in md
    assert "torchvision: no" in md and "torch._dynamo: no" in md  # what an MLP job must not import
    assert "first step" in md  # the start-up stages of the measured job


# --- the CPU benchmark (python -m batchwise.speed.bench cpu): what it counts, not how fast -------------

def test_cpu_bench_counts_flops_linear_in_the_batch_and_lists_the_studies_batches():
    from batchwise import config
    from batchwise.speed import cpubench

    cfg = config.load()
    spec = config.resolve(cfg, next(c for c in config.cells(cfg) if c.study == "s3_batch_convergence"))
    at = lambda b: {**spec, "params": {**spec["params"], "batch_size": b}}  # noqa: E731
    assert cpubench.step_flops(at(512)) == 2 * cpubench.step_flops(at(256)) > 0
    assert 30e6 < cpubench.step_flops(at(16)) < 40e6  # LeNet-5 forward + backward: ~36 MFLOP at batch 16
    batches = {s["params"]["batch_size"] for s in cpubench.workloads(cfg, ["x3_scaled_lr"])}
    assert batches == {16, 32, 64, 128, 256, 512, 1024, 2048, 4096}  # the grid and the probe's 32 and 1024
    pair = cpubench.variants(at(4096), 1)
    assert "micro_batch" not in pair["was"]["spec"]["params"] and pair["was"]["spec"]["params"]["eval_batch_size"] == 2000
    assert pair["is"]["spec"] == at(4096) and pair["was"]["threads"] == 2 and pair["was"]["jobs"] == 1


def test_cpu_bench_hours_are_the_estimate_of_the_measured_steps(tmp_path):
    """Study hours come from `estimate.cell_seconds` on the measured step and evaluation times: with 1 ms
    per step and 0.1 ms per image, s1_batch1 (3 runs of 60,000 steps, 2 x 10,000 images evaluated) is
    3 x (60 s + 2 s), divided by the jobs that run at once; runs at a batch not measured are not counted."""
    from batchwise import config
    from batchwise.speed import cpubench, estimate

    cfg = config.load()
    spec = config.resolve(cfg, next(c for c in config.cells(cfg) if c.study == "s1_batch1"))
    records = [{"model": "mnist_cnn", "dataset": "mnist", "batch_size": 1, "flops": 1e6,
                **{name: {"kind": json.dumps(estimate._kind(v["spec"])), "ms_per_step": 1.0, "eval_s_per_10k": 1.0,
                          "jobs": v["jobs"], "micro_batch": None}
                   for name, v in cpubench.variants(spec, 1).items()}}]
    hours = cpubench.study_hours(cfg, ["s1_batch1", "s1_batch_init"], records)
    assert math.isclose(hours["s1_batch1"]["was"] * 3600, 3 * 62.0)
    assert math.isclose(hours["s1_batch1"]["is"] * 3600, 3 * 62.0 / cpubench.variants(spec, 1)["is"]["jobs"])
    assert math.isnan(hours["s1_batch_init"]["was"]) and hours["s1_batch_init"]["runs_measured"] == 0
    assert hours["s1_batch1"]["runs_measured"] == hours["s1_batch1"]["runs"] == 3
    md = cpubench.report({"date": "d", "cpu": "c", "cores": 2, "torch": "t", "load": "l", "command": "x",
                          "peak": {"a": 100.0}, "records": records, "hours": {"s1_batch1": hours["s1_batch1"]}})
    assert "| mnist_cnn | mnist | 1 | 1 |" in md and "% peak" in md and "| s1_batch1 | 3 of 3 |" in md


def test_subnormal_benchmark_runs_both_ways_and_says_what_is_missing(synthetic_caches, tmp_path, capsys):
    """`bench subnormal` on a (synthetic) MNIST cache: fresh processes flush off and on, windows of steps
    with the same losses both ways (flushing changes nothing above 1.2e-38), the counts of subnormal
    values; without the cache, a one-line error that names it and how to make it."""
    import pytest

    from batchwise.speed import subnormal

    out = tmp_path / "sn"
    assert bench.main(["subnormal", "--data", str(synthetic_caches["mnist"]), "--steps", "20", "--window", "10",
                       "--rounds", "1", "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert [r["flush"] for r in doc["runs"]] == [False, True]
    for r in doc["runs"]:
        assert r["steps"] == 20 and len(r["ms_per_step"]) == 2 and all(positive(v) for v in r["ms_per_step"])
        assert set(r["subnormal"]) == {"weights", "gradients", "momentum"}
    assert doc["runs"][0]["mean_loss"] == doc["runs"][1]["mean_loss"]
    md = out.with_suffix(".md").read_text()
    assert "| 1-10 |" in md and "| 11-20 |" in md and "PYTHONPATH=src python -m batchwise.speed.bench subnormal" in md
    with pytest.raises(SystemExit):
        subnormal.main(["--data", str(tmp_path / "none.npz")])
    assert "snakemake results/data/mnist.npz" in capsys.readouterr().err


def test_subnormal_table_takes_the_median_of_the_rounds_per_window():
    from batchwise.speed import subnormal

    def run(flush, ms):
        return {"flush": flush, "window": 500, "ms_per_step": ms, "mean_loss": [2.3, 2.3],
                "subnormal": {"weights": 0, "gradients": 0, "momentum": 0 if flush else 1234}}
    out = {"date": "d", "cpu": "c", "torch": "t", "load": "l", "command": "cmd", "rounds": 3,
           "runs": [run(False, [3.0, 12.0]), run(True, [3.0, 3.0]), run(False, [3.2, 14.0]),
                    run(True, [3.2, 4.0]), run(False, [3.4, 13.0]), run(True, [3.3, 3.5])]}
    md = subnormal.report(out)
    assert "| 1-500 | 3.20 | 3.20 | x1.00 | 2.3000 | 2.3000 |" in md       # medians of 3.0, 3.2, 3.4 and 3.0, 3.2, 3.3
    assert "| 501-1000 | 13.00 | 3.50 | x3.71 | 2.3000 | 2.3000 |" in md    # 13 / 3.5
    assert "momentum 1,234; weights 0, gradients 0, momentum 0." in md


def test_options_benchmark_times_each_variant_in_its_own_process_from_the_same_start(tmp_path):
    """`bench options` on LeNet-5 (S3's batch 16): one record per variant with a positive step time, the
    same first loss eager and channels-last (same weights, same batch, no dropout), evaluation per batch
    size; the markdown names the command."""
    out = tmp_path / "opt"
    assert bench.main(["options", "--studies", "s3_batch_convergence", "--batches", "16", "--variants", "eager",
                       "channels_last", "--steps", "3", "--eval-batches", "100", "400", "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert [(r["model"], r["batch_size"], r["variant"]) for r in doc["runs"]] == [
        ("lenet5", 16, "eager"), ("lenet5", 16, "channels_last")]
    assert all(positive(r["ms_per_step"]) for r in doc["runs"])
    assert abs(doc["runs"][0]["first_loss"] - doc["runs"][1]["first_loss"]) < 1e-5
    assert set(doc["runs"][0]["eval_s_per_10k"]) == {"100", "400"} and "eval_s_per_10k" not in doc["runs"][1]
    md = out.with_suffix(".md").read_text()
    assert "PYTHONPATH=src python -m batchwise.speed.bench options --studies s3_batch_convergence" in md
    assert "| lenet5 | 16 |" in md and "| 400 |" in md


def test_options_table_takes_the_median_of_the_rounds_and_divides_eager_by_each_variant():
    from batchwise.speed import options

    def run(variant, ms, first_s=0.1, evals=None):
        return {"model": "m", "batch_size": 16, "variant": variant, "ms_per_step": ms, "first_step_s": first_s,
                "first_loss": 2.3, **({"eval_s_per_10k": evals} if evals else {})}
    out = {"date": "d", "cpu": "c", "torch": "t", "load": "l", "command": "cmd", "rounds": 3, "steps": 10,
           "runs": [run("eager", 100.0, evals={"200": 10.0, "2000": 20.0}), run("compile", 80.0, 120.0),
                    run("eager", 90.0, evals={"200": 8.0, "2000": 24.0}), run("compile", 75.0, 130.0),
                    run("eager", 110.0, evals={"200": 9.0, "2000": 22.0}), run("compile", 50.0, 125.0)]}
    md = options.report(out)
    # eager median 100, compile median 75: x1.33; compile time median 125 s; channels_last not run
    assert "| m | 16 | 100.0 | - | - | 75.0 | x1.33 | 125 | 2.3000 / - / 2.3000 |" in md
    assert "- m batch 16: eager 100.0, 90.0, 110.0; compile 80.0, 75.0, 50.0" in md
    assert "| 200 | 9.00 | x2.44 |" in md and "| 2000 | 22.00 | x1.00 |" in md  # 22 / 9
