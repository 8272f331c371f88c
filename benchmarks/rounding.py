"""Can a trained model code better by rounding or reconstructing its latents differently? Two
encoder- or decoder-only changes that need no retraining, each against plain rounding:

* RDOQ (encoder only): each element of y - mean goes to whichever neighbouring integer minimises
  lambda * 255^2/3 * w_c * error^2 + bits, where w_c is the pixel squared error per unit^2 of latent
  error of channel c at that quality (Hutchinson estimates, J^T u with Rademacher u, on 8 training crops)
  and alpha scales the distortion term.
* Reconstruction offsets (decoder only): a non-zero symbol k decodes to the mean of its bin under the
  Gaussian the hyperprior predicts (pulled toward the mean), at full or half strength.

    .venv/bin/python benchmarks/rounding.py [--model ID] [--kodak DIR] [--train DIR]

--model defaults to the default model. benchmarks/rounding.json was measured with ms-128-192-r4, the
default then, which has left the zoo: `git checkout db34f08 -- models/zoo/ms-128-192-r4
models/checkpoints/ms-128-192-r4.pt` restores it to reproduce that measurement.

Whole Kodak images, qualities 1..8, estimated bits (the same estimator for every variant), PSNR of the
8-bit output; BD-rate (PCHIP) of each variant against plain rounding. Prints a table and writes
benchmarks/rounding.json. PyTorch (training side), fp32.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.architectures import QUALITIES, MeanScaleHyperprior, lambda_for_quality, padding_multiple
from models.data import image_files, image_tensor, load_rgb
from models.entropy_models import gaussian_likelihood, scale_from_position
from models.release import load_checkpoint, release_source
from service.bench.bd import bd_rate
from service.bench.speed import machine
from service.codec.image_io import psnr
from service.codec.zoo import DEFAULT_MODEL

RDOQ_ALPHAS = (1.0, 2.0, 4.0, 8.0)
OFFSET_STRENGTHS = (1.0, 0.5)


class Latents:
    """y - mean, the predicted scales and the hyper-latent's bits of one image at one quality."""

    def __init__(self, model: MeanScaleHyperprior, x: torch.Tensor, quality: float):
        gain, self.inverse_gain = model.gains(torch.tensor([quality]))
        with torch.no_grad():
            y = model.g_a(x) * gain
            z_hat = torch.round(model.h_a(y))
            self.z_bits = -torch.log2(model.entropy_bottleneck.likelihood(z_hat)).sum().item()
            _, self.mean, position = model.h_s(z_hat)
        self.residual, self.scale = y - self.mean, scale_from_position(position)

    def bits(self, symbols: torch.Tensor) -> torch.Tensor:
        return -torch.log2(gaussian_likelihood(symbols, torch.zeros_like(symbols), self.scale))


def channel_sensitivity(model: MeanScaleHyperprior, crops: list[torch.Tensor], quality: float, probes: int = 2) -> torch.Tensor:
    """Mean over positions and crops of ||J e_i||^2: pixel squared error per unit^2 of latent error."""
    total = torch.zeros(model.widths["m"])
    for x in crops:
        lat = Latents(model, x, quality)
        y_hat = (torch.round(lat.residual) + lat.mean).requires_grad_(True)
        for _ in range(probes):
            x_hat = model.g_s(y_hat * lat.inverse_gain)
            u = torch.randint(0, 2, x_hat.shape).float() * 2 - 1
            (g,) = torch.autograd.grad((x_hat * u).sum(), y_hat)
            total += (g**2).mean(dim=(0, 2, 3)) / probes
    return total / len(crops)


def rdoq(lat: Latents, weight: torch.Tensor, lam: float, alpha: float) -> torch.Tensor:
    low = torch.floor(lat.residual)
    cost = alpha * lam * 255**2 / 3 * weight[None, :, None, None]
    cost_low = cost * (lat.residual - low) ** 2 + lat.bits(low)
    cost_high = cost * (lat.residual - low - 1) ** 2 + lat.bits(low + 1)
    return torch.where(cost_low <= cost_high, low, low + 1)


def bin_mean(symbols: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mean of N(0, scale) over the rounding bin of each symbol (the symbol itself for 0)."""
    a, b = symbols.abs() - 0.5, symbols.abs() + 0.5
    density = lambda t: torch.exp(-0.5 * (t / scale) ** 2)
    cdf = lambda t: 0.5 * torch.erfc(-t / scale * 2**-0.5)
    mass = (cdf(b) - cdf(a)).clamp_min(1e-12)
    magnitude = (scale / math.sqrt(2 * math.pi) * (density(a) - density(b)) / mass).clamp(a, b)
    return torch.where(symbols == 0, symbols, torch.sign(symbols) * magnitude)


def point(model: MeanScaleHyperprior, lat: Latents, symbols: torch.Tensor, decoded: torch.Tensor, rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    with torch.no_grad():
        x_hat = model.g_s((decoded + lat.mean) * lat.inverse_gain)[0, :, :h, :w].clamp(0, 1)
    out = np.rint(x_hat.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    bits = lat.bits(symbols).sum().item() + lat.z_bits
    return np.array([bits / (h * w), psnr(rgb, out)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--train", default=str(ROOT.parent / "shared" / "data" / "train"), help="calibration crops")
    p.add_argument("--out", default=str(Path(__file__).with_name("rounding.json")))
    args = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model, _ = load_checkpoint(release_source(args.model))
    if not isinstance(model, MeanScaleHyperprior):
        raise SystemExit("rounding.py handles mean-scale models (one hyper level, synthesis from y alone)")
    for param in model.parameters():
        param.requires_grad_(False)
    calibration = [p for p in image_files(args.train) if p.name.startswith("imagenet_")]
    multiple = padding_multiple(model)
    crops = [image_tensor(load_rgb(f)[:384, :384], multiple) for f in random.Random(0).sample(calibration, 8)]
    images = [load_rgb(f) for f in image_files(args.kodak)]

    variants = ["round", *(f"RDOQ alpha={a:g}" for a in RDOQ_ALPHAS), *(f"offsets x{s:g}" for s in OFFSET_STRENGTHS)]
    curves = {v: [] for v in variants}
    started = time.time()
    for quality in range(1, QUALITIES + 1):
        lam = lambda_for_quality(torch.tensor([float(quality)])).item()
        weight = channel_sensitivity(model, crops, quality)
        sums = {v: np.zeros(2) for v in variants}
        for rgb in images:
            lat = Latents(model, image_tensor(rgb, multiple), quality)
            rounded = torch.round(lat.residual)
            sums["round"] += point(model, lat, rounded, rounded, rgb)
            for a in RDOQ_ALPHAS:
                symbols = rdoq(lat, weight, lam, a)
                sums[f"RDOQ alpha={a:g}"] += point(model, lat, symbols, symbols, rgb)
            centred = bin_mean(rounded, lat.scale)
            for s in OFFSET_STRENGTHS:
                sums[f"offsets x{s:g}"] += point(model, lat, rounded, rounded + s * (centred - rounded), rgb)
        for v in variants:
            bpp, psnr = sums[v] / len(images)
            curves[v].append({"quality": quality, "bpp": bpp, "psnr": psnr})
        points = "  ".join(f"{v} {c[-1]['bpp']:.4f}/{c[-1]['psnr']:.2f}" for v, c in curves.items())
        print(f"quality {quality}: {points}", flush=True)

    def axes(v):
        return [c["bpp"] for c in curves[v]], [c["psnr"] for c in curves[v]]

    bd = {v: bd_rate(*axes("round"), *axes(v)) for v in variants[1:]}
    print(f"\n{args.model} on Kodak ({len(images)} images), {machine()}; BD-rate PCHIP against plain rounding")
    print("| variant | BD-rate | PSNR change at q1 / q4 / q8 (same symbols for offsets) |\n|---|---|---|")
    for v in variants[1:]:
        d = [curves[v][q - 1]["psnr"] - curves["round"][q - 1]["psnr"] for q in (1, 4, 8)]
        print(f"| {v} | {bd[v]:+.2f}% | " + " / ".join(f"{x:+.2f}" for x in d) + " dB |")
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "model": args.model, "images": len(images),
              "curves": curves, "bd_rate_pchip_vs_round": bd, "seconds": round(time.time() - started)}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
