"""Is training limited by its data? The rate-distortion loss of each release on the very patches the
leased-GPU runs trained on, against random crops of Kodak, which no run has seen.

    .venv/bin/python benchmarks/generalisation.py [--models ms-128-192,ms-128-192-r3,ms-128-192-r4,...]

The default --models are the releases benchmarks/generalisation.json was measured with, which have since
left the zoo (only current releases are in the tree): restore each first with
`git checkout db34f08 -- models/zoo/ID models/checkpoints/ID.pt` (and delete them again after), or name
releases that are in the zoo.

The training pool is rebuilt exactly as `models/gpu_lease.sh` builds it (the shard in gpu/train, 256 px
patches, --per-image and --seed as there). If a model were memorising that pool, each release would
gain more on it than on Kodak. Loss per sample is the training objective, lambda(q) * 255^2 * MSE + bpp
(estimated bits of the rounded latents), at qualities 1, 3, 5 and 7. Prints a table and writes
benchmarks/generalisation.json. PyTorch (training side), fp32.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.data import PatchPool, random_crops
from models.release import load_checkpoint, release_source
from models.train import rd_loss
from service.bench.speed import machine

EVAL_QUALITIES = (1.0, 3.0, 5.0, 7.0)
PATCH = 256


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="ms-128-192,ms-128-192-r3,ms-128-192-r4,c2f-64-96-r3,c2f-64-96-r5,c2f-64-96-r6",
                   help="releases in training order; each is compared with the one before it of the same architecture")
    p.add_argument("--data", default=str(ROOT / "gpu" / "train"), help="the lease's shard (python -m models.shard ...)")
    p.add_argument("--per-image", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=192, help="training patches scored")
    p.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--out", default=str(Path(__file__).with_name("generalisation.json")))
    args = p.parse_args()
    missing = [m for m in args.models.split(",") if not release_source(m).exists()]
    if missing:
        p.error(f"not in the tree: {', '.join(missing)} (restore with git checkout db34f08 -- models/zoo/ID models/checkpoints/ID.pt)")
    torch.set_num_threads(2)
    rng = np.random.default_rng(123)
    pool = PatchPool(args.data, PATCH, args.per_image, args.seed, ROOT / "runs" / ".cache")
    sets = {
        "training patches": pool.patches[np.sort(rng.choice(len(pool.patches), args.samples, replace=False))],
        "Kodak crops": random_crops(args.kodak, PATCH, 8, rng),
    }
    started = time.time()
    rows = []
    for name in args.models.split(","):
        model, state = load_checkpoint(release_source(name))
        losses = {s: [rd_loss(model, patches, q) for q in EVAL_QUALITIES] for s, patches in sets.items()}
        rows.append({"model": name, "config": state["config"], "losses": losses})
        print(name, {s: [round(v, 4) for v in ls] for s, ls in losses.items()}, flush=True)

    print(f"\nRD loss change from one release to the next (negative is better), qualities {EVAL_QUALITIES}; {machine()}")
    print("| from | to | " + " | ".join(f"{s}, q{q:g}" for s in sets for q in EVAL_QUALITIES) + " |")
    print("|---|---|" + "---|" * len(sets) * len(EVAL_QUALITIES))
    for before, after in itertools.pairwise(rows):
        if before["config"] != after["config"]:
            continue
        change = {s: [100 * (a / b - 1) for a, b in zip(after["losses"][s], before["losses"][s])] for s in sets}
        after["change_from_previous_pct"] = change
        cells = " | ".join(f"{c:+.2f}%" for s in sets for c in change[s])
        print(f"| {before['model']} | {after['model']} | {cells} |")
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "qualities": EVAL_QUALITIES,
              "pool": {"data": Path(args.data).name, "patch": PATCH, "per_image": args.per_image, "seed": args.seed,
                       "patches": len(pool.patches), "scored": args.samples},
              "kodak_crops": len(sets["Kodak crops"]), "rows": rows, "seconds": round(time.time() - started)}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
