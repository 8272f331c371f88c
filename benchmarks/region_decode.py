"""What context costs a region decode, from a cold start: a 256 px region inside one inner tile, that
whole 512 px tile, and the whole image.

A region decode synthesizes only the tiles under the region, but with context it must entropy-decode
their neighbours too (the synthesis reads their latents). Without context, deblocking (on below
quality 5) instead makes a region that reaches a seam synthesize the neighbours. The image is kodim01
upscaled 4x (Lanczos, 3072x2048: 6x4 tiles of 512 px), coded with the default model at quality 4,
with and without context.

    .venv/bin/python benchmarks/region_decode.py [--repeats 3]

Prints a table and writes benchmarks/region_decode.json (best of the repeats, ms).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from service.bench.speed import machine
from service.codec import Codec
from service.codec.limits import DEFAULT_CONTEXT
from service.codec.zoo import DEFAULT_MODEL

REGIONS = {"inside_tile": (1152, 640, 256, 256), "tile": (1024, 512, 512, 512)}  # in the inner tile at row 1, column 2


def best_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    image = Image.open(REPO / "tests" / "data" / "kodim01.png").convert("RGB")
    image = image.resize((image.width * 4, image.height * 4), Image.LANCZOS)
    rows = []
    for context in (0, DEFAULT_CONTEXT):
        codec = Codec(context=context)
        data = codec.compress(image, quality=4.0).data
        codec.decompress(data, region=REGIONS["tile"])  # warm-up: sessions
        row = {"context": context, "bytes": len(data)}
        for name, region in REGIONS.items():
            row[f"{name}_ms"] = best_ms(lambda: codec.decompress(data, region=region), args.repeats)
        row["full_ms"] = best_ms(lambda: codec.decompress(data), args.repeats)
        rows.append(row)
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "model": DEFAULT_MODEL, "image": "kodim01 x4 (3072x2048)",
              "tile": 512, "regions": REGIONS, "quality": 4.0, "rows": rows}
    Path(__file__).with_name("region_decode.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{DEFAULT_MODEL}, {report['image']}, 512 px tiles, quality 4; {report['machine']}; best of {args.repeats}, ms")
    print("| context px | bytes | 256 px region in a tile, ms | one inner tile, ms | whole image, ms |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['context']} | {r['bytes']} | {r['inside_tile_ms']:.0f} | {r['tile_ms']:.0f} | {r['full_ms']:.0f} |")


if __name__ == "__main__":
    main()
