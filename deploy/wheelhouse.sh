#!/usr/bin/env bash
# Fills deploy/wheelhouse/ on the host with the wheels that a lock file pins, for an image built where
# the Python package index cannot be reached (inside the build's containers only Debian's mirror
# answers here). The Dockerfile copies the folder in and, with --build-arg PIP_OFFLINE=1, installs with
# `--no-index --find-links`; elsewhere the folder stays empty and pip reads the index. Either way pip
# checks every file against the lock's sha256 hashes.
#
#   deploy/wheelhouse.sh [cpu|gpu]    # cpu: deploy/requirements.lock (default); gpu: deploy/requirements-gpu.lock
#
# Wheels only, for CPython 3.11 on x86_64 glibc >= 2.28 (Debian bookworm, Ubuntu 22.04), whatever the
# host runs. Markers are dropped, so that a pin that only older 3.11 releases need (async-timeout, for
# python < 3.11.3: Debian bookworm's python3 is 3.11.2) is there too. Files already present are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-cpu}
case $kind in
  cpu) lock=deploy/requirements.lock ;;
  gpu) lock=deploy/requirements-gpu.lock ;;
  *) echo "usage: $0 [cpu|gpu]" >&2; exit 2 ;;
esac
mkdir -p build deploy/wheelhouse
# name==version plus its hashes, without the environment marker, one requirement per line
python3 - "$lock" > build/wheelhouse-$kind.txt <<'PY'
import re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
for line in text.splitlines():
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    spec, *hashes = re.split(r"\s+(?=--hash=)", line)
    print(spec.split(";", 1)[0].strip(), *hashes)
PY
# The host's own pip settings (local find-links, extra indexes) are not used: the index alone, or
# PIP_INDEX_URL when it is set.
platforms=(); for minor in $(seq 28 -1 5); do platforms+=(--platform manylinux_2_${minor}_x86_64); done
PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= \
  python3 -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps --only-binary=:all: \
  "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311 \
  -r build/wheelhouse-$kind.txt -d deploy/wheelhouse
echo "deploy/wheelhouse: $(ls deploy/wheelhouse/*.whl | wc -l) wheels, $(du -sh deploy/wheelhouse | cut -f1)"
