#!/usr/bin/env bash
# One leased-GPU training session, run on the device machine from the repository root:
#   bash models/gpu_lease.sh 12.0 7.8   # plans a 12.0-minute schedule and stops at 7.8 (fits one 600 s call);
#   bash models/gpu_lease.sh 12.0       # then at once, on the still-warm machine: resumes both runs to the end
# A lease has 15 device-minutes in all. Trains two runs side by side on the one GPU (one alone leaves it
# idle between kernel launches), each on one learning-rate schedule over MINUTES of training that ends
# decayed; STOP_MINUTES pauses both (checkpointed, in /tmp) for the next call. Each call writes the fp16
# weights (release checkpoints, for `lic export`) and logs to $OUT (about 30 s of start-up and export beside
# the training). Leases 3 and 4 instead decayed fully by 7.8 minutes and re-stretched the schedule in the
# second call, which heated the learning rate back up to half its peak. What each lease ran is in
# benchmarks/training/runs.json.
#
# Before the call, on the CPU machine: bash models/before_lease.sh (the training shard, and every model
#   but the two warm starts out of the tree, which must stay under 64 MiB); call with carry ["gpu"].
# After it, on the CPU machine: models/after_lease.sh evaluates and exports both runs from the two
# calls' files (see there), e.g.
#   bash models/after_lease.sh FIRST_FILES SECOND_FILES "H100 (leased) cuda, bf16" ms-128-192-r6 c2f-64-96-r8
set -u
minutes=${1:?minutes} stop=${2:-}
out=${OUT:-/tmp/out}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# Batch 64, compiled. The fourth lease (H100) ran batch 32 with --compile at 21 ms a step (48 steps/s)
# where batch 16 eager had taken 18.5 ms on an H200: twice the patches for 13% more time, since a step
# of ms-128-192 (1.1 TFLOP at batch 32, torch FlopCounter) runs at about 54 TFLOP/s, a small part
# of what the GPU's bf16 convolutions sustain. So batch 64 should again cost well under twice
# the time per step; the logs' steps/s will tell. The first step compiles (27 s on the H100, on the
# training clock; train.py goes on eagerly if compiling fails). Seed 2 and 32 crops an image: a
# fresh pool twice the size of seed 1's, which batch 32 had already cycled through about 55 times.
# Restarting at lr 3e-4 jolts a released model: on the CPU at batch 8 its held-out RD loss rose 3-5%
# within 50-400 steps, with or without a warm-up, and about 1% at lr 1e-4 (benchmarks/warm_restart.py);
# the leases' training logs rise the same way before the decay brings them down. By the square-root
# rule, 3e-4 at batch 64 is about 1e-4 at batch 8, so the larger batch should calm it; the 500-step
# warm-up (about 12 s) removes the first steps' transient of the fresh Adam state (+0.5% against +3.9%).
common=(--data gpu/train --patch 256 --batch 64 --compile --per-image 32 --seed 2 --steps 100000000 --minutes "$minutes"
        ${stop:+--stop-minutes "$stop"} --warmup-steps 500 --save-minutes 3 --threads 4)
ms_from=ms-128-192-r5 ms=ms-128-192-r6 c2f_from=c2f-64-96-r7 c2f=c2f-64-96-r8  # released warm start -> new run
# A format-2 warm start is read from its ONNX package, which needs onnx there (the device image has 1.23).
source_of() { python3 -c "import os, sys; from models.release import release_source; print(os.path.relpath(release_source(sys.argv[1])))" "$1"; }
# GPU utilisation and memory every 5 s: whether the two runs still leave the GPU idle, which decides
# whether a later lease should add a run (an equal-compute ms-64-96 beside c2f-64-96) or give the default the GPU alone.
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv,noheader -l 5 >"$out/gpu_util.csv" 2>/dev/null &
monitor=$!
python3 -m models.train --arch mean-scale --widths n=128,m=192 --init-from "$(source_of $ms_from)" \
  --lr 3e-4 --decay-from 0.3 --run /tmp/a/$ms "${common[@]}" >"$out/$ms.log" 2>&1 &
run_ms=$!
python3 -m models.train --arch coarse2fine --widths n=64,m=96,h2=64,h1=32 --init-from "$(source_of $c2f_from)" \
  --lr 2e-4 --decay-from 0.3 --run /tmp/b/$c2f "${common[@]}" >"$out/$c2f.log" 2>&1 &
run_c2f=$!
wait $run_ms $run_c2f
kill $monitor 2>/dev/null
for run in /tmp/a/$ms /tmp/b/$c2f; do
  name=$(basename "$run")
  cp "$run/log.jsonl" "$out/$name.jsonl"
  python3 -c "import sys; from pathlib import Path; from models.release import load_checkpoint, release_checkpoint
model, state = load_checkpoint(sys.argv[1]); release_checkpoint(model, state, Path(sys.argv[2]))" "$run/last.pt" "$out/$name.pt"
done
ls -la "$out"; tail -n 3 "$out"/*.log
