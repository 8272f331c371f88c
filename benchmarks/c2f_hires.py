"""Does the coarse-to-fine model gain more on real high-resolution photos? (issue 26)

Coarse-to-fine against mean-scale at the same widths (``c2f-64-96-r7`` against ``ms-64-96-r2``), as
served (512 px tiles with 32 px of context), on Kodak (24 images, 768x512) and on
``../shared/data/hires`` (27 photos of 1 to 3.4 MP): BD-rate of the mean curves, and per image, from
the ``rows.csv`` that ``lic bench`` wrote for each set. The hires rows come from

    lic bench ../shared/data/hires --out benchmarks/hires-c2f --codecs "AVIF,c2f-64-96-r7,ms-64-96-r2" \\
        --models c2f-64-96-r7,ms-64-96-r2 --refine 0 --speed-images 0

(about an hour on 2 cores); the Kodak rows are benchmarks/kodak/rows.csv. To tell size from content, the
same photos downscaled to half their sides (Lanczos; about Kodak's size, 0.38 MP on average):

    .venv/bin/python benchmarks/c2f_hires.py --half /tmp/hires-half   # writes the downscaled copies
    lic bench /tmp/hires-half --out benchmarks/hires-c2f-half --codecs "c2f-64-96-r7,ms-64-96-r2" \
        --models c2f-64-96-r7,ms-64-96-r2 --refine 0 --speed-images 0

Then

    .venv/bin/python benchmarks/c2f_hires.py

prints the tables and writes benchmarks/c2f_hires.json. ``ms-64-96-r2`` has since left the zoo (its
successor ``ms-64-96-r3`` was fine-tuned on native-scale crops, so it is no longer the same-data
reference); its rows stay in the committed rows.csv files, which is all this script reads. Measuring
it again needs its package back: ``git checkout db34f08 -- models/zoo/ms-64-96-r2 models/checkpoints/ms-64-96-r2.pt``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from service.bench.report import METRICS, bd_table, mean_curves, per_image_bd

RATED, REFERENCE = "c2f-64-96-r7", "ms-64-96-r2"
SETS = {"Kodak": ROOT / "benchmarks" / "kodak" / "rows.csv", "hires at 1/2": ROOT / "benchmarks" / "hires-c2f-half" / "rows.csv",
        "hires": ROOT / "benchmarks" / "hires-c2f" / "rows.csv"}


def write_half(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT.parent / "shared" / "data" / "hires").glob("*.png")):
        with Image.open(path) as im:
            im.convert("RGB").resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS).save(folder / path.name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--half", type=Path, help="write the hires photos at half size to this folder, and stop")
    args = p.parse_args()
    if args.half:
        write_half(args.half)
        return
    report = {"rated": RATED, "reference": REFERENCE, "sets": {}}
    for name, path in SETS.items():
        if not path.exists():
            continue
        with path.open() as f:
            rows = [{**r, **{m: float(r[m]) for m in METRICS}} for r in csv.DictReader(f) if r["codec"] in (RATED, REFERENCE, "AVIF")]
        curves = mean_curves(rows)
        bd = bd_table(curves, anchors=(REFERENCE, "AVIF"))
        per_image = per_image_bd(rows, RATED, anchors=(REFERENCE, "AVIF"))
        values = [e["bd_rate_pchip"][REFERENCE] for e in per_image if math.isfinite(e["bd_rate_pchip"][REFERENCE])]
        report["sets"][name] = {
            "images": len(per_image), "megapixels_mean": float(np.mean([e["megapixels"] for e in per_image])),
            "bd_rate_vs_reference_mean_curves": bd[RATED][REFERENCE]["bd_rate_pchip"],
            "bd_rate_vs_avif_mean_curves": {m: bd[m].get("AVIF", {}).get("bd_rate_pchip", math.nan) for m in (RATED, REFERENCE)},
            "per_image_vs_reference_median": float(np.median(values)), "per_image_vs_reference_range": [min(values), max(values)],
            "per_image": per_image,
        }
    print(f"{RATED} against {REFERENCE} (same widths), as served; BD-rate, PCHIP, negative is better")
    print("| set | images | mean MP | mean curves | per image: median | per image: range | vs AVIF: c2f / mean-scale |")
    print("|---|---|---|---|---|---|---|")
    for name, s in report["sets"].items():
        lo, hi = s["per_image_vs_reference_range"]
        avif = s["bd_rate_vs_avif_mean_curves"]
        print(f"| {name} | {s['images']} | {s['megapixels_mean']:.2f} | {s['bd_rate_vs_reference_mean_curves']:+.1f}% | "
              f"{s['per_image_vs_reference_median']:+.1f}% | {lo:+.1f}% to {hi:+.1f}% | "
              + (f"{avif[RATED]:+.1f}% / {avif[REFERENCE]:+.1f}% |" if math.isfinite(avif[RATED]) else "– |"))
    half = {e["image"]: e["bd_rate_pchip"][REFERENCE] for e in report["sets"].get("hires at 1/2", {}).get("per_image", [])}
    print(f"\nPer hires image ({RATED} against {REFERENCE}), largest gain first:")
    print("| image | MP | vs mean-scale | at 1/2 size | vs AVIF |\n|---|---|---|---|---|")
    for e in sorted(report["sets"]["hires"]["per_image"], key=lambda e: e["bd_rate_pchip"][REFERENCE]):
        at_half = f"{half[e['image']]:+.1f}%" if e["image"] in half else "-"
        print(f"| {e['image']} | {e['megapixels']:.2f} | {e['bd_rate_pchip'][REFERENCE]:+.1f}% | {at_half} | {e['bd_rate_pchip']['AVIF']:+.1f}% |")
    out = Path(__file__).with_name("c2f_hires.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
