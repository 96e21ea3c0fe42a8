"""Every model on every input shape of the studies, and the initialisations of study S1."""
import math

import pytest
import torch

from batchwise.engine import models

SHAPES = [(1, 28, 28), (1, 32, 32), (3, 32, 32)]
NAMES = ["mnist_cnn", "mlp", "cnn2", "lenet5", "mobilenet_v2"]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name, shape):
    model, _ = models.build(name, shape, 10)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("name,options", [("mlp", {"bn": True}), ("cnn2", {"bn": True})])
def test_batch_norm_variants_have_bn_layers(name, options):
    with_bn, _ = models.build(name, (1, 28, 28), 10, **options)
    without, _ = models.build(name, (1, 28, 28), 10)
    bn = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    assert any(isinstance(m, bn) for m in with_bn.modules())
    assert not any(isinstance(m, bn) for m in without.modules())


def test_zeros_init_really_zero():
    model, _ = models.build("mnist_cnn", (1, 28, 28), 10)
    models.initialise(model, "zeros")
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters())


def test_xavier_init_within_bounds_and_zero_bias():
    model, _ = models.build("lenet5", (1, 28, 28), 10)
    models.initialise(model, "xavier")
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert m.weight.abs().max() <= bound + 1e-6
            assert m.weight.abs().max() > 0.5 * bound  # really drawn, not left at zero
            assert torch.count_nonzero(m.bias) == 0


def test_default_init_leaves_weights_alone():
    torch.manual_seed(0)
    model, _ = models.build("mlp", (1, 28, 28), 10)
    before = [p.clone() for p in model.parameters()]
    models.initialise(model, "default")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_unknown_init_is_rejected():
    model, _ = models.build("mlp", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="unknown init"):
        models.initialise(model, "orthogonal")


def test_pretrained_offline_falls_back_and_says_so(monkeypatch):
    from torchvision.models import MobileNet_V2_Weights

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(MobileNet_V2_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    _, note = models.build("mobilenet_v2", (3, 32, 32), 10, pretrained=True)
    assert note.startswith("from scratch") and "unavailable" in note
