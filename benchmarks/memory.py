"""Peak memory and time of the transforms per window, per model and onnxruntime arena mode, which the
service's transform memory bound (``ModelPackage.window_bytes``, ``LIC_MAX_DECODE_BYTES``) and its
arena setting (``LIC_ARENA``) rest on:

    .venv/bin/python benchmarks/memory.py [--windows 576 1088] [--batches 1 4] [--models ms-128-192-r7]

Each measurement runs in a fresh process (peak RSS is a high-water mark): it opens the model's g_a or
g_s session, runs one batch of random windows twice, and reports the rise of the process's peak RSS
over the loaded session, the RSS left once the runs are over (what the arena keeps), and the second
run's time (one thread). Prints a table and writes benchmarks/memory.json with bytes per window pixel
per channel of N, the constant the bound uses.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROBE = """
import json, resource, sys, time
import numpy as np
import onnx
from service.codec.backend import OnnxBackend
from service.codec.zoo import load_model

model, graph, side, batch, arena = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
package = load_model(model)
backend = OnnxBackend(package, providers=["CPUExecutionProvider"], threads=1, arena=arena)
session = backend.session(graph)
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
if graph == "g_a":
    feeds = {"x": np.random.default_rng(0).random((batch, 3, side, side), np.float32)}
else:
    channels = {i.name: i.type.tensor_type.shape.dim[1].dim_value for i in onnx.load(str(package.path("g_s.onnx"))).graph.input}
    strides = {level.hyper: level.stride for level in package.levels if level.hyper} | {"y_hat": package.levels[-1].stride}
    feeds = {name: np.random.default_rng(0).normal(0, 1, (batch, channels[name], side // strides[name], side // strides[name])).astype(np.float32)
             for name in channels}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
backend.run(graph, feeds)
started = time.perf_counter()
backend.run(graph, feeds)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_rise": peak - before, "kept": rss() - before, "seconds": seconds}))
"""


def probe(model: str, graph: str, side: int, batch: int, arena: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, model, graph, str(side), str(batch), arena],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from service.codec.backend import ARENA_MODES
    from service.codec.zoo import available_models, load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, nargs="+", default=[576, 1088])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--models", nargs="+", default=None)
    args = p.parse_args()
    rows = []
    print(f"{'model':16} {'graph':5} {'window':>6} {'batch':>5} {'arena':>6} {'peak MiB':>9} {'kept MiB':>9} {'B/px/N':>7} {'s':>6}")
    for model in args.models or available_models():
        n = load_model(model).manifest.widths["n"]
        for graph in ("g_a", "g_s"):
            for side in args.windows:
                for batch in args.batches:
                    for arena in ARENA_MODES:
                        m = probe(model, graph, side, batch, arena)
                        per = m["peak_rise"] / (batch * side * side * n)
                        rows.append({"model": model, "graph": graph, "window": side, "batch": batch, "arena": arena,
                                     "peak_rise_bytes": m["peak_rise"], "kept_bytes": m["kept"], "bytes_per_pixel_per_n": round(per, 2),
                                     "seconds": round(m["seconds"], 3)})
                        print(f"{model:16} {graph:5} {side:6d} {batch:5d} {arena:>6} {m['peak_rise'] / 2**20:9.0f} "
                              f"{m['kept'] / 2**20:9.0f} {per:7.2f} {m['seconds']:6.2f}")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    out = ROOT / "benchmarks" / "memory.json"
    out.write_text(json.dumps({"machine": machine, "command": "benchmarks/memory.py " + " ".join(sys.argv[1:]), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
