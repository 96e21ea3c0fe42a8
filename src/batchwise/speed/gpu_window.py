"""Helpers of the GPU-window script (tools/gpu-window.sh): sizes of what a device call carries, the
training targets left (longest first), the window's summary, and the limits on what comes back.

    python -m batchwise.speed.gpu_window carried NAME=PATH[,PATH...] ...   what each call carries (exit 1: too much)
    python -m batchwise.speed.gpu_window targets --configfile C... --studies S... --plan FILE
    python -m batchwise.speed.gpu_window record SUMMARY STAGE STATUS SECONDS [NOTE]
    python -m batchwise.speed.gpu_window finished SUMMARY --configfile C... --studies S...
    python -m batchwise.speed.gpu_window outcheck OUT SUMMARY              the returned files (exit 1: over a limit)
    python -m batchwise.speed.gpu_window closure NAME... [--skip NAME...]  NAME and what it needs, installed here
    python -m batchwise.speed.gpu_window imagepy DEST NAME...              a Python with only NAME... and their needs

Imports neither torch nor Snakemake: it runs before the wheels are installed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from batchwise import config

MIB = 2**20
CARRY_LIMIT = 64 * MIB      # the working tree plus the carried paths, per device call
FILE_LIMIT = 16 * MIB       # one file returned from $OUT
MAX_FILES = 8               # files returned from $OUT
MAX_DEPTH = 3               # $OUT/a/b/file comes back, $OUT/a/b/c/file does not
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def tree_bytes(repo: Path) -> int:
    """Bytes of the working tree that travels to the device: tracked files and untracked files git
    does not ignore."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout
    names = {n for n in out.decode().split("\0") if n}
    return sum((repo / n).stat().st_size for n in names if (repo / n).is_file())


def path_bytes(path: Path) -> int:
    """Bytes under `path` (a file or a folder); 0 when it does not exist."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def carried(repo: Path, calls: dict[str, list[str]]) -> list[dict]:
    """Per device call: the tree's bytes, each carried path's bytes, the total, and whether it fits."""
    tree = tree_bytes(repo)
    rows = []
    for name, paths in calls.items():
        sizes = {p: path_bytes(repo / p) for p in paths}
        total = tree + sum(sizes.values())
        rows.append({"call": name, "tree_bytes": tree, "carry": sizes, "total_bytes": total,
                     "fits": total <= CARRY_LIMIT, "missing": [p for p in paths if not (repo / p).exists()]})
    return rows


def normalise(name: str) -> str:
    """A distribution's name as pip compares names (PEP 503): lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: list[str], skip: set[str] = frozenset()) -> set[str]:
    """`names` and every distribution they need (extras left out), as installed in this Python;
    a name in `skip` (and what only it needs) is not followed. LookupError naming a missing one."""
    from packaging.requirements import Requirement

    skip = {normalise(n) for n in skip}
    seen, todo = set(), [normalise(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen or name in skip:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise LookupError(f"{name} is not installed in {sys.executable}") from None
        seen.add(name)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(normalise(req.name))
    return seen


def image_python(dest: Path, names: set[str]) -> Path:
    """A virtual environment at `dest` whose packages are exactly the distributions `names`, linked
    from this Python's own (no copy: torch is gigabytes): what a machine with only those installed
    would import. Returns its python3. The window's rehearsal runs with it, so that an import of
    something the GPU image lacks fails on the CPU first."""
    import venv

    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(dest)
    site = next((dest / "lib").glob("python3*/site-packages"))
    for name in sorted(names):
        dist = importlib.metadata.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []} - {"..", "__pycache__"}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return dest / "bin" / "python3"


def cache_usable(path: Path, synthetic_ok: bool) -> str | None:
    """None when the data cache at `path` can be trained on, else why not (one line)."""
    if not path.is_file():
        return f"no data cache {path}: run the window's data stage with its data carried first"
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"][()]))
    if not meta.get("available", True):
        return f"data cache {path} is empty: {meta.get('reason')}"
    if meta.get("source") == "synthetic" and not synthetic_ok:
        return f"data cache {path} holds synthetic data but the config asks for real data"
    return None


def seeds_done(study: str, setting: config.Setting, root: Path = Path(".")) -> int:
    """Seeds of a grid point with a finished run (metrics.json written)."""
    return sum((root / f"results/{study}/{setting.id}/seed={s}/metrics.json").is_file() for s in setting.seeds)


def plan(cfg: dict, studies: list[str], data_dir: Path = Path("results/data")) -> dict:
    """The training jobs left in `studies`, longest first (Snakemake targets), and the studies skipped
    for want of data or because the config has no such study."""
    from . import estimate

    jobs, skipped = [], {}
    for study in studies:
        if study not in cfg["studies"]:
            skipped[study] = "not a study of this config"
            continue
        dataset = cfg["studies"][study]["dataset"]
        why = cache_usable(data_dir / f"{dataset}.npz", bool(cfg.get("synthetic_data")))
        if why:
            skipped[study] = why
            continue
        for setting in config.settings(cfg, study):
            if seeds_done(study, setting) < len(setting.seeds):
                jobs.append({"target": f"results/{study}/{setting.id}", "study": study,
                             "seconds_est": estimate.job_seconds(cfg, setting),
                             "priority": estimate.job_priority(cfg, setting)})
    jobs.sort(key=lambda j: -j["seconds_est"])
    return {"jobs": jobs, "skipped_studies": skipped, "studies": studies}


def load_config(paths: list[str]) -> dict:
    """The config as the workflow sees it (overlays merged onto config/config.yaml), validated when
    jsonschema is there."""
    try:
        return config.load(*paths)
    except ImportError:
        return config._apply_defaults(config.resolve_files(*paths))


def finished(cfg: dict, studies: list[str]) -> dict:
    """Finished runs per study: {study: [runs done, runs configured]}."""
    out = {}
    for study in studies:
        if study in cfg["studies"]:
            sets = config.settings(cfg, study)
            out[study] = [sum(seeds_done(study, s) for s in sets), sum(len(s.seeds) for s in sets)]
    return out


def checkpointed(studies: list[str], root: Path = Path(".")) -> dict:
    """Per study, seeds waiting under checkpoints/ (their job was stopped): finished ones (results there,
    moved into results/ when the job runs again) and partial ones (a saved state to resume from)."""
    out = {}
    for study in studies:
        seeds = [p for p in (root / "checkpoints" / study).glob("*/seed=*") if p.is_dir()]
        out[study] = {"finished": sum((p / "metrics.json").is_file() for p in seeds),
                      "partial": sum((p / "state.pt").is_file() and not (p / "metrics.json").is_file() for p in seeds)}
    return out


def out_files(out: Path) -> list[dict]:
    """Every file under `out` with its size and what keeps it from coming back, if anything."""
    rows = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(out)
        size = path.lstat().st_size
        problems = [why for bad, why in (
            (path.is_symlink(), "a link"), (size > FILE_LIMIT, f"over {FILE_LIMIT // MIB} MiB"),
            (len(rel.parts) > MAX_DEPTH, "too deep"),
            (not all(NAME.match(part) for part in rel.parts), "a name with odd characters")) if bad]
        rows.append({"file": str(rel), "bytes": size, "problems": problems})
    return rows


def read_summary(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"stages": []}


def write_summary(path: Path, summary: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, path)


def _calls(items: list[str]) -> dict[str, list[str]]:
    calls = {}
    for item in items:
        name, _, paths = item.partition("=")
        calls[name] = [p for p in paths.split(",") if p]
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchwise.speed.gpu_window", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("carried", help="what each device call carries, against the 64 MiB limit")
    c.add_argument("calls", nargs="+", metavar="NAME=PATH[,PATH...]")
    c.add_argument("--json", help="also write the sizes here")
    t = sub.add_parser("targets", help="print the training jobs left, longest first")
    for p in (t, f := sub.add_parser("finished", help="finished runs per study, into the summary")):
        p.add_argument("--configfile", nargs="+", required=True)
        p.add_argument("--studies", nargs="+", required=True)
    t.add_argument("--plan", required=True, help="write the plan (jobs, skipped studies) here as JSON")
    t.add_argument("--summary", help="also note the jobs planned and the studies skipped in this summary")
    f.add_argument("summary")
    r = sub.add_parser("record", help="a stage's outcome, into the summary")
    r.add_argument("summary")
    r.add_argument("stage")
    r.add_argument("status", choices=("ok", "failed", "skipped"))
    r.add_argument("seconds", type=float)
    r.add_argument("note", nargs="?", default="")
    cl = sub.add_parser("closure", help="print NAME... and what they need, installed here, one a line")
    cl.add_argument("names", nargs="+")
    cl.add_argument("--skip", nargs="*", default=[], help="names not followed (what the image has)")
    ip = sub.add_parser("imagepy", help="a virtual environment with only NAME... and their needs")
    ip.add_argument("dest")
    ip.add_argument("names", nargs="+")
    o = sub.add_parser("outcheck", help="the files under OUT against the limits on what comes back")
    o.add_argument("out")
    o.add_argument("summary")
    args = parser.parse_args(argv)

    if args.command == "carried":
        rows = carried(Path("."), _calls(args.calls))
        for row in rows:
            parts = ", ".join(f"{p} {b / MIB:.1f} MiB" for p, b in row["carry"].items())
            print(f"call '{row['call']}': tree {row['tree_bytes'] / MIB:.1f} MiB + {parts or 'nothing'} = "
                  f"{row['total_bytes'] / MIB:.1f} MiB: {'fits' if row['fits'] else 'OVER'} the 64 MiB limit"
                  + (f"; MISSING: {', '.join(row['missing'])}" if row["missing"] else ""))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
        return 0 if all(r["fits"] and not r["missing"] for r in rows) else 1
    if args.command == "closure":
        try:
            print("\n".join(sorted(closure(args.names, set(args.skip)))))
        except LookupError as exc:
            print(f"closure: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "imagepy":
        print(image_python(Path(args.dest), closure(args.names)))
        return 0
    if args.command == "targets":
        got = plan(load_config(args.configfile), args.studies)
        Path(args.plan).write_text(json.dumps(got, indent=1) + "\n")
        for study, why in got["skipped_studies"].items():
            print(f"skipped {study}: {why}", file=sys.stderr)
        if args.summary:
            summary = read_summary(Path(args.summary))
            summary["train_plan"] = {"jobs": len(got["jobs"]), "longest_first": [j["target"] for j in got["jobs"][:5]],
                                     "skipped_studies": got["skipped_studies"]}
            write_summary(Path(args.summary), summary)
        print("\n".join(j["target"] for j in got["jobs"]))
        return 0
    summary = read_summary(Path(args.summary))
    if args.command == "record":
        summary["stages"].append({"stage": args.stage, "status": args.status, "seconds": round(args.seconds, 1),
                                  "note": args.note,
                                  "at": datetime.datetime.now().astimezone().isoformat(timespec="seconds")})
        write_summary(Path(args.summary), summary)
        return 0
    if args.command == "finished":
        summary["runs_finished"] = finished(load_config(args.configfile), args.studies)
        summary["runs_in_checkpoints"] = checkpointed(args.studies)
        write_summary(Path(args.summary), summary)
        print(json.dumps({k: summary[k] for k in ("runs_finished", "runs_in_checkpoints")}))
        return 0
    files = out_files(Path(args.out))  # outcheck: the summary counts itself, as it comes back too
    name = str(Path(args.summary).resolve().relative_to(Path(args.out).resolve()))
    if name not in {f["file"] for f in files}:
        files.append({"file": name, "bytes": 0, "problems": []})
    problems = [f"{f['file']}: {', '.join(f['problems'])}" for f in files if f["problems"]]
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files under OUT: at most {MAX_FILES} come back")
    summary["out"] = {"files": files, "ok": not problems, "problems": problems}
    write_summary(Path(args.summary), summary)
    for line in problems:
        print(f"OUT limit: {line}", file=sys.stderr)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
