"""Per-stage time of one batch of 512x512 tiles through the worker code path, to see where a request's
time goes and what an accelerator would change:

    .venv/bin/python benchmarks/stage_times.py [--batch 8] [--repeats 5]

The tiles are inner tiles of a large image, coded with the default context (32 px): analysis = g_a on
576x576 windows; entropy_encode = h_a + integer h_s + ANS; entropy_decode = ANS + integer h_s;
synthesis = g_s on 36x36 latent windows. Milliseconds per megapixel count the tiles' own pixels.
Prints a table and writes benchmarks/stage_times.json (median of the repeats).
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
from service.codec import Codec
from service.codec.limits import DEFAULT_CONTEXT
from service.codec.windows import analyze_windows, synthesize_windows
from service.codec.tiles import TileView
from service.codec.zoo import DEFAULT_MODEL


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quality", type=float, default=4.0)
    args = p.parse_args()
    photo = np.asarray(Image.open(Path(__file__).resolve().parents[1] / "tests" / "data" / "kodim01.png").convert("RGB"))
    view = TileView((512, 512), (DEFAULT_CONTEXT,) * 4)
    photo = np.pad(photo, ((0, view.window[0] - photo.shape[0]), (0, 0), (0, 0)), mode="reflect")  # 768x512 -> 768x576
    windows = [np.roll(photo, 37 * i, axis=1)[: view.window[0], : view.window[1]] for i in range(args.batch)]
    coder = Codec().coder(DEFAULT_MODEL)
    q = np.full(args.batch, args.quality)
    runs: dict[str, list[float]] = {"analysis": [], "entropy_encode": [], "entropy_decode": [], "synthesis": []}
    for _ in range(args.repeats + 1):
        t0 = time.perf_counter()
        y = analyze_windows(coder, view, windows)
        t1 = time.perf_counter()
        payloads, _ = coder.encode(y, q)
        t2 = time.perf_counter()
        feeds = coder.synthesis_feeds(coder.decode_latents(payloads, (512, 512)), q)
        t3 = time.perf_counter()
        grown = [{name: view.grow(array[k]) for name, array in feeds.items()} for k in range(args.batch)]
        t4 = time.perf_counter()
        synthesize_windows(coder, view, grown, [(512, 512)] * args.batch)
        t5 = time.perf_counter()
        for key, value in zip(runs, (t1 - t0, t2 - t1, t3 - t2, t5 - t4)):
            runs[key].append(value)
    stages = {k: 1000 * float(np.median(v[1:])) for k, v in runs.items()}  # first run is warm-up
    megapixels = args.batch * 512 * 512 / 1e6
    report = {
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, onnxruntime CPU",
        "model": DEFAULT_MODEL, "batch": args.batch, "tile": 512, "context": DEFAULT_CONTEXT, "quality": args.quality,
        "ms_per_batch": stages, "ms_per_megapixel": {k: v / megapixels for k, v in stages.items()},
    }
    Path(__file__).with_name("stage_times.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['machine']}, {args.batch} tiles of 512x512 ({megapixels:.2f} MP), quality {args.quality:g}")
    print("| stage | ms per batch | ms per megapixel |\n|---|---|---|")
    for k, v in stages.items():
        print(f"| {k} | {v:.0f} | {v / megapixels:.0f} |")


if __name__ == "__main__":
    main()
