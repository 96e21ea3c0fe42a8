"""The networks of the four studies, and the weight initialisations of study S1.

Every model sizes itself from the input shape (channels, height, width), so the MNIST network
also runs on 32x32 CIFAR-10 images (the homework's run failed on a fixed 28x28 flatten size).
"""
from __future__ import annotations

import torch
from torch import nn


def _flat(c: int, h: int, w: int) -> int:
    return c * h * w


class MaxPool2d(nn.MaxPool2d):
    """2x2 max-pooling whose evaluation on the CPU takes the maximum of four strided views. Same values
    (a maximum is exact); 2.4x faster for LeNet-5's evaluation, where PyTorch's CPU kernel, computing
    indices for a backward pass that never comes, is 40 % of the forward pass. Training (gradients on)
    keeps PyTorch's kernel: the strided form's backward is 2x slower. `fast = False` is the plain
    kernel everywhere (the CPU benchmark's engine as it was)."""

    fast = True

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.fast and x.device.type == "cpu" and not torch.is_grad_enabled()):
            return super().forward(x)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode: an odd last row/column is dropped
        view = lambda i, j: x[..., i:h:2, j:w:2]  # noqa: E731
        return torch.maximum(torch.maximum(view(0, 0), view(0, 1)), torch.maximum(view(1, 0), view(1, 1)))


class MnistCNN(nn.Module):
    """The PyTorch MNIST example net: conv 32, conv 64, max-pool, dropout, fc 128, fc 10."""

    def __init__(self, shape: tuple[int, int, int], classes: int = 10):
        super().__init__()
        c, h, w = shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 1), nn.ReLU(),
            MaxPool2d(), nn.Dropout(0.25), nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(_flat(64, (h - 4) // 2, (w - 4) // 2), 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def mlp(shape: tuple[int, int, int], classes: int = 10, bn: bool = False) -> nn.Module:
    """MLP 1024-512 (study S2), with batch normalisation after each hidden layer when `bn`."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = _flat(*shape)
    for hidden in (1024, 512):
        layers += [nn.Linear(width, hidden), *([nn.BatchNorm1d(hidden)] if bn else []), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, classes))


def cnn2(shape: tuple[int, int, int], classes: int = 10, bn: bool = False) -> nn.Module:
    """Two conv layers of 4 kernels 3x3, stride 1, padding 1 (study S2), each + [BN] + ReLU + 2x2 pool."""
    c, h, w = shape
    layers: list[nn.Module] = []
    for c_in in (c, 4):
        layers += [nn.Conv2d(c_in, 4, 3, 1, 1), *([nn.BatchNorm2d(4)] if bn else []), nn.ReLU(), MaxPool2d()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(_flat(4, h // 4, w // 4), classes))


def lenet5(shape: tuple[int, int, int], classes: int = 10) -> nn.Module:
    """LeNet-5 (study S3): conv 6 5x5 (padded), pool, conv 16 5x5, pool, dense 120-84-10, ReLU."""
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), MaxPool2d(),
        nn.Conv2d(6, 16, 5), nn.ReLU(), MaxPool2d(), nn.Flatten(),
        nn.Linear(_flat(16, (h // 2 - 4) // 2, (w // 2 - 4) // 2), 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes),
    )


def mobilenet_v2(shape: tuple[int, int, int], classes: int = 10, pretrained: bool = False) -> tuple[nn.Module, str]:
    """torchvision's MobileNetV2 with a `classes`-way head (study S4); returns (model, weights note).

    ImageNet weights are used when `pretrained` and they can be loaded (cached or downloadable);
    otherwise the model trains from scratch and the note says why.
    """
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2 as tv_mobilenet_v2

    note = "from scratch"
    model = tv_mobilenet_v2(num_classes=classes)
    if pretrained:
        try:
            weights = MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
            weights = {k: v for k, v in weights.items() if not k.startswith("classifier.1")}
            model.load_state_dict(weights, strict=False)
            note = "ImageNet weights (IMAGENET1K_V1), new 10-way head"
        except Exception as exc:  # offline: no weights to be had; record it, train from scratch
            note = f"from scratch: ImageNet weights unavailable ({type(exc).__name__})"
    if shape[0] != 3:
        model.features[0][0] = nn.Conv2d(shape[0], 32, 3, 2, 1, bias=False)
    return model, note


def build(name: str, shape: tuple[int, int, int], classes: int = 10, **options) -> tuple[nn.Module, str]:
    """Build model `name` for inputs of `shape` (C, H, W); returns (model, note on its weights)."""
    if name == "mobilenet_v2":
        return mobilenet_v2(shape, classes, **options)
    factories = {"mnist_cnn": MnistCNN, "mlp": mlp, "cnn2": cnn2, "lenet5": lenet5}
    if name not in factories:
        raise ValueError(f"unknown model '{name}' (known: mnist_cnn, mlp, cnn2, lenet5, mobilenet_v2)")
    return factories[name](shape, classes, **options), "PyTorch default initialisation"


@torch.no_grad()
def initialise(model: nn.Module, scheme: str) -> None:
    """Apply S1's weight initialisation to every conv and dense layer (BN layers keep theirs).

    default: PyTorch's own ("random" in the homework); zeros: weights and biases 0;
    xavier: Xavier-uniform weights, zero biases.
    """
    if scheme == "default":
        return
    if scheme not in ("zeros", "xavier"):
        raise ValueError(f"unknown init '{scheme}' (known: default, zeros, xavier)")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme == "zeros":
                nn.init.zeros_(module.weight)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# Modules whose forward draws random numbers, by class; a model can also say so itself with a
# `random_draws` attribute (True or False), which wins over every check here.
RANDOM_MODULES = (nn.modules.dropout._DropoutNd, nn.RReLU)


def random_draws(model: nn.Module, shape: tuple[int, int, int]) -> list[str]:
    """What in `model` draws random numbers in training (dropout of any kind, stochastic depth,
    `F.dropout` in a forward, RReLU...): an empty list when nothing does.

    Seeds packed side by side on one GPU would share the device's one generator, so the engine
    trains such a model's seeds one after another. Three checks, any one suffices: the model's own
    `random_draws` declaration; modules of a known random kind (RANDOM_MODULES, and torchvision's
    StochasticDepth by name: torchvision is not imported here); and one training-mode forward of a
    copy on 2 CPU images, watching the CPU generator, which catches random draws in any forward
    (`F.dropout`, `torch.rand`) whatever the class. The model itself is not touched (batch-norm
    statistics, generator state)."""
    declared = getattr(model, "random_draws", None)
    if declared is not None:
        return [f"declared by {type(model).__name__}.random_draws"] if declared else []
    found = [f"{name or 'model'} ({type(m).__name__})" for name, m in model.named_modules()
             if isinstance(m, RANDOM_MODULES) or type(m).__name__ == "StochasticDepth"]
    if found:
        return found
    import copy

    probe = copy.deepcopy(model).to("cpu").train()
    for module in probe.modules():  # the copy keeps the model's hooks: this forward is nobody's business
        module._forward_pre_hooks.clear()
        module._forward_hooks.clear()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        before = torch.get_rng_state()
        probe(torch.zeros(2, *shape).uniform_(generator=torch.Generator().manual_seed(0)))
        drew = not torch.equal(before, torch.get_rng_state())
    return ["a random draw in the forward pass (seen on the CPU generator)"] if drew else []


_flushing_denormals = False  # torch can set the CPU's flush-to-zero mode but not read it back


def pin_fp32() -> dict:
    """Plain fp32 arithmetic on every device, as on the CPU: no TF32 in cuDNN convolutions (PyTorch's
    default on Ampere and later) nor in matmuls. On the CPU, subnormal floats (below 1.2e-38) count as
    zero: a network that stopped learning (s1_batch1's) fills its momentum buffers with them, and the
    CPU's slow path for them made its batch-1 steps 3-4x slower (docs/benchmarks.md). Process-wide,
    before any thread pool starts (threads inherit the mode); returns the flags as set, for a run's
    metadata, so that a study whose runs come from a CPU and a GPU compares like with like."""
    global _flushing_denormals
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    _flushing_denormals = torch.set_flush_denormal(True)  # False where the CPU has no such mode
    return fp32_flags()


def fp32_flags() -> dict:
    """The process's fp32 flags as they are now (for a run's metadata: what was in force)."""
    return {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cpu_flush_denormal": _flushing_denormals}
