#!/usr/bin/env bash
# One leased-GPU training session, run on the device machine from the repository root:
#   bash models/gpu_lease.sh 11.0 4.5   # plans an 11.0-minute end-to-end schedule, stops it at 4.5 (fits one 600 s call);
#   bash models/gpu_lease.sh 11.0       # then at once, on the still-warm machine: resumes the run to the end
# Trains the coarse-to-fine model at N=128 (M=192, z2 256, z1 128: the paper's widths but for the
# hidden width of g_a and the synthesis, 192 there; issue 26), warm-started from the default in two stages:
#   1. entropy (first call only, 3.0 minutes): the default's g_a, gains and synthesis, frozen, and a
#      fresh two-level hyperprior fitted to their latents (no synthesis runs), in the paper's order:
#      `lic train --stage fine` (fine_minutes: y and z2 alone, z2 under one learned scale per channel,
#      models/fine_first.py), then `--stage entropy` from it (coarse_minutes: z1 added, h_s1 starting as
#      that density). On the CPU this order, at equal steps, coded the default's latents 3-6% below both
#      levels at once on Kodak and 5-11% on hires photos (docs/training.md, "The paper's order on the CPU").
#      The warm start makes the new synthesis compute the default's exactly (models/warm_start.py), so
#      the model starts at the default's distortion with an entropy model of its own. On the CPU the
#      new hyper path carried about as many side bits as the default's z, but they were worth nothing to
#      y yet: y cost more than under each image's own per-channel frequencies, where the default's z saves
#      it 0.04-0.22 bpp (docs/training.md, "What the hyper path carries"). The paper's helping losses
#      (--helping-loss), distillation from the default and 2-4x the learning rate (at batch 8) did not speed
#      that up at equal steps, so this stage stays as it is; the zoo's c2f-64-96 lineage got its worth
#      in its first lease.
#      after_lease.sh rates the run in benchmarks/c2f_opening.json; benchmarks/c2f_stage2.py its RD.
#      It has 3.0 minutes (1.5 until stop 39; split in two since stop 40): on the CPU a stage-1 patch cost a 17th of a stage-2 one, and the
#      entropy model is what lags (a fresh one-level model fitted the same way lagged the default's own by
#      13-29% on Kodak, benchmarks/c2f_prior_fresh.json), so a minute buys it more here than in stage 2.
#   2. all: end to end from stage 1, where the aggregation network learns to use the hyper features,
#      one learning-rate schedule of MINUTES over both calls; STOP_MINUTES pauses it (checkpointed, in
#      /tmp) for the next call.
# Each call writes the fp16 weights (a release checkpoint, for `lic export`) and logs to $OUT.
# A lease has 15 device-minutes in all, and the machine's start counts: lease 5 found no H100 free,
# fell back to an H200 and had 238 s left after the first call. Then the second call shortens the
# schedule to what is left, MINUTES = 4.5 + (budget_left_s - 75) / 60 rounded down (lease 5 ran 10.4
# in 176 s of wall time): the learning rate steps down at the resume and still ends decayed. With under
# about 90 s left, skip it: the first call's checkpoint (mid-schedule) is the release.
# What each lease ran is in benchmarks/training/runs.json. Leases 1-4 trained c2f-64-96 beside the
# default, lease 5 the default alone (its issue is resolved; README, "What more compute would buy").
#
# Before the call, on the CPU machine: bash models/before_lease.sh (the training shard, and every model
#   but the warm start out of the tree, which must stay under 64 MiB); call with carry ["gpu"].
# After it, on the CPU machine: models/after_lease.sh evaluates and exports the run from the two
# calls' files (see there), e.g.
#   bash models/after_lease.sh FIRST_FILES SECOND_FILES "H100 (leased) cuda, bf16" c2f-128-192-r1
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
# compiling fails). The coarse-to-fine model at N=128 does several times the default's work a step
# (benchmarks/c2f_scale.py: its synthesis 8.6x the multiply-adds), so expect well under 60 steps/s;
# stage 1 runs no synthesis. Both stages compile, so the first call stops stage 2 at 4.5 minutes.
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
warm_from=ms-128-192-r7 run=c2f-128-192-r1  # released warm start -> new run
widths=n=128,m=192,h2=256,h1=128
seed=6  # the shard's regions and the patches' offsets; a seed no lease has used (lease 5: 2)
fine_minutes=1.75 coarse_minutes=1.25  # stage 1's two parts, each compiling on its own clock
# A format-2 warm start is read from its ONNX package, which needs onnx there (the device image has 1.23).
source_of() { python3 -c "import os, sys; from models.release import release_source; print(os.path.relpath(release_source(sys.argv[1])))" "$1"; }
# GPU utilisation and memory every 5 s: whether one run at batch 64 leaves the GPU idle, which decides
# whether a later lease should raise the batch again (a step costs little more at twice the batch, see above).
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv,noheader -l 5 >"$out/gpu_util.csv" 2>/dev/null &
monitor=$!
# What the call hands back is in $OUT all along: the fp16 weights at every save (each minute) and the
# log every 20 s. A call cut off by the lease's budget (the call's limit can be less than its timeout
# when the machine's start took long) still returns its latest weights instead of nothing. Files come
# back 16 MiB at most: the weights (about 39 MB in fp16) travel in 15 MiB parts, which
# models/after_lease.sh joins. With the logs and gpu_util.csv that is 8 files, the most that come back.
hand_back() {
  [ -e /tmp/a/$run.pt ] && split -b 15M -d /tmp/a/$run.pt "$out/$run.pt.part"
  cp /tmp/a/$run/log.jsonl "$out/$run.jsonl" 2>/dev/null
}
(while sleep 20; do hand_back; done) &
copier=$!
common=(--arch coarse2fine --widths "$widths" --data gpu/train --patch 256 --batch 64 --compile --per-image 64
  --min-scale 1 --seed "$seed" --steps 100000000 --save-minutes 1 --threads 4)
if [ ! -e /tmp/a/$run-entropy/done ]; then  # stage 1 in the paper's order; both parts log to the same two files
  python3 -m models.train "${common[@]}" --stage fine --init-from "$(source_of $warm_from)" --minutes "$fine_minutes" \
    --warmup-steps 100 --lr 5e-4 --decay-from 0.5 --run /tmp/a/$run-fine >"$out/$run-entropy.log" 2>&1
  python3 -m models.train "${common[@]}" --stage entropy --init-from /tmp/a/$run-fine/last.pt --minutes "$coarse_minutes" \
    --warmup-steps 100 --lr 5e-4 --decay-from 0.5 --run /tmp/a/$run-entropy >>"$out/$run-entropy.log" 2>&1 \
    && touch /tmp/a/$run-entropy/done
  cat /tmp/a/$run-fine/log.jsonl /tmp/a/$run-entropy/log.jsonl >"$out/$run-entropy.jsonl"
fi
python3 -m models.train "${common[@]}" --init-from /tmp/a/$run-entropy/last.pt --minutes "$minutes" \
  ${stop:+--stop-minutes "$stop"} --warmup-steps 500 --release-to /tmp/a/$run.pt \
  --lr 3e-4 --decay-from 0.3 --run /tmp/a/$run >"$out/$run.log" 2>&1
kill $monitor $copier 2>/dev/null
hand_back
ls -la "$out"; tail -n 3 "$out"/*.log
