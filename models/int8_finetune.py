"""Quantisation-aware fine-tune of a release's synthesis, for int8 decoding.

    .venv/bin/python -m models.int8_finetune [--model ms-128-192-r6] [--minutes 40] [--out runs/int8-qat/g_s.pt] [--init PATH]

onnxruntime's static int8 g_s (benchmarks/int8.py) rounds the weights of g_s's inner transposed
convolutions per output channel, and both the IGDN outputs they read and the outputs they write (which
IGDN reads) to uint8 over one range per tensor; the activations cost most (benchmarks/int8_error.py). Here g_s alone learns to work through that
rounding: the release's encoder, entropy model and latents stay as they are (so do the bitstreams), and
g_s is trained on the run time's own decoded latents of training crops, at every quality, to minimise
the distortion term of the release's rate-distortion loss (lambda_q * 255^2 * MSE) with the rounding
simulated in the forward pass and passed straight through in the backward pass. The activation ranges
follow the batch's 0.001 and 99.999 percentiles (an exponential moving average), as the calibration of
the fine-tuned graph will find them. Writes the fine-tuned g_s state (``--out``) with its facts;
``benchmarks/int8.py --synthesis`` exports, quantises and rates it.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.architectures import lambda_for_quality, ste_round
from models.data import image_files, load_rgb
from models.release import load_package
from service.codec import Codec
from service.codec.zoo import DEFAULT_MODEL, load_model

ROOT = Path(__file__).resolve().parents[1]
PERCENTILE = 99.999  # the calibration's (benchmarks/int8.py)
WEIGHT_BITS = 8


def quantize_weight(w: torch.Tensor, bits: int = WEIGHT_BITS) -> torch.Tensor:
    """Symmetric int per output channel (dimension 1 of a transposed convolution's weight)."""
    top = 2 ** (bits - 1) - 1
    step = w.detach().abs().amax(dim=(0, 2, 3), keepdim=True).clamp(min=1e-12) / top
    return ste_round(w / step).clamp(-top - 1, top) * step


class ActivationRange:
    """uint8 over one asymmetric range per tensor (holding 0), tracked as a moving average of the
    batches' percentiles."""

    def __init__(self, momentum: float = 0.05):
        self.momentum, self.lo, self.hi = momentum, None, None

    def __call__(self, x: torch.Tensor, update: bool) -> torch.Tensor:
        if update or self.lo is None:
            sample = x.detach().flatten()[::13].float()
            lo = torch.quantile(sample, 1 - PERCENTILE / 100).clamp(max=0)
            hi = torch.quantile(sample, PERCENTILE / 100).clamp(min=0)
            m = 1.0 if self.lo is None else self.momentum
            self.lo = lo if self.lo is None else (1 - m) * self.lo + m * lo
            self.hi = hi if self.hi is None else (1 - m) * self.hi + m * hi
        step = ((self.hi - self.lo) / 255).clamp(min=1e-12)
        zero = torch.round(-self.lo / step)
        return (torch.clamp(ste_round(x / step) + zero, 0, 255) - zero) * step


class Int8Synthesis(torch.nn.Module):
    """g_s (an nn.Sequential of transposed convolutions and IGDN) with its inner transposed
    convolutions (not the first, reading the latent, nor the last, writing the pixels) in simulated int8:
    input, weights and output rounded, as onnxruntime's QDQ graph runs them."""

    def __init__(self, g_s: torch.nn.Sequential):
        super().__init__()
        self.g_s = g_s
        deconvs = [i for i, layer in enumerate(g_s) if isinstance(layer, torch.nn.ConvTranspose2d)]
        self.quantized = {i: (ActivationRange(), ActivationRange()) for i in deconvs[1:-1]}  # input, output

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        x = y_hat
        for i, layer in enumerate(self.g_s):
            if i in self.quantized:
                read, write = self.quantized[i]
                x = F.conv_transpose2d(read(x, self.training), quantize_weight(layer.weight), layer.bias,
                                       layer.stride, layer.padding, layer.output_padding)
                x = write(x, self.training)
            else:
                x = layer(x)
        return x


def training_crops(folders: list[Path], size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random size x size crops, one per draw of a photo at least ``size`` on its short side."""
    photos = [p for folder in folders for p in image_files(folder)]
    crops: list[np.ndarray] = []
    while len(crops) < count:
        rgb = load_rgb(photos[int(rng.integers(len(photos)))])
        h, w = rgb.shape[:2]
        if min(h, w) >= size:
            y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
            crops.append(rgb[y : y + size, x : x + size])
    return crops


def latent_pool(model_id: str, crops: list[np.ndarray], rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(pixels in [0, 1], the run time's decoded g_s feed, quality) per crop, at an integer quality drawn per crop."""
    coder = Codec().coder(model_id)
    pool = []
    for crop in crops:
        x = (crop.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
        quality = np.array([float(rng.integers(1, 9))], np.float32)
        _, latents = coder.encode(coder.analyze(x), quality)
        pool.append((x[0], coder.synthesis_feeds(latents, quality)["y_hat"][0], float(quality[0])))
    return pool


def distortion(x_hat: torch.Tensor, x: torch.Tensor, lambdas: torch.Tensor) -> torch.Tensor:
    """The rate-distortion loss's distortion term: mean over the batch of lambda_q * 255^2 * MSE."""
    return (lambdas * 255**2 * ((x_hat.clamp(0, 1) - x) ** 2).mean(dim=(1, 2, 3))).mean()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = ROOT.parent / "shared" / "data"
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--data", type=Path, nargs="+", default=[shared / "train-hires", shared / "train"])
    p.add_argument("--crops", type=int, default=1024)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--minutes", type=float, default=40.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "int8-qat" / "g_s.pt")
    p.add_argument("--init", type=Path, help="continue from this fine-tuned g_s (a previous --out) instead of the release's")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    start = time.time()
    model, _ = load_package(load_model(args.model).directory)
    if args.init:
        model.g_s.load_state_dict(torch.load(args.init, map_location="cpu")["g_s"])
    pool = latent_pool(args.model, training_crops(args.data, args.patch, args.crops, rng), rng)
    held_out, pool = pool[:32], pool[32:]
    print(f"{len(pool)} training and {len(held_out)} held-out crops in {time.time() - start:.0f} s", flush=True)

    synthesis = Int8Synthesis(model.g_s).train()
    optimizer = torch.optim.Adam(model.g_s.parameters(), lr=args.lr)

    def batch(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y_hat, q = zip(*items)
        lambdas = lambda_for_quality(torch.tensor(q))
        return torch.from_numpy(np.stack(x)), torch.from_numpy(np.stack(y_hat)), lambdas

    def held_out_loss(decode: torch.nn.Module = synthesis) -> float:
        synthesis.eval()
        with torch.no_grad():
            losses = [float(distortion(decode(y), x, lam)) for x, y, lam in
                      (batch(held_out[i : i + 8]) for i in range(0, len(held_out), 8))]
        synthesis.train()
        return float(np.mean(losses))

    # Warm the activation ranges up before the first step, so the first gradients see sensible rounding.
    with torch.no_grad():
        for i in range(0, min(len(pool), 64), args.batch):
            synthesis(batch(pool[i : i + args.batch])[1])
        float_loss = held_out_loss(model.g_s)
    print(f"held-out distortion of the starting g_s in float: {float_loss:.4f}", flush=True)
    log = [{"step": 0, "seconds": 0.0, "held_out_distortion": held_out_loss()}]
    print(log[-1], flush=True)
    budget, t0, step = 60 * args.minutes, time.time(), 0
    while time.time() - t0 < budget:
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (time.time() - t0) / budget)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y_hat, lambdas = batch([pool[int(i)] for i in rng.integers(len(pool), size=args.batch)])
        loss = distortion(synthesis(y_hat), x, lambdas)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            log.append({"step": step, "seconds": round(time.time() - t0, 1), "held_out_distortion": held_out_loss()})
            print(log[-1], flush=True)
    log.append({"step": step, "seconds": round(time.time() - t0, 1), "held_out_distortion": held_out_loss()})
    print(log[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    facts = {"model": args.model, "steps": step, "minutes": round((time.time() - t0) / 60, 1), "batch": args.batch,
             "patch": args.patch, "lr": args.lr, "crops": len(pool), "weight_bits": WEIGHT_BITS, "percentile": PERCENTILE,
             "held_out_float_distortion": float_loss,
             "init": str(args.init) if args.init else None, "data": [str(d) for d in args.data], "log": log}
    torch.save({"g_s": model.g_s.state_dict(), "facts": facts}, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(facts, indent=1) + "\n")


if __name__ == "__main__":
    main()
