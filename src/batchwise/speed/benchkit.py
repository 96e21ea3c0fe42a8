"""What the benchmarks share (the speed benchmark `bench` and the GPU window's throughput probe
`gpu_probe`): data of the right shape, a benchmark spec, training jobs as subprocesses, the machine."""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from batchwise import config, provenance
from batchwise.data import prepare as data

SRC = Path(__file__).resolve().parents[2]  # the folder that holds the package: PYTHONPATH of the subprocesses
FULL_TRAIN = {"mnist": 60000, "cifar10": 50000, "cifar10_grey": 50000}  # images per epoch of the real data
FULL_TEST = 10000
SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "cifar10_grey": (32, 32, 1)}  # H, W, C as cached
LR, MOMENTUM = 0.01, 0.9  # one SGD setting for every timing (momentum: the costlier update)


def log(line: str) -> None:
    print(line, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.cache
def load_images(name: str, folder: Path) -> tuple[data.Cache, str, Path | None]:
    """The full-size data set `name`: `folder/<name>.npz` when it holds the real data (returned with
    its path), else random uint8 images of the real shape and count (path None): timing does not
    depend on pixel values."""
    path = folder / f"{name}.npz"
    cache = data.load(path) if path.is_file() else None
    if (cache is not None and cache.meta.get("available") and cache.meta.get("source") != "synthetic"
            and len(cache.x_train) >= FULL_TRAIN[name]):
        return cache, f"real {name} ({path}, source: {cache.meta.get('source')})", path
    h, w, c = SHAPES[name]
    rng = np.random.default_rng(0)
    cache = data.Cache(x_train=rng.integers(0, 256, (FULL_TRAIN[name], h, w, c), dtype=np.uint8),
                       y_train=rng.integers(0, 10, FULL_TRAIN[name]).astype(np.int64),
                       x_test=rng.integers(0, 256, (FULL_TEST, h, w, c), dtype=np.uint8),
                       y_test=rng.integers(0, 10, FULL_TEST).astype(np.int64),
                       meta={"name": name, "source": "random", "available": True,
                             "mean": [0.5] * c, "std": [0.29] * c, "shape": [h, w, c]})
    why = "a synthetic stand-in" if path.is_file() else "none"
    return cache, f"random uint8 images of {name}'s shape and size (cache at {path}: {why})", None


def bench_spec(model_name: str, dataset: str, bs: int, options: dict, epochs: int, steps: int, test_n: int,
               device: torch.device, graphs: bool) -> dict:
    """A one-seed training spec of `epochs` epochs of `steps` steps, as the engine takes it."""
    params = {**config.DEFAULT_PARAMS, **config.MODEL_PARAMS[model_name], **options,
              "epochs": epochs, "batch_size": bs, "lr": LR, "momentum": MOMENTUM,
              "train_subset": steps * bs, "test_subset": test_n}
    return {"study": "bench", "cell": f"{model_name}_bs{bs}", "setting": f"bs={bs}", "seed": 0,
            "dataset": dataset, "model": model_name, "params": params, "device": device.type,
            "cuda_graphs": "on" if graphs else "off", "deterministic": False}


def sub_env() -> dict:
    """Subprocesses import this very package, installed or not."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def mnist_cache(data_dir: Path, tmp: Path, name: str = "mnist") -> Path:
    """A cache file of data set `name` (MNIST by default) for subprocess jobs: the real one, else the
    random images written to `tmp` (full size, so a job trains as long as a real cell does)."""
    cache, _, path = load_images(name, data_dir)
    if path is None:
        path = tmp / f"{name}.npz"
        np.savez(path, meta=np.array(json.dumps(cache.meta)), x_train=cache.x_train, y_train=cache.y_train,
                 x_test=cache.x_test, y_test=cache.y_test)
    return path


def train_job(spec: dict, cache: Path, out_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "batchwise", "train", "--spec", json.dumps(spec),
                             "--data", str(cache), "--out", str(out_dir)], env=sub_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def child_json(module: str, args: list[str], what: str, threads: int = 1) -> dict:
    """Run `python -m module args` as a fresh process at `threads` threads; its last stdout line, as JSON.
    `what` names the measurement in the error when the process fails."""
    proc = subprocess.run([sys.executable, "-m", module, *args], env={**sub_env(), "OMP_NUM_THREADS": str(threads)},
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} process exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_outputs(out: dict, path: Path, markdown: str) -> None:
    """A benchmark's records as <path>.json and its report as <path>.md."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"`python -m batchwise train` exited with {proc.returncode}: {err[-2000:]}")


def machine(device: torch.device) -> dict:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU (CPU run)",
            "cpu": f"{provenance.cpu_model()} ({os.cpu_count()} cores)", "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": cudnn, "python": platform.python_version(),
            "platform": platform.platform()}
