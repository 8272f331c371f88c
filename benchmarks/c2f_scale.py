"""What the coarse-to-fine model costs at its published widths, on this CPU, beside the default (issue 26).

The zoo's coarse-to-fine release is a quarter of the paper's width (N=64, M=96, z2 64, z1 32). Before
GPU leases train it at the published widths (N=M=192, z2 256, z1 128: ../shared/anchors/RD_ANCHORS.md,
section 1) and at the intermediate N=128, this measures what each width would cost to run: parameters,
multiply-adds per pixel of each graph (PyTorch's FlopCounterMode), and encode/decode ms per Kodak image
through the library (onnxruntime, 512 px tiles, 2 threads) with the time of each graph. Untrained
widths are randomly initialised and exported through the real exporter: their transforms time as
trained ones do; their entropy coding does not (random latents), so only the graphs' times compare.
Every model codes every image in turn (interleaved), medians over the repeats.

    .venv/bin/python benchmarks/c2f_scale.py [--kodak DIR] [--images 4] [--repeats 3]

Prints a table and writes benchmarks/c2f_scale.json.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.architectures import build
from models.export import example_inputs, export
from models.graphs import runtime_graphs
from models.release import load_checkpoint, release_source
from service.bench.speed import machine
from service.codec import Codec
from service.codec.backend import OnnxBackend
from service.codec.zoo import DEFAULT_MODEL, ZOO_DIR

THREADS = 2
UNTRAINED = {  # id -> widths; random weights
    "c2f-128-192, the lease's widths (untrained)": {"architecture": "coarse2fine", "n": 128, "m": 192, "h2": 256, "h1": 128},
    "c2f-192-192, published (untrained)": {"architecture": "coarse2fine", "n": 192, "m": 192, "h2": 256, "h1": 128},
}
RELEASED = ("c2f-64-96-r7", DEFAULT_MODEL)


class TimedBackend(OnnxBackend):
    """onnxruntime, adding up the seconds of each graph."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: collections.Counter[str] = collections.Counter()

    def run(self, graph, feeds):
        t0 = time.perf_counter()
        out = super().run(graph, feeds)
        self.seconds[graph] += time.perf_counter() - t0
        return out


def multiply_adds_per_pixel(model) -> dict[str, float]:
    """Per image pixel, of each run-time graph (batch of 2 at 256x256: ``models.export.example_inputs``)."""
    side, out = 256, {}
    with torch.no_grad():
        for name, module in runtime_graphs(model).items():
            inputs = example_inputs(model, name, side)
            with FlopCounterMode(display=False) as counter:
                module(*inputs)
            out[name] = counter.get_total_flops() / 2 / (2 * side**2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("c2f_scale.json"))
    args = p.parse_args()
    images = [Image.open(path).convert("RGB") for path in sorted(args.kodak.glob("kodim*.png"))[: args.images]]

    with tempfile.TemporaryDirectory() as scratch:
        zoo = Path(scratch)
        models, ids = {}, {}
        for k, (label, config) in enumerate(UNTRAINED.items()):
            torch.manual_seed(k)
            model = build(config)
            checkpoint = zoo / f"untrained-{k}.pt"
            torch.save({"model": model.state_dict(), "config": config, "step": 0, "elapsed": 0.0}, checkpoint)
            ids[label] = f"untrained-{k}"
            export(str(checkpoint), ids[label], zoo)
            models[label] = model
        for model_id in RELEASED:
            ids[model_id] = model_id
            models[model_id] = load_checkpoint(release_source(model_id))[0]
            (zoo / model_id).symlink_to(ZOO_DIR / model_id)

        backends: dict[str, TimedBackend] = {}

        def factory(package, label):
            backends[label] = TimedBackend(package, threads=THREADS)
            return backends[label]

        codecs = {label: Codec(backend_factory=lambda package, label=label: factory(package, label), zoo=zoo, max_decode_bytes=8 << 30)
                  for label in ids}
        times = {label: {"encode": [], "decode": []} for label in ids}
        graph_seconds = {label: collections.Counter() for label in ids}
        for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
            for image in images:
                for label, codec in codecs.items():
                    t0 = time.perf_counter()
                    data = codec.compress(image, model=ids[label], quality=4).data
                    t1 = time.perf_counter()
                    codec.decompress(data)
                    t2 = time.perf_counter()
                    if repeat:
                        times[label]["encode"].append(1000 * (t1 - t0))
                        times[label]["decode"].append(1000 * (t2 - t1))
                    else:
                        backends[label].seconds.clear()
        for label in ids:
            graph_seconds[label] = {g: 1000 * s / (args.repeats * len(images)) for g, s in backends[label].seconds.items()}

    rows = []
    print(f"{machine()}, {THREADS} threads; ms per Kodak image (median over {args.repeats} repeats, mean over {len(images)} images)")
    print("| model | parameters (M) | multiply-adds per pixel (k): g_a / h_a / h_s / g_s | encode ms | decode ms | g_s ms | h_s ms |")
    print("|---|---|---|---|---|---|---|")
    for label, model in models.items():
        macs = multiply_adds_per_pixel(model)
        hyper_macs = sum(v for g, v in macs.items() if g.startswith("h_s"))
        seconds = graph_seconds[label]
        row = {
            "model": label, "widths": model.widths, "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "multiply_adds_per_pixel": macs,
            "encode_ms": float(np.median(np.reshape(times[label]["encode"], (args.repeats, -1)), axis=0).mean()),
            "decode_ms": float(np.median(np.reshape(times[label]["decode"], (args.repeats, -1)), axis=0).mean()),
            "graph_ms_per_image": seconds,
        }
        rows.append(row)
        print(f"| {label} | {row['parameters_m']:.1f} | {macs['g_a'] / 1e3:.1f} / {macs.get('h_a', 0) / 1e3:.2f} / {hyper_macs / 1e3:.2f} / "
              f"{macs['g_s'] / 1e3:.1f} | {row['encode_ms']:.0f} | {row['decode_ms']:.0f} | {seconds.get('g_s', 0):.0f} | "
              f"{sum(v for g, v in seconds.items() if g.startswith('h_s')):.0f} |")
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "threads": THREADS, "images": len(images), "repeats": args.repeats,
              "quality": 4, "tile": 512, "note": "untrained widths have random weights: their graph times compare, their entropy coding does not",
              "rows": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
