# Helpers shared by the rule files, the Python the jobs run, and the gate that runs before any job.
import json
import os
import sys
from pathlib import Path

from snakemake.io import is_flagged
from snakemake.utils import validate

REPO = Path(workflow.basedir)

try:
    from batchwise.results import bundles as bw_bundles
    from batchwise import checks as bw_checks, config as bw_config
except ModuleNotFoundError:
    sys.exit("The batchwise package is not installed in this Python: run `make report` (sets up .venv), "
             "or `pip install -e .` in the repository, and run snakemake from that environment.")

# One gate, one line per mistake naming the key, before anything runs: the config, the claims and
# homework-tables files against it; then the catalog-standard schema check.
try:
    bw_config.order_like(config, bw_config.read(bw_config.BASE_CONFIG))
    bw_checks.check(config)
except bw_config.ConfigError as err:
    sys.exit(f"Invalid configuration:\n{err}")
validate(config, "../schemas/config.schema.yaml")


def job_python() -> str:
    """The interpreter of the shell rules' `python -m batchwise`: this workflow's own Python (so that
    `.venv/bin/snakemake` works without activating the venv), unless a software-deployment method
    (conda, apptainer, env modules) supplies its own `python` on PATH."""
    if workflow.deployment_settings.deployment_method:
        return "python"
    return sys.executable


# The shell rules run "$BATCHWISE_PYTHON" -m batchwise: an environment variable, not a param, so
# that another venv's path (or --sdm) does not re-run finished cells. Set again in each job process.
os.environ.update(BATCHWISE_PYTHON=job_python())
if workflow.deployment_settings.deployment_method:
    # The rule's environment holds the dependencies; the package itself is this checkout's src/
    # (a conda env file cannot point pip at the repository: Snakemake copies it elsewhere).
    os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))

STUDIES = list(config["studies"])
# A cell is a grid point: one training job trains all of its seeds (results/<study>/<cell>/seed=<n>/).
CELLS = {study: [setting.id for setting in bw_config.settings(config, study)] for study in STUDIES}
# The timing pass takes every GPU slot of `--resources gpu=N`, so Snakemake runs it alone.
_gpu = workflow.resource_settings.resources.get("gpu")
GPU_SLOTS = int(getattr(_gpu, "value", _gpu) or 1)
DATASETS = sorted({spec["dataset"] for spec in config["studies"].values()})
# `missing_runs: skip` reports whatever has run: no data, training or timing job is planned; each study
# aggregates the runs present (results/, and seeds that finished in checkpoints/ of a cell job that
# stopped), a study without any is reported as not run yet.
SKIP_MISSING = config.get("missing_runs", "train") == "skip"


wildcard_constraints:
    study="|".join(STUDIES),
    dataset="|".join(DATASETS + ["cifar10"]),
    # Cell ids are slugs made from config values, key=value[_key=value]: no slash, no leading or
    # doubled dot, and an '=' (so results/<study>/runs.csv is never taken for a cell folder).
    cell=r"[a-z0-9_+-]+=[a-z0-9_=+-]*(\.[a-z0-9_=+-]+)*",
    index=r"\d+",


def repo_file(path: str) -> str:
    """A path from the config, relative to the working directory if it exists there, else to the repo."""
    return path if Path(path).exists() else str(REPO / path)


def data_cache(study: str, result: str) -> str:
    """The data cache a training or timing job reads, as its input. Its file date does not count
    (`ancient`): results imported from another machine (`results import`) are older than the caches
    prepared here after them, and Snakemake 9.27 re-runs a job whose input is newer whatever
    `--rerun-triggers` says. Except where the job's `result` says the data set was missing: preparing
    the data then (or `--forcerun results/data/<ds>.npz`) re-runs exactly those jobs."""
    path = f"results/data/{config['studies'][study]['dataset']}.npz"
    return path if _ran_without_data(Path(result)) else ancient(path)


def train_inputs(study: str, cell: str) -> list[str] | str:
    """train_cell's data input. None for a finished cell (every seed's run in results/, trained on its
    data at this very setting: runs imported from a bundle, say) whose cache is not on disk: the data
    job that then runs in the same invocation would mark it "updated by another job", and Snakemake
    would delete and retrain it whatever the input's date. While the cache is there it stays the
    input, so a cell trained here keeps the input set it was recorded with (a changed set re-runs it).
    A changed setting still re-runs a cell (the spec is a param)."""
    seed0 = config["studies"][study]["seeds"][0]
    cache = data_cache(study, f"results/{study}/{cell}/seed={seed0}/metrics.json")
    if not Path(cache).exists() and _cell_finished(study, cell):
        return []
    return cache


def _cell_finished(study: str, cell: str) -> bool:
    """Whether every seed of the cell has a run in results/ that had its data and was trained at the
    config's setting (same setting hash as the resolved spec)."""
    want = bw_bundles.setting_hash(json.loads(cell_spec(study, cell)))
    for seed in config["studies"][study]["seeds"]:
        try:
            doc = json.loads(Path(f"results/{study}/{cell}/seed={seed}/metrics.json").read_text())
        except (OSError, ValueError):
            return False
        if doc.get("status") == "no-data" or not isinstance(doc.get("spec"), dict) \
                or bw_bundles.setting_hash(doc["spec"]) != want:
            return False
    return True


def timing_inputs() -> list[str]:
    """The timing pass's data caches, one per data set, dates ignored as in `data_cache` unless a study
    of that data set was timed without it. None when every study has a timing file that timed its
    settings (imported with its runs, say) and a cache is not on disk, for the reason given in
    `train_inputs`."""
    by_path: dict[str, str] = {}
    for study in STUDIES:
        cache = data_cache(study, f"results/{study}/timing.json")
        if str(cache) not in by_path or not is_flagged(cache, "ancient"):
            by_path[str(cache)] = cache
    timings = [Path(f"results/{study}/timing.json") for study in STUDIES]
    done = all(path.exists() and not _ran_without_data(path) for path in timings)
    if done and not all(Path(cache).exists() for cache in by_path.values()):
        return []
    return list(by_path.values())


def _ran_without_data(result: Path) -> bool:
    """Whether a finished cell (its first seed's metrics.json) or timing pass (timing.json) ran
    without its data set: a `no-data` run, or a timing file that timed no setting."""
    try:
        doc = json.loads(result.read_text())
    except (OSError, ValueError):
        return False  # not finished: the job runs anyway
    return doc.get("status") == "no-data" if result.name == "metrics.json" else not doc.get("settings")


def cell_spec(study: str, cell: str) -> str:
    """The resolved training spec of one cell (all of its seeds), as JSON for the job's command line."""
    return json.dumps(bw_config.resolve_setting(config, bw_config.setting_by_id(config, study, cell)), sort_keys=True)


def cell_priority(study: str, cell: str) -> float:
    """The training job's priority: its estimated length, in [0, 1) (longest first)."""
    from batchwise.speed import estimate as bw_estimate

    return bw_estimate.job_priority(config, bw_config.setting_by_id(config, study, cell))


def timing_specs() -> str:
    """The resolved specs of every study's settings (first seed each), as JSON for the timing job."""
    specs = [bw_config.resolve_setting(config, setting) for setting in bw_config.settings(config)]
    return json.dumps([{k: v for k, v in spec.items() if k != "seeds"} for spec in specs], sort_keys=True)


def cell_dirs(study: str) -> list[str]:
    return [f"results/{study}/{cell}" for cell in CELLS[study]]


def metrics_files(study: str) -> list[str]:
    """A study's runs: every cell's seeds; with `missing_runs: skip`, only those that finished."""
    seeds = config["studies"][study]["seeds"]
    if SKIP_MISSING:
        return [path for cell in CELLS[study] for seed in seeds
                for path in [next((p for p in (f"{top}/{study}/{cell}/seed={seed}/metrics.json"
                                              for top in ("results", "checkpoints")) if os.path.exists(p)), None)]
                if path]
    return [f"results/{study}/{cell}/seed={seed}/metrics.json" for cell in CELLS[study] for seed in seeds]


def aggregate_inputs(study: str) -> dict:
    """aggregate_study's input: the cell jobs' folders and the timing pass; with `missing_runs: skip`,
    the finished runs' metrics files and the timing file only where they exist (nothing to plan)."""
    timing = f"results/{study}/timing.json"
    if SKIP_MISSING:
        return {"cells": metrics_files(study), "timing": [timing] if os.path.exists(timing) else []}
    return {"cells": cell_dirs(study), "timing": timing}


# The studies the report shows tables and figures of: all, or with `missing_runs: skip` those with runs.
REPORTED = [study for study in STUDIES if not SKIP_MISSING or metrics_files(study)]


def figure_files(study: str) -> list[str]:
    return [f"reports/figures/{study}/fig{i}.svg" for i in range(len(config["studies"][study]["figures"]))]


def all_figures() -> list[str]:
    return [path for study in REPORTED for path in figure_files(study)]


def final_outputs() -> list[str]:
    return ["reports/report.html", "reports/report.pdf", "results/config.yaml"]


onstart:
    # Before the first job, on this machine (not on a cluster's login node): a long run that would
    # train on the CPU says how long, from step times measured here, and points to `make quick`.
    if workflow.local_exec and not SKIP_MISSING:
        from batchwise.speed import estimate as bw_estimate

        left = [cell for cell in bw_config.cells(config)
                if not Path(f"results/{cell.study}/{cell.setting}/seed={cell.seed}/metrics.json").exists()]
        cores = min(workflow.cores or 1, os.cpu_count() or 1)
        note = bw_estimate.cpu_warning(config, left, cores=cores, threads=config["train_threads"],
                                       slots=GPU_SLOTS)
        if note:
            print(note, file=sys.stderr, flush=True)
