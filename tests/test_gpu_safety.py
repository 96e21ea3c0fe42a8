"""Hazards of packing seeds on one GPU, checked on the CPU: which models draw random numbers (their
seeds must not share the device's one generator), a seed's stream finished before its state is read
for a checkpoint, and fp32 pinned (no TF32) with the flags in each run's metadata."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from batchwise import config
from batchwise.data import prepare as data
from batchwise.engine import models, record, train


class FunctionalDropout(nn.Module):
    """Dropout as a function call in the forward: no module of a dropout class to find."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.fc(F.dropout(x.flatten(1), 0.5, self.training))


class NoisyInput(nn.Module):
    """Gaussian input noise from torch.randn_like: a random draw of no known kind."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.fc((x + 0.1 * torch.randn_like(x)).flatten(1))


class Declared(nn.Sequential):
    """A model that says it draws random numbers (in a way no check could see)."""

    random_draws = True


def stochastic_depth_net() -> nn.Module:
    from torchvision.ops import StochasticDepth

    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10), StochasticDepth(0.2, "row"))


SHAPE = (1, 28, 28)


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(28 * 28, 10)),
    lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout2d(0.25), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)),
    lambda: nn.Sequential(nn.Flatten(), nn.AlphaDropout(0.1), nn.Linear(28 * 28, 10)),
    lambda: nn.Sequential(nn.Flatten(), nn.FeatureAlphaDropout(0.1), nn.Linear(28 * 28, 10)),
    lambda: nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10), nn.RReLU()),
    stochastic_depth_net, FunctionalDropout, NoisyInput,
    lambda: Declared(nn.Flatten(), nn.Linear(28 * 28, 10)),
], ids=["Dropout", "Dropout2d", "AlphaDropout", "FeatureAlphaDropout", "RReLU", "StochasticDepth",
        "F.dropout", "randn_like", "declared"])
def test_every_kind_of_random_draw_is_found(make):
    assert models.random_draws(make(), SHAPE)


@pytest.mark.parametrize("name,options,shape", [
    ("mlp", {"bn": True}, (1, 28, 28)), ("cnn2", {"bn": True}, (1, 28, 28)), ("lenet5", {}, (1, 28, 28)),
    ("mlp", {}, (3, 32, 32))])
def test_deterministic_models_draw_nothing_and_are_left_untouched(name, options, shape):
    """The study models without dropout pack their seeds; the check leaves batch-norm statistics and
    the generator as they were."""
    model, _ = models.build(name, shape, **options)
    before = [t.clone() for t in model.state_dict().values()]
    rng = torch.get_rng_state()
    assert models.random_draws(model, shape) == []
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values()))
    assert torch.equal(rng, torch.get_rng_state())


@pytest.mark.parametrize("name,shape", [("mnist_cnn", (1, 28, 28)), ("mobilenet_v2", (3, 32, 32))])
def test_study_models_with_dropout_are_found(name, shape):
    assert models.random_draws(models.build(name, shape)[0], shape)


def test_a_model_that_declares_no_draws_is_taken_at_its_word():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(28 * 28, 10))
    model.random_draws = False  # e.g. dropout it only uses at inference
    assert models.random_draws(model, SHAPE) == []


def spec_for(**params) -> dict:
    cfg = config.validate({"data_dir": "data", "device": "cpu", "cuda_graphs": "off",
                           "homeworks": {"x": {"title": "x"}},
                           "studies": {"t": {"homework": "x", "title": "t", "dataset": "mnist", "model": "mlp",
                                             "seeds": [0], "params": params, "grid": {"batch_size": [32]}}}})
    return config.resolve(cfg, config.cells(cfg)[0])


class RecordingStream:
    """Stands in for a seed's CUDA stream: records when the host waited for it."""

    def __init__(self, log: list):
        self.log = log

    def synchronize(self) -> None:
        self.log.append("stream synchronised")


def test_checkpoint_state_is_read_after_the_seeds_stream_finished(synthetic_caches):
    """The noise-scale probe restores weights and batch-norm statistics on the seed's stream; the
    checkpoint reads them on another. `record.state` must wait for the seed's stream before reading anything."""
    cache = data.load(synthetic_caches["mnist"])
    spec = spec_for(epochs=1, lr=0.05, bn=True, momentum=0.9, train_subset=320)
    d = train.load_data(cache, spec["params"], torch.device("cpu"))
    run = train.SeedRun(spec, 0, d, torch.device("cpu"), log=lambda line: None)
    log: list[str] = []
    run.stream = RecordingStream(log)
    state_dict = run.model.state_dict
    run.model.state_dict = lambda *a, **k: (log.append("weights read"), state_dict(*a, **k))[1]
    record.state(run)
    assert log == ["stream synchronised", "weights read"]


def test_fp32_is_pinned_and_recorded_in_each_run(synthetic_caches, tmp_path):
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for cuDNN
    torch.backends.cuda.matmul.allow_tf32 = True
    spec = spec_for(epochs=1, lr=0.05, train_subset=320)
    metrics = train.run_cell(spec, synthetic_caches["mnist"], tmp_path, log=lambda line: None)[0]
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert metrics["precision"] == {"cudnn_allow_tf32": False, "matmul_allow_tf32": False,
                                    "float32_matmul_precision": "highest",
                                    "cpu_flush_denormal": torch.set_flush_denormal(True)}
    assert metrics["device_type"] == "cpu"
