"""The embedded CPU default's speed beside CompressAI and Pillow's AVIF and WebP, interleaved in one run.

    .venv/bin/python benchmarks/cpu_speed.py [--kodak DIR] [--images 4] [--repeats 3]
        [--compressai-python /work/cai-venv/bin/python]   # made by benchmarks/compressai_env.sh

Per repeat, per image, each codec encodes and decodes once, in turn, so that load changes on this
noisy machine hit every codec alike; each codec's time for an image is its median over the repeats,
and the table gives the mean over images, in ms per image and megapixels per second, and the ratios
that the issue's targets are stated in. Codecs:
- the default model through the library (``Codec``: 512 px tiles, onnxruntime), fp32 and with its
  shipped int8 twins (``LIC_TRANSFORMS=int8``, ``models.quantize``), and the N=64 release
  (``ms-64-96-r3``), to show what a narrower network buys;
- CompressAI 1.2.8's ``mbt2018_mean`` at the same widths (N=128, M=192; PyTorch eager, its C++ rANS;
  random weights), in a separate interpreter (``benchmarks/compressai_timer.py``), when given;
- Pillow AVIF (aom, speed 6) and WebP (method 6) at their middle setting.
Encoding starts from decoded pixels (a PIL image) for every codec and decoding ends at pixels.
Prints a table and writes benchmarks/cpu_speed.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.data import image_files
from service.bench.codecs import BenchCodec, classical_codecs, learned_codec
from service.bench.speed import machine, mid_setting
from service.codec import Codec
from service.codec.backend import OnnxBackend
from service.codec.zoo import DEFAULT_MODEL, load_model

THREADS = 2


class CompressAI:
    """``compressai_timer.py`` in its own interpreter: one image in, its encode and decode times out."""

    name = "CompressAI mbt2018_mean (PyTorch eager)"

    def __init__(self, python: str, n: int = 128, m: int = 192):
        # -P: the script's folder is not put on sys.path there (none of benchmarks/ is meant to be importable as top-level modules)
        self.process = subprocess.Popen([python, "-P", str(ROOT / "benchmarks" / "compressai_timer.py"), str(n), str(m), str(THREADS)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def time(self, path: Path) -> tuple[float, float, int]:
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        out = json.loads(self.process.stdout.readline())
        return out["encode_ms"], out["decode_ms"], out["bytes"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def timed(codec: BenchCodec, image: Image.Image) -> tuple[float, float, int]:
    setting = mid_setting(codec)
    t0 = time.perf_counter()
    data = codec.encode(image, setting)
    t1 = time.perf_counter()
    codec.decode(data)
    t2 = time.perf_counter()
    return 1000 * (t1 - t0), 1000 * (t2 - t1), len(data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = ROOT.parent / "shared" / "data"
    p.add_argument("--kodak", type=Path, default=shared / "kodak")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compressai-python", help="interpreter of an environment with CompressAI 1.2.8 (benchmarks/compressai_env.sh)")
    args = p.parse_args()
    files = image_files(args.kodak)[: args.images]
    images = [Image.open(f).convert("RGB") for f in files]
    package = load_model(DEFAULT_MODEL)
    classical = classical_codecs()
    codecs = {
        f"{package.id} fp32": learned_codec(Codec(backend_factory=partial(OnnxBackend, threads=THREADS)),
                                             package.id, "fp32", "", [4.0]),
        f"{package.id} int8": learned_codec(Codec(backend_factory=partial(OnnxBackend, threads=THREADS, transforms="int8")),
                                             package.id, "int8", "", [4.0]),
        "ms-64-96-r3 fp32 (N=64)": learned_codec(Codec(backend_factory=partial(OnnxBackend, threads=THREADS)),
                                                 "ms-64-96-r3", "fp32", "", [4.0]),
        "AVIF (speed 6)": classical["AVIF"],
        "WebP (method 6)": classical["WebP"],
    }
    compressai = CompressAI(args.compressai_python) if args.compressai_python else None
    names = list(codecs) + ([CompressAI.name] if compressai else [])
    times: dict[str, list[list[tuple[float, float, int]]]] = {name: [[] for _ in files] for name in names}
    for codec in codecs.values():  # warm-up: sessions, lazy imports
        timed(codec, images[0])
    if compressai:
        compressai.time(files[0])
    for _ in range(args.repeats):
        for i, (path, image) in enumerate(zip(files, images)):
            for name, codec in codecs.items():
                times[name][i].append(timed(codec, image))
            if compressai:
                times[CompressAI.name][i].append(compressai.time(path))
    if compressai:
        compressai.close()
    pixels = [im.width * im.height for im in images]
    rows = {}
    for name, per_image in times.items():
        enc = [float(np.median([t[0] for t in runs])) for runs in per_image]
        dec = [float(np.median([t[1] for t in runs])) for runs in per_image]
        bpp = [8 * runs[0][2] / px for runs, px in zip(per_image, pixels)]
        rows[name] = {"encode_ms": round(float(np.mean(enc)), 1), "decode_ms": round(float(np.mean(dec)), 1),
                      "encode_mp_s": round(sum(pixels) / 1e3 / sum(enc), 2), "decode_mp_s": round(sum(pixels) / 1e3 / sum(dec), 2),
                      "bpp": round(float(np.mean(bpp)), 3)}
    ours = rows[f"{package.id} fp32"]
    ratios = {}
    for other in (CompressAI.name, "AVIF (speed 6)"):
        if other in rows:
            for name in (f"{package.id} fp32", f"{package.id} int8"):
                ratios[f"{name} vs {other}"] = {"encode_speedup": round(rows[other]["encode_ms"] / rows[name]["encode_ms"], 2),
                                                "decode_speedup": round(rows[other]["decode_ms"] / rows[name]["decode_ms"], 2)}
    print(f"{'codec':42} {'bpp':>6} {'enc ms':>8} {'dec ms':>8} {'enc MP/s':>9} {'dec MP/s':>9}")
    for name, r in rows.items():
        print(f"{name:42} {r['bpp']:6.3f} {r['encode_ms']:8.0f} {r['decode_ms']:8.0f} {r['encode_mp_s']:9.2f} {r['decode_mp_s']:9.2f}")
    for name, r in ratios.items():
        print(f"{name}: encode {r['encode_speedup']}x, decode {r['decode_speedup']}x")
    report = {"machine": machine(), "threads": THREADS, "int8": package.manifest.int8.model_dump() if package.manifest.int8 else None,
              "images": [f.name for f in files], "repeats": args.repeats, "quality": 4.0, "command": "benchmarks/cpu_speed.py " + " ".join(sys.argv[1:]), "codecs": rows, "speedups": ratios,
              "fp32_decode_ms_per_megapixel": round(ours["decode_ms"] / (np.mean(pixels) / 1e6), 1)}
    (ROOT / "benchmarks" / "cpu_speed.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
