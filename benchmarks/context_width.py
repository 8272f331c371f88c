"""How much context do tiles need? The real codec at 256 px tiles with 0, 16, 32 and 48 px of context,
on Kodak, at qualities 1, 4 and 8: bpp, PSNR over the image and over the band within 2 px of every
seam (where too little context shows), and the transforms' pixel work (window area over image area).

    .venv/bin/python benchmarks/context_width.py [--kodak DIR] [--images kodim01,kodim05,kodim14,kodim23]

Prints a table and writes benchmarks/context_width.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.data import load_rgb
from service.bench.speed import machine
from service.codec import Codec
from service.codec.image_io import psnr
from service.codec.tiles import TileGrid

TILE, BAND = 256, 2
CONTEXTS = (0, 16, 32, 48)
QUALITIES = (1.0, 4.0, 8.0)


def seam_mask(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for s in range(TILE, width, TILE):
        mask[:, s - BAND : s + BAND] = True
    for s in range(TILE, height, TILE):
        mask[s - BAND : s + BAND, :] = True
    return mask


def window_area(height: int, width: int, context: int) -> float:
    """Pixels the transforms run on over the image's pixels."""
    grid = TileGrid(width, height, TILE)
    area = 0
    for i in range(grid.count):
        x0, y0, x1, y1 = grid.window_rect(i, context)
        area += (x1 - x0) * (y1 - y0)
    return area / (width * height)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    p.add_argument("--images", default="kodim01,kodim05,kodim14,kodim23")
    args = p.parse_args()
    images = {name: load_rgb(args.kodak / f"{name}.png") for name in args.images.split(",")}
    rows = []
    for context in CONTEXTS:
        codec = Codec(tile=TILE, context=context)
        for q in QUALITIES:
            bpp, whole, seams = [], [], []
            for rgb in images.values():
                result = codec.compress(Image.fromarray(rgb), quality=q)
                decoded = np.asarray(codec.decompress(result.data).convert("RGB"))
                mask = seam_mask(*rgb.shape[:2])
                bpp.append(result.bpp)
                whole.append(psnr(rgb, decoded))
                seams.append(psnr(rgb[mask], decoded[mask]))
            area = float(np.mean([window_area(*rgb.shape[:2], context) for rgb in images.values()]))
            rows.append({"context": context, "quality": q, "bpp": round(float(np.mean(bpp)), 4), "psnr": round(float(np.mean(whole)), 3),
                         "seam_psnr": round(float(np.mean(seams)), 3), "window_area": round(area, 3)})
            r = rows[-1]
            print(f"context {context:2d} q{q:g}: {r['bpp']:.4f} bpp  {r['psnr']:.3f} dB  seams {r['seam_psnr']:.3f} dB  work {r['window_area']:.3f}x")
    report = {"machine": machine(), "tile": TILE, "images": list(images), "command": "benchmarks/context_width.py " + " ".join(sys.argv[1:]),
              "rows": rows}
    (ROOT / "benchmarks" / "context_width.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
