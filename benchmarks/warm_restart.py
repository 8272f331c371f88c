"""Does continuing a release jolt it? The first steps of a warm-started run, with and without warm-up.

Every lease warm-starts from the last release with a fresh Adam state at full learning rate, and its
training loss rises over the first thousand steps before it falls again (runs/*/log.jsonl). Adam's
first steps move every weight by about the learning rate whatever its gradient, so this measures, from
the default release, the rate-distortion loss on held-out Kodak crops after each of a few hundred
steps' training, per schedule: constant lr 3e-4 (as the leases ran), the same after a linear warm-up,
and lr 1e-4. Three more rows ask whether the decoder side alone gains from a fine-tune, the encoder
(g_a, h_a, the gains) frozen: once on the usual objective, and twice on the rounded latents the codec
really codes ("soft then hard", Guo et al. 2021: rates of the rounded symbols, no straight-through
gradients, so a predicted mean learns from the distortion too).

    .venv/bin/python benchmarks/warm_restart.py [--model ID] [--steps 400] [--batch 8] [--schedule NAME ...]

--model defaults to the default model. benchmarks/warm_restart.json was measured with ms-128-192-r5, the
default then, which has left the zoo: `git checkout db34f08 -- models/checkpoints/ms-128-192-r5.pt` restores
it to reproduce or extend that measurement (rows are kept only from a file of the same model and setup).

Training steps are models.train's (bf16 autocast, gradient clipping, 256 px patches from the lease's
shard, the same batches for every schedule); loss is the training objective on rounded latents at
qualities 1, 3, 5 and 7, relative to the release's own. CPU, so the batch is smaller than a lease's.
Prints a table and writes benchmarks/warm_restart.json; --schedule (repeatable) reruns the rows named and keeps the others.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
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
ENCODER = ("g_a.", "h_a", "log_gain")  # parameter names of the encoder side, frozen by decoder-side fine-tunes


@dataclass(frozen=True)
class Schedule:
    lr: float
    warmup_steps: int = 0
    decoder_only: bool = False
    rounded: bool = False  # train on the rounded latents' rates, without straight-through gradients


SCHEDULES = {
    "lr 3e-4 (the leases)": Schedule(3e-4),
    "lr 3e-4, 200-step warm-up": Schedule(3e-4, 200),
    "lr 1e-4": Schedule(1e-4),
    "lr 1e-4, decoder side only": Schedule(1e-4, decoder_only=True),
    "lr 1e-4, decoder side only, rounded latents": Schedule(1e-4, decoder_only=True, rounded=True),
    "lr 3e-5, decoder side only, rounded latents": Schedule(3e-5, decoder_only=True, rounded=True),
}


def held_out_loss(model: torch.nn.Module, crops: np.ndarray) -> np.ndarray:
    model.eval()
    losses = np.array([rd_loss(model, crops, q) for q in QUALITIES])
    model.train()
    return losses


def continue_training(model: torch.nn.Module, pool: PatchPool, plan: Schedule, steps: int, batch: int,
                      checkpoints: list[int], crops: np.ndarray, base: np.ndarray) -> dict[int, list[float]]:
    """Relative change of the held-out loss (%) at each checkpoint step: the mean, then per quality."""
    for name, p in model.named_parameters():
        p.requires_grad_(not (plan.decoder_only and name.startswith(ENCODER)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=plan.lr)
    schedule = argparse.Namespace(lr=plan.lr, warmup_steps=plan.warmup_steps, decay_from=1.0)  # models.train's, without decay

    def net(x: torch.Tensor, q: torch.Tensor, synthesize: bool) -> dict[str, torch.Tensor]:
        return model(x, q, noise=not plan.rounded, straight_through=not plan.rounded, synthesize=synthesize)

    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    rng = np.random.default_rng(0)
    q_rng = torch.Generator().manual_seed(0)
    out = {}
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(0.0, step - 1, schedule)
        x = pool.batch(batch, rng, torch.device("cpu"))
        q = torch.empty(batch).uniform_(1, LADDER, generator=q_rng)
        backward_step(net, optimizer, x, q, "mse", autocast)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step in checkpoints:
            change = (held_out_loss(model, crops) / base - 1) * 100
            out[step] = [float(change.mean()), *map(float, change)]
            print(f"  step {step}: {change.mean():+.2f}% (per quality {np.round(change, 2).tolist()})", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--data", default=str(ROOT / "gpu" / "train"), help="the lease's shard (python -m models.shard ...)")
    p.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--out", default=str(Path(__file__).with_name("warm_restart.json")))
    p.add_argument("--schedule", action="append", choices=list(SCHEDULES),
                   help="a row to (re)run, repeatable; the others are kept from --out (default: all)")
    args = p.parse_args()
    names = args.schedule or list(SCHEDULES)
    torch.set_num_threads(2)
    crops = random_crops(args.kodak, PATCH, 4, np.random.default_rng(123))
    pool = PatchPool(args.data, PATCH, 8, 0, ROOT / "runs" / ".cache")
    checkpoints = sorted({args.steps // 8, args.steps // 4, args.steps // 2, args.steps})
    release, _ = load_checkpoint(release_source(args.model))
    base = held_out_loss(release, crops)
    setup = {"model": args.model, "steps": args.steps, "batch": args.batch, "patch": PATCH, "kodak_crops": len(crops),
             "qualities": list(QUALITIES)}
    kept = {}
    if Path(args.out).exists():
        previous = json.loads(Path(args.out).read_text())
        if {k: previous.get(k) for k in setup} == setup:
            kept = {row["schedule"]: row for row in previous["rows"] if row["schedule"] not in names}
    fresh = {}
    for name in names:
        print(name, flush=True)
        model, _ = load_checkpoint(release_source(args.model))
        model.train().to(memory_format=torch.channels_last)  # as models.train runs it
        change = continue_training(model, pool, SCHEDULES[name], args.steps, args.batch, checkpoints, crops, base)
        fresh[name] = {"schedule": name, **asdict(SCHEDULES[name]), "date": time.strftime("%Y-%m-%d"),
                       "loss_change_percent": {str(k): v[0] for k, v in change.items()},
                       "loss_change_percent_per_quality": {str(k): v[1:] for k, v in change.items()}}
    merged = kept | fresh
    rows = [merged[name] for name in SCHEDULES if name in merged]

    print(f"\n{args.model}: held-out RD loss change after n steps (batch {args.batch}, {PATCH} px; "
          f"{len(crops)} Kodak crops, qualities {QUALITIES}); {machine()}")
    print("| schedule | " + " | ".join(f"step {s}" for s in checkpoints) + " |")
    print("|---|" + "---|" * len(checkpoints))
    for row in rows:
        print(f"| {row['schedule']} | " + " | ".join(f"{row['loss_change_percent'][str(s)]:+.2f}%" for s in checkpoints) + " |")
    report = {"machine": machine(), **setup, "base_loss": base.tolist(), "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
