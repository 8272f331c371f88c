"""Resident memory of the service as the CPU overlay runs it: gateway and worker RSS after warm-up,
after a Kodak round trip, after a 12 MP round trip, and after concurrent 12 MP uploads, for each
onnxruntime arena mode; the Kubernetes memory limits come from this table.

    .venv/bin/python benchmarks/service_memory.py [--arenas on shrink] [--uploads 4]

Starts `lic serve` (default settings, in-process cache, the default warm-up) on a free port per arena
mode, sends real requests over HTTP, and reads each process's RSS from /proc. Prints a table and
writes benchmarks/service_memory.json.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
KODIM01 = ROOT / "tests" / "data" / "kodim01.png"


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096 / 2**20


def workers(pid: int) -> list[int]:
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def photo_12mp() -> bytes:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:3000, 0:4000]
    base = np.stack([128 + 100 * np.sin(xx / 37), 128 + 100 * np.cos(yy / 23), (xx + yy) % 256], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def measure(arena: str, uploads: int, big: bytes) -> dict:
    import httpx  # (the test extra; deploy/image_test.py imports photo_12mp from here with run-time packages only)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LIC_PORT": str(port), "LIC_ARENA": arena}
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

        def snapshot() -> dict:
            return {"gateway_mib": round(rss_mib(server.pid), 1), "workers_mib": [round(rss_mib(w), 1) for w in workers(server.pid)]}

        def roundtrip(data: bytes) -> str:
            """The two statuses: under concurrent load some requests may pass their deadline (503)."""
            with httpx.Client(base_url=url, timeout=600) as client:
                lic = client.post("/compress", content=data, headers={"content-type": "image/png"}, params={"quality": 4})
                if lic.status_code != 200:
                    return f"{lic.status_code}"
                return f"200/{client.post('/decompress', content=lic.content, headers={'content-type': 'application/vnd.lic'}).status_code}"

        states = {"after warm-up": snapshot()}
        states["after a Kodak round trip"] = snapshot() | {"statuses": [roundtrip(KODIM01.read_bytes())]}
        states["after a 12 MP round trip"] = snapshot() | {"statuses": [roundtrip(big)]}
        with cf.ThreadPoolExecutor(uploads) as pool:
            statuses = list(pool.map(lambda _: roundtrip(big), range(uploads)))
        states[f"after {uploads} concurrent 12 MP round trips"] = snapshot() | {"statuses": statuses}
        return states
    finally:
        server.terminate()
        server.wait(120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arenas", nargs="+", default=["on", "shrink"])
    p.add_argument("--uploads", type=int, default=4)
    args = p.parse_args()
    big = photo_12mp()
    results = {}
    print(f"{'arena':7} {'state':38} {'gateway MiB':>12} {'worker processes MiB':>36}")
    for arena in args.arenas:
        results[arena] = measure(arena, args.uploads, big)
        for state, m in results[arena].items():
            print(f"{arena:7} {state:38} {m['gateway_mib']:12.0f} {', '.join(f'{w:.0f}' for w in m['workers_mib']):>36}  "
                  f"{' '.join(m.get('statuses', []))}")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    out = ROOT / "benchmarks" / "service_memory.json"
    out.write_text(json.dumps({"machine": machine, "settings": "defaults (LIC_WARMUP_BATCHES 1,2,4,8; LIC_MAX_DECODE_BYTES 1.5 GiB; tile 512)",
                               "command": "benchmarks/service_memory.py " + " ".join(sys.argv[1:]), "results": results}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
