"""Where int8 synthesis loses its quality: simulated quantisation of g_s, one error source at a time.

    .venv/bin/python benchmarks/int8_error.py [--kodak DIR] [--images 6]

benchmarks/int8.py measures what onnxruntime's static int8 costs (+16.6% BD-rate on Kodak for g_a and
g_s). This script says why, on the default release in PyTorch, by fake quantisation of the layers that
models/quantize.py quantises (g_s's inner transposed convolutions; the first, reading the latent, and the last,
writing the pixels, stay float): each image is coded by the run time, and its decoded latents go
through g_s with
- the weights rounded per output channel to 7 bits (what onnxruntime's u8s8 kernels need on AVX2
  without VNNI) or to 8 bits, activations float;
- the activations (the IGDN outputs those layers read) rounded to uint8 over one range per tensor (what
  onnxruntime does) or one per channel, weights float;
- both as onnxruntime does them (7-bit weights, uint8 per tensor).
onnxruntime's QDQ graph also rounds those convolutions' outputs (IGDN's inputs) to uint8, which this
decomposition leaves out (models/int8_finetune.py simulates it).
Activation ranges are the 0.001 and 99.999 percentiles of the image's own activations, an oracle
calibration: no calibration set does better, so these losses are lower bounds. Prints the PSNR lost
against float g_s at each quality (mean over the images) and writes benchmarks/int8_error.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.data import image_files, load_rgb
from models.release import load_package
from service.bench.speed import machine
from service.codec import Codec
from service.codec.image_io import psnr
from service.codec.zoo import DEFAULT_MODEL, load_model

QUALITIES = [1.0, 2.0, 4.0, 6.0, 8.0]
PERCENTILE = 99.999
VARIANTS = {  # name -> (weight bits or None, activation ranges: "float" | "tensor" | "channel")
    "7-bit weights": (7, "float"),
    "8-bit weights": (8, "float"),
    "uint8 activations, per tensor": (None, "tensor"),
    "uint8 activations, per channel": (None, "channel"),
    "onnxruntime's int8 (7-bit weights, uint8 per tensor)": (7, "tensor"),
}


def fake_quantize_activations(x: torch.Tensor, ranges: str) -> torch.Tensor:
    """uint8 with an asymmetric range (always holding 0) per tensor or per channel."""
    if ranges == "float":
        return x
    sample = x.transpose(0, 1).flatten(1)[:, ::7] if ranges == "channel" else x.flatten()[::7][None]
    lo = torch.quantile(sample, 1 - PERCENTILE / 100, dim=1).clamp(max=0)
    hi = torch.quantile(sample, PERCENTILE / 100, dim=1).clamp(min=0)
    shape = (1, -1, 1, 1) if ranges == "channel" else (1, 1, 1, 1)
    step = ((hi - lo) / 255).clamp(min=1e-12).view(shape)
    zero = torch.round(-lo.view(shape) / step)
    return (torch.clamp(torch.round(x / step) + zero, 0, 255) - zero) * step


def fake_quantize_weights(layer: torch.nn.ConvTranspose2d, bits: int | None) -> torch.Tensor:
    """Symmetric, one scale per output channel (dimension 1 of a transposed convolution's weight)."""
    w = layer.weight
    if bits is None:
        return w
    top = 2 ** (bits - 1) - 1
    step = w.abs().amax(dim=(0, 2, 3), keepdim=True) / top
    return torch.round(w / step).clamp(-top - 1, top) * step


def synthesize(g_s: torch.nn.Sequential, y_hat: torch.Tensor, bits: int | None, ranges: str) -> torch.Tensor:
    """g_s with its inner transposed convolutions fake-quantised."""
    deconvs = [i for i, layer in enumerate(g_s) if isinstance(layer, torch.nn.ConvTranspose2d)]
    x = y_hat
    for i, layer in enumerate(g_s):
        if i in deconvs[1:-1]:
            x = F.conv_transpose2d(fake_quantize_activations(x, ranges), fake_quantize_weights(layer, bits), layer.bias,
                                   layer.stride, layer.padding, layer.output_padding)
        else:
            x = layer(x)
    return x


def psnr8(x_hat: torch.Tensor, rgb: np.ndarray) -> float:
    """PSNR of the synthesis output rounded to 8-bit RGB, as the codec delivers it."""
    return psnr(np.round(np.clip(x_hat[0].numpy().transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8), rgb)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    p.add_argument("--images", type=int, default=6, help="the first N images")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    package = load_model(DEFAULT_MODEL)
    model, _ = load_package(package.directory)
    coder = Codec().coder(package.id)
    files = image_files(args.kodak)[: args.images]
    loss = {name: {q: [] for q in QUALITIES} for name in VARIANTS}
    for path in files:
        rgb = load_rgb(path)
        x = (rgb.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
        y_raw = coder.analyze(x)
        for q in QUALITIES:
            qualities = np.full(1, q, np.float32)
            _, latents = coder.encode(y_raw, qualities)
            y_hat = torch.from_numpy(coder.synthesis_feeds(latents, qualities)["y_hat"])
            reference = psnr8(model.g_s(y_hat), rgb)
            for name, (bits, ranges) in VARIANTS.items():
                loss[name][q].append(reference - psnr8(synthesize(model.g_s, y_hat, bits, ranges), rgb))
        print(f"{path.name} done", flush=True)
    table = {name: {str(q): round(float(np.mean(v)), 3) for q, v in per_q.items()} for name, per_q in loss.items()}
    print("\nPSNR lost against float g_s (dB, mean over images), by quality")
    print("| variant | " + " | ".join(f"q{q:g}" for q in QUALITIES) + " |")
    print("|---|" + "---|" * len(QUALITIES))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[str(q)]:.3f}" for q in QUALITIES) + " |")
    report = {"machine": machine(), "model": package.id, "images": [f.name for f in files], "percentile": PERCENTILE,
              "command": "benchmarks/int8_error.py " + " ".join(sys.argv[1:]), "psnr_lost_db": table}
    (ROOT / "benchmarks" / "int8_error.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
