"""Where a cell job keeps its seeds' work until the job ends, so that a killed job resumes.

`<dir>/seed=<n>/state.pt` holds a seed's full training state after its last finished epoch; once the
seed finishes, its three result files replace it there. The folder lies outside the job's Snakemake
output (which Snakemake deletes before re-running an interrupted job), so neither a re-run nor
`--rerun-incomplete` loses anything; the job moves the results into its output folder at the very end
and then removes the folder. A seed's work that this job cannot use (another spec of the cell, or a
state saved on another device type) is moved to `checkpoints.set-aside/`, never deleted: it may be hours of
training, and a config that changed by mistake is changed back.
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
            theirs = spec_identity(json.loads(path.read_text())["spec"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.log(f"seed {seed}: finished results in {self.folder(seed)} cannot be read "
                     f"({_first_line(exc)}); removed, training afresh")
            self._discard(seed)
            return False
        if theirs == self.identity:
            return True
        self.log(f"seed {seed}: results of a different spec of this cell ({_differences(theirs, self.identity)}) "
                 f"set aside in {self._set_aside(seed)}; training afresh")
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
            why = f"checkpoint of a different spec of this cell ({_differences(state.get('identity'), self.identity)})"
        elif state.get("device_type") != device.type:  # generator states do not cross device types
            why = f"checkpoint made on {state.get('device_type')} (this job runs on {device.type})"
        else:
            return state
        self.log(f"seed {seed}: {why} set aside in {self._set_aside(seed)}; training afresh")
        return None

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
        """Remove a seed's folder (finished results that cannot be read)."""
        shutil.rmtree(self.folder(seed), ignore_errors=True)

    def _set_aside(self, seed: int) -> Path:
        """Move a seed's folder from `checkpoints/<study>/<cell>/` to `checkpoints.set-aside/<study>/<cell>/seed=<n>`
        (`seed=<n>.2`, ... if taken), outside the tree that resume, export and the report read; return where."""
        top = self.root.parent.parent
        target = top.with_name(f"{top.name}.set-aside") / self.root.parent.name / self.root.name / f"seed={seed}"
        n = 1
        while target.exists():
            n += 1
            target = target.with_name(f"seed={seed}.{n}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.folder(seed), target)
        return target


def _differences(theirs: object, identity: str) -> str:
    """How another run's spec identity differs from this cell's: `key their value -> this value`, at most 3 keys."""
    try:
        old = _flat(json.loads(theirs))
    except (TypeError, ValueError, AttributeError):
        return "spec unknown"
    new = _flat(json.loads(identity))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    shown = ", ".join(f"{k} {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}" for k in keys[:3])
    return shown + (f", and {len(keys) - 3} more" if len(keys) > 3 else "")


def _flat(spec: dict, prefix: str = "") -> dict:
    """A nested spec as one level of dotted keys (`params.lr`), so a difference names the very value."""
    flat = {}
    for key, value in spec.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def _first_line(exc: BaseException) -> str:
    """An exception as one short line (torch's messages run to many)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."
