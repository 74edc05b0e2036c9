#!/usr/bin/env bash
# Wheels the GPU benchmark needs on a lent device machine that has torch, transformers, opencv and
# matplotlib but not these (it cannot reach PyPI). They land in .whl/ (git-ignored), under the device
# tool's 64 MiB limit: imageio-ffmpeg 0.6.0 because 0.8's wheel alone is 68 MB.
#   bash bench/gpu_wheels.sh            # here, once
# then one device call runs bench/gpu_plan.sh with carry [".whl"]; it installs them into /tmp/site first:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#       .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux2010_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
rm -rf .whl && mkdir .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl \
    diffusers==0.42.1 torchao==0.18.0 imageio-ffmpeg==0.6.0 importlib_metadata ftfy wcwidth
du -sh .whl
