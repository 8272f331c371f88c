#!/usr/bin/env bash
# Before a GPU lease, on the CPU machine, from the repository root: make what travels fit the device's
# 64 MiB limit. Builds the training shard gpu/train if it is missing (41 MiB), and moves every model
# package and checkpoint to /tmp/lease-stash except the weights of the warm start that
# models/gpu_lease.sh names (ms_from: a format-1 release's .pt, a later release's package).
# models/after_lease.sh moves them back. Then call the device with carry ["gpu"].
set -eu
stash=/tmp/lease-stash
eval "$(grep '^ms_from=' models/gpu_lease.sh | sed 's/#.*//')"
[ -d gpu/train ] || .venv/bin/python -m models.shard ../shared/data/train gpu/train --quality 84 --scale 0.55 --min-side 272
keep=$(.venv/bin/python -c "import os, sys; from models.release import release_source
print(os.path.relpath(release_source(sys.argv[1])))" "$ms_from")
mkdir -p "$stash/zoo" "$stash/checkpoints"
for path in models/zoo/* models/checkpoints/*.pt; do
  [ "$path" = "$keep" ] || mv "$path" "$stash/$(basename "$(dirname "$path")")/"
done
echo "warm start kept: $keep"
.venv/bin/python -c "import subprocess, os
files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], capture_output=True, text=True).stdout.split('\0')
tree = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
carried = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk('gpu') for f in fs)
total = (tree + carried) / 2**20
print(f'travels: {tree / 2**20:.1f} MiB of tree + {carried / 2**20:.1f} MiB carried = {total:.1f} MiB (limit 64)')
raise SystemExit('over the limit: rebuild the shard at a lower --quality' if total > 63.5 else 0)"
