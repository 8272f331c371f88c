#!/usr/bin/env bash
# One leased-GPU training session, run on the device machine from the repository root:
#   bash models/gpu_lease.sh 12.0 7.8   # plans a 12.0-minute schedule and stops at 7.8 (fits one 600 s call);
#   bash models/gpu_lease.sh 12.0       # then at once, on the still-warm machine: resumes the run to the end
# Continues the default model on one learning-rate schedule over MINUTES of training that ends
# decayed; STOP_MINUTES pauses it (checkpointed, in /tmp) for the next call. Each call writes the fp16
# weights (a release checkpoint, for `lic export`) and logs to $OUT (about 30 s of start-up beside
# the training). Leases 3 and 4 instead decayed fully by 7.8 minutes and re-stretched the
# schedule in the second call, which heated the learning rate back up to half its peak.
# A lease has 15 device-minutes in all, and the machine's start counts: lease 5 found no H100 free,
# fell back to an H200 and had 238 s left after the first call. Then the second call shortens the
# schedule to what is left, MINUTES = 7.8 + (budget_left_s - 75) / 60 rounded down (lease 5 ran 10.4
# in 176 s of wall time): the learning rate steps down at the resume and still ends decayed. With under
# about 90 s left, skip it: the first call's checkpoint (mid-schedule) is the release.
# What each lease ran is in benchmarks/training/runs.json.
#
# Leases 1-4 trained the coarse-to-fine model beside the default. From lease 5 the default has the GPU
# alone: its targets are the ones still open, it gains more per lease (-5.1% BD-rate from -r4 to -r5,
# against -2.7% for c2f-64-96-r6 to -r7), a release of it alone (12.5 MB) leaves the weight budget room
# for four leases instead of three, and the coarse-to-fine model's open question (larger images) needs
# high-resolution training data, not more of the same (README, "Coarse-to-fine against mean-scale").
#
# Before the call, on the CPU machine: bash models/before_lease.sh (the training shard, and every model
#   but the warm start out of the tree, which must stay under 64 MiB); call with carry ["gpu"].
# After it, on the CPU machine: models/after_lease.sh evaluates and exports the run from the two
# calls' files (see there), e.g.
#   bash models/after_lease.sh FIRST_FILES SECOND_FILES "H100 (leased) cuda, bf16" ms-128-192-r8
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
# the time per step. Measured in lease 5 (H200): batch 64 at 60 steps/s once compiled (3,840 patches/s,
# 2.5x lease 4's), the GPU 80-88% busy in nvidia-smi's samples, so little is left for a larger batch.
# The first step compiles (27 s on the H100, on the training clock; train.py goes on eagerly if
# compiling fails).
# Data (from lease 6): the shard is about 640 random 384 px regions of about 430 photos of train/ and train-hires/ at their
# native scale (models/shard.py, drawn by before_lease.sh with this lease's seed, so every lease trains
# on fresh regions); 64 patches a region, not downscaled again (--min-scale 1), make a pool of about 41k
# patches, near lease 5's 39k (it cycled through them about 60 times). Leases 1-5 trained on
# every photo downscaled to a 272 px short side and stored as JPEG q84 4:2:0.
# Restarting at lr 3e-4 jolts a released model: on the CPU at batch 8 its held-out RD loss rose 3-5%
# within 50-400 steps, with or without a warm-up, and about 1% at lr 1e-4 (benchmarks/warm_restart.py);
# the leases' training logs rise the same way before the decay brings them down. By the square-root
# rule, 3e-4 at batch 64 is about 1e-4 at batch 8, so the larger batch should calm it; the 500-step
# warm-up (about 12 s) removes the first steps' transient of the fresh Adam state (+0.5% against +3.9%).
ms_from=ms-128-192-r7 ms=ms-128-192-r8  # released warm start -> new run
seed=6  # the shard's regions and the patches' offsets; a seed no lease has used (lease 5: 2)
# A format-2 warm start is read from its ONNX package, which needs onnx there (the device image has 1.23).
source_of() { python3 -c "import os, sys; from models.release import release_source; print(os.path.relpath(release_source(sys.argv[1])))" "$1"; }
# GPU utilisation and memory every 5 s: whether one run at batch 64 leaves the GPU idle, which decides
# whether a later lease should raise the batch again (a step costs little more at twice the batch, see above).
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv,noheader -l 5 >"$out/gpu_util.csv" 2>/dev/null &
monitor=$!
# What the call hands back is in $OUT all along: the fp16 weights at every save (each minute) and the
# log every 20 s. A call cut off by the lease's budget (the call's limit can be less than its timeout
# when the machine's start took long) still returns its latest weights instead of nothing.
(while sleep 20; do cp /tmp/a/$ms/log.jsonl "$out/$ms.jsonl" 2>/dev/null; done) &
copier=$!
python3 -m models.train --arch mean-scale --widths n=128,m=192 --init-from "$(source_of $ms_from)" \
  --data gpu/train --patch 256 --batch 64 --compile --per-image 64 --min-scale 1 --seed "$seed" --steps 100000000 --minutes "$minutes" \
  ${stop:+--stop-minutes "$stop"} --warmup-steps 500 --save-minutes 1 --release-to "$out/$ms.pt" --threads 4 \
  --lr 3e-4 --decay-from 0.3 --run /tmp/a/$ms >"$out/$ms.log" 2>&1
kill $monitor $copier 2>/dev/null
cp /tmp/a/$ms/log.jsonl "$out/$ms.jsonl"
ls -la "$out"; tail -n 3 "$out"/*.log
