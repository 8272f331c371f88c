"""Throughput and latency of POST /compress at 1, 4, 16, 64 concurrent clients, batching on and off,
side by side in one run on this machine.

Starts the service twice (``LIC_MAX_BATCH=8`` and ``LIC_MAX_BATCH=1``, both with no queue delay),
drives each concurrency level for a fixed time with Kodak images (768x512: two tiles each, 512 and
256 px wide, so batches form per tile shape across requests), and reads the mean batch size from
the service's own metrics. Writes benchmarks/service_batching.json and prints a table.

    .venv/bin/python loadtests/batching_sweep.py [--kodak ../shared/data/kodak] [--seconds 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.service_harness import ServiceProcess  # noqa: E402

CONCURRENCY = [1, 4, 16, 64]


async def drive(url: str, images: list[bytes], concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(index: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            i = index
            while time.monotonic() < stop:
                started = time.perf_counter()
                r = await http.post("/compress", content=images[i % len(images)], headers={"Content-Type": "image/png"}, params={"quality": 4})
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
                i += concurrency

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.monotonic() - started
    lat = np.array(latencies)
    return {
        "concurrency": concurrency, "requests": len(lat), "errors": errors, "seconds": elapsed,
        "requests_per_s": len(lat) / elapsed, "megapixels_per_s": len(lat) * 768 * 512 / 1e6 / elapsed,
        "p50_ms": 1000 * float(np.percentile(lat, 50)), "p95_ms": 1000 * float(np.percentile(lat, 95)),
        "p99_ms": 1000 * float(np.percentile(lat, 99)),
    }


def sweep(max_batch: int, images: list[bytes], seconds: float) -> list[dict]:
    service = ServiceProcess(LIC_MAX_BATCH=str(max_batch), LIC_MAX_QUEUE_DELAY_MS="0", LIC_WARMUP_BATCHES="1",
                             LIC_MAX_QUEUE_TILES="4096").start()
    rows = []
    try:
        for concurrency in CONCURRENCY:
            batches0, tiles0 = service.metric("lic_batch_size_count", stage="encode"), service.metric("lic_batch_size_sum", stage="encode")
            row = asyncio.run(drive(service.url, images, concurrency, seconds))
            batches = service.metric("lic_batch_size_count", stage="encode") - batches0
            row["mean_batch_size"] = (service.metric("lic_batch_size_sum", stage="encode") - tiles0) / max(batches, 1)
            row["max_batch"] = max_batch
            rows.append(row)
            print(f"  max_batch {max_batch} c={concurrency}: {row['megapixels_per_s']:.2f} MP/s, p50 {row['p50_ms']:.0f} ms, "
                  f"p99 {row['p99_ms']:.0f} ms, mean batch {row['mean_batch_size']:.2f}", flush=True)
    finally:
        service.stop()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", default=str(REPO.parent / "shared" / "data" / "kodak"))
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "service_batching.json"))
    args = p.parse_args()
    images = [path.read_bytes() for path in sorted(Path(args.kodak).glob("*.png"))[:8]]
    results = {"batching_on": sweep(8, images, args.seconds), "batching_off": sweep(1, images, args.seconds)}
    report = {
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; client and service share the CPU",
        "date": time.strftime("%Y-%m-%d"), "endpoint": "POST /compress, quality 4, Kodak 768x512 PNGs",
        "seconds_per_level": args.seconds, **results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print("| clients | batching | MP/s | req/s | p50 ms | p95 ms | p99 ms | mean batch | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for on, off in zip(results["batching_on"], results["batching_off"]):
        for name, row in (("on (8)", on), ("off (1)", off)):
            print(f"| {row['concurrency']} | {name} | {row['megapixels_per_s']:.2f} | {row['requests_per_s']:.2f} | {row['p50_ms']:.0f} | "
                  f"{row['p95_ms']:.0f} | {row['p99_ms']:.0f} | {row['mean_batch_size']:.2f} | {row['errors']} |")


if __name__ == "__main__":
    main()
