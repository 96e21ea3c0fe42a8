"""Reading a bundle from anyone, safely: its parts read as one stream, every member checked from its
tar header before its bytes are read (a name that is a path trick, a link, a device, a folder or file
a bundle does not hold, a member or bundle over the caps, a member twice, a date out of range), the
members written into a scratch folder, then the runs, timing files and manifest checked against one
another (`runcheck`). A damaged bundle (truncated compression, data after the archive) is refused in
one line, `bundle NAME: MEMBER: what is wrong`. What a bundle holds and how one is made: `bundles`.

Only the standard library here (no torch, no pandas): import must be quick.
"""
from __future__ import annotations

import io
import lzma
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .bundles import (DIR_RE, EXPECTED, MANIFEST, RUN_FILES, RUN_RE, STATE, TIMING_RE, BundleError, bundle_name,
                      shown)


class _Chain(io.RawIOBase):
    """The parts of a bundle read as one stream."""

    def __init__(self, parts: list[Path]):
        self._parts, self._file = list(parts), None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._file is None:
                if not self._parts:
                    return 0
                self._file = open(self._parts.pop(0), "rb")
            n = self._file.readinto(buffer)
            if n:
                return n
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None
        super().close()


@dataclass(frozen=True)
class Limits:
    """Caps on what one bundle may unpack to, checked from each member's header before its bytes are
    read (a few MB of compressed zeros must not fill the disk or the memory)."""

    member_bytes: int = 512 * 2**20   # per member: a MobileNetV2 state.pt is ~30 MB, a run's CSVs < 1 MB
    bundle_bytes: int = 4 * 2**30     # per bundle, all members together
    members: int = 100_000            # members per bundle (the default config has 427 runs, 3 files each)


LIMITS = Limits()
TEXT_BYTES = 16 * 2**20  # a run's JSON and CSV files, timing.json, manifest.json: ~100 kB in practice
MTIME_MAX = 4102444800  # 2100-01-01T00:00:00Z: member dates outside [0, this) are refused


def member_kind(info: tarfile.TarInfo) -> str:
    """What a tar member is, in words."""
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return "file"
    return {tarfile.DIRTYPE: "folder", tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link",
            tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo",
            tarfile.CONTTYPE: "contiguous file", tarfile.GNUTYPE_SPARSE: "sparse file"}.get(info.type, "member of an "
                                                                                           "unknown type")


def name_problem(name: str) -> str | None:
    """What is wrong with a member's name as a path (None: nothing)."""
    if not name:
        return "an empty name"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return "a name that is not UTF-8"
    if shown(name) != name:
        return "a name with control characters"
    if name.startswith("/"):
        return "an absolute name"
    parts = name.split("/")
    if ".." in parts:
        return "a name with '..'"
    if any(part in ("", ".") for part in parts):
        return "a name with an empty or '.' component"
    if len(name.encode()) > 1024 or any(len(part.encode()) > 255 for part in parts):
        return "a name too long for a file system"
    return None


def _member_problem(info: tarfile.TarInfo, limits: Limits) -> str | None:
    """Why a member (not the manifest) cannot be in a bundle (None: it can)."""
    problem = name_problem(info.name)
    if problem:
        return problem
    kind = member_kind(info)
    if kind == "folder":
        return None if DIR_RE.match(info.name) else f"a folder where a bundle has none (a bundle holds {EXPECTED})"
    if kind != "file":
        return f"a {kind}; a bundle holds regular files only"
    match = RUN_RE.match(info.name)
    if not (match or TIMING_RE.match(info.name)) or (match and match["top"] == "results" and match["file"] == STATE):
        return f"not a file a bundle holds (a bundle holds {EXPECTED})"
    if info.size > limits.member_bytes:
        return f"{info.size} bytes, over the cap of {limits.member_bytes} bytes per member (--max-member-mib)"
    if not info.name.endswith(STATE) and info.size > TEXT_BYTES:  # read whole into memory to be checked
        return f"{info.size} bytes, over the cap of {TEXT_BYTES} bytes for a run's or timing text file"
    if not 0 <= info.mtime < MTIME_MAX:
        return f"modification time {info.mtime} is out of range (1970 to 2100)"
    return None


@dataclass
class Unpacked:
    """A bundle read whole into `folder` and checked (`read_bundle`)."""

    name: str
    folder: Path
    manifest: dict
    runs: dict[str, dict] = field(default_factory=dict)       # seed folder (archive path) -> its metrics
    timing: dict[str, Path] = field(default_factory=dict)     # study -> its timing.json in `folder`
    checkpoint_files: list[str] = field(default_factory=list)  # archive names of unfinished seeds' files


def _stream(parts: list[Path]):
    """The bundle's decompressed tar stream, its parts read in turn."""
    return lzma.open(io.BufferedReader(_Chain(parts)), "rb")


def read_bundle(parts: list[Path], folder: Path, limits: Limits = LIMITS) -> Unpacked:
    """Unpack a bundle into `folder` (which must be empty or absent), checking every member as it
    streams, then check its runs, timing files and manifest (`check_unpacked`). BundleError, one line
    naming the bundle, the member and what is wrong, at the first problem; `folder` then holds an
    incomplete copy, which the caller discards."""
    name = shown(bundle_name(parts))
    seen: set[str] = set()
    total = count = 0
    doc = None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with _stream(parts) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
            for info in tar:
                count += 1
                member = shown(info.name)
                if count == 1:
                    if info.name != MANIFEST:
                        raise BundleError(f"bundle {name}: first member is '{member}', not {MANIFEST}; "
                                          f"not made by `results export`")
                    if member_kind(info) != "file":
                        raise BundleError(f"bundle {name}: {MANIFEST} is a {member_kind(info)}, not a file; "
                                          f"not made by `results export`")
                    if info.size > TEXT_BYTES:
                        raise BundleError(f"bundle {name}: {MANIFEST}: {info.size} bytes, over the cap of "
                                          f"{TEXT_BYTES} bytes")
                    seen.add(info.name)
                    doc = _manifest(tar.extractfile(info).read(), name)
                    continue
                if count > limits.members:
                    raise BundleError(f"bundle {name}: over {limits.members} members, the cap per bundle")
                if info.name in seen:
                    raise BundleError(f"bundle {name}: member '{member}' appears twice; a bundle holds each file once")
                seen.add(info.name)
                problem = _member_problem(info, limits)
                if problem:
                    raise BundleError(f"bundle {name}: member '{member}': {problem}")
                if info.isdir():
                    continue
                total += info.size
                if total > limits.bundle_bytes:
                    raise BundleError(f"bundle {name}: over {limits.bundle_bytes} bytes unpacked, the cap per bundle "
                                      f"(--max-bundle-mib)")
                dest = folder / info.name
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise BundleError(f"bundle {name}: member '{member}': a folder of its path is a file "
                                      f"in the bundle") from None
                with tar.extractfile(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 2**20)
                os.utime(dest, (info.mtime, info.mtime))  # a run's date is its metrics.json's time
            if doc is None:
                raise BundleError(f"bundle {name}: empty; not made by `results export`")
            while chunk := tar.fileobj.read(2**20):  # what follows the archive's end must be its zero padding
                if chunk.strip(b"\0"):
                    raise BundleError(f"bundle {name}: data after the end of the archive; a stale or foreign "
                                      f"part? export the bundle again")
    except (lzma.LZMAError, tarfile.TarError, EOFError, UnicodeError) as err:  # UnicodeError: a PAX header not UTF-8
        raise BundleError(f"bundle {name}: unreadable ({_first_line(err)}); was every part copied whole?") from None
    except OSError as err:
        raise BundleError(f"bundle {name}: cannot be unpacked ({shown(err.strerror or err)}); "
                          f"is the disk full?") from None
    return check_unpacked(Unpacked(bundle_name(parts), folder, doc))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return shown(text.splitlines()[0] if text else type(err).__name__)


def _manifest(data: bytes, name: str) -> dict:
    from .runcheck import RunError, check_manifest

    try:
        return check_manifest(data, MANIFEST)
    except RunError as err:
        raise BundleError(f"bundle {name}: {shown(err)}") from None


def check_unpacked(b: Unpacked) -> Unpacked:
    """Check an unpacked bundle: every run by `runcheck.read_run` (its path agreeing with its metrics),
    every timing.json, unfinished seeds' state.pt, and the manifest against what the archive holds.
    Fills `b.runs`, `b.timing`, `b.checkpoint_files`; BundleError (one line) at the first problem."""
    from .runcheck import RunError, read_run, read_timing

    name, folder = shown(b.name), b.folder
    seed_dirs = sorted({p.parent for top in ("results", "checkpoints") for p in folder.glob(f"{top}/*/*/seed=*/*")})
    for d in seed_dirs:
        rel = d.relative_to(folder).as_posix()
        top, study, setting, seed = rel.split("/")
        finished = (d / "metrics.json").exists()
        if top == "results" or finished:
            try:
                b.runs[rel] = read_run(d, (study, setting, int(seed[5:])))
            except RunError as err:
                raise BundleError(f"bundle {name}: {rel}/{shown(err)}") from None
        elif not (d / STATE).exists():
            raise BundleError(f"bundle {name}: {rel}: neither a finished run (metrics.json) nor an unfinished one "
                              f"({STATE})")
        if top == "checkpoints":
            b.checkpoint_files += [f"{rel}/{f.name}" for f in sorted(d.iterdir())
                                   if not (finished and f.name in RUN_FILES)]
    for path in sorted(folder.glob("results/*/timing.json")):
        try:
            read_timing(path.read_bytes(), path.parent.name)
        except RunError as err:
            raise BundleError(f"bundle {name}: results/{path.parent.name}/{shown(err)}") from None
        b.timing[path.parent.name] = path
    _agrees(b)
    return b


def _agrees(b: Unpacked) -> None:
    """The manifest against the archive: the same runs (identities too), timing files and checkpoint count."""
    name, doc = shown(b.name), b.manifest
    listed: dict[str, dict] = {}
    for record in doc["runs"]:
        if record["path"] in listed:
            raise BundleError(f"bundle {name}: {MANIFEST} lists '{shown(record['path'])}' twice")
        listed[record["path"]] = record
    for path in sorted(set(listed) | set(b.runs)):
        if path not in b.runs:
            raise BundleError(f"bundle {name}: {MANIFEST} lists the run '{shown(path)}', which the archive does not "
                              f"hold; export the bundle again")
        if path not in listed:
            raise BundleError(f"bundle {name}: the archive holds the run '{shown(path)}', which {MANIFEST} does not "
                              f"list; export the bundle again")
        r, m = listed[path], b.runs[path]
        if (r["study"], r["setting"], r["seed"]) != (m["study"], m["setting"], m["seed"]):
            raise BundleError(f"bundle {name}: {MANIFEST} names '{shown(path)}' {shown(r['study'])}/"
                              f"{shown(r['setting'])} seed={r['seed']}, its metrics.json "
                              f"{m['study']}/{m['setting']} seed={m['seed']}")
    timing = set(doc.get("timing", {}))
    if timing != set(b.timing):
        odd = sorted(timing ^ set(b.timing))[0]
        raise BundleError(f"bundle {name}: {MANIFEST} and the archive disagree on the timing file of "
                          f"'{shown(odd)}' (" + ("listed, not held" if odd in timing else "held, not listed") + ")")
    if doc.get("checkpoints", 0) != len(b.checkpoint_files):
        raise BundleError(f"bundle {name}: {MANIFEST} counts {doc.get('checkpoints', 0)} checkpoint file(s), the "
                          f"archive holds {len(b.checkpoint_files)}")


def members(parts: list[Path]) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """Each member of a bundle with its bytes (None for anything but a regular file), in archive order,
    unchecked: for tests and inspection. Import reads bundles with `read_bundle`."""
    name = shown(bundle_name(parts))
    try:
        with _stream(parts) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
            for info in tar:
                data = tar.extractfile(info).read() if member_kind(info) == "file" else None
                yield info, data
    except (lzma.LZMAError, tarfile.TarError, EOFError, UnicodeError) as err:
        raise BundleError(f"bundle {name}: unreadable ({_first_line(err)}); was every part copied whole?") from None


def read_manifest(parts: list[Path]) -> dict:
    """A bundle's manifest (its first member, checked) without reading the rest."""
    name = shown(bundle_name(parts))
    for info, data in members(parts):
        if info.name == MANIFEST and data is not None:
            return _manifest(data, name)
        break
    raise BundleError(f"bundle {name}: no {MANIFEST} first; not made by `results export`")
