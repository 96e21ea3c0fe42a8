# Helpers shared by the rule files, and the config check that runs before any job.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

REPO = Path(workflow.basedir)

try:
    from batchwise import config as bw_config
except ModuleNotFoundError:
    sys.exit("The batchwise package is not installed in this Python: run `make report` (sets up .venv), "
             "or `pip install -e .` in the repository, and run snakemake from that environment.")

# One line per mistake, naming the key, before anything runs; then the catalog-standard check.
try:
    bw_config.validate(config)
except bw_config.ConfigError as err:
    sys.exit(f"Invalid configuration:\n{err}")
validate(config, "../schemas/config.schema.yaml")

STUDIES = list(config["studies"])
CELLS = {study: [cell.id for cell in bw_config.cells(config, study)] for study in STUDIES}
DATASETS = sorted({spec["dataset"] for spec in config["studies"].values()})


wildcard_constraints:
    study="|".join(STUDIES),
    dataset="|".join(DATASETS + ["cifar10"]),
    # Cell ids are slugs made from config values: no slash, no leading or doubled dot.
    cell=r"[a-z0-9_=+-]+(\.[a-z0-9_=+-]+)*",
    index=r"\d+",


def repo_file(path: str) -> str:
    """A path from the config, relative to the working directory if it exists there, else to the repo."""
    return path if Path(path).exists() else str(REPO / path)


def cell_spec(study: str, cell: str) -> str:
    """The resolved training spec of one cell, as JSON for the job's command line."""
    return json.dumps(bw_config.resolve(config, bw_config.cell_by_id(config, study, cell)), sort_keys=True)


def metrics_files(study: str) -> list[str]:
    return [f"results/{study}/{cell}/metrics.json" for cell in CELLS[study]]


def figure_files(study: str) -> list[str]:
    return [f"reports/figures/{study}/fig{i}.svg" for i in range(len(config["studies"][study]["figures"]))]


def all_figures() -> list[str]:
    return [path for study in STUDIES for path in figure_files(study)]


def final_outputs() -> list[str]:
    return ["reports/report.html", "reports/report.pdf"]
