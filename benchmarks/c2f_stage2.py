"""How the coarse-to-fine model warm-started from the default moves through end-to-end training (issue 26).

``models/gpu_lease.sh`` trains ``c2f-128-192`` in two stages from the default ``ms-128-192-r7``: stage 1
fits a fresh two-level entropy model to the frozen default's latents (``lic train --stage entropy``),
stage 2 trains everything end to end, where the aggregation network can learn to use the hyper
features. The warm start makes the new synthesis compute the default's exactly, so stage 2 starts at
the default's distortion and stage 1's rate. This rates checkpoints along stage 2 beside the default:

* estimated rate-distortion (-log2 likelihoods of the rounded latents, PSNR of the rounded 8-bit
  output) of whole images at qualities 1, 2, 4, 6 and 8, and the BD-rate against the default's;
* where the bits go at qualities 1, 4 and 8: bits per pixel of each level and the share of each
  hyper-latent's symbols that are not zero (z2 has eight times the default's z symbols per pixel, so
  compare its share with care; benchmarks/c2f_opening.py counts per pixel and what they are worth to y).

    .venv/bin/python benchmarks/c2f_stage2.py runs/c2f-128-192-s1/last.pt runs/c2f-128-192-s2/step-*.pt

takes about 4 minutes a coarse-to-fine checkpoint on 2 cores (its synthesis does 8.6x the default's
multiply-adds), prints the table and writes benchmarks/c2f_stage2.json.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.c2f_prior import level_budget
from models.architectures import VariableRateCodec, padding_multiple
from models.data import image_files, image_tensor, load_rgb
from models.release import load_checkpoint, release_source
from service.bench.bd import bd_rate

REFERENCE = "ms-128-192-r7"
DATA = ROOT.parent / "shared" / "data"
QUALITIES = (1, 2, 4, 6, 8)
BUDGET_QUALITIES = (1, 4, 8)
SETS = {"Kodak (first 6)": (DATA / "kodak", 6), "hires (first 2)": (DATA / "hires", 2)}


@torch.no_grad()
def point(model: VariableRateCodec, rgb: np.ndarray, q: float) -> dict:
    """One whole image at quality q: total bpp, PSNR, and per level (bpp, share of non-zero symbols)."""
    h, w = rgb.shape[:2]
    x = image_tensor(rgb, padding_multiple(model))
    gain, inverse_gain = model.gains(torch.tensor([q]))
    coded = model.rate(model.g_a(x) * gain, noise=False, straight_through=False)
    x_hat = model.synthesize(coded.decoded["y"] * inverse_gain, coded.features)[..., :h, :w]
    x_hat = (x_hat.clamp(0, 1) * 255).round() / 255
    mse = F.mse_loss(x_hat, x[..., :h, :w]).item()
    levels = level_budget(coded, h * w)
    return {"bpp": sum(b for b, _ in levels.values()), "psnr": 10 * math.log10(1 / max(mse, 1e-12)), "levels": levels}


def curve(model: VariableRateCodec, images: list[np.ndarray]) -> list[dict]:
    """Mean over the images, per quality: bpp, PSNR (of the mean MSE) and the per-level budget."""
    out = []
    for q in QUALITIES:
        points = [point(model, rgb, float(q)) for rgb in images]
        mse = float(np.mean([10 ** (-p["psnr"] / 10) for p in points]))
        levels = {lv: {"bpp": float(np.mean([p["levels"][lv][0] for p in points])),
                       "nonzero": float(np.mean([p["levels"][lv][1] for p in points]))} for lv in points[0]["levels"]}
        out.append({"quality": q, "bpp": float(np.mean([p["bpp"] for p in points])), "psnr": -10 * math.log10(mse),
                    "levels": levels})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path, help="coarse2fine run checkpoints warm-started from the default")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "c2f_stage2.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models: dict[str, VariableRateCodec] = {}
    checkpoints = []
    for path in args.checkpoints:
        model, state = load_checkpoint(path)
        name = f"{path.parent.name} step {state['step']}"
        models[name] = model.eval()
        checkpoints.append({"model": name, "path": str(path), "step": state["step"], "stage": state["args"].get("stage", "all"),
                            "hours": state["elapsed"] / 3600, "config": state["config"]})
    models[REFERENCE] = load_checkpoint(release_source(REFERENCE))[0].eval()
    width = max(map(len, models))
    sets = {}
    for set_name, (folder, count) in SETS.items():
        files = image_files(folder)[:count]
        images = [load_rgb(f) for f in files]
        curves = {name: curve(model, images) for name, model in models.items()}
        ref = curves[REFERENCE]
        print(f"\n{set_name}: {'model':{width}}  BD-rate vs default   bpp @ q{'/'.join(map(str, QUALITIES))}   PSNR")
        rows = []
        for name, points in curves.items():
            bd = bd_rate([r["bpp"] for r in ref], [r["psnr"] for r in ref], [r["bpp"] for r in points], [r["psnr"] for r in points])
            rows.append({"model": name, "bd_rate_vs_default": bd, "curve": points})
            print(f"  {name:{width}}  {bd:+7.2f}%   " + " ".join(f"{r['bpp']:.3f}" for r in points)
                  + "   " + " ".join(f"{r['psnr']:.2f}" for r in points))
        for q in BUDGET_QUALITIES:
            for name, points in curves.items():
                levels = next(r for r in points if r["quality"] == q)["levels"]
                print(f"  q{q} {name:{width}}  " + "  ".join(
                    f"{lv} {v['bpp']:.4f}" + (f" ({v['nonzero']:.0%})" if lv != "y" else "") for lv, v in levels.items()))
        sets[set_name] = {"images": [f.name for f in files], "rows": rows}
    report = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
              "reference": REFERENCE, "checkpoints": checkpoints, "qualities": QUALITIES,
              "rate": "estimated bits of rounded latents, whole images, mean over the images; PSNR of the mean MSE",
              "sets": sets}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
