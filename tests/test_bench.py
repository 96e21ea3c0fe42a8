"""The training-speed benchmark, in its --small CPU mode: it runs and writes complete outputs.
No timing is asserted (a shared CI machine says nothing about speed)."""
import json
import math

from batchwise import bench
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
    assert "PYTHONPATH=src python -m batchwise.bench " + " ".join(argv) in md
    assert "CPU run" in md and "Projection" in md and "Partial" in md and "| MLP-BN | 64 | eager |" in md
    assert "torchvision: no" in md and "torch._dynamo: no" in md  # what an MLP job must not import
    assert "first step" in md  # the start-up stages of the measured job
