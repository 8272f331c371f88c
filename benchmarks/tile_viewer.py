"""A map-style viewer through the HTTP service: every 512 px tile of a large image requested as its own
region, one request at a time in raster order, from a cold cache. This is where context costs most,
since each tile reads its neighbours' latents; the service caches decoded latents so each tile's
payload is entropy-decoded about once.

The image is kodim01 upscaled 4x (Lanczos, 3072x2048: 6x4 tiles), coded with the default model at
quality 6 (no deblocking without context, so each independent tile decodes alone), with and without
context. One service (embedded mode: in-process cache, 1 worker) decodes both.

    .venv/bin/python benchmarks/tile_viewer.py

Prints a table and writes benchmarks/tile_viewer.json.
"""
from __future__ import annotations

import json
import statistics
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
from tests.service_harness import ServiceProcess

TILE, QUALITY = 512, 6.0


def main() -> None:
    image = Image.open(REPO / "tests" / "data" / "kodim01.png").convert("RGB")
    image = image.resize((image.width * 4, image.height * 4), Image.LANCZOS)
    regions = [(x, y, TILE, TILE) for y in range(0, image.height, TILE) for x in range(0, image.width, TILE)]
    streams = {context: Codec(context=context).compress(image, quality=QUALITY).data for context in (0, DEFAULT_CONTEXT)}
    service = ServiceProcess().start()
    rows = []
    try:
        with service.client(timeout=120) as client:
            for context, data in streams.items():
                latencies = []
                for x, y, w, h in regions:
                    t = time.perf_counter()
                    r = client.post("/decompress", content=data, headers={"Content-Type": "application/vnd.lic"},
                                    params={"region": f"{x},{y},{w},{h}", "format": "png"})
                    latencies.append(1000 * (time.perf_counter() - t))
                    assert r.status_code == 200, r.text
                latent = {k: service.metric("lic_latent_cache_requests_total", result=k) for k in ("hit", "miss")}
                rows.append({"context": context, "bytes": len(data), "requests": len(regions), "total_s": sum(latencies) / 1000,
                             "p50_ms": statistics.median(latencies), "max_ms": max(latencies), "latent_cache_so_far": latent})
    finally:
        service.stop()
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "model": DEFAULT_MODEL, "image": "kodim01 x4 (3072x2048)",
              "tile": TILE, "quality": QUALITY, "rows": rows}
    Path(__file__).with_name("tile_viewer.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{DEFAULT_MODEL}, {report['image']}, {len(regions)} tile requests in raster order, quality {QUALITY:g}; {report['machine']}")
    print("| context px | total s | p50 ms | max ms | latent cache hits / misses (cumulative) |\n|---|---|---|---|---|")
    for r in rows:
        c = r["latent_cache_so_far"]
        print(f"| {r['context']} | {r['total_s']:.1f} | {r['p50_ms']:.0f} | {r['max_ms']:.0f} | {c['hit']:.0f} / {c['miss']:.0f} |")


if __name__ == "__main__":
    main()
