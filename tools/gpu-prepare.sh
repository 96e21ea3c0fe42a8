#!/usr/bin/env bash
# Run HERE (a CPU machine with PyPI), before a GPU session: stages what the device calls carry,
# in git-ignored folders of the repository.
#   .gpu/cifar/cifar10-jpeg/   CIFAR-10 (ImageFolder JPEG, ~55 MB)          -> carried by call 1
#   .gpu/mnist/MNIST/raw/*.gz  MNIST, the four IDX files gzipped (~11 MB)   -> carried by call 2
#   .whl/                      Snakemake and the dependencies the GPU image lacks, for CPython 3.12
# Usage: tools/gpu-prepare.sh [DATA_DIR]   (default ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
py=${PYTHON:-.venv/bin/python}

mkdir -p .gpu/cifar .gpu/mnist/MNIST/raw
[ -d .gpu/cifar/cifar10-jpeg ] || cp -r "$data/cifar10-jpeg" .gpu/cifar/
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f ".gpu/mnist/MNIST/raw/$f.gz" ] || gzip -c "$data/MNIST/raw/$f" > ".gpu/mnist/MNIST/raw/$f.gz"
done

# Snakemake's wheels: pure-Python ones built here, compiled ones fetched for cp312 (the GPU image's
# Python). Packages the GPU image already has (device README: KINDS.md) are left out.
rm -rf .whl && mkdir -p .whl /tmp/bw-wheels
version=$("$py" -c 'import snakemake; print(snakemake.__version__)')
"$py" -m pip wheel -q -w /tmp/bw-wheels "snakemake==$version" 2>&1 | grep -v "is ignored" || true
in_image=" attrs certifi charset-normalizer idna jinja2 markupsafe packaging psutil pyyaml requests tabulate typing-extensions urllib3 wrapt "
for whl in /tmp/bw-wheels/*.whl; do
  name=$(basename "$whl" | sed 's/-[0-9].*//' | tr 'A-Z_' 'a-z-')
  case "$in_image" in *" $name "*) continue ;; esac
  case "$whl" in
    *-none-any.whl) cp "$whl" .whl/ ;;
    *) pin=$(basename "$whl" | cut -d- -f1-2 | sed 's/-/==/')
       "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
         -d .whl "$pin" 2>&1 | grep -v "is ignored" || true ;;
  esac
done
du -sh .gpu/cifar .gpu/mnist .whl
