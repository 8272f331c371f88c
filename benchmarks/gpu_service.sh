#!/usr/bin/env bash
# The service on the lent GPU machine, in one call of about 6 minutes (issue 23). Before it, here:
#   bash benchmarks/gpu_prepare.sh        # gpu/wheels and gpu/kodak; checks the 64 MiB carry
# then the call:  run(command="bash benchmarks/gpu_service.sh", carry=["gpu/wheels", "gpu/kodak"], timeout_s=540)
# A lease trains first (DEVELOPERS.md): with 15 device-minutes, the machine's start, one training call
# (bash models/gpu_lease.sh 4.5: its stage 1 and a whole end-to-end schedule, about 7 minutes) and this call fit. Between the two,
# here: the stashed models back into the tree (the first lines of models/after_lease.sh), then
# gpu_prepare.sh (before_lease.sh's `rm -rf gpu` removes what it made).
# and after it, here: copy the files back into benchmarks/ (gpu_service.json, gpu_service.png) and the
# README's GPU table from the JSON; the log and the GPU test output go in the note.
#
# 1. Bit-exactness on the GPU: the golden streams decode to their committed symbols and pixels (+-1)
#    through the PyTorch backend on CUDA, and bitstreams cross-decode between CUDA and onnxruntime on
#    the CPU (tests/test_golden.py, tests/test_determinism.py with LIC_TEST_TORCH_DEVICE=cuda).
# 2. benchmarks/gpu_service.py: the real service on the GPU, then on the CPU cores, then Pillow AVIF
#    and WebP, side by side; it rewrites its JSON after every phase, so a call cut off still returns
#    what it measured.
# The device image has PyTorch-CUDA and onnxruntime without CUDA, hence LIC_BACKEND=torch there.
# Dry run on any machine (no wheels installed, the "GPU" on the CPU):
#   SKIP_WHEELS=1 LIC_TEST_TORCH_DEVICE=cpu OUT=/tmp/gs PYTHON=.venv/bin/python bash benchmarks/gpu_service.sh --quick
set -u
out=${OUT:-/tmp/out}
python=${PYTHON:-python3}
mkdir -p "$out"
if [ -z "${SKIP_WHEELS:-}" ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site gpu/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; "$python" -c "import torch, onnxruntime, PIL; print('torch', torch.__version__, 'onnxruntime', onnxruntime.__version__, 'Pillow', PIL.__version__)"; } \
  >"$out/gpu_machine.txt" 2>&1
LIC_TEST_TORCH_DEVICE=${LIC_TEST_TORCH_DEVICE:-cuda} timeout 180 "$python" -m pytest -q -p no:cacheprovider \
  tests/test_golden.py tests/test_determinism.py -k "not every_architecture" >"$out/gpu_tests.txt" 2>&1
echo "pytest exit status $?" >>"$out/gpu_tests.txt"
tail -n 3 "$out/gpu_tests.txt"
timeout 400 "$python" benchmarks/gpu_service.py --out "$out" "$@" 2>&1 | tee "$out/gpu_service.log"
ls -la "$out"
