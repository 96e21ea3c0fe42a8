"""`results publish`: the full report, built up from bundles, in docs/results/full/.

One command: import ALL bundles (those in `<folder>/bundles/` and the new ones, checked as
`results import` checks them) into a scratch checkout under the default config,
build the report of whatever has run there (`missing_runs: skip`: no data, no training), and copy
`report.pdf` and each study's runs.csv and summary.csv into `<folder>/`, with a README that holds the
command that rebuilds the PDF and a ledger of what ran where, when, at which commit, and what is left
(counted from what the import took). Only then are the new bundles copied into `<folder>/bundles/`
(with where they came from, in `bundles/sources.json`): a bundle that import refuses is never added.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import bundles as bw
from . import merge, unpack
from batchwise.config import REPO, ConfigError, cells, load, resolve
from batchwise.speed.estimate import train_size, gpu_step_s, recorded_cpus, recorded_cpu_seconds

SOURCES = "sources.json"


def new_bundles(paths: list[str | Path], folder: Path) -> list[list[Path]]:
    """The bundles among `paths` not yet in `folder/bundles/` (each a list of its parts). A bundle of
    the same name already published with other bytes is an error (rename the new one)."""
    dest = folder / "bundles"
    out = []
    for parts in bw.group_parts(list(paths)):
        published = [dest / part.name for part in parts]
        for part, target in zip(parts, published):
            if target.exists() and target.read_bytes() != part.read_bytes():
                raise bw.BundleError(f"bundle {bw.shown(part.name)}: a different file of that name is published "
                                     f"already; export under a new name")
        if not all(target.exists() for target in published):
            out.append(parts)
    return out


def add_bundles(new: list[list[Path]], folder: Path, source: str) -> list[str]:
    """Copy the bundles' files (checked and imported already: `publish`) into `folder/bundles/` and
    record `source` for each; returns their names."""
    dest = folder / "bundles"
    dest.mkdir(parents=True, exist_ok=True)
    sources = json.loads((dest / SOURCES).read_text()) if (dest / SOURCES).exists() else {}
    names = []
    for parts in new:
        doc = unpack.read_manifest(parts)
        name = bw.bundle_name(parts)
        for part in parts:
            if not (dest / part.name).exists():
                shutil.copyfile(part, dest / part.name)
        sources.setdefault(name, {"source": source or doc.get("source") or "–", "added": bw.utc(),
                                  "created": doc.get("created"), "host": doc.get("host")})
        names.append(name)
    (dest / SOURCES).write_text(json.dumps(sources, indent=1, sort_keys=True) + "\n")
    return names


def build_report(bundles: list[Path], scratch: Path, overlays: tuple[str | Path, ...] = (),
                 limits: unpack.Limits = unpack.LIMITS) -> tuple[dict, merge.Outcome]:
    """Import `bundles` (files or folders) into `scratch` and build its report there (no data, no
    training) under the default config (and `overlays`); returns the config used and the import's
    outcome. BundleError where a bundle is damaged, ConfigError where its runs are refused."""
    overlay = scratch / "publish.yaml"
    overlay.write_text("# The published report: the default config, of whatever has run.\nmissing_runs: skip\n")
    config = load(*overlays, overlay)
    outcome = merge.plan_and_import(bundles, config, root=scratch, limits=limits)
    if outcome.refused:
        raise ConfigError("\n".join(f"publish: bundle refused: {line}" for line in outcome.refused))
    # The report names the command a reader reruns to rebuild it, not this internal snakemake call.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "BATCHWISE_REPORT_COMMAND": "python -m batchwise results publish"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(scratch),
           "--cores", "2", "--configfile", *map(str, overlays), str(overlay), "--quiet", "rules"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"publish: the report did not build; snakemake said: {(proc.stdout + proc.stderr)[-2000:]}")
    return config, outcome


def left_cost(config: dict, done: set[tuple[str, str, int]]) -> dict[str, dict]:
    """Per study, of the runs not done: how many ("runs"), their training steps (epochs x steps per
    epoch, "steps"), the estimated GPU seconds of those steps at the step times in docs/benchmarks.json
    ("gpu_s", `estimate.gpu_step_s`), and per CPU type the CPU benchmark ran on, the CPU seconds of the
    runs it measured, every epoch with its evaluations at that type's step and evaluation times
    ("cpu": {CPU type: [seconds, runs]}, `estimate.recorded_cpu_seconds`)."""
    out: dict[str, dict] = {}
    for cell in cells(config):
        if (cell.study, cell.setting, cell.seed) in done:
            continue
        spec = resolve(config, cell)
        batch = spec["params"]["batch_size"]
        steps = spec["params"]["epochs"] * math.ceil(train_size(config, spec) / batch)
        left = out.setdefault(cell.study, {"runs": 0, "steps": 0, "gpu_s": 0.0, "cpu": {}})
        left["runs"] += 1
        left["steps"] += steps
        left["gpu_s"] += steps * gpu_step_s(spec["model"], batch)
        for cpu in recorded_cpus():
            seconds = recorded_cpu_seconds(config, spec, cpu)
            if seconds is not None:
                cost = left["cpu"].setdefault(cpu["cpu"], [0.0, 0])
                cost[0] += seconds
                cost[1] += 1
    return out


def _left(left: dict | None) -> str:
    """The ledger's "left" cell: runs, steps, GPU minutes, and CPU hours per CPU type the benchmark measured them on."""
    if not left:
        return "nothing"
    cpu = "".join(f", ~{seconds / 3600:.1f} CPU-h on {bw.shown(name)}"
                  + ("" if runs == left["runs"] else f" ({runs} of them measured)")
                  for name, (seconds, runs) in left["cpu"].items())
    return f"{left['runs']} run(s), {left['steps']:,} training steps, ~{left['gpu_s'] / 60:.1f} GPU-min{cpu}"


def engine_version(seed_dir: Path) -> int:
    """The engine version that trained a run, as its metrics.json records it; 1 for runs recorded before
    metrics.json said (the engine of whole batches, evaluation at 2000, two threads)."""
    engine = json.loads((seed_dir / "metrics.json").read_text()).get("engine")
    return engine.get("version", 1) if isinstance(engine, dict) else 1


def estimate_check(config: dict, runs: dict[tuple[str, str, int], Path]) -> list[str]:
    """The CPU estimate against the runs it estimates (`runs`: (study, setting, seed) -> the run's
    folder): per study, CPU type and engine version, the CPU runs made as the CPU benchmark times them
    (engine v2 or later, one 1-thread job per core) on a CPU type it ran on, the sum of their measured
    train + test times (`total_time_s`) and of that type's estimate for the same runs
    (`recorded_cpu_seconds` x the jobs side by side, the share of the budget each ran: steps_run of
    epochs x steps per epoch). Empty where no run qualifies or the benchmark measured none of them."""
    by_key = {(c.study, c.setting, c.seed): c for c in cells(config)}
    benchmarked = {cpu["cpu"]: cpu for cpu in recorded_cpus()}
    sums: dict[tuple[str, str, int], list[float]] = {}
    for key, seed_dir in runs.items():
        m = json.loads((seed_dir / "metrics.json").read_text())
        engine = m.get("engine") if isinstance(m.get("engine"), dict) else {}
        cpu = benchmarked.get((m.get("env") or {}).get("cpu"))
        if (key not in by_key or m.get("device") != "cpu" or engine.get("version", 1) < 2
                or engine.get("threads") != 1 or cpu is None):
            continue
        spec = resolve(config, by_key[key])
        estimated = recorded_cpu_seconds(config, spec, cpu)
        budget = spec["params"]["epochs"] * (m.get("steps_per_epoch") or 0)
        if estimated is None or not m.get("total_time_s") or not budget or not m.get("steps_run"):
            continue
        row = sums.setdefault((key[0], cpu["cpu"], engine["version"]), [0, 0.0, 0.0])
        row[0] += 1
        row[1] += m["total_time_s"]
        row[2] += estimated * cpu["jobs"] * m["steps_run"] / budget
    if not sums:
        return []
    lines = ["| study | CPU | engine | runs | measured (h) | estimated (h) | estimated / measured |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for (study, cpu, version), (n, measured, estimated) in sorted(sums.items()):
        lines.append(f"| {study} | {bw.shown(cpu)} | v{version} | {n} | {measured / 3600:.2f} | {estimated / 3600:.2f} | "
                     f"{estimated / measured:.2f} |")
    return lines


def folder_runs(results: Path) -> dict[tuple[str, str, int], Path]:
    """The finished runs of a results folder, by (study, setting, seed)."""
    out = {}
    for seed_dir in bw.finished_runs(results.parent, results.name):
        m = json.loads((seed_dir / "metrics.json").read_text())
        out[(m["study"], m["setting"], m["seed"])] = seed_dir
    return out


def ledger(config: dict, folder: Path, outcome: merge.Outcome) -> list[str]:
    """The README's ledger table: per study, runs done of total, device(s), dates, commit(s), bundles
    and their sources, and what is left. It counts the runs the import took (`outcome.sources`: each
    run's bundle and where it now lies), not what the manifests list."""
    sources = json.loads((folder / "bundles" / SOURCES).read_text())
    done: dict[tuple[str, str, int], dict] = {}
    for key, (name, seed_dir) in outcome.sources.items():
        done[key] = {**bw.run_record(seed_dir, seed_dir.name), "bundle": name, "engine": engine_version(seed_dir)}
    timing: dict[str, str] = {}  # per study, the device of its timing pass, as the import took it
    for parts in bw.group_parts([folder / "bundles"]):
        doc = unpack.read_manifest(parts)
        for study, record in doc.get("timing", {}).items():
            if outcome.timing_from.get(study, (None,))[0] == bw.bundle_name(parts):
                timing[study] = f"{record.get('device') or '?'} ({(record.get('date') or '')[:10]})"
    wanted = {(c.study, c.setting, c.seed) for c in cells(config)}
    left = left_cost(config, set(done) & wanted)
    lines = ["| study | runs done | device(s) | engine | finished | commit(s) | bundle (source) | timing pass | left |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for study in config["studies"]:
        mine = [r for key, r in done.items() if key in wanted and key[0] == study]
        total = len(cells(config, study))
        dates = sorted(r["finished"][:10] for r in mine)
        when = "–" if not dates else dates[0] if dates[0] == dates[-1] else f"{dates[0]} – {dates[-1]}"
        lines.append("| " + " | ".join([
            study, f"{len(mine)} of {total}", ", ".join(sorted({bw.shown(r['device']) for r in mine})) or "–",
            ", ".join(f"v{v}: {sum(r['engine'] == v for r in mine)}" for v in sorted({r["engine"] for r in mine})) or "–",
            when,
            ", ".join(sorted({bw.shown(r["commit"] or "?")[:10] for r in mine})) or "–",
            "; ".join(f"`{b}` ({bw.shown(sources.get(b, {}).get('source', '–'))})"
                      for b in sorted({r["bundle"] for r in mine})) or "–",
            bw.shown(timing.get(study, "–")), _left(left.get(study))]) + " |")
    total_done = len(set(done) & wanted)
    lines.insert(0, f"**{total_done} of {len(wanted)} runs done.**\n")
    return lines


README = """# The full report, built up run by run

`report.pdf` is the report of the default config (`config/config.yaml`, every study at its homework
settings), built from the finished runs in `bundles/`: what `make report` produces once every run is
done. Until then it says "k of {total} runs done" on its title page and marks the studies and settings
that have not run yet. `<study>/runs.csv` and `<study>/summary.csv` are its tables, `claims.csv` every
homework conclusion's verdict with its numbers and rule.

## Rebuild the PDF from the bundles, on any machine

```bash
python -m batchwise results publish            # rebuilds report.pdf, the CSVs and this README from bundles/
```

or by hand, in a fresh clone (no data and no GPU needed):

```bash
python -m batchwise results import docs/results/full/bundles
snakemake --config missing_runs=skip           # aggregates, plots and reports the imported runs
```

## Add runs

```bash
python -m batchwise results export bundles/NAME          # where the runs finished (--checkpoints: unfinished ones too)
python -m batchwise results publish bundles/NAME* --source "where they ran"
```

## Ledger

{ledger}

"engine": how many runs each version of the training engine made (`metrics.json`'s `engine`; v1 is the
engine before it was recorded: whole batches, evaluation at batch 2000, two threads a job). Runs of
every version count alike: a version changes speed, not what a run measures.

"left", for the runs not done: training steps count epochs x steps per epoch (evaluation not
counted); GPU-minutes are those steps at the engine's H100 step times in `docs/benchmarks.json` (one
seed at a time, nearest timed batch size; an untimed model at 1 ms per step); CPU-hours are every
epoch of each run's budget (runs that stop at their target end earlier), steps and evaluations, at
the engine's step and evaluation times measured by the CPU benchmark on each CPU type it ran on
({cpu_machine}; jobs side by side as it ran them: `docs/benchmarks-cpu*.md`), for the runs it measured
there: the types differ several-fold in speed. Estimates, not measurements.
On a CPU, `make report` measures that machine's step times and says how long the rest would take.

## The CPU estimate against the runs

{estimate_check}

The ledger's CPU-hours and `make report`'s CPU warning come from step and evaluation times measured
by the CPU benchmark. Here they meet the runs they estimate: the CPU runs trained as the benchmark
times them (one 1-thread job per core, engine v2 or later), their measured train + test time summed per
study, CPU type and engine against that CPU type's estimate for the same runs (each at the share of its
budget it ran); runs on a CPU type the benchmark never ran on are left out.
The benchmark times two identical jobs side by side; in the fill a job's neighbour is whatever else runs,
and a run paused for a benchmark counts the pause in its wall time. The same table for any results
folder: `python -m batchwise results estimate-check --results DIR`.

Built {date}. Import notes:

{notes}
"""


def publish(paths: list[str | Path], source: str = "", folder: str | Path = "docs/results/full",
            overlays: tuple[str | Path, ...] = (), limits: unpack.Limits = unpack.LIMITS) -> str:
    """Add `paths` (bundles) to `folder` and rebuild its report, CSVs and README under the default
    config (`overlays` merged onto it: the tests' smoke config); returns a summary. The new bundles
    are checked and imported (with every published one) first and added only once the report is
    built: a bundle that import refuses is never published, and `folder` is left as it was."""
    folder = Path(folder)
    new = new_bundles(paths, folder) if paths else []
    published = [folder / "bundles"] if (folder / "bundles").is_dir() and any(
        f.name != SOURCES for f in (folder / "bundles").iterdir()) else []
    if not published and not new:
        raise bw.BundleError(f"publish: no bundle in {folder / 'bundles'}; name the bundles to publish")
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        scratch = Path(tmp)
        config, outcome = build_report(published + [p for parts in new for p in parts], scratch, overlays, limits)
        added = add_bundles(new, folder, source)
        shutil.copyfile(scratch / "reports" / "report.pdf", folder / "report.pdf")
        for study in config["studies"]:
            for table in ("runs.csv", "summary.csv"):
                src = scratch / "results" / study / table
                if src.exists():
                    (folder / study).mkdir(exist_ok=True)
                    shutil.copyfile(src, folder / study / table)
        shutil.copyfile(scratch / "results" / "claims.csv", folder / "claims.csv")
        checked = estimate_check(config, {key: seed_dir for key, (_, seed_dir) in outcome.sources.items()})
        text = README.format(total=len(cells(config)), ledger="\n".join(ledger(config, folder, outcome)),
                             estimate_check="\n".join(checked) or "No CPU run to check yet.",
                             cpu_machine="; ".join(c["machine"] for c in recorded_cpus()) or "no record", date=bw.utc(), notes="\n".join(f"- {n}" for n in outcome.lines()))
    (folder / "README.md").write_text(text)
    return f"published {len(added)} new bundle(s) into {folder}: report.pdf, CSVs, README.md ledger"
