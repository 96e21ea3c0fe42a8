#!/usr/bin/env bash
# The GPU checks, in as few device calls as possible; everything worth keeping lands in $OUT.
# Prepare first, here: tools/gpu-prepare.sh. Then, with the device tool:
#   call 1  carry [".gpu/cifar"]           command: bash tools/gpu-check.sh data
#   call 2  carry [".gpu/mnist", ".whl"]   command: bash tools/gpu-check.sh full     (within 30 s: warm)
#   call 3  carry [".whl"]                 command: bash tools/gpu-check.sh measure  (bench, pytest -m gpu)
# Call 1 builds the CIFAR-10 caches, which stay on the warm machine (ignored outputs are kept).
# Call 2 runs the default config data to HTML (WeasyPrint needs Pango, absent there). Back here:
#   mkdir -p docs/results/full && tar xzf $FILES_AT/results.tar.gz -C /tmp/full
#   .venv/bin/python -c "from batchwise.report import write_pdf; write_pdf('/tmp/full/reports/report.html', 'docs/results/full/report.pdf')"
# then copy results/<study>/{runs,summary}.csv beside it and write its README (command, device, wall time).
# GPU_JOBS (default 4) cell-jobs share the GPU; CONFIG picks another config (e.g. config/quick.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: tools/gpu-check.sh data|full|measure}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" .gpu/bin .gpu/data
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
py=$(command -v python3)
ln -sf "$py" .gpu/bin/python   # the image has python3 only
export PATH="$PWD/.gpu/bin:$PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1 || true

install_wheels() {  # Snakemake and its missing dependencies, from the carried wheels
  if [ -d .whl ] && ! python -c 'import snakemake' 2>/dev/null; then
    python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .gpu/site .whl/*.whl
  fi
  export PYTHONPATH="$PYTHONPATH:$PWD/.gpu/site" PATH="$PWD/.gpu/site/bin:$PATH"
}

case "$stage" in
data)
  ln -sfn "$PWD/.gpu/cifar/cifar10-jpeg" .gpu/data/cifar10-jpeg
  mkdir -p results/data
  /usr/bin/time -v python -m batchwise prepare --dataset cifar10 --data-dir .gpu/data --out results/data/cifar10.npz \
    --no-download 2>&1 | tee "$OUT/data.log"
  python -m batchwise prepare --dataset cifar10_grey --data-dir .gpu/data --out results/data/cifar10_grey.npz \
    --colour-cache results/data/cifar10.npz --no-download 2>&1 | tee -a "$OUT/data.log"
  ls -la results/data | tee -a "$OUT/data.log"
  ;;
full)
  install_wheels
  ln -sfn "$PWD/.gpu/mnist/MNIST" .gpu/data/MNIST
  [ -e .gpu/data/cifar10-jpeg ] || echo "no CIFAR-10 here: run stage 'data' first (call 1)" | tee "$OUT/warning.txt"
  start=$(date +%s.%N)
  set +e
  python -m snakemake --cores 16 --resources gpu="${GPU_JOBS:-4}" --configfile "${CONFIG:-config/config.yaml}" \
    --config data_dir=.gpu/data --rerun-incomplete --keep-going reports/report.html > "$OUT/snakemake.log" 2>&1
  rc=$?
  set -e
  wall=$(python -c "import time; print(round(time.time() - $start, 1))")
  python - "$wall" "$rc" "${GPU_JOBS:-4}" "${CONFIG:-config/config.yaml}" > "$OUT/full_run.json" <<'PY'
import glob, json, sys
import torch
wall, rc, jobs, cfg = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
runs = glob.glob("results/*/*/metrics.json") + glob.glob("results/*/*/*/metrics.json")
print(json.dumps({"workload": "full_default" if cfg.endswith("config.yaml") else cfg, "wall_s": wall,
                  "snakemake_rc": rc, "runs": len(runs), "device": torch.cuda.get_device_name(0),
                  "torch": torch.__version__, "gpu_jobs": jobs}, indent=1))
PY
  tar czf "$OUT/results.tar.gz" --exclude='results/data' results logs benchmarks reports/figures reports/report.html 2>/dev/null || true
  cat "$OUT/full_run.json"; tail -5 "$OUT/snakemake.log"
  ;;
measure)
  install_wheels
  timeout 300 python -m batchwise.bench --device cuda --concurrency 4 --steps 100 --out "$OUT/benchmarks" \
    > "$OUT/bench.log" 2>&1 || echo "bench failed: see bench.log"
  timeout 240 python -m pytest -q -m gpu -p no:cacheprovider tests > "$OUT/pytest-gpu.txt" 2>&1 || true
  tail -3 "$OUT/pytest-gpu.txt"
  ;;
*) echo "unknown stage '$stage': use data, full or measure" >&2; exit 2 ;;
esac
