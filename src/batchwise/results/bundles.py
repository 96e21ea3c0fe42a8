"""Results that travel: a bundle packs finished runs (and optionally unfinished ones) of a checkout.

A bundle is one tar.xz stream holding, at their checkout paths,
  manifest.json                                  (first member, so it is read without the rest)
  results/<study>/<cell>/seed=<n>/{metrics.json,history.csv,iterations.csv}   finished runs
  results/<study>/timing.json                    each study's solo timing pass
  checkpoints/...                                with --checkpoints: unfinished runs, as they lie
The stream is cut into parts of at most `part_bytes` (16 MiB: what a GPU window returns per file):
`NAME.tar.xz` when it fits, else `NAME.tar.xz.part-1-of-3`, ... Import takes all parts (or their folder).

Only the standard library here (no torch, no pandas): export and import must be quick.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import socket
import tarfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

PART_BYTES = 16 * 1024 * 1024
RUN_FILES = ("metrics.json", "history.csv", "iterations.csv")
STATE = "state.pt"
MANIFEST = "manifest.json"
SEED_SPECIFIC = ("seed", "seeds", "cell")  # spec fields that name one run, not its grid point
_PART_RE = re.compile(r"^(?P<base>.+\.tar\.xz)\.part-(?P<i>\d+)-of-(?P<n>\d+)$")


class BundleError(Exception):
    """A bundle that cannot be read or written as asked; the message is one line per problem."""


def utc(ts: float | None = None) -> str:
    """An instant as ISO 8601 UTC to the second (now without `ts`)."""
    when = dt.datetime.fromtimestamp(ts, dt.timezone.utc) if ts is not None else dt.datetime.now(dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def setting_hash(spec: dict) -> str:
    """sha256 (12 hex digits) of a run's resolved spec without its seed-specific fields: equal for
    every seed of a grid point, different when any parameter, the data set or the model differs."""
    core = {k: v for k, v in spec.items() if k not in SEED_SPECIFIC}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:12]


def finished_runs(root: Path, top: str = "results", studies: list[str] | None = None) -> list[Path]:
    """The seed folders under `root/top/<study>/<cell>/` that hold a metrics.json (a run counts only
    once its metrics.json, written last, exists), sorted; runs that found no data set (`no-data`) are
    not results and are left out."""
    base = root / top
    out = []
    for path in sorted(base.glob("*/*/seed=*/metrics.json")):
        study = path.relative_to(base).parts[0]
        try:
            no_data = json.loads(path.read_text()).get("status") == "no-data"
        except (OSError, ValueError, AttributeError):
            no_data = False  # not a run's metrics: export names what is wrong with it (runcheck)
        if (studies is None or study in studies) and not no_data:
            out.append(path.parent)
    return out


def run_record(seed_dir: Path, name: str) -> dict:
    """The manifest entry of one finished run, from its metrics.json."""
    m = json.loads((seed_dir / "metrics.json").read_text())
    env = m.get("env") or {}
    git = env.get("git") or {}
    return {"path": name, "study": m["study"], "setting": m["setting"],
            "seed": m["seed"], "status": m.get("status"), "setting_hash": setting_hash(m["spec"]),
            "commit": git.get("commit"), "dirty": git.get("dirty"),
            "device": env.get("device_name") or m.get("device"), "host": env.get("hostname"),
            "finished": utc((seed_dir / "metrics.json").stat().st_mtime)}


def timing_device(path: Path) -> str | None:
    """The device a study's solo timing pass ran on, as its timing.json records it."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    names = {(r.get("env") or {}).get("device_name") or r.get("device") for r in doc.get("settings", [])}
    names.discard(None)
    return ", ".join(sorted(names)) or None


def manifest(runs: dict[Path, str], timings: list[Path], checkpoint_files: list[Path], source: str) -> dict:
    """The bundle's manifest: per run its identity, setting hash, commit, device and date; per study
    its timing device; and the bundle's own date, commit, host and devices."""
    from batchwise.provenance import git_state

    records = [run_record(d, name) for d, name in runs.items()]
    git = git_state()
    return {
        "format": 1, "created": utc(), "commit": git["commit"], "dirty": git["dirty"],
        "host": socket.gethostname(), "source": source,
        "devices": sorted({r["device"] for r in records if r["device"]}),
        "runs": records,
        "timing": {p.parent.name: {"path": f"results/{p.parent.name}/timing.json", "device": timing_device(p),
                                   "date": utc(p.stat().st_mtime)} for p in timings},
        "checkpoints": len(checkpoint_files),
    }


class _PartWriter(io.RawIOBase):
    """A binary sink that cuts what is written into files of at most `limit` bytes."""

    def __init__(self, base: Path, limit: int):
        self.base, self.limit, self.paths, self._file, self._left = base, limit, [], None, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        while len(view):
            if self._left == 0:
                if self._file:
                    self._file.close()
                path = self.base.with_name(f"{self.base.name}.tmp{len(self.paths) + 1}")
                self._file, self._left = open(path, "wb"), self.limit
                self.paths.append(path)
            n = min(self._left, len(view))
            self._file.write(view[:n])
            self._left -= n
            view = view[n:]
        return len(data)

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None
        super().close()


def part_names(base: Path, n: int) -> list[Path]:
    """The final file names of a bundle cut into `n` parts."""
    if n == 1:
        return [base]
    return [base.with_name(f"{base.name}.part-{i}-of-{n}") for i in range(1, n + 1)]


def bundle_base(path: str | Path) -> Path:
    """BUNDLE as the user names it, ending in .tar.xz."""
    path = Path(path)
    return path if path.name.endswith(".tar.xz") else path.with_name(path.name + ".tar.xz")


def write_bundle(base: Path, members: list[tuple[str, Path]], manifest_doc: dict,
                 part_bytes: int = PART_BYTES) -> list[Path]:
    """Pack the manifest and `members` (archive name, file) into BUNDLE.tar.xz, cut into parts of at
    most `part_bytes`; returns the files written. Old parts of the same bundle are removed first."""
    base = bundle_base(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    for old in [base, *base.parent.glob(f"{base.name}.part-*-of-*")]:
        old.unlink(missing_ok=True)
    sink = _PartWriter(base, part_bytes)
    with lzma.open(sink, "wb", preset=6) as xz, tarfile.open(fileobj=xz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(manifest_doc, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime, info.mode = len(data), int(dt.datetime.now().timestamp()), 0o644
        tar.addfile(info, io.BytesIO(data))
        for name, path in members:
            tar.add(path, arcname=name, recursive=False)
    sink.close()
    finals = part_names(base, len(sink.paths))
    for tmp, final in zip(sink.paths, finals):
        tmp.replace(final)
    return finals


def group_parts(paths: list[str | Path]) -> list[list[Path]]:
    """Bundles from the files (or folders of bundle files) named: each a list of its parts in order.
    BundleError names a bundle with a part missing, parts that disagree on their count (a stale part of
    an earlier export lying beside them), a bundle both whole and in parts, or a file that is no bundle."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.name.endswith(".tar.xz") or _PART_RE.match(f.name))
        elif p.is_file():
            files.append(p)
        elif p.exists():
            raise BundleError(f"bundle {shown(p)}: not a regular file")
        else:
            raise BundleError(f"bundle {shown(p)}: no such file")
    bundles: dict[Path, dict[int, Path]] = {}
    counts: dict[Path, set[int]] = {}
    errors = []
    for f in dict.fromkeys(f.resolve() for f in files):  # a part named twice (file and folder) counts once
        match = _PART_RE.match(f.name)
        if match:
            base, i, n = f.with_name(match["base"]), int(match["i"]), int(match["n"])
            if not 1 <= i <= n:
                errors.append(f"bundle {shown(f.name)}: part {i} of {n} cannot be")
            bundles.setdefault(base, {})[i] = f
            counts.setdefault(base, set()).add(n)
        elif f.name.endswith(".tar.xz"):
            bundles.setdefault(f, {})[0] = f
            counts.setdefault(f, set()).add(1)
        else:
            errors.append(f"bundle {shown(f)}: not a bundle file (BUNDLE.tar.xz or BUNDLE.tar.xz.part-I-of-N)")
    for base, parts in bundles.items():
        name = shown(base.name)
        if 0 in parts and len(parts) > 1:
            errors.append(f"bundle {name}: both whole and in parts here; a stale export lies beside the new one: "
                          f"remove the older")
            continue
        if len(counts[base] - {1} if 0 in parts else counts[base]) > 1:
            errors.append(f"bundle {name}: its parts disagree on their count ({', '.join(f'of {n}' for n in sorted(counts[base]))}); "
                          f"a stale part of an earlier export lies beside them: remove it")
            continue
        n = max(counts[base])
        missing = [i for i in range(1, n + 1) if i not in parts and 0 not in parts]
        if missing:
            errors.append(f"bundle {name}: part(s) {', '.join(map(str, missing))} of {n} missing; "
                          f"name every part (or their folder)")
    if errors:
        raise BundleError("\n".join(errors))
    return [[parts[i] for i in sorted(parts)] for parts in bundles.values()]


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
_SAFE = r"(?!\.\.?(?:/|$))[a-z0-9_.=+-]{1,200}"  # a setting id (config.SLUG_RE), never '.' or '..'
_RUN_RE = re.compile(r"^(?P<top>results|checkpoints)/(?P<study>[a-z][a-z0-9_]{0,99})/(?P<setting>" + _SAFE
                     + r")/seed=(?P<seed>0|[1-9][0-9]{0,8})/(?P<file>metrics\.json|history\.csv|iterations\.csv"
                     r"|state\.pt)$")
_TIMING_RE = re.compile(r"^results/(?P<study>[a-z][a-z0-9_]{0,99})/timing\.json$")
_DIR_RE = re.compile(r"^(?:results|checkpoints)(?:/" + _SAFE + r"){0,3}$")
EXPECTED = ("manifest.json; results/<study>/<setting>/seed=<n>/{metrics.json,history.csv,iterations.csv}; "
            "results/<study>/timing.json; checkpoints/<study>/<setting>/seed=<n>/{the same, state.pt}")


def shown(text: object) -> str:
    """Text from a bundle as it may be printed: control and format characters (ESC, CR, newline, bidi
    overrides...) and undecodable bytes escaped, so that a bundle cannot forge terminal output."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def bundle_name(parts: list[Path]) -> str:
    """A bundle's name: its first part's file name without the part suffix."""
    return parts[0].name.split(".part-")[0]


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
        return None if _DIR_RE.match(info.name) else f"a folder where a bundle has none (a bundle holds {EXPECTED})"
    if kind != "file":
        return f"a {kind}; a bundle holds regular files only"
    match = _RUN_RE.match(info.name)
    if not (match or _TIMING_RE.match(info.name)) or (match and match["top"] == "results" and match["file"] == STATE):
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


def export(bundle: str | Path, root: str | Path = ".", studies: list[str] | None = None, results: str = "results",
           with_checkpoints: bool = False, source: str = "", part_bytes: int = PART_BYTES) -> tuple[list[Path], dict]:
    """Pack the finished runs (and timing files; with `with_checkpoints`, the unfinished seeds'
    checkpoints) of the checkout at `root` into a bundle; returns the files written and the manifest.
    Every run and timing file is checked first (`runcheck`, the definition import applies): a bad one
    is a BundleError naming it, and nothing is written. Files under checkpoints/ that are no part of a
    seed (temporary files, a state set aside) are not packed; the manifest's `skipped` names them."""
    from .runcheck import RunError, read_run, read_timing

    root = Path(root)
    # Seeds that finished in a cell job still running (or stopped) wait in checkpoints/: finished runs too.
    done, waiting = finished_runs(root, results, studies), finished_runs(root, "checkpoints", studies)
    # Archive names keep the checkout's layout (results/, checkpoints/) whatever --results named here.
    where = {d: f"results/{d.relative_to(root / results).as_posix()}" for d in done}
    where.update({d: f"checkpoints/{d.relative_to(root / 'checkpoints').as_posix()}" for d in waiting})
    runs = done + waiting
    timings = sorted(p for p in (root / results).glob("*/timing.json") if studies is None or p.parent.name in studies)
    for d in runs:
        try:
            read_run(d, (d.parent.parent.name, d.parent.name, int(d.name[5:])))
        except (RunError, ValueError) as err:
            raise BundleError(f"export: {shown(d)}/{shown(err)}; every import would refuse this run: fix or "
                              f"remove it (nothing written)") from None
    for p in timings:
        try:
            read_timing(p.read_bytes(), p.parent.name)
        except RunError as err:
            raise BundleError(f"export: {shown(p.parent)}/{shown(err)}; re-time the study or remove the file "
                              f"(nothing written)") from None
    ckpt, skipped = [], []
    if with_checkpoints and (root / "checkpoints").is_dir():
        for p in sorted(p for p in (root / "checkpoints").rglob("*") if not p.is_dir()):
            rel = p.relative_to(root).as_posix()
            if studies is not None and p.relative_to(root / "checkpoints").parts[0] not in studies:
                continue
            if p.parent in where:
                continue  # a finished seed's files are packed as its run; a state.pt left beside them goes too
            match = _RUN_RE.match(rel)
            if p.is_file() and not p.is_symlink() and match and (p.parent / STATE).is_file():
                ckpt.append(p)
            else:
                skipped.append(rel)
        ckpt += sorted(d / STATE for d in waiting if (d / STATE).is_file())
    if not runs and not timings and not ckpt:
        raise BundleError(f"export: no finished run under {root / results}"
                          + (f" for studies {', '.join(studies)}" if studies else "") + "; nothing to pack")
    # CSVs before metrics.json, as a run is written
    names = [(f"{where[d]}/{f}", d / f) for d in runs for f in reversed(RUN_FILES)]
    doc = manifest(where, timings, ckpt, source)
    doc["skipped"] = skipped
    names += [("results/" + p.relative_to(root / results).as_posix(), p) for p in timings]
    names += [(p.relative_to(root).as_posix(), p) for p in sorted(ckpt)]
    return write_bundle(Path(bundle), names, doc, part_bytes), doc
