#!/usr/bin/env bash
# Before a GPU lease, on the CPU machine, from the repository root: make what travels fit the device's
# 64 MiB limit. Moves every model package and checkpoint to /tmp/lease-stash except the weights of the
# warm start that models/gpu_lease.sh names (warm_from: a format-1 release's .pt, a later release's
# package), then draws this lease's fresh native-scale training shard gpu/train (models/shard.py, with
# the lease's seed) into whatever the limit leaves. models/after_lease.sh moves the models back.
# Then call the device with carry ["gpu"].
set -eu
stash=/tmp/lease-stash
eval "$(grep -E '^(warm_from|seed)=' models/gpu_lease.sh | sed 's/#.*//')"
keep=$(.venv/bin/python -c "import os, sys; from models.release import release_source
print(os.path.relpath(release_source(sys.argv[1])))" "$warm_from")
mkdir -p "$stash/zoo" "$stash/checkpoints"
for path in models/zoo/* models/checkpoints/*.pt; do
  if [ -e "$path" ] && [ "$path" != "$keep" ]; then mv "$path" "$stash/$(basename "$(dirname "$path")")/"; fi
done
echo "warm start kept: $keep"
tree_mib=$(.venv/bin/python -c "import subprocess, os
files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], capture_output=True, text=True).stdout.split('\0')
print(sum(os.path.getsize(f) for f in files if os.path.isfile(f) and not f.startswith('gpu/')) / 2**20)")
rm -rf gpu
.venv/bin/python -m models.shard gpu/train ../shared/data/train ../shared/data/train-hires --seed "$seed" \
  --budget-mib "$(.venv/bin/python -c "print(63 - $tree_mib)")"
du -sb gpu | awk -v tree="$tree_mib" '{t = tree + $1 / 2^20; printf "travels: %.1f MiB of tree + %.1f MiB carried = %.1f MiB (limit 64)\n", tree, $1 / 2^20, t; exit (t > 63.5)}'
