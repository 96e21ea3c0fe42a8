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


@pytest.mark.parametrize("shape", [(3, 6, 8), (2, 7, 9), (1, 2, 3)], ids=lambda s: "x".join(map(str, s)))
def test_evaluation_pooling_equals_pytorchs_kernel(shape):
    """The strided-view pooling (no gradients, CPU) gives PyTorch's values exactly, odd sizes included
    (floor mode drops the last row and column), NaN and infinities propagated alike."""
    x = torch.randn(4, *shape)
    x.view(-1)[::7] = float("nan")
    x.view(-1)[3::11] = float("inf")
    pool, plain = models.MaxPool2d(), torch.nn.MaxPool2d(2)
    with torch.no_grad():
        assert torch.equal(pool(x).nan_to_num(7.0), plain(x).nan_to_num(7.0))
    assert pool(x).shape == plain(x).shape


def test_training_pooling_is_pytorchs_kernel():
    """With gradients on, the pooling is PyTorch's own (one gradient per window, to its first maximum)."""
    x = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]], requires_grad=True)
    models.MaxPool2d()(x).sum().backward()
    assert x.grad.tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]


def test_pin_fp32_flushes_subnormals_to_zero():
    """After pin_fp32 a product below 1.2e-38 is zero on the CPU (it is 1e-39 without), and a run's
    metadata says so."""
    small = torch.tensor([1e-30])
    torch.set_flush_denormal(False)
    assert (small * 1e-9).item() > 0.0
    flags = models.pin_fp32()
    if not flags["cpu_flush_denormal"]:
        pytest.skip("this CPU has no flush-to-zero mode")
    assert (small * 1e-9).item() == 0.0
