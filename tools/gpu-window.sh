#!/usr/bin/env bash
# The GPU window: one script, in stages, for the 15 device-minutes a lent GPU gives (10 per command).
#
# HERE first (a CPU machine with PyPI), once per checkout:
#     bash tools/gpu-window.sh prepare        [DATA_DIR=../shared/data]
#   stages, in git-ignored folders, what the device calls carry: .gpu/cifar (CIFAR-10 JPEG folder,
#   52.7 MiB), .gpu/mnist (the four MNIST IDX files gzipped, 11.1 MiB), .whl (Snakemake's 38 wheels for
#   the image's CPython 3.12, without what the image has and without pulp, 9.9 MiB) with .whl/checks
#   (jsonschema and the 3 it needs, 0.5 MiB: config.validate imports it, the image lacks it), and
#   prints each call's carried set against the 64 MiB limit (exit 1 if one is over). Measured
#   2026-12-02, snakemake 9.27.1: the tree 5.4 MiB (the published bundles, 3.4 MiB, ride in it),
#   call 1 58.6 MiB, call 2 26.3 MiB.
#
# THERE, with the device tool's `run` (the two calls back to back: a machine stays warm 30 s, and the
# CIFAR-10 caches of call 1 are kept on it for call 2):
#   call 1  carry [".gpu/cifar", ".whl/checks"]   timeout_s 600
#           command: bash tools/gpu-window.sh data selfcheck checks
#           data: CIFAR-10 caches (results/data/cifar10*.npz; ~60-90 s);
#           selfcheck (<= SELFCHECK_S, 150 s): the engine's own evidence, first, while time is surest
#           (python -m batchwise.speed.gpu_selfcheck): packed seeds vs each alone bit for bit, then the same with
#           two deliberate mutants (one shared capture stream; the streams' waits removed), each
#           recorded as caught or not; ms/step of seeds together vs alone (overlap); kill-and-resume
#           on CUDA (MLP with BN and momentum, MLP-BN with the noise-scale probe, the x3 spec) equal
#           to an uninterrupted run; one short cell per model with cuda_graphs auto and deterministic
#           off: graphs on, graph vs eager losses within 1e-3;
#           checks (<= CHECKS_S, 240 s): pytest -m gpu on the modules holding gpu tests (<= PYTEST_S,
#           150 s; at the limit SIGINT, so pytest still prints its summary), then the throughput probe
#           (LeNet-5, MobileNetV2 at batch 16: seeds in one job/alone, 1/4/8 jobs, MPS off/on).
#           Back: summary.json, selfcheck.json, probe.json, pytest.xml, logs.tar.gz.
#   call 2  carry [".gpu/mnist", ".whl"]  timeout_s 600
#           command: DEADLINE_S=<see Budget> bash tools/gpu-window.sh data train
#           data: the MNIST cache; train: imports docs/results/full/bundles/*, then Snakemake on the
#           missing cells of STUDIES, longest job first, GPU_JOBS at once, stopped cleanly DEADLINE_S
#           (default 420 s) after the command began; exports what finished (and the unfinished runs'
#           checkpoints). Back: summary.json, logs.tar.gz, bundle-*.tar.xz (parts <= 16 MiB).
#   more    while device time is left, call 2 again on the warm machine: it resumes from checkpoints.
# Budget: 15 device-minutes per session, the machine's start (1-2 min) included; each command < 10 min.
# DEADLINE_S is where Snakemake is stopped, counted from the command's start: after it come up to 45 s
# for the jobs to checkpoint (then SIGTERM, 10 s), the export (xz of the finished runs) and the logs,
# so the default 420 s ends call 2 by ~540 s, inside its 600 s. Call 1 takes at most ~9 min by its
# stages' limits (data ~1.5 min, an estimate; selfcheck 150 s; checks 240 s; not yet run on a GPU), so
# call 2 gets what status's budget_left_s leaves: set DEADLINE_S to that minus ~150 s (e.g.
# budget_left_s 330: `DEADLINE_S=180 bash tools/gpu-window.sh data train`) and timeout_s to
# DEADLINE_S + 150. The 64 MiB limit is why CIFAR-10 and MNIST + wheels travel in two calls.
# Back here: python -m batchwise results publish <the bundle parts> --source "GPU window (device, date)";
# the probe's and the self-check's numbers go into docs/benchmarks.md and docs/benchmarks.json.
#
# Every command writes $OUT/summary.json: each stage's outcome (ok or failed) with its note, the jobs
# planned and the studies skipped (no data cache: run data with it carried), the runs finished per
# study; a failed stage does not stop the next. At the end every file under $OUT is checked against what comes
# back (<= 8 files, <= 16 MiB each); logs go into one tarball.
# Variables: OUT (/tmp/gpu-window-out), CONFIG (config/config.yaml), STUDIES ("s4_mobilenet
# s3_batch_convergence x3_scaled_lr"), GPU_JOBS (4), CORES (all), DEADLINE_S (420), CHECKS_S (240),
# PYTEST_S (150), SELFCHECK_S (150), SKIP_WHEELS (0; 1: Snakemake from python3's own packages),
# WHEEL_DIR (.whl), FETCH_WHEELS (1; prepare: 0 skips the download), DATA_DIR (prepare: ../shared/data).
# The image's python3 is a virtual environment: it is called by that name, never through a link.
# CI rehearses every stage on the CPU with a python3 holding only IN_IMAGE and IMAGE_ALSO below (and
# what they need), linked from its own environment (tests/test_gpu_window.py, `gpu_window imagepy`).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 2
T0=$SECONDS
PY=python3
OUT=${OUT:-/tmp/gpu-window-out}
CONFIG=${CONFIG:-config/config.yaml}
STUDIES=${STUDIES:-s4_mobilenet s3_batch_convergence x3_scaled_lr}
GPU_JOBS=${GPU_JOBS:-4}
CORES=${CORES:-$(nproc)}
DEADLINE_S=${DEADLINE_S:-420}
CHECKS_S=${CHECKS_S:-240}
PYTEST_S=${PYTEST_S:-150}
SELFCHECK_S=${SELFCHECK_S:-150}
WHEEL_DIR=${WHEEL_DIR:-.whl}
GPU=.gpu                       # staged data, the wheels' install folder, logs: git-ignored
LOGS=$GPU/logs
SUMMARY=$OUT/summary.json
MNIST_FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
# Snakemake's dependencies the GPU image already has (device notes, KINDS.md), and pulp (the greedy
# scheduler needs no solver): not carried.
IN_IMAGE=" attrs certifi charset-normalizer idna jinja2 markupsafe packaging psutil pyyaml requests tabulate
 typing-extensions urllib3 wrapt pygments numpy pandas python-dateutil six pulp "
# What the window itself uses that the image has too (KINDS.md's list), beyond IN_IMAGE: the engine,
# MobileNetV2, the CIFAR-10 JPEGs, the gpu tests and the report and statistics modules they import,
# the wheels' install.
IMAGE_ALSO="torch torchvision pillow pytest matplotlib scipy pip"
# What the gpu tests and the self-check need that the image lacks: carried in call 1 as $WHEEL_DIR/checks.
CHECK_NEEDS="jsonschema"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
NOTE=""

say() { echo "[gpu-window $((SECONDS - T0))s] $*"; }

# ------------------------------------------------------------------------------------------ prepare
stage_prepare() {
  local data=${DATA_DIR:-../shared/data} f
  rm -rf "$GPU/mnist" "$GPU/cifar" && mkdir -p "$GPU/mnist/MNIST/raw" "$GPU/cifar" || return 1
  for f in $MNIST_FILES; do
    if [ -f "$data/MNIST/raw/$f" ]; then
      gzip -c "$data/MNIST/raw/$f" > "$GPU/mnist/MNIST/raw/$f.gz" || return 1
    elif [ -f "$data/MNIST/raw/$f.gz" ]; then
      cp "$data/MNIST/raw/$f.gz" "$GPU/mnist/MNIST/raw/" || return 1
    else
      say "MNIST file $data/MNIST/raw/$f (or .gz) is missing: set DATA_DIR to the folder holding MNIST/raw/"
      return 1
    fi
  done
  if [ ! -d "$data/cifar10-jpeg" ]; then
    say "CIFAR-10 folder $data/cifar10-jpeg is missing: set DATA_DIR to the folder holding cifar10-jpeg/"
    return 1
  fi
  cp -r "$data/cifar10-jpeg" "$GPU/cifar/" || return 1
  if [ "${FETCH_WHEELS:-1}" = 1 ]; then
    fetch_wheels || return 1
  else
    say "wheels: not fetched (FETCH_WHEELS=0); $WHEEL_DIR kept as it is"
    mkdir -p "$WHEEL_DIR"
  fi
  split_check_wheels || return 1
  $PY -m batchwise.speed.gpu_window carried "call1=$GPU/cifar,$WHEEL_DIR/checks" "call2=$GPU/mnist,$WHEEL_DIR" \
    --json "$OUT/carried.json"
}

split_check_wheels() {  # the wheels of CHECK_NEEDS (and what they need, less the image's) into $WHEEL_DIR/checks
  local names name whl
  names=$($PY -m batchwise.speed.gpu_window closure $CHECK_NEEDS --skip $IN_IMAGE) || return 1
  mkdir -p "$WHEEL_DIR/checks" || return 1
  for name in $names; do
    for whl in "$WHEEL_DIR"/*.whl; do
      [ -e "$whl" ] || continue
      [ "$(basename "$whl" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')" = "$name" ] && { mv "$whl" "$WHEEL_DIR/checks/" || return 1; }
    done
  done
  for name in $names; do  # each one there, whether moved now or before
    ls "$WHEEL_DIR/checks" | cut -d- -f1 | tr 'A-Z_.' 'a-z--' | grep -qx "$name" \
      || { say "no wheel of $name (needed by $CHECK_NEEDS) in $WHEEL_DIR or $WHEEL_DIR/checks"; return 1; }
  done
  say "wheels for the checks: $(ls "$WHEEL_DIR/checks" | tr '\n' ' ')"
}

fetch_wheels() {  # Snakemake at this venv's version, with its dependencies, for the image's CPython 3.12
  local version build=$GPU/wheel-build whl name pin
  version=$($PY -c 'import snakemake; print(snakemake.__version__)') || return 1
  rm -rf "$WHEEL_DIR" "$build" && mkdir -p "$WHEEL_DIR" "$build" || return 1
  say "wheels: resolving snakemake==$version here"
  $PY -m pip wheel -q -w "$build" "snakemake==$version" || { say "pip wheel snakemake==$version failed"; return 1; }
  for whl in "$build"/*.whl; do
    name=$(basename "$whl" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
    case " $(echo $IN_IMAGE) " in *" $name "*) continue ;; esac  # echo: one line, single spaces
    case "$whl" in
      *-none-any.whl) cp "$whl" "$WHEEL_DIR/" || return 1 ;;
      *) pin=$(basename "$whl" | cut -d- -f1-2 | sed 's/-/==/')
         $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
           --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
           -d "$WHEEL_DIR" "$pin" || { say "no CPython 3.12 wheel of $pin for x86-64"; return 1; } ;;
    esac
  done
  rm -rf "$build"
  say "wheels: $(ls "$WHEEL_DIR" | wc -l) in $WHEEL_DIR ($(du -sh "$WHEEL_DIR" | cut -f1))"
}

# ------------------------------------------------------------------------------------------ wheels
WHEELS_IN=""  # set once the wheels are installed in this command
install_wheels() {  # every carried wheel ($WHEEL_DIR and $WHEEL_DIR/checks) into a folder of its own,
  local site=$PWD/$GPU/site wheels  # imported by python3 through PYTHONPATH
  [ -z "$WHEELS_IN" ] || return 0
  if [ "${SKIP_WHEELS:-0}" = 1 ]; then
    say "wheels: not installed (SKIP_WHEELS=1): Snakemake from $PY's own packages"
    $PY -c 'import snakemake' || { say "$PY has no Snakemake: carry $WHEEL_DIR and leave SKIP_WHEELS unset"; return 1; }
    WHEELS_IN=skipped; return 0
  fi
  mapfile -t wheels < <(find "$WHEEL_DIR" -maxdepth 2 -type f -name '*.whl' 2> /dev/null | sort)
  if [ "${#wheels[@]}" = 0 ]; then
    say "no wheels in $WHEEL_DIR/: run 'bash tools/gpu-window.sh prepare' here and carry $WHEEL_DIR" \
      "($WHEEL_DIR/checks for the checks)"
    return 1
  fi
  rm -rf "$site"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "${wheels[@]}" || return 1
  export PYTHONPATH="$PYTHONPATH:$site"  # after src/: this checkout's package comes first
  WHEELS_IN=$site
  say "wheels: ${#wheels[@]} installed into $site"
  if ls "$site"/snakemake-*.dist-info > /dev/null 2>&1; then
    $PY -c 'import snakemake, sys
assert snakemake.__file__.startswith(sys.argv[1]), f"snakemake imported from {snakemake.__file__}"
print(f"snakemake {snakemake.__version__} from {snakemake.__file__}")' "$site"
  fi
}

stage_wheels() { install_wheels; }

# ------------------------------------------------------------------------------------------ data
stage_data() {  # the caches of what this call carries; caches already built (a warm machine) are kept
  local synthetic built=""
  synthetic=$($PY -c 'import sys; from batchwise.speed import gpu_window
print(int(bool(gpu_window.load_config(sys.argv[1:]).get("synthetic_data"))))' "$CONFIG") || return 1
  mkdir -p "$GPU/data" results/data || return 1
  [ -d "$GPU/mnist/MNIST" ] && ln -sfn "$PWD/$GPU/mnist/MNIST" "$GPU/data/MNIST"
  [ -d "$GPU/cifar/cifar10-jpeg" ] && ln -sfn "$PWD/$GPU/cifar/cifar10-jpeg" "$GPU/data/cifar10-jpeg"
  for name in mnist cifar10 cifar10_grey; do
    if $PY -c 'import sys; from pathlib import Path; from batchwise.speed import gpu_window
sys.exit(gpu_window.cache_usable(Path(sys.argv[1]), bool(int(sys.argv[2]))) is not None)' \
        "results/data/$name.npz" "$synthetic" 2> /dev/null; then
      say "$name: cache already here"; continue
    fi
    local flags=(--no-download --strict)
    if [ "$synthetic" = 1 ]; then
      flags+=(--synthetic)
    elif [ "$name" = mnist ] && [ ! -e "$GPU/data/MNIST" ]; then
      say "mnist: not carried in this call (carry $GPU/mnist)"; continue
    elif [ "$name" != mnist ] && [ ! -e "$GPU/data/cifar10-jpeg" ] && [ ! -f results/data/cifar10.npz ]; then
      say "$name: not carried in this call (carry $GPU/cifar)"; continue
    fi
    [ "$name" = cifar10_grey ] && flags+=(--colour-cache results/data/cifar10.npz)
    say "$name: building the cache"
    $PY -m batchwise prepare --dataset "$name" --data-dir "$GPU/data" --out "results/data/$name.npz" \
      "${flags[@]}" || return 1
    built="$built $name"
  done
  NOTE="built:${built:- nothing}"
}

# ------------------------------------------------------------------------------------------ checks
stage_checks() {  # pytest -m gpu, then the throughput probe, within CHECKS_S seconds
  local t0=$SECONDS rc=0 left modules probe_rc=0
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else
    say "no nvidia-smi here: a CPU rehearsal"
  fi
  install_wheels || { NOTE="wheels for the checks not installed (carry $WHEEL_DIR/checks)"; return 1; }
  # the modules that hold gpu tests, by name: a collection error in one of them is a failure
  mapfile -t modules < <(grep -l 'pytest.mark.gpu' tests/test_*.py)
  # SIGINT at the limit: pytest stops and still prints its summary (and writes its report)
  timeout --signal=INT --kill-after=30 "$PYTEST_S" $PY -m pytest -q -rfEs -m gpu -p no:cacheprovider \
    --junitxml="$OUT/pytest.xml" "${modules[@]}"
  local pytest_rc=$?
  [ "$pytest_rc" = 0 ] || [ "$pytest_rc" = 5 ] || rc=1   # 5: no test selected
  left=$((CHECKS_S - (SECONDS - t0)))
  if [ "$left" -lt 10 ]; then
    NOTE="pytest -m gpu rc $pytest_rc; probe: no time left"; return 1
  fi
  # the probe stops itself at its deadline; timeout is the backstop (probe.json is written as it goes)
  timeout --kill-after=10 $((left + 60)) $PY -m batchwise.speed.bench probe --deadline "$left" \
    --out "$OUT/probe.json" --data results/data || { rc=1; probe_rc=1; }
  if [ -S /tmp/nvidia-mps/control ]; then  # the probe stops the MPS daemon it starts; if it was cut short
    say "an MPS daemon is still up: stopping it, so that training runs without it"
    echo quit | nvidia-cuda-mps-control || rc=1
  fi
  NOTE="pytest -m gpu rc $pytest_rc (0 passed, 5 none selected, 124 cut at ${PYTEST_S}s); probe rc $probe_rc"
  return $rc
}

# ------------------------------------------------------------------------------------------ selfcheck
stage_selfcheck() {  # the engine's evidence, within SELFCHECK_S seconds (python -m batchwise.speed.gpu_selfcheck)
  local rc
  install_wheels || { NOTE="wheels for the checks not installed (carry $WHEEL_DIR/checks)"; return 1; }
  timeout --kill-after=20 $((SELFCHECK_S + 60)) $PY -m batchwise.speed.gpu_selfcheck --deadline "$SELFCHECK_S" \
    --out "$OUT/selfcheck.json" --data results/data
  rc=$?
  NOTE=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1])).get("verdict", "no verdict"))' \
    "$OUT/selfcheck.json" 2> /dev/null || echo "no selfcheck.json")
  return $rc
}

# ------------------------------------------------------------------------------------------ train
has_results_cli() { $PY -m batchwise results --help > /dev/null 2>&1; }

stage_train() {
  local bundles=(docs/results/full/bundles/*.tar.xz*) targets rc imported=0
  install_wheels || { NOTE="wheels not installed"; return 1; }
  $PY -c 'import snakemake' || { NOTE="no Snakemake: carry $WHEEL_DIR (all of it) in this call"; return 1; }
  if ! has_results_cli; then
    say "import: skipped (python -m batchwise results is not in this checkout)"
  elif [ "$CONFIG" != config/config.yaml ]; then  # the published runs are of the default config
    say "import: skipped (docs/results/full holds runs of config/config.yaml; this window runs $CONFIG)"
  elif [ -e "${bundles[0]}" ]; then
    $PY -m batchwise results import "${bundles[@]}" --configfile "$CONFIG" || imported=1
  fi
  targets=$($PY -m batchwise.speed.gpu_window targets --configfile "$CONFIG" --studies $STUDIES --plan "$LOGS/plan.json" \
    --summary "$SUMMARY") \
    || { NOTE="could not list the targets"; return 1; }
  if [ -n "$targets" ]; then
    run_snakemake $targets
    rc=$?
  else
    say "nothing left to train in: $STUDIES"; rc=0
  fi
  [ "$imported" = 0 ] || { NOTE="$NOTE; import of the published bundles FAILED"; rc=1; }
  $PY -m batchwise.speed.gpu_window finished "$SUMMARY" --configfile "$CONFIG" --studies $STUDIES || rc=1
  export_runs || rc=1
  return $rc
}

run_snakemake() {  # Snakemake in the background, stopped cleanly at the deadline
  local stop_at=$((T0 + DEADLINE_S)) pid rc waited=0
  say "snakemake: $# jobs left, longest first: $(echo "$@" | cut -c1-200); stop at $((stop_at - T0)) s"
  set -m  # its own process group: a background job of a script otherwise ignores SIGINT
  $PY -m snakemake --cores "$CORES" --resources gpu="$GPU_JOBS" --configfile "$CONFIG" \
    --config "data_dir=$GPU/data" download=False --nolock --rerun-incomplete --keep-going --scheduler greedy \
    "$@" > "$LOGS/snakemake.log" 2>&1 &
  pid=$!
  set +m
  while kill -0 "$pid" 2> /dev/null && [ "$SECONDS" -lt "$stop_at" ]; do sleep 1; done
  if kill -0 "$pid" 2> /dev/null; then
    # SIGINT to its process group, as Ctrl-C sends it: Snakemake alone waits for its running jobs;
    # the jobs themselves checkpoint and exit, then Snakemake removes their incomplete outputs.
    say "deadline: SIGINT to snakemake and its jobs (process group $pid)"
    kill -INT -- "-$pid"
    while kill -0 "$pid" 2> /dev/null && [ "$waited" -lt 45 ]; do sleep 1; waited=$((waited + 1)); done
    if kill -0 "$pid" 2> /dev/null; then
      say "snakemake still running after 45 s: SIGTERM to its process group"
      kill -TERM -- "-$pid"
      sleep 10
      kill -0 "$pid" 2> /dev/null && kill -KILL -- "-$pid"
    fi
    wait "$pid"
    NOTE="stopped at the deadline (${DEADLINE_S}s) after $((SECONDS - T0)) s"
  else
    wait "$pid"
    rc=$?
    NOTE="snakemake exited $rc after $((SECONDS - T0)) s"
    tail -5 "$LOGS/snakemake.log"
    return $rc
  fi
  tail -5 "$LOGS/snakemake.log"
}

export_runs() {  # a bundle of the finished runs and the unfinished runs' checkpoints, under $OUT
  local bundle studies=() s found=0
  for s in $STUDIES; do
    studies+=(--study "$s")
    [ -n "$(find "results/$s" "checkpoints/$s" -name metrics.json -print -quit 2> /dev/null)" ] && found=1
  done
  if [ "$found" = 0 ] && [ -z "$(find checkpoints -type f -print -quit 2> /dev/null)" ]; then
    NOTE="$NOTE; nothing finished or checkpointed to export"
    return 0
  fi
  bundle="$OUT/bundle-$(date -u +%Y%m%d-%H%M%S)"
  if has_results_cli; then
    $PY -m batchwise results export "$bundle" "${studies[@]}" --checkpoints \
      --source "GPU window: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo cpu)" \
      || { NOTE="$NOTE; export FAILED"; return 1; }
    NOTE="$NOTE; exported $(basename "$bundle")"
  else  # until `results export` exists: the finished runs as they lie
    tar czf "$bundle.tar.gz" --exclude='results/data' results $([ -d checkpoints ] && echo checkpoints) || return 1
    NOTE="$NOTE; no 'results export' here: packed results/ as $(basename "$bundle").tar.gz"
  fi
}

# ------------------------------------------------------------------------------------------ main
run_stage() {  # one stage, its output in its log, its outcome in the summary; never fatal
  local stage=$1 t0=$SECONDS rc status
  NOTE=""
  say "stage $stage"
  "stage_$stage" > "$LOGS/$stage.log" 2>&1
  rc=$?
  status=ok; [ "$rc" = 0 ] || status=failed
  tail -15 "$LOGS/$stage.log"
  say "stage $stage: $status (rc $rc) in $((SECONDS - t0)) s${NOTE:+: $NOTE}"
  $PY -m batchwise.speed.gpu_window record "$SUMMARY" "$stage" "$status" $((SECONDS - t0)) "$NOTE"
}

finish() {  # the logs into one tarball; every file under $OUT against the limits on what comes back
  tar czf "$OUT/logs.tar.gz" "$LOGS" $([ -d logs ] && echo logs) || say "packing the logs FAILED"
  $PY -m batchwise.speed.gpu_window outcheck "$OUT" "$SUMMARY"
  local rc=$?
  ls -la "$OUT"
  say "done in $((SECONDS - T0)) s; OUT limits $([ $rc = 0 ] && echo kept || echo BROKEN: see summary.json)"
  return $rc
}

main() {
  local stage
  [ $# -gt 0 ] || { echo "usage: tools/gpu-window.sh prepare | [data] [selfcheck] [checks] [train] | wheels" >&2
                    return 2; }
  for stage in "$@"; do
    case "$stage" in prepare|data|selfcheck|checks|train|wheels) ;; *)
      echo "unknown stage '$stage': use prepare (here), data, selfcheck, checks, train or wheels (there)" >&2
      return 2 ;;
    esac
  done
  mkdir -p "$OUT" "$LOGS" || return 2
  rm -f "$LOGS"/*.log "$SUMMARY"
  $PY -c 'import json, sys; json.dump({"command": sys.argv[1], "deadline_s": int(sys.argv[2]), "config": sys.argv[3],
"studies": sys.argv[4].split(), "gpu_jobs": int(sys.argv[5]), "stages": []}, open(sys.argv[6], "w"), indent=1)' \
    "tools/gpu-window.sh $*" "$DEADLINE_S" "$CONFIG" "$STUDIES" "$GPU_JOBS" "$SUMMARY" || return 2
  for stage in "$@"; do run_stage "$stage"; done
  finish
}

main "$@"
