"""Per-stage time of one batch of 512x512 tiles through the worker code path, to see where a request's
time goes and what an accelerator would change:

    .venv/bin/python benchmarks/stage_times.py [--batch 8] [--repeats 5]

analysis = g_a (onnxruntime); entropy_encode = h_a + integer h_s + ANS; entropy_decode = ANS + integer
h_s; synthesis = g_s. Prints a table and writes benchmarks/stage_times.json (median of the repeats).
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
from service.codec import Codec  # noqa: E402
from service.codec.zoo import DEFAULT_MODEL  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quality", type=float, default=4.0)
    args = p.parse_args()
    photo = np.asarray(Image.open(Path(__file__).resolve().parents[1] / "tests" / "data" / "kodim01.png").convert("RGB"))
    tiles = np.stack([np.roll(photo, 37 * i, axis=1)[:512, :512].transpose(2, 0, 1) for i in range(args.batch)]).astype(np.float32) / 255
    coder = Codec().coder(DEFAULT_MODEL)
    q = np.full(args.batch, args.quality)
    runs: dict[str, list[float]] = {"analysis": [], "entropy_encode": [], "entropy_decode": [], "synthesis": []}
    for _ in range(args.repeats + 1):
        t0 = time.perf_counter()
        y = coder.analyze(tiles)
        t1 = time.perf_counter()
        payloads, _ = coder.encode(y, q)
        t2 = time.perf_counter()
        latents = coder.decode_latents(payloads, (512, 512))
        t3 = time.perf_counter()
        coder.synthesize(coder.synthesis_feeds(latents, q))
        t4 = time.perf_counter()
        for key, value in zip(runs, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            runs[key].append(value)
    stages = {k: 1000 * float(np.median(v[1:])) for k, v in runs.items()}  # first run is warm-up
    megapixels = args.batch * 512 * 512 / 1e6
    report = {
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, onnxruntime CPU",
        "model": DEFAULT_MODEL, "batch": args.batch, "tile": 512, "quality": args.quality,
        "ms_per_batch": stages, "ms_per_megapixel": {k: v / megapixels for k, v in stages.items()},
    }
    Path(__file__).with_name("stage_times.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['machine']}, {args.batch} tiles of 512x512 ({megapixels:.2f} MP), quality {args.quality:g}")
    print("| stage | ms per batch | ms per megapixel |\n|---|---|---|")
    for k, v in stages.items():
        print(f"| {k} | {v:.0f} | {v / megapixels:.0f} |")


if __name__ == "__main__":
    main()
