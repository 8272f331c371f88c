"""What encoder-side refinement buys per step: BD-rate against the one-pass encoder, and encode time.

The default model codes each image through the service's codec (onnxruntime, 512 px tiles, 32 px of
context, real bytes) at qualities 1..8, once per number of refinement steps; curves are means over
the images, BD-rate is PCHIP against 0 steps. Whole Kodak images take about 0.55 s a step on 2 cores,
so the default set is centre crops.

    .venv/bin/python benchmarks/refinement.py [--kodak DIR] [--images 6] [--crop 256] [--steps 0,10,20,40,80]

Prints a table and writes benchmarks/refinement.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from service.bench.bd import bd_rate
from service.bench.speed import machine
from service.codec.codec import Codec
from service.codec.image_io import psnr
from service.codec.zoo import DEFAULT_MODEL

QUALITIES = [float(q) for q in range(1, 9)]


def centre_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    if not size:
        return rgb
    top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def curve_rows(codec: Codec, images: list[np.ndarray], steps: int, echo: bool = False) -> list[dict]:
    """Per quality: mean bpp, PSNR and encode seconds over ``images`` with ``steps`` of refinement."""
    rows = []
    for q in QUALITIES:
        bpp, quality, seconds = [], [], []
        for rgb in images:
            t = time.perf_counter()
            result = codec.compress(Image.fromarray(rgb), quality=q, refine=steps)
            seconds.append(time.perf_counter() - t)
            bpp.append(result.bpp)
            quality.append(psnr(rgb, np.asarray(codec.decompress(result.data))))
        rows.append({"steps": steps, "quality": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(quality)),
                     "encode_s": float(np.mean(seconds))})
        if echo:
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", type=Path, default=REPO.parent / "shared" / "data" / "kodak")
    p.add_argument("--images", type=int, default=6, help="the first N Kodak images")
    p.add_argument("--crop", type=int, default=256, help="centre crop size in px (0: whole images)")
    p.add_argument("--steps", default="0,10,20,40,80")
    a = p.parse_args()
    steps = [int(s) for s in a.steps.split(",")]
    images = [centre_crop(np.asarray(Image.open(f).convert("RGB")), a.crop) for f in sorted(a.kodak.glob("*.png"))[: a.images]]
    codec = Codec()
    rows = [row for n in steps for row in curve_rows(codec, images, n, echo=True)]

    def curve(n: int) -> tuple[list[float], list[float]]:
        points = [r for r in rows if r["steps"] == n]
        return [r["bpp"] for r in points], [r["psnr"] for r in points]

    summary = []
    for n in steps:
        encode_s = float(np.mean([r["encode_s"] for r in rows if r["steps"] == n]))
        summary.append({"steps": n, "bd_rate_vs_0_steps": bd_rate(*curve(steps[0]), *curve(n)), "encode_s": encode_s})
    megapixels = np.mean([im.shape[0] * im.shape[1] for im in images]) / 1e6
    print(f"\n{DEFAULT_MODEL}, {len(images)} Kodak images ({a.crop or 'whole'} px), qualities 1..8, {machine()}\n")
    print("| refinement steps | BD-rate vs one pass | encode s per image | encode s per megapixel |\n|---|---|---|---|")
    for s in summary:
        print(f"| {s['steps']} | {s['bd_rate_vs_0_steps']:+.2f}% | {s['encode_s']:.2f} | {s['encode_s'] / megapixels:.1f} |")
    out = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "model": DEFAULT_MODEL,
           "images": len(images), "crop": a.crop, "summary": summary, "rows": rows}
    (REPO / "benchmarks" / "refinement.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
