"""The service on a GPU, end to end, beside the same service on the machine's CPU cores and Pillow's
AVIF and WebP behind the same kind of endpoint: one run, one machine (issue 23).

    python3 benchmarks/gpu_service.py [--kodak gpu/kodak] [--out DIR] [--quick]

benchmarks/gpu_service.sh runs it on the lent GPU machine; ``--quick`` is the dry run on any machine
(the "GPU" service then runs on the CPU, with few clients and short windows). Phases, in order:

1. ``hyper_device``: the library with the PyTorch backend on the GPU, the integer hyper-synthesis on
   the GPU or on the CPU (``LIC_TORCH_HYPER_DEVICE``), encode and decode ms per Kodak image.
2. ``gpu``: the real service (uvicorn, worker processes; ``LIC_BACKEND=torch``, every worker on the
   GPU, each doing its own entropy coding on the CPU), POST /compress and /decompress (PNG out, no
   tile cache) with Kodak images (768x512) and 12 MP mosaics of them, 1 to 64 clients. Per level:
   MP/s, p50/p99, mean batch, GPU utilisation (nvidia-smi), and per-stage time from the service's own
   metrics. Then ``refine=40`` on Kodak.
3. ``cpu``: the same service with onnxruntime on all the machine's cores.
4. ``pillow``: AVIF (speed 6) and WebP (method 4) encode and decode (loadtests/baseline_server.py).

Writes ``gpu_service.json`` (``compress_mp_s``, ``decompress_mp_s``, ``cpu_compress_mp_s``, ... and every
row) and ``gpu_service.png`` to --out, and prints the tables as it goes.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from loadtests.sweep import measure_level
from tests.service_harness import ServiceProcess, baseline_server

KODAK_PIXELS = 768 * 512
MOSAIC = (5, 6)  # Kodak photos across and down: 3840x3072, 11.8 MP
STAGES = (("lic_inference_seconds", "stage", ("analysis", "synthesis")), ("lic_entropy_coding_seconds", "direction", ("encode", "decode")),
          ("lic_queue_wait_seconds", "stage", ("encode", "entropy_decode", "synthesis")),
          ("lic_batch_size", "stage", ("encode", "entropy_decode", "synthesis")))


class GpuSampler:
    """nvidia-smi's utilisation and memory every 200 ms, in a thread; ``mean(t0, t1)`` over a span."""

    def __init__(self):
        self.samples: list[tuple[float, float, float]] = []
        try:
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except FileNotFoundError:
            self.proc = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                util, memory = (float(v) for v in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((time.monotonic(), util, memory))

    def mean(self, t0: float, t1: float) -> dict | None:
        span = [(u, m) for t, u, m in self.samples if t0 <= t <= t1]
        if not span:
            return None
        return {"gpu_util_percent": float(np.mean([u for u, _ in span])), "gpu_memory_mib_max": float(max(m for _, m in span))}

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()


def kodak_images(folder: Path, quick: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Kodak photos as landscape (512, 768, 3) arrays, and 12 MP mosaics of them (two orderings)."""
    photos = []
    for path in sorted(folder.glob("kodim*.*"))[: 4 if quick else 24]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        photos.append(rgb if rgb.shape[1] > rgb.shape[0] else np.ascontiguousarray(np.rot90(rgb)))
    across, down = (2, 2) if quick else MOSAIC
    mosaics = []
    for shift in (0, 7):
        order = [photos[(k + shift) % len(photos)] for k in range(across * down)]
        mosaics.append(np.vstack([np.hstack(order[r * across : (r + 1) * across]) for r in range(down)]))
    return photos, mosaics


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def stage_totals(service: ServiceProcess) -> dict[str, float]:
    totals = {}
    for metric, label, values in STAGES:
        for value in values:
            totals[f"{metric}:{value}:sum"] = service.metric(f"{metric}_sum", **{label: value})
            totals[f"{metric}:{value}:count"] = service.metric(f"{metric}_count", **{label: value})
    return totals


def stage_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per batch, over a level: mean seconds of each stage (and mean tiles of a batch)."""
    means = {}
    for key, prior in before.items():
        if key.endswith(":sum"):
            base = key[: -len(":sum")]
            count = after[base + ":count"] - before[base + ":count"]
            if count:
                means[base.replace("lic_", "").replace("_seconds", "_ms")] = (after[key] - prior) / count * (1 if "batch_size" in base else 1000)
    return means


class Sweep:
    """Levels of concurrent clients against one service; each row also carries GPU and stage figures."""

    def __init__(self, args, sampler: GpuSampler):
        self.args, self.sampler, self.rows = args, sampler, []

    def level(self, target: str, url: str, endpoint: str, bodies: list[bytes], pixels: int, clients: int, params: dict,
              service: ServiceProcess | None = None, content_type: str = "image/png") -> dict:
        before = stage_totals(service) if service else None
        t0 = time.monotonic()
        row = measure_level(url, params, bodies, clients, self.args.window, path=f"/{endpoint}", content_type=content_type,
                            pixels=pixels, max_windows=2)
        t1 = time.monotonic()
        row.update({"target": target, "endpoint": endpoint, "image": "kodak" if pixels == KODAK_PIXELS else f"{pixels / 1e6:.1f} MP",
                    **(self.sampler.mean(t0, t1) or {}), **(stage_means(before, stage_totals(service)) if service else {})})
        self.rows.append(row)
        util = f"{row['gpu_util_percent']:.0f}%" if "gpu_util_percent" in row else "-"
        batch = row.get("batch_size:encode" if endpoint == "compress" else "batch_size:synthesis")
        p50, p99 = (f"{row[k]:.0f}" if row[k] is not None else "-" for k in ("p50_ms", "p99_ms"))
        print(f"| {target} | {endpoint} | {row['image']} | {clients} | {row['megapixels_per_s']:.2f} | {p50} | {p99} | "
              f"{100 * row['error_rate']:.0f}% | {f'{batch:.1f}' if batch else '-'} | {util} |", flush=True)
        return row


def lic_service(env: dict[str, str]) -> ServiceProcess:
    return ServiceProcess(LIC_MAX_QUEUE_TILES="8192", LIC_CACHE_MEMORY_BYTES="0", LIC_REQUEST_TIMEOUT_S="120", **env).start(timeout=600)


def sweep_lic(sweep: Sweep, target: str, service: ServiceProcess, kodak: list[bytes], mosaics: list[bytes], mosaic_pixels: int,
              levels: dict) -> None:
    """compress and decompress, Kodak and 12 MP, at the given client counts (the .lic files coded once first)."""
    with httpx.Client(base_url=service.url, timeout=600) as client:
        coded = {name: [client.post("/compress", content=b, headers={"Content-Type": "image/png"}, params={"quality": 4}).content
                        for b in bodies] for name, bodies in (("kodak", kodak), ("mosaic", mosaics))}
    for name, bodies, pixels in (("kodak", kodak, KODAK_PIXELS), ("mosaic", mosaics, mosaic_pixels)):
        for clients in levels[name]:
            sweep.level(target, service.url, "compress", bodies, pixels, clients, {"quality": 4}, service)
        for clients in levels[name]:
            sweep.level(target, service.url, "decompress", coded[name], pixels, clients, {}, service, "application/vnd.lic")


def hyper_device(kodak: list[np.ndarray], device: str, repeats: int) -> dict:
    """ms per Kodak image through the library, the integer hyper-synthesis on the GPU or on the CPU."""
    from models.torch_backend import TorchBackend
    from service.codec import Codec

    out = {}
    for where in ("same", "cpu"):
        codec = Codec(backend_factory=lambda p, where=where: TorchBackend.from_package(p, device, hyper_device=device if where == "same" else "cpu"))
        images = [Image.fromarray(rgb) for rgb in kodak]
        streams = [codec.compress(im, quality=4).data for im in images]  # warm-up (cudnn's algorithm search)
        for stream in streams:
            codec.decompress(stream)
        t0 = time.perf_counter()
        for _ in range(repeats):
            streams = [codec.compress(im, quality=4).data for im in images]
        t1 = time.perf_counter()
        for _ in range(repeats):
            for stream in streams:
                codec.decompress(stream)
        t2 = time.perf_counter()
        n = repeats * len(images)
        out[where] = {"encode_ms": 1000 * (t1 - t0) / n, "decode_ms": 1000 * (t2 - t1) / n}
        print(f"| on {device if where == 'same' else 'the CPU'} ({where}) | {out[where]['encode_ms']:.1f} | {out[where]['decode_ms']:.1f} |", flush=True)
    return out


def best(rows: list[dict], **match) -> dict | None:
    chosen = [r for r in rows if all(r.get(k) == v for k, v in match.items()) and r["error_rate"] == 0]
    return max(chosen, key=lambda r: r["megapixels_per_s"], default=None)


def summary(rows: list[dict]) -> dict:
    """The issue's keys: best MP/s over the levels without errors, per target, endpoint and image."""
    keys = {}
    for target, prefix in (("gpu", ""), ("cpu", "cpu_"), ("avif", "avif_"), ("webp", "webp_")):
        for endpoint in ("compress", "decompress"):
            for image, suffix in (("kodak", ""), ("12mp", "_12mp")):
                row = best([r for r in rows if (r["image"] == "kodak") == (image == "kodak")], target=target, endpoint=endpoint)
                if row:
                    keys[f"{prefix}{endpoint}_mp_s{suffix}"] = round(row["megapixels_per_s"], 2)
    for endpoint in ("compress", "decompress"):
        at16 = [r for r in rows if r["target"] == "gpu" and r["endpoint"] == endpoint and r["image"] == "kodak" and r["concurrency"] == 16]
        if at16:
            keys[f"{endpoint}_p99_ms_at_16_clients"] = round(at16[0]["p99_ms"], 1)
        if keys.get(f"{endpoint}_mp_s") and keys.get(f"cpu_{endpoint}_mp_s"):
            keys[f"{endpoint}_gpu_over_cpu"] = round(keys[f"{endpoint}_mp_s"] / keys[f"cpu_{endpoint}_mp_s"], 2)
    return keys


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, endpoint in zip(axes, ("compress", "decompress")):
        series: dict[str, list[dict]] = {}
        for r in rows:
            if r["endpoint"] == endpoint:
                series.setdefault(f"{r['target']} {r['image']}", []).append(r)
        for name, points in series.items():
            ax.plot([p["concurrency"] for p in points], [p["megapixels_per_s"] for p in points], marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="megapixels/s", title=f"POST /{endpoint}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", type=Path, default=REPO / "gpu" / "kodak")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks")
    p.add_argument("--window", type=float, default=3.0, help="seconds per measurement window (two windows a level)")
    p.add_argument("--gpu-workers", type=int, default=8, help="service workers sharing the GPU (each codes latents on the CPU)")
    p.add_argument("--quick", action="store_true", help="dry run: the 'GPU' service on the CPU, 4 photos, few clients")
    args = p.parse_args()
    if args.quick:
        args.window = min(args.window, 1.0)
    import torch

    cuda = torch.cuda.is_available() and not args.quick
    device = "cuda" if cuda else "cpu"
    gpu_name = torch.cuda.get_device_name(0) if cuda else None
    cores = os.cpu_count() or 1
    sampler = GpuSampler()
    sweep = Sweep(args, sampler)
    photos, mosaics = kodak_images(args.kodak, args.quick)
    kodak_png, mosaic_png = [png(rgb) for rgb in photos], [png(rgb) for rgb in mosaics]
    levels = {"kodak": (1, 2) if args.quick else (1, 4, 16, 64), "mosaic": (1,) if args.quick else (1, 4, 16)}
    report: dict = {"gpu": gpu_name, "machine": f"{platform.machine()}, {cores} CPU cores", "date": time.strftime("%Y-%m-%d"),
                    "torch": torch.__version__, "quick": args.quick, "window_s": args.window,
                    "request": "quality 4, default model; /decompress answers PNG, tile cache off; client on the same machine"}
    args.out.mkdir(parents=True, exist_ok=True)
    out_json = args.out / "gpu_service.json"

    def save() -> None:  # after every phase: a run cut off still hands back what it measured
        out_json.write_text(json.dumps({**report, **summary(sweep.rows), "rows": sweep.rows}, indent=2) + "\n")

    print("| integer hyper-synthesis | encode ms | decode ms |\n|---|---|---|", flush=True)
    report["hyper_device"] = hyper_device(photos[:4], device, 1 if args.quick else 3)
    hyper = "cpu" if report["hyper_device"]["cpu"]["decode_ms"] < report["hyper_device"]["same"]["decode_ms"] else "same"
    report["gpu_settings"] = {"LIC_BACKEND": "torch", "LIC_DEVICE": device, "LIC_WORKERS": str(1 if args.quick else args.gpu_workers),
                              "LIC_THREADS_PER_WORKER": str(max(1, cores // (1 if args.quick else args.gpu_workers))),
                              "LIC_MAX_BATCH": "16", "LIC_MAX_DECODE_BYTES": str(8 << 30), "LIC_TORCH_HYPER_DEVICE": hyper,
                              "LIC_WARMUP_BATCHES": "1,4,16", "LIC_IMAGE_WORKERS": "4"}
    save()

    print("| target | endpoint | image | clients | MP/s | p50 ms | p99 ms | errors | mean batch | GPU |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    started = time.monotonic()
    service = lic_service(report["gpu_settings"])
    report["gpu_service_start_s"] = round(time.monotonic() - started, 1)
    try:
        sweep_lic(sweep, "gpu", service, kodak_png, mosaic_png, mosaics[0].shape[0] * mosaics[0].shape[1], levels)
        save()
        # 8 clients: LIC_MAX_IMAGE_JOBS (8) whole-image jobs may run or wait; more would be refused with 503
        refine = sweep.level("gpu refine=40", service.url, "compress", kodak_png, KODAK_PIXELS, 2 if args.quick else 8,
                             {"quality": 4, "refine": 2 if args.quick else 40}, service)
        report["refine40_mp_s"] = round(refine["megapixels_per_s"], 3)
    finally:
        service.stop()
    save()

    cpu_workers = 1 if args.quick else 4
    service = lic_service({"LIC_DEVICE": "cpu", "LIC_WORKERS": str(cpu_workers), "LIC_THREADS_PER_WORKER": str(max(1, cores // cpu_workers)),
                           "LIC_WARMUP_BATCHES": "1,4,8"})
    try:
        sweep_lic(sweep, "cpu", service, kodak_png, mosaic_png, mosaics[0].shape[0] * mosaics[0].shape[1],
                  {"kodak": levels["kodak"][-2:], "mosaic": levels["mosaic"][-2:-1] or levels["mosaic"]})
    finally:
        service.stop()
    save()

    with baseline_server() as url, httpx.Client(base_url=url, timeout=600) as client:
        for codec in ("avif", "webp"):
            files = [client.post("/compress", content=b, params={"codec": codec}).content for b in kodak_png]
            for clients in levels["kodak"][-2:]:
                sweep.level(codec, url, "compress", kodak_png, KODAK_PIXELS, clients, {"codec": codec})
                sweep.level(codec, url, "decompress", files, KODAK_PIXELS, clients, {}, content_type=f"image/{codec}")
    sampler.stop()
    save()
    plot(sweep.rows, args.out / "gpu_service.png", f"{gpu_name or 'no GPU (dry run)'}, {cores} CPU cores; {report['request']}")
    print(json.dumps(summary(sweep.rows), indent=1))
    print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
