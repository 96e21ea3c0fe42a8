# One command for the main job, one for the tests; each sets itself up in a virtual environment.
#   make report              the four studies at homework settings (GPU recommended)
#   make quick               real data, every study, reduced: ~15 min on 2 CPU cores
#   make test                the test suite (includes the smoke workflow, data to PDF)
#   make bench               training-speed benchmark -> docs/benchmarks.md
#   make publish BUNDLES="b.tar.xz*" SOURCE="where they ran"
#                            import bundles into docs/results/full/, rebuild its report.pdf, CSVs, ledger
# Variables: DATA_DIR (where MNIST/ and cifar10-jpeg/ or cifar-10-batches-py/ live), CORES, GPUS
# (concurrent training jobs per GPU; on a machine without one, per CPU core), CONFIG (an overlay merged onto config/config.yaml, e.g. your
# own), PYTHON (a Python >= 3.10 to make the venv with).

PYTHON ?= python3
VENV ?= .venv
CORES ?= 4
# Training jobs at a time: one per GPU; without an NVIDIA GPU or a Mac's (MPS), one per CPU core, as each
# CPU job trains on one thread (config train_threads); `--resources gpu=1` there would leave cores idle.
GPUS ?= $(shell $(PYTHON) -c 'import os, platform, shutil; print(1 if shutil.which("nvidia-smi") or platform.system() == "Darwin" else os.cpu_count() or 1)')
CONFIG ?= config/config.yaml
DATA_DIR ?= data
BIN := $(VENV)/bin
# The venv's tools by path: no activation needed (the workflow's jobs run the Python that runs it).
RUN := PATH="$(abspath $(BIN)):$$PATH"

.PHONY: report quick smoke test bench lint publish clean
report: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) --resources gpu=$(GPUS) --configfile $(CONFIG) --config data_dir=$(DATA_DIR)

quick: CONFIG := config/quick.yaml
quick: report

smoke: CONFIG := config/smoke.yaml
smoke: report

test: $(VENV)/.installed
	$(RUN) python -m pytest -q -ra --durations=15

bench: $(VENV)/.installed
	$(RUN) python -m batchwise.speed.bench

publish: $(VENV)/.installed
	$(RUN) python -m batchwise results publish $(BUNDLES) --source "$(SOURCE)"

lint: $(VENV)/.installed
	$(BIN)/snakemake --lint --configfile config/smoke.yaml

$(VENV)/.installed: pyproject.toml envs/cluster-requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -r envs/cluster-requirements.txt
	touch $@

clean:
	rm -rf results checkpoints logs benchmarks reports/figures reports/report.html reports/report.pdf .snakemake
