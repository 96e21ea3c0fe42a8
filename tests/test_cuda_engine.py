"""The CUDA engine, on a GPU (`pytest -m gpu`): seeds side by side must give exactly what each seed
gives alone. Each test here would catch one fault of packing seeds on streams:
- graphs captured on one shared stream (a shared cuBLAS workspace: split-K matmuls race) or a seed's
  stream not waiting for its set-up -> the bit-for-bit comparison with a lone seed fails;
- dropout draws shared between seeds -> the repeated-seed and different-seed checks fail;
- warm-up replaying a graph that holds a stale learning rate -> the warm-up check fails;
- a host sync per evaluation batch or a wrong mid-epoch check -> the x3-path comparison fails.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from batchwise import config
from batchwise.data import prepare as data
from batchwise.engine import step, train
from conftest import SHARED_DATA

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def spec_for(model: str, dataset: str = "mnist", **params) -> dict:
    """A one-setting cell on CUDA with graphs on and deterministic kernels (cuDNN's atomics would
    otherwise differ run to run and hide what these tests look for)."""
    params = {"epochs": 1, "lr": 0.05, "momentum": 0.9, **params}
    bs = params.pop("batch_size", 64)
    cfg = config.validate({"data_dir": "data", "device": "cuda", "cuda_graphs": "on", "deterministic": True,
                           "homeworks": {"x": {"title": "x"}},
                           "studies": {"t": {"homework": "x", "title": "t", "dataset": dataset, "model": model,
                                             "seeds": [0, 1, 2], "params": params, "grid": {"batch_size": [bs]}}}})
    return config.resolve_setting(cfg, config.settings(cfg)[0])


@pytest.fixture(scope="module")
def mnist_full(tmp_path_factory) -> data.Cache:
    """Real MNIST where present (60,000 training images), else synthetic images tiled to that size:
    large enough for the split-K matmul kernels a small set never selects."""
    raw = SHARED_DATA / "MNIST" / "raw"
    folder = tmp_path_factory.mktemp("cuda-data")
    if raw.exists():
        data.prepare("mnist", folder / "mnist.npz", data_dir=SHARED_DATA, download=False)
        return data.load(folder / "mnist.npz")
    data.prepare("mnist", folder / "mnist.npz", data_dir=folder, download=False, synthetic=True)
    small = data.load(folder / "mnist.npz")
    reps = -(-60000 // len(small.y_train))
    return data.Cache(np.tile(small.x_train, (reps, 1, 1, 1))[:60000], np.tile(small.y_train, reps)[:60000],
                      small.x_test, small.y_test, small.meta)


def comparable(result: dict) -> str:
    """A run's numbers without its wall times."""
    metrics = {k: v for k, v in result["metrics"].items()
               if not k.endswith("_s") and k not in ("startup_s", "seeds_together", "gpu_mem_peak_mb")}
    history = [{k: v for k, v in row.items() if k not in ("epoch_time_s", "elapsed_s")} for row in result["history"]]
    # as JSON text: NaN (a noise scale with too few draws) equals NaN there, never as a float
    return json.dumps([metrics, history, result["iterations"]], sort_keys=True, default=str)


@pytest.mark.parametrize("batch_size", [16, 64])
@pytest.mark.parametrize("model,params", [
    ("mlp", {"bn": True, "weight_decay": 0.001}),
    ("cnn2", {"bn": True}),
    ("lenet5", {}),
])
def test_seeds_together_equal_each_seed_alone_bit_for_bit(mnist_full, model, params, batch_size):
    spec = spec_for(model, batch_size=batch_size, **params)
    together = train.train_seeds(spec, mnist_full, [0, 1, 2], log=lambda line: None)
    assert all(r["metrics"]["seeds_together"] == 3 and r["metrics"]["cuda_graphs"] for r in together)
    for seed, packed in zip([0, 1, 2], together):
        alone = train.train({**spec, "seed": seed}, mnist_full, log=lambda line: None)
        assert comparable(packed) == comparable(alone), (model, batch_size, seed)


@pytest.mark.parametrize("model,dataset", [("mnist_cnn", "mnist"), ("mobilenet_v2", "cifar10")])
def test_dropout_seeds_have_their_own_draws(synthetic_caches, model, dataset):
    """Dropout models train their seeds one after another on CUDA: a repeated seed repeats exactly, two
    seeds differ, and each equals its lone run."""
    cache = data.load(synthetic_caches[dataset])
    spec = spec_for(model, dataset=dataset, epochs=2, batch_size=32, train_subset=320)
    runs = train.train_seeds(spec, cache, [0, 1, 0], log=lambda line: None)
    assert all(r["metrics"]["seeds_together"] == 1 for r in runs)
    assert comparable(runs[0]) == comparable(runs[2])
    assert comparable(runs[0]) != comparable(runs[1])
    assert comparable(runs[1]) == comparable(train.train({**spec, "seed": 1}, cache, log=lambda line: None))


def test_x3_path_warm_up_checks_and_noise_scale_together_equal_alone(synthetic_caches):
    """Warm-up (the rate changes every step: the graph reads it from the device), mid-epoch target
    checks (one sync for all seeds) and the noise scale, seeds side by side vs alone."""
    cache = data.load(synthetic_caches["mnist"])
    spec = spec_for("lenet5", epochs=4, batch_size=32, lr=0.1, momentum=0.0, lr_scaling="linear",
                    base_batch_size=16, warmup_epochs=1.0, target_acc=0.9, stop_at_target=True,
                    target_checks_per_epoch=4, noise_scale_batches=[8, 64], noise_scale_draws=4)
    together = train.train_seeds(spec, cache, [0, 1, 2], log=lambda line: None)
    assert all(r["metrics"]["cuda_graphs"] and r["metrics"]["warmup_steps"] > 0 for r in together)
    for seed, packed in zip([0, 1, 2], together):
        assert comparable(packed) == comparable(train.train({**spec, "seed": seed}, cache, log=lambda line: None))
    eager = train.train({**spec, "seed": 0, "cuda_graphs": "off"}, cache, log=lambda line: None)
    # Graph and eager runs share the rate ramp: their first warm-up losses agree closely.
    assert [r[2] for r in together[0]["iterations"][:5]] == pytest.approx([r[2] for r in eager["iterations"][:5]],
                                                                          rel=1e-3, abs=1e-4)


def test_divergence_under_graphs_is_recorded(synthetic_caches):
    cache = data.load(synthetic_caches["mnist"])
    spec = spec_for("mlp", epochs=3, batch_size=32, lr=1e6, momentum=0.9, train_subset=320)
    runs = train.train_seeds(spec, cache, [0, 1, 2], log=lambda line: None)
    assert all(r["metrics"]["status"] == "diverged" and r["metrics"]["cuda_graphs"] for r in runs)
    assert all(r["metrics"]["final_test_acc"] is None for r in runs)


def test_capture_out_of_memory_is_not_a_capture_failure(synthetic_caches, monkeypatch):
    """Out of memory during capture is reported as such, never hidden behind an eager fallback."""
    cache = data.load(synthetic_caches["mnist"])
    spec = {**spec_for("mlp", batch_size=32, train_subset=320), "cuda_graphs": "auto"}

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
    monkeypatch.setattr(step, "capture", no_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        train.train({**spec, "seed": 0}, cache, log=lambda line: None)
