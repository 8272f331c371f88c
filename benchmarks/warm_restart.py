"""Does continuing a release jolt it? The first steps of a warm-started run, with and without warm-up.

Every lease warm-starts from the last release with a fresh Adam state at full learning rate, and its
training loss rises over the first thousand steps before it falls again (runs/*/log.jsonl). Adam's
first steps move every weight by about the learning rate whatever its gradient, so this measures, from
the default release, the rate-distortion loss on held-out Kodak crops after each of a few hundred
steps' training, per schedule: constant lr 3e-4 (as the leases ran), the same after a linear warm-up,
and lr 1e-4.

    .venv/bin/python benchmarks/warm_restart.py [--model ms-128-192-r5] [--steps 400] [--batch 8]

Training steps are models.train's (bf16 autocast, gradient clipping, 256 px patches from the lease's
shard, the same batches for every schedule); loss is the training objective on rounded latents at
qualities 1, 3, 5 and 7, relative to the release's own. CPU, so the batch is smaller than a lease's.
Prints a table and writes benchmarks/warm_restart.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.architectures import QUALITIES as LADDER
from models.data import PatchPool, random_crops
from models.release import load_checkpoint, release_source
from models.train import backward_step, learning_rate, rd_loss
from service.bench.speed import machine
from service.codec.zoo import DEFAULT_MODEL

QUALITIES = (1.0, 3.0, 5.0, 7.0)
PATCH = 256
SCHEDULES = {"lr 3e-4 (the leases)": (3e-4, 0), "lr 3e-4, 200-step warm-up": (3e-4, 200), "lr 1e-4": (1e-4, 0)}


def held_out_loss(model: torch.nn.Module, crops: np.ndarray) -> np.ndarray:
    model.eval()
    losses = np.array([rd_loss(model, crops, q) for q in QUALITIES])
    model.train()
    return losses


def continue_training(model: torch.nn.Module, pool: PatchPool, lr: float, warmup: int, steps: int, batch: int,
                      checkpoints: list[int], crops: np.ndarray, base: np.ndarray) -> dict[int, float]:
    """Mean relative change of the held-out loss (%) at each checkpoint step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = argparse.Namespace(lr=lr, warmup_steps=warmup, decay_from=1.0)  # models.train's, without decay
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    rng = np.random.default_rng(0)
    q_rng = torch.Generator().manual_seed(0)
    out = {}
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(0.0, step - 1, schedule)
        x = pool.batch(batch, rng, torch.device("cpu"))
        q = torch.empty(batch).uniform_(1, LADDER, generator=q_rng)
        backward_step(model, optimizer, x, q, "mse", autocast)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step in checkpoints:
            out[step] = float(np.mean(held_out_loss(model, crops) / base - 1) * 100)
            print(f"  step {step}: {out[step]:+.2f}%", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--data", default=str(ROOT / "gpu" / "train"), help="the lease's shard (python -m models.shard ...)")
    p.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--out", default=str(Path(__file__).with_name("warm_restart.json")))
    args = p.parse_args()
    torch.set_num_threads(2)
    started = time.time()
    crops = random_crops(args.kodak, PATCH, 4, np.random.default_rng(123))
    pool = PatchPool(args.data, PATCH, 8, 0, ROOT / "runs" / ".cache")
    checkpoints = sorted({args.steps // 8, args.steps // 4, args.steps // 2, args.steps})
    release, _ = load_checkpoint(release_source(args.model))
    base = held_out_loss(release, crops)
    rows = []
    for name, (lr, warmup) in SCHEDULES.items():
        print(name, flush=True)
        model, _ = load_checkpoint(release_source(args.model))
        model.train().to(memory_format=torch.channels_last)  # as models.train runs it
        rows.append({"schedule": name, "lr": lr, "warmup_steps": warmup,
                     "loss_change_percent": continue_training(model, pool, lr, warmup, args.steps, args.batch, checkpoints, crops, base)})

    print(f"\n{args.model}: held-out RD loss change after n steps (batch {args.batch}, {PATCH} px; "
          f"{len(crops)} Kodak crops, qualities {QUALITIES}); {machine()}")
    print("| schedule | " + " | ".join(f"step {s}" for s in checkpoints) + " |")
    print("|---|" + "---|" * len(checkpoints))
    for row in rows:
        print(f"| {row['schedule']} | " + " | ".join(f"{row['loss_change_percent'][s]:+.2f}%" for s in checkpoints) + " |")
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "model": args.model, "batch": args.batch, "patch": PATCH,
              "kodak_crops": len(crops), "qualities": QUALITIES, "base_loss": base.tolist(), "rows": rows,
              "seconds": round(time.time() - started)}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
