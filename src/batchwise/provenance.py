"""What ran where: versions, hardware, git state, device types. Recorded in every metrics file and the
report, whose commands and notes it also rids of machine paths."""
from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .config import REPO

if TYPE_CHECKING:   # runs tables only pass through; the engine imports this module without pandas
    import pandas as pd


def device_type(device: object) -> str:
    """The kind of arithmetic a run used, from the device it recorded: 'cuda' for 'cuda:0', 'cpu', 'mps';
    'unknown' where none was recorded."""
    text = "" if device is None else str(device).strip()
    return text.split(":", 1)[0] if text and text.lower() != "nan" else "unknown"


def git_state(repo: Path = REPO) -> dict:
    """Commit hash and whether the working tree has uncommitted changes (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc), to measure start-up cost honestly.

    The start time is in clock ticks since boot; CLOCK_BOOTTIME is the matching clock (btime in
    /proc/stat is rounded to whole seconds, too coarse for this)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def cpu_model() -> str:
    """The CPU's marketing name where Linux tells it, else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device=None) -> dict:
    """Python/torch/CUDA/cuDNN versions and the hardware; torch is imported only if already loaded."""
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "command": " ".join(sys.argv),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        if device is not None and device.type == "cuda":
            env["device_name"] = torch.cuda.get_device_name(device)
        else:
            env["device_name"] = env["cpu"]
    env["git"] = git_state()
    return env


# What builds results and reports: a change elsewhere (docs/, published bundles) changes no number.
CODE_PATHS = ("Snakefile", "src", "workflow", "config", "reports/templates", "profiles", "envs")
# Options whose value names where this machine keeps things, not what was computed.
_MACHINE_OPTIONS = {"--directory", "-d"}
_SNAKEFILE_OPTIONS = {"--snakefile", "-s"}


def code_state(repo: Path = REPO) -> dict:
    """Commit hash, and whether the code and config that build results (CODE_PATHS) have uncommitted
    changes; the same keys as `git_state`."""
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--",
                                 *CODE_PATHS], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status)}


def _portable_path(token: str, repo: Path, workdir: Path) -> str:
    """An absolute path as a reader can use it: relative to the repository, else to the working
    directory, else only its name."""
    path = Path(token)
    for base in (repo, workdir):
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except (ValueError, OSError):
            continue
    return path.name


def reproducible_command(argv: list[str], repo: Path = REPO, workdir: Path | None = None) -> str:
    """The command line that built a report, as a reader reruns it in a checkout: `snakemake` for
    whichever entry point ran (a venv's script, `python -m snakemake`), without the working directory
    and the repository's own Snakefile (the defaults there), and every other path repository-relative
    (or working-directory-relative, or its name alone): never a machine's absolute path."""
    workdir = Path.cwd() if workdir is None else workdir
    out, i = ["snakemake"], 1
    while i < len(argv):
        token = argv[i]
        name, _, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        value = inline or (argv[i + 1] if i + 1 < len(argv) else "")
        step = 1 if inline else 2
        if name in _MACHINE_OPTIONS:
            i += step
            continue
        if name in _SNAKEFILE_OPTIONS and Path(value).resolve() == (repo / "Snakefile").resolve():
            i += step
            continue
        if token.startswith("/"):
            token = _portable_path(token, repo, workdir)
        elif "=/" in token:   # --config key=/a/path
            key, _, path = token.partition("=")
            token = f"{key}={_portable_path(path, repo, workdir)}"
        out.append(token)
        i += 1
    return " ".join(out)


# The folders of the data layouts (README, Data): a path into one is shown from data_dir on.
DATA_LAYOUTS = ("MNIST", "cifar-10-batches-py", "cifar10-jpeg")
_ABSOLUTE = re.compile(r"(?<![\w.])/[^\s;,()\"']+")


def portable_note(text: str | None) -> str | None:
    """A data note without the machine's absolute paths: a path into a data layout from `<data_dir>` on,
    any other absolute path by its name alone."""
    if not text:
        return text

    def shorten(match: re.Match) -> str:
        path = match.group(0)
        tail = "." if path.endswith(".") else ""
        parts = path.rstrip(".").split("/")
        for i, part in enumerate(parts):
            if part in DATA_LAYOUTS:
                return "<data_dir>/" + "/".join(parts[i:]) + tail
        return parts[-1] + tail
    return _ABSOLUTE.sub(shorten, text)


def device_types(runs: pd.DataFrame) -> dict[str, int]:
    """Runs per device type among the study's runs that ran (no-data runs left out), most first."""
    done = runs[runs["status"] != "no-data"] if "status" in runs else runs
    if "device_type" not in done or done.empty:
        return {}
    counts = done["device_type"].map(device_type).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def device_listing(devices: dict[str, int]) -> str:
    """'cpu (all 60 runs)' or 'cpu (40 runs), cuda (20 runs)'."""
    if len(devices) == 1:
        (kind, n), = devices.items()
        return f"{kind} (all {n} run{'s' if n != 1 else ''})"
    return ", ".join(f"{kind} ({n} run{'s' if n != 1 else ''})" for kind, n in devices.items())


def mixed_device_note(devices: dict[str, int]) -> str:
    """What a study whose runs come from more than one device type must say beside its numbers; '' otherwise."""
    if len(devices) < 2:
        return ""
    return (f"Mixed devices: this study's runs come from more than one device type ({device_listing(devices)}). "
            f"Its means, spreads and verdicts pool them, though the devices round differently; its compute times "
            f"all come from one timing pass, so they are that pass's device's times, not every run's.")
