"""The data caches: one uncompressed ``.npz`` per data set, prepared once for every training job.

`prepare` obtains a data set (the originals from `sources`, grey CIFAR-10 derived from the colour
set, or a synthetic stand-in for tests), adds its metadata (source, channel statistics, classes)
and writes the cache atomically (every training job reads it, and unpacking costs more than the
disk: 0.16 s vs 0.03 s for MNIST); `load` reads it back. Nothing here imports torch or torchvision
at module level: they are needed only to download, and the cache rules must run in environments
without them.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sources import CIFAR10_CLASSES, MNIST_CLASSES, DataError, obtain_cifar10, obtain_mnist

__all__ = ["DATASETS", "Cache", "DataError", "load", "prepare"]

DATASETS: tuple[str, ...] = ("mnist", "cifar10", "cifar10_grey")
_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "cifar10_grey": (32, 32, 1)}


@dataclass
class Cache:
    """Arrays and metadata of one prepared data set (images uint8 NHWC, labels int64)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    meta: dict


# ---------------------------------------------------------------------------
# public API


def prepare(name: str, out: Path, *, data_dir: Path, download: bool = True,
            synthetic: bool = False, strict: bool = False,
            colour_cache: Path | None = None) -> dict:
    """Obtain data set `name`, write an .npz cache to `out` atomically, return meta.

    A data set that cannot be obtained raises DataError when `strict`; otherwise the cache
    is written with ``available=False``, empty arrays and a `reason` saying how to fix it.
    Corrupt data (checksum mismatch, unreadable image) is always a DataError.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    out, data_dir = Path(out), Path(data_dir)
    if synthetic:
        arrays, meta = _synthetic(name)
    elif name == "mnist":
        arrays, meta = obtain_mnist(data_dir, download)
    elif name == "cifar10":
        arrays, meta = obtain_cifar10(data_dir, download)
    else:
        arrays, meta = _obtain_grey(data_dir, download, colour_cache)
    if arrays is None:
        if strict:
            raise DataError(meta["reason"])
        arrays = _empty(name)
    meta = _finish_meta(name, arrays, meta)
    _write_npz(out, arrays, meta)
    return meta


def load(path: Path) -> Cache:
    """Read a cache written by `prepare` (no pickles: meta is a JSON string in the npz)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data cache {path} does not exist: run prepare() "
                        f"(the workflow's data rule) to create it")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            meta = json.loads(str(npz["meta"][()]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"data cache {path} is unreadable or incomplete ({exc}): "
                        f"delete it and run prepare() again") from exc
    return Cache(meta=meta, **arrays)


# ---------------------------------------------------------------------------
# grey CIFAR-10


def _to_grey(x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """ITU-R 601-2 luma exactly as PIL's convert("L"), on (N,H,W,3) -> (N,H,W,1)."""
    from PIL import Image

    n, h, w, _ = x.shape
    out = np.empty((n, h, w, 1), dtype=np.uint8)
    for s in range(0, n, chunk):
        # PIL converts one image at a time; stacking the chunk as one tall image is exact too.
        block = np.ascontiguousarray(x[s:s + chunk]).reshape(-1, w, 3)
        out[s:s + chunk, ..., 0] = np.asarray(Image.fromarray(block, "RGB").convert("L")).reshape(-1, h, w)
    return out


def _obtain_grey(data_dir: Path, download: bool,
                 colour_cache: Path | None) -> tuple[dict | None, dict]:
    if colour_cache is not None:
        colour = load(colour_cache)
        arrays = {k: getattr(colour, k) for k in ("x_train", "y_train", "x_test", "y_test")}
        cmeta = colour.meta
    else:
        arrays, cmeta = obtain_cifar10(data_dir, download)
    if not cmeta.get("available") or arrays is None:
        return None, {"source": cmeta.get("source", "none"), "available": False,
                      "reason": cmeta.get("reason", ""),
                      "note": "grey CIFAR-10 is unavailable because CIFAR-10 is."}
    for split in ("train", "test"):
        arrays[f"x_{split}"] = _to_grey(arrays[f"x_{split}"])
    note = (f"Grey CIFAR-10: ITU-R 601-2 luma (PIL convert('L')) of the colour set. "
            f"{cmeta.get('note', '')}").strip()
    return arrays, {"source": cmeta["source"], "available": True, "reason": "", "note": note}


# ---------------------------------------------------------------------------
# synthetic stand-ins and shared helpers


def _synthetic(name: str, n_train: int = 1200, n_test: int = 400) -> tuple[dict, dict]:
    """Learnable stand-in: per class a fixed random prototype plus noise, deterministic."""
    h, w, c = _SHAPES[name]
    rng = np.random.default_rng(20240 + DATASETS.index(name))
    # Smooth prototypes (8x8 upsampled) so small conv nets and MLPs both learn them quickly.
    coarse = rng.uniform(0, 255, size=(10, 8, 8, c))
    protos = np.repeat(np.repeat(coarse, -(-h // 8), axis=1), -(-w // 8), axis=2)[:, :h, :w]
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.permutation(np.arange(n) % 10).astype(np.int64)  # balanced classes
        x = protos[y] + rng.normal(0, 48, size=(n, h, w, c))
        out[f"x_{split}"] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        out[f"y_{split}"] = y
    note = (f"Synthetic stand-in for {name} (generated, not real data: {n_train} train / "
            f"{n_test} test images, one random prototype per class plus noise); for tests only.")
    return out, {"source": "synthetic", "available": True, "reason": "", "note": note}


def _empty(name: str) -> dict[str, np.ndarray]:
    shape = _SHAPES[name]
    x, y = np.zeros((0, *shape), np.uint8), np.zeros((0,), np.int64)
    return {"x_train": x, "y_train": y, "x_test": x.copy(), "y_test": y.copy()}


def _channel_stats(x: np.ndarray, chunk: int = 5000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of x/255, from exact integer sums (no float copy of x)."""
    c = x.shape[-1]
    if len(x) == 0:
        return [], []
    s = np.zeros(c, np.uint64)
    ss = np.zeros(c, np.uint64)
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk].reshape(-1, c).astype(np.uint64)
        s += part.sum(axis=0)
        ss += (part * part).sum(axis=0)
    n = x.size // c
    mean = s.astype(np.float64) / n
    var = np.maximum(ss.astype(np.float64) / n - mean**2, 0.0)
    return [float(v) for v in mean / 255.0], [float(v) for v in np.sqrt(var) / 255.0]


def _finish_meta(name: str, arrays: dict, meta: dict) -> dict:
    mean, std = _channel_stats(arrays["x_train"])
    return {
        "name": name,
        "source": meta["source"],
        "note": meta.get("note", ""),
        "available": bool(meta["available"]),
        "reason": meta.get("reason", ""),
        "mean": mean,
        "std": std,
        "classes": list(MNIST_CLASSES if name == "mnist" else CIFAR10_CLASSES),
        "n_train": int(len(arrays["y_train"])),
        "n_test": int(len(arrays["y_test"])),
        "shape": list(_SHAPES[name]),
    }


def _mkstemp_beside(path: Path) -> tuple[int, str]:
    """Temp file in path's folder (so os.replace is atomic) with umask permissions, not 0600."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


def _write_npz(out: Path, arrays: dict, meta: dict) -> None:
    """Write the cache to a temp file in the same folder, then os.replace: never half-written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp_beside(out)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def input_shape(name: str) -> tuple[int, int, int]:
    """The (channels, height, width) of data set `name`'s images, as the models take them."""
    h, w, c = _SHAPES[name]
    return c, h, w
