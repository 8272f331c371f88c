"""Kodak results of the shipped default model through the run time (onnxruntime, real bytes):

* RD per quality: bpp from file bytes, PSNR on the 8-bit RGB output, encode/decode ms;
* tiling: 512 px tiles with 32 px of context (the default) and without (independent tiles, deblocked at
  low qualities) against whole-image coding (one tile), BD-rate overhead;
* seams: PSNR within 2 px of the tile seam in each case;
* JPEG (Pillow / libjpeg-turbo, 4:2:0) swept over its quality, and BD-rate of the model against it.

    .venv/bin/python benchmarks/kodak_core.py [--kodak ../shared/data/kodak]

Prints tables and writes benchmarks/kodak_core.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service.bench.bd import bd_psnr, bd_rate
from service.bench.codecs import classical_codecs
from service.codec import Codec
from service.codec.image_io import psnr
from service.codec.limits import DEFAULT_CONTEXT
from service.codec.zoo import DEFAULT_MODEL, load_model

QUALITIES = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
SEAM = 512
BAND = 2


def seam_psnr(ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR over the pixels within BAND px of the 512 px tile seam (vertical or horizontal)."""
    if ref.shape[1] > SEAM:
        return psnr(ref[:, SEAM - BAND : SEAM + BAND], out[:, SEAM - BAND : SEAM + BAND])
    return psnr(ref[SEAM - BAND : SEAM + BAND], out[SEAM - BAND : SEAM + BAND])


def run_model(files: list[Path], tile: int, context: int) -> list[dict]:
    codec = Codec(tile=tile, context=context)
    rows = []
    for q in QUALITIES:
        acc = {"quality": q, "bpp": 0.0, "psnr": 0.0, "seam_psnr": 0.0, "encode_ms": 0.0, "decode_ms": 0.0}
        for path in files:
            data = path.read_bytes()
            ref = np.asarray(Image.open(path).convert("RGB"))
            t = time.perf_counter()
            result = codec.compress(data, quality=q)
            acc["encode_ms"] += 1000 * (time.perf_counter() - t)
            t = time.perf_counter()
            out = np.asarray(codec.decompress(result.data))
            acc["decode_ms"] += 1000 * (time.perf_counter() - t)
            acc["bpp"] += result.bpp
            acc["psnr"] += psnr(ref, out)
            acc["seam_psnr"] += seam_psnr(ref, out)
        rows.append({k: (v / len(files) if k != "quality" else v) for k, v in acc.items()})
    return rows


def run_jpeg(files: list[Path]) -> list[dict]:
    """Pillow JPEG 4:2:0 over its quality sweep, as ``lic bench`` runs it."""
    jpeg = classical_codecs()["JPEG 4:2:0"]
    rows = []
    for q in jpeg.settings:
        bpp = dist = 0.0
        for path in files:
            ref = Image.open(path).convert("RGB")
            data = jpeg.encode(ref, q)
            bpp += len(data) * 8 / (ref.width * ref.height)
            dist += psnr(np.asarray(ref), jpeg.decode(data))
        rows.append({"quality": q, "bpp": bpp / len(files), "psnr": dist / len(files)})
    return rows


def curve(rows: list[dict]) -> tuple[list[float], list[float]]:
    return [r["bpp"] for r in rows], [r["psnr"] for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"))
    p.add_argument("--out", default=str(Path(__file__).with_name("kodak_core.json")))
    args = p.parse_args()
    files = sorted(Path(args.kodak).glob("*.png"))
    started = time.time()
    tiled = run_model(files, 512, DEFAULT_CONTEXT)
    independent = run_model(files, 512, 0)
    whole = run_model(files, 768, 0)
    jpeg = run_jpeg(files)
    package = load_model(DEFAULT_MODEL)
    summary = {
        "bd_rate_vs_jpeg_pchip": bd_rate(*curve(jpeg), *curve(tiled)),
        "bd_rate_vs_jpeg_cubic": bd_rate(*curve(jpeg), *curve(tiled), method="cubic"),
        "bd_psnr_vs_jpeg_db": bd_psnr(*curve(jpeg), *curve(tiled)),
        "tiling_overhead_bd_rate": bd_rate(*curve(whole), *curve(tiled)),
        "tiling_overhead_bd_rate_independent_tiles": bd_rate(*curve(whole), *curve(independent)),
    }
    report = {
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, onnxruntime CPU",
        "date": time.strftime("%Y-%m-%d"),
        "model": DEFAULT_MODEL,
        "fingerprint": package.manifest.fingerprint,
        "images": len(files),
        "context_px": DEFAULT_CONTEXT,
        "tiled_512": tiled,
        "tiled_512_independent": independent,
        "whole_image": whole,
        "jpeg_420": jpeg,
        "summary": summary,
        "seconds": round(time.time() - started),
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    print(f"Kodak ({len(files)} images), model {DEFAULT_MODEL}, {report['machine']}")
    print(f"512 px tiles with {DEFAULT_CONTEXT} px context (shipped), independent 512 px tiles, and the whole image as one tile")
    print("| quality | bpp | PSNR dB | seam PSNR | independent: bpp | PSNR | seam PSNR | whole: bpp | PSNR | seam PSNR | encode ms | decode ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t, u, w in zip(tiled, independent, whole):
        print(f"| {t['quality']:g} | {t['bpp']:.4f} | {t['psnr']:.2f} | {t['seam_psnr']:.2f} | {u['bpp']:.4f} | {u['psnr']:.2f} | "
              f"{u['seam_psnr']:.2f} | {w['bpp']:.4f} | {w['psnr']:.2f} | {w['seam_psnr']:.2f} | {t['encode_ms']:.0f} | {t['decode_ms']:.0f} |")
    print("\nJPEG 4:2:0: " + ", ".join(f"q{r['quality']} {r['bpp']:.3f}/{r['psnr']:.2f}" for r in jpeg))
    for k, v in summary.items():
        print(f"{k}: {v:+.2f}")


if __name__ == "__main__":
    main()
