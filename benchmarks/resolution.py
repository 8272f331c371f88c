"""Coarse-to-fine against mean-scale by image size: does the coarse-to-fine model gain more on larger images?

There is no clean test set larger than Kodak (768x512) here, so the trend is measured around it:
Kodak at 1/4, 1/2, full size (Lanczos; a smaller image has more detail per pixel and less spatial
context for a hyperprior) and at 2x, upsampled (Lanczos). The 2x set is only a proxy for high-resolution
capture: like a sharp photo of more pixels, it has less detail per pixel and more spatial redundancy,
but no detail finer than Kodak's. Every image is coded whole (one tile) so each model's hyperprior
sees all of it, through the run time (onnxruntime, real bytes), and each curve is rated against the
mean-scale reference and JPEG 4:2:0 at the same size.

    .venv/bin/python benchmarks/resolution.py [--kodak DIR] [--models c2f-64-96-r7,ms-64-96-r3]

The first model is the one rated; the second is the reference (the committed resolution.json rated
against ``ms-64-96-r2``, which has left the zoo; its package is in git history). Prints a table and writes
benchmarks/resolution.json. Results are cached per size under runs/bench-cache/resolution-<size>/.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from service.bench.codecs import classical_codecs, learned_codecs
from service.bench.report import bd_table, mean_curves
from service.bench.runner import BenchImage, load_images, run
from service.bench.speed import machine
from service.codec import Codec

SCALES = {"1/4": (1, 4), "1/2": (1, 2), "1": (1, 1), "2x": (2, 1)}  # image side times num / den
WHOLE_IMAGE_TILE = 768  # Kodak's long side: one tile per image up to full size


def scaled(images: list[BenchImage], label: str) -> list[BenchImage]:
    num, den = SCALES[label]
    out = []
    for image in images:
        h, w = image.rgb.shape[:2]
        size = (w * num // den, h * num // den)
        rgb = np.asarray(Image.fromarray(image.rgb).resize(size, Image.Resampling.LANCZOS)) if num != den else image.rgb
        out.append(BenchImage(f"{image.name}@{label}", hashlib.sha256(rgb.tobytes()).hexdigest(), rgb))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    p.add_argument("--models", default="c2f-64-96-r7,ms-64-96-r3")
    p.add_argument("--out", default=str(Path(__file__).with_name("resolution.json")))
    args = p.parse_args()
    rated, reference = args.models.split(",")
    kodak = load_images(Path(args.kodak))
    started = time.time()
    sizes = []
    for label, (num, den) in SCALES.items():
        images = scaled(kodak, label)
        tile = max(WHOLE_IMAGE_TILE, WHOLE_IMAGE_TILE * num // den)  # a multiple of 64
        codecs = [*learned_codecs(Codec(tile=tile), [rated, reference]).values(), classical_codecs()["JPEG 4:2:0"]]
        rows = run(codecs, images, ROOT / "runs" / "bench-cache" / f"resolution-{label.replace('/', '-')}")
        curves = mean_curves(rows)
        bd = bd_table(curves, anchors=(reference, "JPEG 4:2:0"))
        h, w = images[0].rgb.shape[:2]
        sizes.append({"scale": label, "size": f"{max(h, w)}x{min(h, w)}", "tile": tile, "curves": curves, "bd": bd})

    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "rated": rated, "reference": reference,
              "images": len(kodak), "sizes": sizes, "seconds": round(time.time() - started)}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    print(f"Kodak ({len(kodak)} images) coded whole, {report['machine']}; BD-rate PCHIP, negative is better")
    print(f"| size | {rated} vs {reference} | {rated} vs JPEG 4:2:0 | {reference} vs JPEG 4:2:0 |")
    print("|---|---|---|---|")
    for s in sizes:
        bd = s["bd"]
        print(f"| {s['size']} ({s['scale']}) | {bd[rated][reference]['bd_rate_pchip']:+.1f}% | "
              f"{bd[rated]['JPEG 4:2:0']['bd_rate_pchip']:+.1f}% | {bd[reference]['JPEG 4:2:0']['bd_rate_pchip']:+.1f}% |")


if __name__ == "__main__":
    main()
