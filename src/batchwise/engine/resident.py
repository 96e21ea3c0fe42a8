"""A cell's data resident on the device: uint8 images (4x smaller than float), int64 labels, the
fixed samples a run trains and measures on; a batch is then an index gather, never a copy from the host."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from batchwise.data import prepare as data


SUBSET_SEED = 0  # `train_subset` / `test_subset` draw one fixed sample: the same for every run and seed


def to_device(x: np.ndarray, y: np.ndarray, subset: int | None, device: torch.device):
    """uint8 NHWC images -> uint8 NCHW on the device (4x smaller than float), labels int64. `subset`
    keeps a fixed random sample of that many images (`sample_indices`, seed SUBSET_SEED), not the
    first ones: a class-ordered source (CIFAR-10 from an ImageFolder) would give one class."""
    if subset and subset < len(x):
        idx = sample_indices(len(x), subset, SUBSET_SEED).numpy()
        x, y = x[idx], y[idx]
    return (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device),
            torch.from_numpy(y.astype(np.int64)).to(device))


def sample_indices(n_total: int, n: int, seed: int) -> torch.Tensor:
    """A fixed, seeded sample of `n` of `n_total` indices, sorted (all of them where n >= n_total): the
    data subsets, and the training images on which training accuracy and loss are measured after each
    epoch, exactly like test accuracy. Drawn on the CPU: the same on every device."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


@dataclass
class DeviceData:
    """A cell's data on the device, shared by all of its seeds: uint8 images, int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float, standardised per channel, on the device."""
        return (x.float() / 255 - self.mean) / self.std


def load_data(cache: data.Cache, p: dict, device: torch.device) -> DeviceData:
    """The (sub)sets a cell trains and tests on, moved to the device once."""
    x_train, y_train = to_device(cache.x_train, cache.y_train, p["train_subset"], device)
    x_test, y_test = to_device(cache.x_test, cache.y_test, p["test_subset"], device)
    stats = (torch.tensor(cache.meta[k], device=device).view(1, -1, 1, 1) for k in ("mean", "std"))
    return DeviceData(x_train, y_train, x_test, y_test, *stats)
