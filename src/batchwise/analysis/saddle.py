"""Why a zero-initialised network answers one class: one backward pass at zero initialisation.

With every weight and bias at zero, every hidden activation is zero, and every weight leaving a
hidden unit is zero too. The gradient of a weight is its input activation times the error reaching
its unit; the error reaching a hidden unit is its outgoing weights times the error above, i.e. zero.
So every gradient is zero except the output bias's (the batch's softmax minus its one-hot labels):
a dead saddle, not merely a symmetric start. A constant non-zero initialisation is just as
symmetric, yet its hidden units carry signal and gradient. `zero_init_gradients` measures this on
the study's own network; the report shows the measurement beside the collapsed runs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from batchwise.engine import models


def zero_init_gradients(model_name: str, shape: tuple[int, int, int], classes: int = 10, batch: int = 64,
                        seed: int = 0, scheme: str = "zeros") -> dict:
    """One forward and backward pass of `model_name` initialised by `scheme` ('zeros' as in the studies,
    or a float: every conv and dense weight that constant, biases 0), on `batch` seeded random inputs of
    `shape` (C, H, W) with labels cycling through the classes. Returns the largest absolute gradient of
    every parameter tensor (`grads`), the names of those with a non-zero one (`nonzero`), the name of the
    output layer's bias (`output_bias`) and the count of parameter tensors."""
    with torch.random.fork_rng(devices=[]):   # dropout draws from the global generator: leave it as found
        torch.manual_seed(seed)
        model, _ = models.build(model_name, shape, classes)
        if scheme == "zeros":
            models.initialise(model, "zeros")
        else:
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)):
                        m.weight.fill_(float(scheme))
                        if m.bias is not None:
                            m.bias.zero_()
        model.train()
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))
        y = torch.arange(batch) % classes
        F.cross_entropy(model(x), y).backward()
    grads = {name: float(p.grad.abs().max()) if p.grad is not None else 0.0
             for name, p in model.named_parameters()}
    last = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    return {"grads": grads, "nonzero": [n for n, g in grads.items() if g > 0], "output_bias": f"{last}.bias",
            "n_tensors": len(grads)}


def gradient_sentence(measured: dict, model_name: str) -> str:
    """The measurement in one sentence for the report."""
    others = [n for n in measured["nonzero"] if n != measured["output_bias"]]
    bias = measured["grads"].get(measured["output_bias"], 0.0)
    if others:
        return (f"Measured on {model_name} at zero initialisation, one backward pass gives a non-zero gradient "
                f"to {len(measured['nonzero'])} of {measured['n_tensors']} parameter tensors "
                f"({', '.join(measured['nonzero'])}).")
    return (f"Measured on {model_name} at zero initialisation (one backward pass, a batch of 64): of its "
            f"{measured['n_tensors']} parameter tensors, only the output bias ({measured['output_bias']}) has a "
            f"non-zero gradient (largest {bias:.3g}); every weight and every other bias has a gradient of exactly 0.")
