"""Refinement that costs less: the BD-rate each (step size, starting temperature, steps) buys, in one run.

Same protocol as ``benchmarks/refinement.py`` (the default model through the service's codec, real
bytes, qualities 1..8, centre crops of the first Kodak images, PCHIP BD-rate against the one-pass
encoder), over schedules of ``service.codec.refine``: Adam's step size in quantisation bins and the SGA
temperature it starts from (it falls as exp(-4 step / steps) to 0.05 whatever the start).

    .venv/bin/python benchmarks/refinement_schedule.py [--kodak DIR] [--images 6] [--crop 256]
        [--schedules 0.05:0.5:10,0.05:0.5:20,0.1:0.5:10,...]

Prints a table and writes benchmarks/refinement_schedule.json.
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
from benchmarks.refinement import centre_crop, curve_rows
from service.bench.bd import bd_rate
from service.bench.speed import machine
from service.codec import refine
from service.codec.codec import Codec
from service.codec.zoo import DEFAULT_MODEL

SCHEDULES = "0.05:0.5:10,0.1:0.5:10,0.2:0.5:10,0.1:0.3:10,0.1:0.5:20,0.2:0.5:20,0.1:0.3:20"


def curve(codec: Codec, images: list[np.ndarray], steps: int) -> tuple[list[float], list[float], float]:
    """Mean bpp and PSNR per quality, and mean encode seconds per image."""
    rows = curve_rows(codec, images, steps)
    return [r["bpp"] for r in rows], [r["psnr"] for r in rows], float(np.mean([r["encode_s"] for r in rows]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", type=Path, default=REPO.parent / "shared" / "data" / "kodak")
    p.add_argument("--images", type=int, default=6, help="the first N Kodak images")
    p.add_argument("--crop", type=int, default=256, help="centre crop size in px (0: whole images)")
    p.add_argument("--schedules", default=SCHEDULES, help="step size:starting temperature:steps, comma-separated")
    a = p.parse_args()
    images = [centre_crop(np.asarray(Image.open(f).convert("RGB")), a.crop) for f in sorted(a.kodak.glob("*.png"))[: a.images]]
    codec = Codec()
    base_bpp, base_psnr, base_s = curve(codec, images, 0)
    rows = []
    for schedule in a.schedules.split(","):
        lr, start, steps = schedule.split(":")
        refine.LEARNING_RATE, refine.TEMPERATURE = float(lr), (float(start), refine.TEMPERATURE[1])
        bpp, quality, seconds = curve(codec, images, int(steps))
        rows.append({"learning_rate": float(lr), "temperature_start": float(start), "steps": int(steps),
                     "bd_rate_vs_one_pass": round(bd_rate(base_bpp, base_psnr, bpp, quality), 2), "encode_s": round(seconds, 2),
                     "bpp": bpp, "psnr": quality})
        print(f"step size {lr:>5}  temperature {start:>4}  {steps:>3} steps: {rows[-1]['bd_rate_vs_one_pass']:+6.2f}%  "
              f"{seconds:.2f} s per image", flush=True)
    out = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "model": DEFAULT_MODEL, "images": len(images), "crop": a.crop,
           "command": "benchmarks/refinement_schedule.py " + " ".join(sys.argv[1:]),
           "one_pass": {"bpp": base_bpp, "psnr": base_psnr, "encode_s": round(base_s, 2)}, "rows": rows}
    (REPO / "benchmarks" / "refinement_schedule.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
