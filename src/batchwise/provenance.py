"""What ran where: versions, hardware, git state. Recorded in every metrics file and the report."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

from .config import REPO


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
