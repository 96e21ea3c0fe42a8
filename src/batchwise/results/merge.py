"""`results import`: merge bundles into this checkout, checked against this checkout's config.

Rules (docs/reliability.md, "Results that travel"):
- a run whose resolved parameters (or data set, model) differ from this config's setting of the same
  id is refused: one line per cell naming the parameters, and nothing is written;
- a run of a study, setting or seed this config does not have is skipped, and said so (a smaller
  overlay must be able to import a bundle of the whole config); so is a run that found no data set;
- a finished run already here is kept: identical ones are a no-op, a different one is named and kept
  unless `replace`;
- a cell whose every seed is then finished goes to results/<study>/<cell>/ (Snakemake plans no job
  for it); a cell with seeds missing goes to checkpoints/<study>/<cell>/seed=<n>/, where a cell job
  finds the seeds that already finished and trains only the others;
- of several copies of one unfinished seed's checkpoint (bundles, this checkout), the newest is kept:
  a seed's state only moves forward;
- a study's timing.json is kept where one exists, unless `replace`;
- the derived tables of every study that gained runs are removed, so that the next `snakemake`
  aggregates them again (the profile does not re-run jobs on file dates: see docs/reliability.md).
All or nothing per import: every bundle is unpacked into a scratch folder under the checkout and
checked (`unpack.read_bundle`, `runcheck`) before anything is written; a damaged bundle is refused in
one line naming it, the member and what is wrong. Bytes are copied as they are, each file atomically,
a run's metrics.json after its CSVs.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import bundles as bw
from . import unpack

DERIVED = ("runs.csv", "summary.csv", "history.csv", "iterations.csv")
# Two times of the same run within this are one time: a bundle keeps a file's time as a decimal float
# (PAX), which drops its nanoseconds, and an older bundle kept whole seconds.
SAME_TIME_S = 1.0


@dataclass
class Outcome:
    """What an import did (or would do), one list of lines per kind."""

    imported: list[str] = field(default_factory=list)
    identical: int = 0
    kept: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    timing: list[str] = field(default_factory=list)
    checkpoints: int = 0
    studies: set[str] = field(default_factory=set)
    sources: dict[tuple[str, str, int], tuple[str, Path]] = field(default_factory=dict)  # run -> (bundle, its folder here)
    timing_from: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # study -> (bundle, device)

    def lines(self) -> list[str]:
        """The summary the command prints."""
        per_study: dict[str, int] = {}
        for line in self.imported:
            per_study[line.split("/", 1)[0]] = per_study.get(line.split("/", 1)[0], 0) + 1
        out = [f"imported: {study}: {n} run(s)" for study, n in per_study.items()]
        out += [f"imported into checkpoints/ (cell incomplete): {line}" for line in self.imported if "(cell" in line]
        out += [f"kept (differs; --replace to take the bundle's): {line}" for line in self.kept]
        out += [f"replaced: {line}" for line in self.replaced]
        out += [f"skipped: {line}" for line in self.skipped]
        out += [f"timing: {line}" for line in self.timing]
        if self.checkpoints:
            out.append(f"checkpoint files: {self.checkpoints} copied into checkpoints/")
        out.append(f"identical runs already here: {self.identical}")
        return [bw.shown(line) for line in out]


def _same(a: Path, b: Path) -> bool:
    return all((a / f).exists() == (b / f).exists() and (not (a / f).exists() or
               (a / f).read_bytes() == (b / f).read_bytes()) for f in bw.RUN_FILES)


def _differences(run: dict, expected: dict) -> list[str]:
    """The parameters in which a run's recorded spec differs from this config's, as 'name A here B'."""
    out = [f"{key} {bw.shown(repr(run.get(key)))[:80]} in the bundle, {expected[key]!r} here"
           for key in ("dataset", "model") if run.get(key) != expected[key]]
    mine, theirs = expected["params"], run.get("params", {})
    for key in sorted(set(mine) | set(theirs)):
        if theirs.get(key, "<absent>") != mine.get(key, "<absent>"):
            out.append(f"{bw.shown(key)} {bw.shown(repr(theirs.get(key, '<absent>')))[:80]} in the bundle, "
                       f"{mine.get(key, '<absent>')!r} here")
    return out


def read_all(parts_list: list[list[Path]], scratch: Path,
             limits: unpack.Limits = unpack.LIMITS) -> list[unpack.Unpacked]:
    """Unpack and check every bundle (`unpack.read_bundle`), each into its own folder under `scratch`.
    BundleError with one line per bundle that is refused, after all of them were read."""
    out, errors = [], []
    for i, parts in enumerate(parts_list):
        try:
            out.append(unpack.read_bundle(parts, scratch / f"b{i}", limits))
        except bw.BundleError as err:
            errors.append(str(err))
    if errors:
        raise bw.BundleError("\n".join(errors))
    return out


def plan_and_import(bundle_paths: list[str | Path], config: dict, root: str | Path = ".", replace: bool = False,
                    dry_run: bool = False, limits: unpack.Limits = unpack.LIMITS) -> Outcome:
    """Import the bundles into the checkout at `root` under `config` (resolved and validated), by the
    rules of this module's docstring. All or nothing: every member of every bundle is unpacked into a
    scratch folder and checked first; a bundle that is damaged raises BundleError (one line per bundle)
    and runs of other parameters are returned in `Outcome.refused`; either way nothing has been written."""
    from batchwise.config import resolve_setting, settings

    root = Path(root)
    result = Outcome()
    known = {(s.study, s.id): s for s in settings(config)}
    groups = bw.group_parts(list(bundle_paths))
    with tempfile.TemporaryDirectory(prefix=".importing-", dir=root) as tmp:
        unpacked = read_all(groups, Path(tmp), limits)
        runs: dict[tuple[str, str, int], tuple[Path, str]] = {}  # (study, setting, seed) -> (folder, bundle)
        extra_files: list[tuple[Path, Path, str]] = []  # unfinished seeds' files: (source, path under root, bundle)
        timings: dict[str, tuple[Path, str, str | None]] = {}
        refused: dict[tuple[str, str], list[str]] = {}
        for b in unpacked:
            name, folder, doc = bw.shown(b.name), b.folder, b.manifest
            for rel, m in sorted(b.runs.items()):
                seed_dir = folder / rel
                study, setting, seed = m["study"], m["setting"], m["seed"]
                where = f"{study}/{setting} seed={seed} ({name})"
                if m.get("status") == "no-data":
                    result.skipped.append(f"{where}: it ran without its data set (no-data)")
                    continue
                if study not in config["studies"]:
                    result.skipped.append(f"{where}: study {study} is not in this config")
                    continue
                if (study, setting) not in known:
                    result.skipped.append(f"{where}: setting {setting} is not in this config's grid of {study}")
                    continue
                if seed not in config["studies"][study]["seeds"]:
                    result.skipped.append(f"{where}: seed {seed} is not one of this config's seeds of {study}")
                    continue
                diffs = _differences(m["spec"], resolve_setting(config, known[(study, setting)]))
                if diffs:
                    refused.setdefault((study, setting), [])
                    refused[(study, setting)] += [d for d in diffs if d not in refused[(study, setting)]]
                    continue
                key = (study, setting, seed)
                if key in runs and _same(runs[key][0], seed_dir):
                    # The same run in two of these bundles: it finished at the earlier copy's time.
                    if _finished_at(seed_dir) < _finished_at(runs[key][0]):
                        runs[key] = (seed_dir, name)
                    continue
                if key in runs and not replace:
                    result.kept.append(f"{where}: differs from the same run in {runs[key][1]}; kept that one")
                    continue
                if key in runs:
                    result.replaced.append(f"{where}: replaces the same run in {runs[key][1]}")
                runs[key] = (seed_dir, name)
            for rel in b.checkpoint_files:
                _, study, setting, *_ = rel.split("/")
                if (study, setting) not in known:  # other studies' checkpoints do not resume here
                    result.skipped.append(f"{rel} ({name}): checkpoint of a cell this config does not have")
                    continue
                extra_files.append((folder / rel, Path(rel), name))
            for study, path in sorted(b.timing.items()):
                if study not in config["studies"]:
                    result.skipped.append(f"results/{study}/timing.json ({name}): study {study} is not in this config")
                elif study not in timings or replace:
                    timings[study] = (path, name, doc.get("timing", {}).get(study, {}).get("device"))
        result.refused = [f"{study}/{setting}: run parameters differ from this config's: {'; '.join(diffs)}"
                          for (study, setting), diffs in refused.items()]
        if result.refused or dry_run:
            return result
        # Everything is read and checked: only now is anything written, each file atomically, a run's
        # metrics.json after its CSVs.
        _write_runs(root, config, runs, replace, result)
        # A seed's training state only moves forward: of several copies of one checkpoint file (bundles
        # exported at different times, this checkout's own), the newest is the furthest trained.
        newest: dict[Path, tuple[Path, str]] = {}
        for path, rel, name in extra_files:
            if rel not in newest or path.stat().st_mtime_ns > newest[rel][0].stat().st_mtime_ns:
                newest[rel] = (path, name)
        for rel, (path, name) in newest.items():
            dest = root / rel
            if (root / "results" / rel.parts[1] / rel.parts[2]).exists():
                result.skipped.append(f"{rel} ({name}): that cell finished here; its checkpoint is of no use")
                continue
            if dest.exists() and (dest.read_bytes() == path.read_bytes() or not (
                    replace or path.stat().st_mtime_ns > dest.stat().st_mtime_ns + SAME_TIME_S * 1e9)):
                continue
            _copy(path, dest)
            result.checkpoints += 1
        for study, (path, name, device) in timings.items():
            dest = root / "results" / study / "timing.json"
            here = bw.timing_device(dest) if dest.exists() else None
            result.timing_from[study] = (name, device)
            if dest.exists() and dest.read_bytes() == path.read_bytes():
                continue
            if dest.exists() and not replace:
                result.timing_from[study] = ("this checkout", here)
                result.timing.append(f"{study}: kept this checkout's timing ({here}); the bundle {name}'s "
                                     f"({bw.shown(device)}) differs (--replace to take it)")
                continue
            _copy(path, dest)
            result.timing.append(f"{study}: timing from {name} ({bw.shown(device)})")
            result.studies.add(study)
    for study in result.studies:  # aggregate again on the next run
        for table in DERIVED:
            (root / "results" / study / table).unlink(missing_ok=True)
    return result


def _finished_at(seed_dir: Path) -> float:
    """When a run finished: its metrics.json's modification time, which export and import keep."""
    return (seed_dir / "metrics.json").stat().st_mtime


def _copy(src: Path, dest: Path) -> None:
    """Copy a file's bytes atomically (temp file + rename), keeping its modification time."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.importing")
    shutil.copy2(src, tmp)
    os.replace(tmp, dest)


def _write_runs(root: Path, config: dict, runs: dict, replace: bool, result: Outcome) -> None:
    """Place each run: results/ where its cell is then complete, else checkpoints/ (see module doc)."""
    cells: dict[tuple[str, str], dict[int, tuple[Path, str]]] = {}
    for (study, setting, seed), src in runs.items():
        cells.setdefault((study, setting), {})[seed] = src
    for (study, setting), seeds in sorted(cells.items()):
        done_dir = root / "results" / study / setting
        wait_dir = root / "checkpoints" / study / setting
        have = {int(p.parent.name[5:]) for p in done_dir.glob("seed=*/metrics.json")}
        waiting = {int(p.parent.name[5:]) for p in wait_dir.glob("seed=*/metrics.json")}
        wanted = set(config["studies"][study]["seeds"])
        complete = wanted <= have | waiting | set(seeds)
        for seed, (src, name) in sorted(seeds.items()):
            where = f"{study}/{setting} seed={seed}"
            existing = next((d / f"seed={seed}" for d in (done_dir, wait_dir)
                             if (d / f"seed={seed}" / "metrics.json").exists()), None)
            if existing is not None and _same(existing, src):
                # The same run from another bundle: it finished at the earlier of the two copies' times
                # (metrics.json's mtime), whichever bundle comes first. Left untouched unless the
                # bundle's time is the earlier by more than a bundle's rounding of it: a file whose
                # time moves makes Snakemake's downstream jobs look out of date.
                end = (src / "metrics.json").stat().st_mtime_ns
                if end < (existing / "metrics.json").stat().st_mtime_ns - SAME_TIME_S * 1e9:
                    os.utime(existing / "metrics.json", ns=(end, end))
                result.identical += 1
                result.sources[(study, setting, seed)] = (name, existing)
                continue
            if existing is not None and not replace:
                result.kept.append(f"{where}: a different finished run is here ({existing.relative_to(root)}); "
                                   f"kept it (the bundle {name}'s differs)")
                continue
            dest = (done_dir if complete else wait_dir) / f"seed={seed}"
            if existing is not None:
                result.replaced.append(f"{where}: replaced by the bundle {name}'s")
                (existing / "metrics.json").unlink()  # first: the old run no longer counts as finished
                if existing != dest:
                    shutil.rmtree(existing)
            for f in reversed(bw.RUN_FILES):  # metrics.json last: its presence means the run finished
                _copy(src / f, dest / f)
            result.sources[(study, setting, seed)] = (name, dest)
            result.imported.append(f"{where} from {name}" + ("" if complete else " (cell incomplete: into checkpoints/)"))
            result.studies.add(study)
        if complete:  # finished seeds waiting in checkpoints/ join the now complete cell
            for seed in sorted(waiting - have):
                if not (done_dir / f"seed={seed}").exists():
                    shutil.move(str(wait_dir / f"seed={seed}"), done_dir / f"seed={seed}")
                    for key, (name, folder) in result.sources.items():
                        if folder == wait_dir / f"seed={seed}":
                            result.sources[key] = (name, done_dir / f"seed={seed}")
            if wait_dir.is_dir() and not any(wait_dir.iterdir()):
                wait_dir.rmdir()
