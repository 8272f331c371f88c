"""What does the coarse-to-fine hyper path carry, and what is it worth to y? Checkpoints along runs (issue 26).

Per checkpoint, at qualities 1, 4 and 8, on the first 6 Kodak images (whole images, rounded latents,
estimated bits): bits per pixel per level and in all; per hyper-latent the share of its symbols that
are not zero and the non-zero symbols per 1,000 pixels; and y's bits under its own per-channel symbol
frequencies (``factorized_bits``: an ideal code without side information, fitted to each image, its
tables not counted). What the side information saves y is that reference less y's coded bits.

Why both counts: z2 has 256 channels at 1/32 of the image's side, eight times the symbols per pixel of
the default's z (128 at 1/64), so a share of z2 that looks all but closed (1.5% non-zero) is as many
non-zero symbols per pixel as the default's z at 12%. Read by shares, the CPU runs' hyper path "closed";
read by bits and symbols per pixel, it carries about as much as the default's; what it lacks is worth to y
(docs/training.md, "What the hyper path carries"). A fine-first stage's checkpoint (``--stage fine``) is
rated as it trained: y and z2 under its own density, without z1.

    .venv/bin/python benchmarks/c2f_opening.py --label "fine stage" runs/c2f-fine-h256/snap-*.pt

rates the checkpoints in the order given (a new stage counts its steps from 0), about 15 s each on 2
cores; replaces the label's rows in benchmarks/c2f_opening.json (the other runs stay), prints the table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.c2f_prior import level_budget, rate_pass
from models.architectures import VariableRateCodec
from models.data import image_files, load_rgb
from models.fine_first import FineFirst, fine_stage
from models.release import load_checkpoint

KODAK = ROOT.parent / "shared" / "data" / "kodak"
QUALITIES = (1, 4, 8)


def factorized_bits(y: torch.Tensor) -> float:
    """Bits of the rounded latent (1, C, H, W) under the image's own per-channel symbol frequencies: what
    an ideal code without side information (a factorized model fitted to this very image) would spend."""
    total = 0.0
    for channel in torch.round(y[0]).flatten(1):
        counts = torch.unique(channel, return_counts=True)[1].double()
        total -= (counts * torch.log2(counts / counts.sum())).sum().item()
    return total


def image_rates(model: VariableRateCodec, rgb: np.ndarray, q: float,
                fine: FineFirst | None) -> tuple[dict[str, tuple[float, float]], float]:
    """One whole image at quality q: per level (bits per pixel, share of non-zero symbols), and the bits
    per pixel of y under its own per-channel frequencies (``factorized_bits``)."""
    coded, pixels = rate_pass(model, rgb, q, fine)
    return level_budget(coded, pixels), factorized_bits(coded.latents["y"]) / pixels


def rate_checkpoint(path: Path, images: list[np.ndarray]) -> dict:
    model, state = load_checkpoint(path)
    model.eval()
    fine = fine_stage(model, state)
    shapes = {level.name: level for level in model.levels()}
    rows = []
    for q in QUALITIES:
        rated = [image_rates(model, rgb, float(q), fine) for rgb in images]
        levels = {}
        for lv in rated[0][0]:  # coarsest first
            bpp, nonzero = (float(np.mean([budget[lv][i] for budget, _ in rated])) for i in range(2))
            per_kpixel = 1000 * nonzero * shapes[lv].channels / shapes[lv].stride**2
            levels[lv] = {"bpp": bpp, "nonzero": nonzero, "nonzero_per_kpixel": per_kpixel}
        rows.append({"quality": q, "bpp": sum(v["bpp"] for v in levels.values()), "levels": levels,
                     "y_factorized_bpp": float(np.mean([factorized for _, factorized in rated]))})
    return {"path": str(path), "step": state.get("step"), "config": state.get("config"), "qualities": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--label", required=True, help="the run's name in the table and the JSON")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "c2f_opening.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = [load_rgb(f) for f in image_files(KODAK)[:6]]
    report = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    report["rate"] = ("estimated bits of rounded latents, whole images, mean over the first 6 Kodak images; "
                      "y_factorized_bpp: y's bits under each image's own per-channel symbol frequencies")
    report["machine"] = f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"
    rated = [rate_checkpoint(path, images) for path in args.checkpoints]  # as given: a new stage counts from 0
    kept = [r for r in report["runs"] if r["label"] != args.label]
    report["runs"] = kept + [{"label": args.label, **r} for r in rated]
    print(f"{args.label}: step, then per quality: bpp in all; side bpp (hyper-latents, all levels); "
          "non-zero symbols per 1,000 pixels of the level above y; what the side information saves y, bpp")
    for r in rated:
        cells = []
        for row in r["qualities"]:
            levels = row["levels"]
            side = sum(v["bpp"] for lv, v in levels.items() if lv != "y")
            above = [lv for lv in levels if lv != "y"][-1]
            saved = row["y_factorized_bpp"] - levels["y"]["bpp"]
            cells.append(f"q{row['quality']} {row['bpp']:.3f} side {side:.4f} {above} {levels[above]['nonzero_per_kpixel']:4.1f} saves {saved:.3f}")
        print(f"{r['step']:>6}  " + " | ".join(cells))
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
