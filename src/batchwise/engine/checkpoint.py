"""Where a cell job keeps its seeds' work until the job ends, so that a killed job resumes.

`<dir>/seed=<n>/state.pt` holds a seed's full training state after its last finished epoch; once the
seed finishes, its three result files replace it there. The folder lies outside the job's Snakemake
output (which Snakemake deletes before re-running an interrupted job), so neither a re-run nor
`--rerun-incomplete` loses anything; the job moves the results into its output folder at the very end
and then removes the folder.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import torch

from batchwise.files import atomic_write_bytes

STATE = "state.pt"
UNLOADABLE = "state.pt.unloadable"  # where a checkpoint that cannot be loaded is set aside
RESULT_FILES = ("history.csv", "iterations.csv", "metrics.json")  # metrics.json last: it marks a finished run


def spec_identity(spec: dict) -> str:
    """What makes two runs of a cell the same run, seed aside: the resolved spec without the seed fields."""
    return json.dumps({k: v for k, v in spec.items() if k not in ("seed", "seeds", "cell")}, sort_keys=True)


class Checkpoints:
    """The resume folder of one cell job (`checkpoints/<study>/<cell>`)."""

    def __init__(self, root: Path, spec: dict, log: Callable[[str], None] = print):
        self.root, self.identity, self.log = Path(root), spec_identity(spec), log

    def folder(self, seed: int) -> Path:
        return self.root / f"seed={seed}"

    def finished(self, seed: int) -> bool:
        """True when this seed's results (of this very spec) are already here."""
        path = self.folder(seed) / "metrics.json"
        if not path.exists():
            return False
        try:
            same = spec_identity(json.loads(path.read_text())["spec"]) == self.identity
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.log(f"seed {seed}: finished results in {self.folder(seed)} cannot be read "
                     f"({_first_line(exc)}); removed, training afresh")
            self._discard(seed)
            return False
        if same:
            return True
        self.log(f"seed {seed}: results of a different spec of this cell removed; training afresh")
        self._discard(seed)
        return False

    def save(self, seed: int, state: dict) -> None:
        """Write a seed's state atomically: a kill mid-write leaves the previous epoch's state."""
        buffer = io.BytesIO()
        torch.save({"identity": self.identity, **state}, buffer)
        atomic_write_bytes(self.folder(seed) / STATE, buffer.getvalue())

    def load(self, seed: int, device: torch.device) -> dict | None:
        """The seed's saved state, or None when there is none or it belongs to another spec or device type."""
        path = self.folder(seed) / STATE
        if not path.exists():
            return None
        # weights_only: a checkpoint may have travelled in a bundle; tensors and plain values only
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"holds a {type(state).__name__}, not a training state")
        except Exception as exc:  # noqa: BLE001 - truncated, corrupt or foreign: any of torch's many errors
            aside = path.with_name(UNLOADABLE)
            os.replace(path, aside)  # kept for a look, out of the way: the next job does not trip on it again
            self.log(f"seed {seed}: checkpoint {path} cannot be loaded ({_first_line(exc)}); set aside as "
                     f"{aside.name}, training from the start")
            return None
        if state.get("identity") != self.identity:
            self.log(f"seed {seed}: checkpoint of a different spec of this cell ignored; training afresh")
            return None
        if state.get("device_type") != device.type:  # generator states do not cross device types
            self.log(f"seed {seed}: checkpoint made on {state.get('device_type')}, this job runs on {device.type}; "
                     f"training afresh")
            return None
        return state

    def done(self, seed: int) -> None:
        """The seed's results are written here: its state is no longer needed."""
        (self.folder(seed) / STATE).unlink(missing_ok=True)

    def move_results(self, seeds: list[int], out: Callable[[int], Path]) -> None:
        """Move every seed's results into the job's output folder (metrics.json last), then remove this folder."""
        for seed in seeds:
            out(seed).mkdir(parents=True, exist_ok=True)
            for name in RESULT_FILES:
                os.replace(self.folder(seed) / name, out(seed) / name)
        shutil.rmtree(self.root, ignore_errors=True)
        for parent in (self.root.parent, self.root.parent.parent):  # checkpoints/<study>/ and checkpoints/, if empty
            try:
                parent.rmdir()
            except OSError:
                break

    def _discard(self, seed: int) -> None:
        """Remove a seed's folder (a finished run of another spec, or unreadable)."""
        shutil.rmtree(self.folder(seed), ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    """An exception as one short line (torch's messages run to many)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."
