#!/usr/bin/env bash
# Fetch, here, the wheels the bare GPU machine lacks for benchmarks/gpu_check.py, into the git-ignored .wheels/.
#
# That machine is offline; its python3 (3.12, x86_64) has torch, torchvision, timm, numpy, pillow, pyarrow, typer
# and rich, but not open_clip (nor its ftfy/wcwidth/regex/tqdm) and not pytest. They are installed there with
# --no-deps, so nothing pulls a second torch:
#
#   python3 -m pip install -q --no-index --no-deps --find-links .wheels open_clip_torch ftfy wcwidth regex tqdm \
#       pytest pluggy iniconfig packaging pygments && python3 benchmarks/gpu_check.py --out $OUT
#
# (the device tool's carry: [".wheels"]; see benchmarks/gpu_check.py's docstring).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
rm -rf .wheels
mkdir -p .wheels
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .wheels \
    "open_clip_torch==3.3.0" "ftfy>=6" wcwidth "regex>=2023" "tqdm>=4" "pytest>=8" "pluggy>=1.5" "iniconfig>=2" \
    "packaging>=24" "pygments>=2.15"
ls -la .wheels
du -sh .wheels
