"""Where do tile seams come from, and what removes them? A PyTorch experiment on the default model.

Each image is coded as 256 px tiles in four ways, at qualities 1, 4 and 8, and compared with the source
(PSNR over the image, and over the band within 2 px of every seam):

* ``independent tiles``: each tile analysed and synthesised alone (format version 1, ``--context 0``);
* ``decoder context``: the same latents, synthesised with 2 latent pixels (32 px) of the neighbours' latents;
* ``context both sides``: the analysis also sees 32 px of the neighbouring pixels and keeps the tile's own
  latents; the synthesis reads the neighbours' latents as above. Entropy coding stays per tile. This is
  what the codec does since format version 2 (``--context 32``, the default);
* ``whole image``: one tile per image, the ceiling.

Rates are estimated from the likelihoods (per-tile hyperpriors in the three tiled variants).

    .venv/bin/python benchmarks/tile_context.py [--kodak DIR] [--images kodim01,kodim05,kodim14,kodim23]

Prints a table and writes benchmarks/tile_context.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from models.data import load_rgb
from models.entropy_models import gaussian_likelihood, scale_from_position
from models.release import load_checkpoint, release_source
from service.bench.speed import machine
from service.codec.image_io import psnr
from service.codec.zoo import DEFAULT_MODEL

TILE, STRIDE, MARGIN = 256, 16, 2  # tile px, latent stride, context in latent pixels (32 px)


@torch.no_grad()
def code(model, x: torch.Tensor, q: float, keep: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, float]:
    """Rounded latent y (cropped to ``keep`` = rows/cols in latent pixels, before the hyperprior) and its bits."""
    gain, _ = model.gains(torch.tensor([q]))
    y = model.g_a(x) * gain
    if keep is not None:
        y = y[:, :, keep[0] : keep[1], keep[2] : keep[3]]
    latents = {"y": y, **model.hyper_analysis(y)}
    decoded, bits = {}, 0.0
    for level in model.levels():
        value = latents[level.name]
        if level.hyper is None:
            decoded[level.name] = torch.round(value)
            likelihood = model.entropy_bottleneck.likelihood(decoded[level.name])
        else:
            _, mean, position = getattr(model, level.hyper)(decoded[model.hyper_source(level.name)])
            decoded[level.name] = torch.round(value - mean) + mean
            likelihood = gaussian_likelihood(decoded[level.name], mean, scale_from_position(position))
        bits -= torch.log2(likelihood).sum().item()
    return decoded["y"], bits


def tiles(h: int, w: int):
    for ty in range(0, h, TILE):
        for tx in range(0, w, TILE):
            yield ty, tx


@torch.no_grad()
def synthesize_tiles(model, y: torch.Tensor, inverse_gain: torch.Tensor, h: int, w: int, margin: int) -> torch.Tensor:
    out = torch.zeros(1, 3, h, w)
    lh, lw, t = h // STRIDE, w // STRIDE, TILE // STRIDE
    for ty, tx in tiles(h, w):
        a0, b0 = max(0, ty // STRIDE - margin), max(0, tx // STRIDE - margin)
        a1, b1 = min(lh, ty // STRIDE + t + margin), min(lw, tx // STRIDE + t + margin)
        x_hat = model.synthesize(y[:, :, a0:a1, b0:b1] * inverse_gain, {})
        oy, ox = (ty // STRIDE - a0) * STRIDE, (tx // STRIDE - b0) * STRIDE
        out[:, :, ty : ty + TILE, tx : tx + TILE] = x_hat[:, :, oy : oy + TILE, ox : ox + TILE]
    return out


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round()[0].permute(1, 2, 0).numpy().astype(np.uint8)


@torch.no_grad()
def measure(model, image: np.ndarray, q: float) -> dict[str, dict]:
    h, w = image.shape[:2]
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    _, inverse_gain = model.gains(torch.tensor([q]))
    t = TILE // STRIDE
    y_alone = torch.zeros(1, model.g_a(x[:, :, :TILE, :TILE]).shape[1], h // STRIDE, w // STRIDE)
    y_context = torch.zeros_like(y_alone)
    bits_alone = bits_context = 0.0
    for ty, tx in tiles(h, w):
        cell = (slice(None), slice(None), slice(ty // STRIDE, ty // STRIDE + t), slice(tx // STRIDE, tx // STRIDE + t))
        y_alone[cell], b = code(model, x[:, :, ty : ty + TILE, tx : tx + TILE], q)
        bits_alone += b
        pad = MARGIN * STRIDE
        y0, x0 = max(0, ty - pad), max(0, tx - pad)
        window = x[:, :, y0 : min(h, ty + TILE + pad), x0 : min(w, tx + TILE + pad)]
        r, c = (ty - y0) // STRIDE, (tx - x0) // STRIDE
        y_context[cell], b = code(model, window, q, (r, r + t, c, c + t))
        bits_context += b
    y_whole, bits_whole = code(model, x, q)
    variants = {
        "independent tiles": (synthesize_tiles(model, y_alone, inverse_gain, h, w, 0), bits_alone),
        "decoder context": (synthesize_tiles(model, y_alone, inverse_gain, h, w, MARGIN), bits_alone),
        "context both sides": (synthesize_tiles(model, y_context, inverse_gain, h, w, MARGIN), bits_context),
        "whole image": (model.synthesize(y_whole * inverse_gain, {}), bits_whole),
    }
    seams = np.zeros((h, w), bool)
    for s in range(TILE, w, TILE):
        seams[:, s - 2 : s + 2] = True
    for s in range(TILE, h, TILE):
        seams[s - 2 : s + 2, :] = True
    decoded = {name: (to_uint8(x_hat), bits) for name, (x_hat, bits) in variants.items()}
    return {name: {"bpp": bits / (h * w), "psnr": psnr(out, image), "seam_psnr": psnr(out[seams], image[seams])}
            for name, (out, bits) in decoded.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", default=str(REPO.parent / "shared" / "data" / "kodak"))
    p.add_argument("--images", default="kodim01,kodim05,kodim14,kodim23")
    p.add_argument("--out", default=str(Path(__file__).with_name("tile_context.json")))
    args = p.parse_args()
    torch.set_num_threads(2)
    model, _ = load_checkpoint(release_source(DEFAULT_MODEL))
    if model.synthesis_features:
        raise SystemExit(f"{DEFAULT_MODEL}: the synthesis also reads hyper features; only g_s-only models are supported")
    names = args.images.split(",")
    started = time.time()
    results: dict[str, dict] = {}
    for q in (1.0, 4.0, 8.0):
        per_image = [measure(model, load_rgb(Path(args.kodak) / f"{n}.png"), q) for n in names]
        results[f"q{q:.0f}"] = {v: {k: float(np.mean([r[v][k] for r in per_image])) for k in ("bpp", "psnr", "seam_psnr")}
                                for v in per_image[0]}
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "model": DEFAULT_MODEL, "tile": TILE, "context_px": MARGIN * STRIDE, "images": names,
              "results": results, "seconds": round(time.time() - started)}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{DEFAULT_MODEL}, {TILE} px tiles, {len(names)} Kodak images (means); estimated bpp")
    print("| quality | variant | bpp | PSNR dB | seam PSNR dB |")
    print("|---|---|---|---|---|")
    for q, variants in results.items():
        for v, r in variants.items():
            print(f"| {q} | {v} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['seam_psnr']:.2f} |")


if __name__ == "__main__":
    main()
