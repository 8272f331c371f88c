"""Quantisation-aware fine-tune of a release's analysis or synthesis, for int8 encoding or decoding.

    .venv/bin/python -m models.int8_finetune --transform g_a|g_s [--model ms-128-192-r7] [--minutes 40] [--out runs/int8-qat/g_s.pt] [--init PATH]

onnxruntime's static int8 (the twins of models/quantize.py, rated by benchmarks/int8.py) rounds the
weights of one spatial convolution per output channel (the one doing most of the arithmetic: g_a's
second, g_s's third transposed one), and both the activations it reads and the outputs it writes
((I)GDN reads them) to uint8 over one range per tensor; the activations cost most
(benchmarks/int8_error.py). Here one transform learns to work through that rounding, simulated in the
forward pass and passed straight through in the backward pass, with the activation ranges following the
batch's 0.001 and 99.999 percentiles (an exponential moving average), as the calibration of the
fine-tuned graph will find them:
- ``g_s``: the rest of the release stays (so do the bitstreams); g_s is trained on the run time's own
  decoded latents of training crops, at every quality, to minimise the distortion term of the release's
  rate-distortion loss (lambda_q * 255^2 * MSE).
- ``g_a``: the decoder (g_s, h_s, the entropy models, the quality gains) stays, so every decoder reads
  the new encoder's bitstreams as before; g_a (simulated int8) and h_a (float) are trained on the
  release's full rate-distortion loss (noisy rates, straight-through rounded latents), at qualities drawn
  from [1, 8].
Writes the fine-tuned states (``--out``) with their facts; ``benchmarks/int8.py --finetuned`` exports,
quantises and rates them.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.architectures import QUALITIES, VariableRateCodec, lambda_for_quality, ste_round
from models.data import image_files, load_rgb
from models.release import load_package
from models.quantize import CALIBRATION_PERCENTILE as PERCENTILE
from models.quantize import WEIGHT_BITS
from models.train import distortion_term
from service.codec import Codec
from service.codec.zoo import DEFAULT_MODEL, load_model

ROOT = Path(__file__).resolve().parents[1]
# Which spatial convolutions are int8: the one doing most of the transform's arithmetic, as the shipped
# twins have it (models.quantize.int8_convolutions; the fine-tunes of docs/training.md rounded every inner one).
QUANTIZED = {"g_a": slice(1, 2), "g_s": slice(2, 3)}
TRAINED = {"g_a": ("g_a", "h_a"), "g_s": ("g_s",)}  # what each fine-tune trains: the encoder side, or the synthesis


def quantize_weight(w: torch.Tensor, axis: int, bits: int = WEIGHT_BITS) -> torch.Tensor:
    """Symmetric int per output channel (``axis``: 0 for a convolution's weight, 1 for a transposed one's)."""
    top = 2 ** (bits - 1) - 1
    dims = tuple(d for d in range(w.dim()) if d != axis)
    step = w.detach().abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / top
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


class Int8Simulation(nn.Module):
    """A transform (an nn.Sequential of convolutions or transposed convolutions, and (I)GDN) with the
    spatial convolutions ``which`` selects (a slice of them, in order) in simulated int8: input, weights
    and output rounded, as onnxruntime's QDQ graph runs them."""

    def __init__(self, layers: nn.Sequential, which: slice):
        super().__init__()
        self.layers = layers
        convs = [i for i, layer in enumerate(layers) if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))]
        self.quantized = {i: (ActivationRange(), ActivationRange()) for i in convs[which]}  # input, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            if i not in self.quantized:
                x = layer(x)
                continue
            read, write = self.quantized[i]
            x = read(x, self.training)
            if isinstance(layer, nn.ConvTranspose2d):
                x = F.conv_transpose2d(x, quantize_weight(layer.weight, 1), layer.bias, layer.stride, layer.padding, layer.output_padding)
            else:
                x = F.conv2d(x, quantize_weight(layer.weight, 0), layer.bias, layer.stride, layer.padding)
            x = write(x, self.training)
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


def pixel_pool(crops: list[np.ndarray], rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """(pixels in [0, 1], quality) per crop, at an integer quality drawn per crop (held-out crops
    are rated at these; training draws a fresh quality per step)."""
    return [((c.transpose(2, 0, 1) / np.float32(255)).astype(np.float32), float(rng.integers(1, 9))) for c in crops]


def distortion(x_hat: torch.Tensor, x: torch.Tensor, lambdas: torch.Tensor) -> torch.Tensor:
    """The training recipe's distortion term per sample (lambda_q * 255^2 * MSE) of the clamped output."""
    return distortion_term(x_hat.clamp(0, 1), x, lambdas, "mse")[0]


def synthesis_loss(model: VariableRateCodec, simulated: Int8Simulation) -> Callable[[list, bool], torch.Tensor]:
    """Mean distortion of g_s (through ``simulated``, or float) on a batch of (x, y_hat, q) from ``latent_pool``."""
    def loss(items: list, int8: bool) -> torch.Tensor:
        x, y_hat, q = zip(*items)
        x, y_hat, q = torch.from_numpy(np.stack(x)), torch.from_numpy(np.stack(y_hat)), torch.tensor(q)
        return distortion((simulated if int8 else model.g_s)(y_hat), x, lambda_for_quality(q)).mean()
    return loss


def analysis_loss(model: VariableRateCodec, simulated: Int8Simulation) -> Callable[[list, bool], torch.Tensor]:
    """Mean rate-distortion loss of the release with g_a through ``simulated`` (or float) on a batch of
    (x, q) from ``pixel_pool``: noisy rates and a fresh quality in [1, 8] per sample in training, rounded
    latents at the pool's qualities otherwise."""
    float_g_a = model.g_a

    def loss(items: list, int8: bool) -> torch.Tensor:
        x = torch.from_numpy(np.stack([i[0] for i in items]))
        q = torch.empty(len(items)).uniform_(1, QUALITIES) if simulated.training else torch.tensor([i[1] for i in items])
        model.g_a = simulated if int8 else float_g_a
        try:
            out = model(x, q, noise=simulated.training)
        finally:
            model.g_a = float_g_a
        return (distortion(out["x_hat"], x, lambda_for_quality(q)) + out["bits"] / (x.shape[2] * x.shape[3])).mean()
    return loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = ROOT.parent / "shared" / "data"
    p.add_argument("--transform", choices=sorted(QUANTIZED), default="g_s")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--data", type=Path, nargs="+", default=[shared / "train-hires", shared / "train"])
    p.add_argument("--crops", type=int, default=1024)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--minutes", type=float, default=40.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="default: runs/int8-qat/<transform>.pt")
    p.add_argument("--init", type=Path, help="continue from this fine-tune (a previous --out) instead of the release")
    args = p.parse_args()
    out_path = args.out or ROOT / "runs" / "int8-qat" / f"{args.transform}.pt"
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    start = time.time()
    model, _ = load_package(load_model(args.model).directory)
    trained = [getattr(model, name) for name in TRAINED[args.transform]]
    if args.init:
        state = torch.load(args.init, map_location="cpu")
        for name, module in zip(TRAINED[args.transform], trained):
            module.load_state_dict(state[name])
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    parameters = [p for module in trained for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    crops = training_crops(args.data, args.patch, args.crops, rng)
    simulated = Int8Simulation(getattr(model, args.transform), QUANTIZED[args.transform]).train()
    if args.transform == "g_s":
        pool, loss_of = latent_pool(args.model, crops, rng), synthesis_loss(model, simulated)
    else:
        pool, loss_of = pixel_pool(crops, rng), analysis_loss(model, simulated)
    held_out, pool = pool[:32], pool[32:]
    print(f"{len(pool)} training and {len(held_out)} held-out crops in {time.time() - start:.0f} s", flush=True)
    optimizer = torch.optim.Adam(parameters, lr=args.lr)

    def held_out_loss(int8: bool = True) -> float:
        simulated.eval()
        with torch.no_grad():
            losses = [float(loss_of(held_out[i : i + 8], int8)) for i in range(0, len(held_out), 8)]
        simulated.train()
        return float(np.mean(losses))

    # Warm the activation ranges up before the first step, so the first gradients see sensible rounding.
    with torch.no_grad():
        for i in range(0, min(len(pool), 64), args.batch):
            loss_of(pool[i : i + args.batch], True)
    float_loss = held_out_loss(int8=False)
    print(f"held-out loss of the starting {args.transform} in float: {float_loss:.4f}", flush=True)
    log = [{"step": 0, "seconds": 0.0, "held_out_loss": held_out_loss()}]
    print(log[-1], flush=True)
    budget, t0, step = 60 * args.minutes, time.time(), 0
    while time.time() - t0 < budget:
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (time.time() - t0) / budget)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_of([pool[int(i)] for i in rng.integers(len(pool), size=args.batch)], True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            log.append({"step": step, "seconds": round(time.time() - t0, 1), "held_out_loss": held_out_loss()})
            print(log[-1], flush=True)
    log.append({"step": step, "seconds": round(time.time() - t0, 1), "held_out_loss": held_out_loss(),
                "held_out_float_loss": held_out_loss(int8=False)})
    print(log[-1], flush=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    facts = {"model": args.model, "transform": args.transform, "trained": list(TRAINED[args.transform]), "steps": step,
             "minutes": round((time.time() - t0) / 60, 1), "batch": args.batch, "patch": args.patch, "lr": args.lr,
             "crops": len(pool), "weight_bits": WEIGHT_BITS, "percentile": PERCENTILE, "held_out_float_loss": float_loss,
             "init": str(args.init) if args.init else None, "data": [str(d) for d in args.data], "log": log}
    torch.save({**{name: module.state_dict() for name, module in zip(TRAINED[args.transform], trained)}, "facts": facts}, out_path)
    out_path.with_suffix(".json").write_text(json.dumps(facts, indent=1) + "\n")


if __name__ == "__main__":
    main()
