"""Where a model's high-quality end saturates: quantisation or the transforms?

For each checkpoint, on Kodak, at the top quality: PSNR of the real decoder input (latents rounded,
as coded) against the same latents left unquantised. If the two are close, more rate cannot buy
more quality: the analysis/synthesis transforms are the ceiling, and only a wider model (or more
training of the transforms) lifts it.

    .venv/bin/python benchmarks/latent_ceiling.py [--kodak DIR] models/zoo/ms-64-96-r3 models/zoo/ms-128-192-r7

(a checkpoint, or a format-2 package's folder). benchmarks/latent_ceiling.json holds ms-64-96-r2's
checkpoint (now in git history) and the default; an
earlier run also had ms-64-96.pt (33.0 coded, 33.1 unquantised: `git show 0cd9e13:benchmarks/latent_ceiling.json`).

Models whose synthesis is g_s alone (factorized, hyperprior, mean-scale). Prints a table and writes
benchmarks/latent_ceiling.json. PyTorch (training side), fp32.
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
from models.data import image_files, load_rgb
from models.release import load_checkpoint
from service.bench.speed import machine
from service.codec.image_io import psnr


def psnr8(reference: np.ndarray, x_hat: torch.Tensor) -> float:
    """PSNR of the 8-bit output, as the codec delivers it."""
    return psnr(reference, np.clip(np.rint(x_hat[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8))


@torch.no_grad()
def ceiling(checkpoint: Path, files: list[Path], quality: float) -> dict:
    model, _ = load_checkpoint(checkpoint)
    if model.synthesis_features:
        raise SystemExit(f"{checkpoint}: the synthesis also reads hyper features; only g_s-only models are supported")
    model.eval()
    coded, unquantised = [], []
    for path in files:
        rgb = load_rgb(path)
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
        coded.append(psnr8(rgb, model(x, torch.tensor([quality]), noise=False)["x_hat"]))
        gain, inverse_gain = model.gains(torch.tensor([quality]))
        y = model.g_a(x) * gain
        unquantised.append(psnr8(rgb, model.g_s(y * inverse_gain)))
    return {"checkpoint": checkpoint.name, "quality": quality, "psnr_coded": float(np.mean(coded)),
            "psnr_unquantised": float(np.mean(unquantised))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--quality", type=float, default=8.0)
    p.add_argument("--out", default=str(Path(__file__).with_name("latent_ceiling.json")))
    args = p.parse_args()
    torch.set_num_threads(2)
    files = image_files(args.kodak)
    rows = [ceiling(c, files, args.quality) for c in args.checkpoints]
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "images": len(files), "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"Kodak ({len(files)} images), quality {args.quality:g}: mean PSNR (dB) of the decoded image")
    print("| checkpoint | latents rounded (coded) | latents unquantised | headroom |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['checkpoint']} | {r['psnr_coded']:.2f} | {r['psnr_unquantised']:.2f} | {r['psnr_unquantised'] - r['psnr_coded']:+.2f} |")


if __name__ == "__main__":
    main()
