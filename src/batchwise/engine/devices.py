"""Where a cell trains: the device it asks for, deterministic kernels, CUDA graphs or not."""
from __future__ import annotations

import os

import torch


class TrainingError(RuntimeError):
    """A run that cannot go on (no GPU where one was required, out of memory), said in one line."""


def pick_device(wanted: str) -> tuple[torch.device, str]:
    """`auto` takes CUDA when present, else Apple's MPS (many students' laptops), else CPU (and says
    so); `cuda` without a GPU is an error."""
    if wanted == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda was asked for but no CUDA GPU is visible; "
                            "set device: auto (falls back to CPU) or device: cpu")
    if wanted == "cpu":
        return torch.device("cpu"), "cpu"
    if torch.cuda.is_available():
        return torch.device("cuda"), "cuda"
    mps = getattr(torch.backends, "mps", None)
    if wanted == "auto" and mps is not None and mps.is_available():
        return torch.device("mps"), "mps (Apple GPU, eager: no CUDA graphs)"
    return torch.device("cpu"), "cpu (no CUDA GPU visible)"


def deterministic_kernels(on: bool) -> None:
    """`deterministic: true`: deterministic kernels only (slower on CUDA). Process-wide; the training
    job and the timing pass set it alike."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read by cuBLAS before its first call
        torch.backends.cudnn.benchmark = False
    if on != torch.are_deterministic_algorithms_enabled():  # the first call imports torch._dynamo: seconds
        # warn_only: a few kernels (MobileNetV2's pooling backward) have no deterministic CUDA version
        torch.use_deterministic_algorithms(on, warn_only=True)


def use_graphs(setting: str, device: torch.device) -> bool:
    """CUDA graphs are a CUDA feature: `auto` and `on` use them there, never on CPU or MPS (eager)."""
    return device.type == "cuda" and setting in ("auto", "on")
