"""Side-by-side speed of every codec in one run on the same images: encode and decode ms per image
and megapixels per second, best of a few repeats after a warm-up (these machines are noisy; compare
ratios within one run). Learned models run through onnxruntime, as served, and, where the training
extra is installed, through PyTorch eager from the released checkpoint.
"""
from __future__ import annotations

import os
import platform
import re
import time
from functools import partial
from pathlib import Path

from PIL import Image

from service.bench.codecs import BenchCodec, learned_codec
from service.bench.runner import BenchImage
from service.codec import Codec


def mid_setting(codec: BenchCodec) -> float:
    """A mid-rate operating point: learned quality 4, the middle of a classical sweep."""
    return 4.0 if codec.learned else codec.settings[len(codec.settings) // 2]


def torch_eager(model_id: str, zoo: Path | None = None) -> BenchCodec | None:
    """The same model in PyTorch eager (None without torch or a package that holds the weights)."""
    try:
        from models.release import load_checkpoint, release_source
        from models.torch_backend import TorchBackend
    except ImportError:
        return None
    try:
        model, _ = load_checkpoint(release_source(model_id, zoo))
    except (OSError, ValueError):
        return None
    codec = Codec(backend_factory=lambda package: TorchBackend(model), zoo=zoo)
    return learned_codec(codec, model_id, f"{model_id} (PyTorch eager)", "torch", [4.0])


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def measure_speed(codecs: list[BenchCodec], images: list[BenchImage], repeats: int = 3) -> list[dict]:
    rows = []
    for codec in codecs:
        setting = mid_setting(codec)
        sources = [Image.fromarray(im.rgb) for im in images]
        codec.decode(codec.encode(sources[0], setting))  # warm-up: sessions, caches, lazy imports
        enc = dec = bits = 0.0
        for image, source in zip(images, sources):
            t_enc, data = _best(partial(codec.encode, source, setting), repeats)
            t_dec, _ = _best(partial(codec.decode, data), repeats)
            enc, dec, bits = enc + t_enc, dec + t_dec, bits + len(data) * 8 / image.pixels
        n, megapixels = len(images), sum(im.pixels for im in images) / 1e6
        rows.append({
            "codec": codec.name, "setting": setting, "bpp": bits / n,
            "encode_ms": 1000 * enc / n, "decode_ms": 1000 * dec / n,
            "encode_mp_s": megapixels / enc, "decode_mp_s": megapixels / dec,
        })
    return rows


def vector_isa() -> str:
    """The CPU's widest vector extensions, which onnxruntime's kernels pick by: a learned codec's speed
    depends on them as much as on the core count (Linux's /proc/cpuinfo; elsewhere unknown)."""
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE).group(1).split())
    except (OSError, AttributeError):
        return "ISA unknown"
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return isa + (" with VNNI" if flags & {"avx512_vnni", "avx_vnni"} else "")


def machine() -> str:
    import onnxruntime

    return (f"{platform.machine()} {os.cpu_count()} cores ({vector_isa()}), {platform.system()}, "
            f"onnxruntime {onnxruntime.__version__}")


def speed_markdown(rows: list[dict]) -> str:
    lines = ["| codec | setting | bpp | encode ms | decode ms | encode MP/s | decode MP/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['codec']} | {r['setting']:g} | {r['bpp']:.3f} | {r['encode_ms']:.0f} | {r['decode_ms']:.0f} | "
                     f"{r['encode_mp_s']:.2f} | {r['decode_mp_s']:.2f} |")
    return "\n".join(lines) + "\n"
