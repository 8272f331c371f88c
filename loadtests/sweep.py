"""Concurrency sweeps of POST /compress in the manner of Triton's perf_analyzer.

Each concurrency level runs in windows (default 10 s) until two consecutive windows agree on
throughput within 10%; the level is reported from those two windows: megapixels/s, requests/s,
p50/p90/p99 latency, error rate, and the mean batch size read from the service's own metrics.

    python loadtests/sweep.py saturation   # lic (defaults), lic with LIC_TRANSFORMS=int8, then Pillow WebP and
                                           # AVIF behind the same kind of endpoint: 1, 2, 4, ... clients until
                                           # p99 passes --p99-limit-ms
    python loadtests/sweep.py batching     # lic with LIC_MAX_BATCH=8 and =1 at 1, 4, 16, 64 clients

Both start the services themselves, drive them with Kodak images (768x512), print a table, and write
JSON (and for saturation a plot) under benchmarks/. Client and service share this machine's CPU.
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
from service.bench.speed import vector_isa
from service.core.config import Settings
from tests.service_harness import ServiceProcess, baseline_server

PIXELS = 768 * 512


async def window(url: str, params: dict, images: list[bytes], concurrency: int, seconds: float, path: str = "/compress",
                 content_type: str = "image/png") -> dict:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(index: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, timeout=600) as http:
            i = index
            while time.monotonic() < stop:
                started = time.perf_counter()
                r = await http.post(path, content=images[i % len(images)], headers={"Content-Type": content_type}, params=params)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
                i += concurrency

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return {"latencies": latencies, "errors": errors, "seconds": time.monotonic() - started}


def measure_level(url: str, params: dict, images: list[bytes], concurrency: int, window_s: float, metric=None, *,
                  path: str = "/compress", content_type: str = "image/png", pixels: int = PIXELS, max_windows: int = 5) -> dict:
    """Windows until two consecutive ones agree within 10% on throughput (at most ``max_windows``);
    ``pixels``: of each request's image."""
    before = metric() if metric else None
    windows = []
    for _ in range(max_windows):
        windows.append(asyncio.run(window(url, params, images, concurrency, window_s, path, content_type)))
        if len(windows) >= 2:
            a, b = (len(w["latencies"]) / w["seconds"] for w in windows[-2:])
            if a > 0 and abs(a - b) / a <= 0.10:
                break
    last = windows[-2:]
    lat = np.array([x for w in last for x in w["latencies"]]) * 1000
    seconds = sum(w["seconds"] for w in last)
    done, errors = len(lat), sum(w["errors"] for w in last)
    a, b = (len(w["latencies"]) / w["seconds"] for w in last)
    row = {
        "concurrency": concurrency, "windows": len(windows), "stable": bool(a > 0 and abs(a - b) / a <= 0.10),
        "requests_per_s": done / seconds, "megapixels_per_s": done * pixels / 1e6 / seconds,
        "p50_ms": float(np.percentile(lat, 50)) if done else None, "p90_ms": float(np.percentile(lat, 90)) if done else None,
        "p95_ms": float(np.percentile(lat, 95)) if done else None,
        "p99_ms": float(np.percentile(lat, 99)) if done else None, "error_rate": errors / max(1, errors + done),
    }
    if metric:
        batches, tiles = (after - prior for after, prior in zip(metric(), before))
        row["mean_batch_size"] = tiles / batches if batches else None
    return row


def lic_batches(service: ServiceProcess):
    return lambda: (service.metric("lic_batch_size_count", stage="encode"), service.metric("lic_batch_size_sum", stage="encode"))


def print_table(rows: list[dict], label: str) -> None:
    for r in rows:
        batch = f"{r['mean_batch_size']:.2f}" if r.get("mean_batch_size") else "-"
        print(f"| {label} | {r['concurrency']} | {r['megapixels_per_s']:.2f} | {r['requests_per_s']:.2f} | {r['p50_ms']:.0f} | "
              f"{r['p90_ms']:.0f} | {r['p99_ms']:.0f} | {100 * r['error_rate']:.1f}% | {batch} |", flush=True)


def machine() -> str:
    return (f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores ({vector_isa()}), CPU only; "
            "load client on the same machine")


def batching(args, images: list[bytes]) -> dict:
    results = {}
    for name, max_batch in (("batching_on", 8), ("batching_off", 1)):
        service = ServiceProcess(LIC_MAX_BATCH=str(max_batch), LIC_MAX_QUEUE_TILES="8192").start()
        try:
            results[name] = [measure_level(service.url, {"quality": 4}, images, c, args.window, lic_batches(service)) for c in (1, 4, 16, 64)]
        finally:
            service.stop()
        print_table(results[name], f"lic max_batch={max_batch}")
    return results


def saturate(url: str, params: dict, images: list[bytes], args, metric=None, label="") -> list[dict]:
    rows, concurrency = [], 1
    while concurrency <= args.max_concurrency:
        rows.append(measure_level(url, params, images, concurrency, args.window, metric))
        print_table(rows[-1:], label)
        if rows[-1]["p99_ms"] is None or rows[-1]["p99_ms"] > args.p99_limit_ms:
            break
        concurrency *= 2
    return rows


def saturation(args, images: list[bytes]) -> dict:
    results = {}
    for name, env in {"lic": {}, "lic int8": {"LIC_TRANSFORMS": "int8"}}.items():
        service = ServiceProcess(LIC_MAX_QUEUE_TILES="8192", **env).start()
        try:
            results[name] = saturate(service.url, {"quality": 4}, images, args, lic_batches(service), f"{name} q4")
        finally:
            service.stop()
    with baseline_server() as url:
        for codec in ("webp", "avif"):
            results[codec] = saturate(url, {"codec": codec}, images, args, label=f"Pillow {codec}")
    plot(results, Path(args.out).with_suffix(".png"))
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in results.items():
        c = [r["concurrency"] for r in rows]
        left.plot(c, [r["megapixels_per_s"] for r in rows], marker="o", label=name)
        right.plot(c, [r["p99_ms"] for r in rows], marker="o", label=name)
    for ax, label in ((left, "megapixels/s"), (right, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("POST /compress, Kodak 768x512, " + machine())
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["saturation", "batching"])
    p.add_argument("--kodak", default=str(REPO.parent / "shared" / "data" / "kodak"))
    p.add_argument("--window", type=float, default=10.0, help="seconds per measurement window")
    p.add_argument("--p99-limit-ms", type=float, default=5000.0)
    p.add_argument("--max-concurrency", type=int, default=64)
    p.add_argument("--out")
    args = p.parse_args()
    args.out = args.out or str(REPO / "benchmarks" / f"service_{args.mode}.json")
    images = [path.read_bytes() for path in sorted(Path(args.kodak).glob("*.png"))[:8]]
    print("| target | clients | MP/s | req/s | p50 ms | p90 ms | p99 ms | errors | mean batch |\n|---|---|---|---|---|---|---|---|---|")
    results = (batching if args.mode == "batching" else saturation)(args, images)
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "request": "POST /compress, Kodak 768x512 PNG",
              "model": Settings().default_model,
              "window_s": args.window, "p99_limit_ms": args.p99_limit_ms, **results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
