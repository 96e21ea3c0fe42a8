"""Results that travel: a bundle packs finished runs (and optionally unfinished ones) of a checkout.

A bundle is one tar.xz stream holding, at their checkout paths,
  manifest.json                                  (first member, so it is read without the rest)
  results/<study>/<cell>/seed=<n>/{metrics.json,history.csv,iterations.csv}   finished runs
  results/<study>/timing.json                    each study's solo timing pass
  checkpoints/...                                with --checkpoints: unfinished runs, as they lie
The stream is cut into parts of at most `part_bytes` (16 MiB: what a GPU window returns per file):
`NAME.tar.xz` when it fits, else `NAME.tar.xz.part-1-of-3`, ... Import takes all parts (or their folder).
Reading a bundle back, checked as one from anyone, is `unpack`.

Only the standard library here (no torch, no pandas): export and import must be quick.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import lzma
import re
import socket
import tarfile
import unicodedata
from pathlib import Path

PART_BYTES = 16 * 1024 * 1024
RUN_FILES = ("metrics.json", "history.csv", "iterations.csv")
STATE = "state.pt"
MANIFEST = "manifest.json"
SEED_SPECIFIC = ("seed", "seeds", "cell")  # spec fields that name one run, not its grid point
PART_RE = re.compile(r"^(?P<base>.+\.tar\.xz)\.part-(?P<i>\d+)-of-(?P<n>\d+)$")
_SAFE = r"(?!\.\.?(?:/|$))[a-z0-9_.=+-]{1,200}"  # a setting id (config.SLUG_RE), never '.' or '..'
RUN_RE = re.compile(r"^(?P<top>results|checkpoints)/(?P<study>[a-z][a-z0-9_]{0,99})/(?P<setting>" + _SAFE
                     + r")/seed=(?P<seed>0|[1-9][0-9]{0,8})/(?P<file>metrics\.json|history\.csv|iterations\.csv"
                     r"|state\.pt)$")
TIMING_RE = re.compile(r"^results/(?P<study>[a-z][a-z0-9_]{0,99})/timing\.json$")
DIR_RE = re.compile(r"^(?:results|checkpoints)(?:/" + _SAFE + r"){0,3}$")
EXPECTED = ("manifest.json; results/<study>/<setting>/seed=<n>/{metrics.json,history.csv,iterations.csv}; "
            "results/<study>/timing.json; checkpoints/<study>/<setting>/seed=<n>/{the same, state.pt}")


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
            files += sorted(f for f in p.iterdir() if f.name.endswith(".tar.xz") or PART_RE.match(f.name))
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
        match = PART_RE.match(f.name)
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
            match = RUN_RE.match(rel)
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
