#!/bin/sh
# The environment benchmarks/cpu_speed.py times CompressAI in (outside the project's .venv: CompressAI
# 1.2.8 imports torchvision, and PyPI's torchvision does not load beside the project's CPU build of
# torch 2.13.0; this machine's notes give torch 2.14.1 + torchvision 0.29.1, a CUDA build that runs on
# the CPU, about 5.5 GB). Usage: sh benchmarks/compressai_env.sh [DIR]   (default /work/cai-venv)
set -eu
dir=${1:-/work/cai-venv}
python3 -m venv "$dir"
"$dir/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
"$dir/bin/pip" install -q compressai==1.2.8 "numpy<2"
"$dir/bin/python" -c "from compressai.models import MeanScaleHyperprior; print('CompressAI ready in $dir')"
