#!/usr/bin/env bash
# Regenerates the images' lock files from pyproject.toml's run-time dependencies (no extras, so no torch):
#   deploy/requirements.lock      CPU image (onnxruntime)
#   deploy/requirements-gpu.lock  GPU image (onnxruntime-gpu in place of onnxruntime, deploy/gpu-overrides.txt)
# Both add the build backend that installs the project itself (deploy/requirements-build.in), and carry sha256 hashes of
# every file of each pinned release, so that the online build (PyPI) and the offline one (a wheelhouse
# filled on the host, deploy/wheelhouse.sh) install the same files. Python 3.11 on x86_64 glibc (the
# images: Debian bookworm's python3, python:3.11-slim-bookworm, Ubuntu 22.04's python3.11).
#
#   deploy/lock.sh            # uv from PATH, or installed into build/tools
#   deploy/lock.sh --upgrade  # extra arguments go to `uv pip compile`
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-$(command -v uv || true)}
if [ -z "$UV" ]; then
  [ -x build/tools/bin/uv ] || { python3 -m venv build/tools && build/tools/bin/pip install --quiet uv; }
  UV=build/tools/bin/uv
fi
common=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes
        --custom-compile-command deploy/lock.sh "$@")
"$UV" pip compile --quiet pyproject.toml deploy/requirements-build.in "${common[@]}" -o deploy/requirements.lock
"$UV" pip compile --quiet pyproject.toml deploy/requirements-build.in --extra gpu --override deploy/gpu-overrides.txt \
  "${common[@]}" -o deploy/requirements-gpu.lock
echo "deploy/requirements.lock: $(grep -c '==' deploy/requirements.lock) pins; deploy/requirements-gpu.lock: $(grep -c '==' deploy/requirements-gpu.lock) pins"
