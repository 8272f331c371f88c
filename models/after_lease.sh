#!/usr/bin/env bash
# After a GPU lease, on the CPU machine: turn what models/gpu_lease.sh's two calls brought back into
# evaluated, exported releases. Run from the repository root:
#   bash models/after_lease.sh FIRST_CALL_FILES SECOND_CALL_FILES "H100 (leased) cuda, bf16" ms-128-192-r8
# (the calls' files_at folders, the GPU that trained, the run names). With one call only, give its folder twice.
# Per run: runs/NAME/ gets mid.pt (end of the first call), release.pt and log.jsonl (the second call's);
# both checkpoints are evaluated on Kodak the way training does (about 2 minutes each), their
# evaluations copied to benchmarks/training/NAME-eval.jsonl, and release.pt is exported with
# `lic export` (a format-2 package with its Kodak check, about 5 minutes). The GPU utilisation samples
# go to benchmarks/training/NAME-gpu_util.csv; a coarse-to-fine run's two checkpoints are rated by
# benchmarks/c2f_opening.py (what its hyper path carries and is worth to y). First, what models/before_lease.sh stashed comes back;
# last, models.weight_budget says what the new packages leave of the weight budget (exit 1: over it).
# What needs judgement stays by hand: runs.json, DEFAULT_MODEL, golden streams, lic bench, the README, and a
# new default's int8 twins (`.venv/bin/python -m models.quantize ID`, then benchmarks/int8.py rates them).
set -eu
first=${1:?first call folder} second=${2:?second call folder} machine=${3:?machine}
shift 3
stash=/tmp/lease-stash
if [ -d "$stash" ]; then
  mv "$stash"/zoo/* models/zoo/ 2>/dev/null || true
  mv "$stash"/checkpoints/* models/checkpoints/ 2>/dev/null || true
  rm -r "$stash"
fi
kodak=${KODAK:-../shared/data/kodak}
# A call's weights: one file, or (over the 16 MiB a file can come back in) its parts in order.
weights() { if [ -e "$1/$2.pt" ]; then cat "$1/$2.pt"; else cat "$1/$2.pt".part*; fi; }
for name in "$@"; do
  mkdir -p "runs/$name"
  weights "$first" "$name" >"runs/$name/mid.pt"
  weights "$second" "$name" >"runs/$name/release.pt"
  cp "$second/$name.jsonl" "runs/$name/log.jsonl"
  for checkpoint in mid release; do
    .venv/bin/python -m models.evaluate "runs/$name/$checkpoint.pt" "runs/$name/log.jsonl" --kodak "$kodak" --machine "$machine"
  done
  grep '"eval"' "runs/$name/log.jsonl" >"benchmarks/training/$name-eval.jsonl"
  cat "$first/gpu_util.csv" "$second/gpu_util.csv" >"benchmarks/training/$name-gpu_util.csv" 2>/dev/null || true
  .venv/bin/lic export "runs/$name/release.pt" --id "$name" --kodak "$kodak"
  case $name in  # is the coarse-to-fine side information worth its bits yet (docs/training.md, "What the hyper path carries")?
    c2f-*) .venv/bin/python benchmarks/c2f_opening.py --label "$name: end of the lease's first call, then its release" \
             "runs/$name/mid.pt" "runs/$name/release.pt" ;;
  esac
done
.venv/bin/python -m models.weight_budget $(printf 'models/zoo/%s ' "$@")
