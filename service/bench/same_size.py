"""Classical codecs at a byte budget: for each, the highest quality setting whose file fits, found by
bisection over its integer quality scale (file size grows with quality; where it does not quite, the
answer still fits and is within a step of the best). What ``POST /compare`` and the page show beside
the learned codec: each codec's own file, its PSNR and MS-SSIM against the same 8-bit RGB pixels, and
its encode and decode times.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from service.bench.codecs import BenchCodec, classical_codecs
from service.codec.errors import Stopped
from service.codec.quality import ms_ssim, psnr

# name in the API -> (codec in classical_codecs(), the quality range its encoder takes, media type)
CODECS = {
    "jpeg": ("JPEG 4:2:0", (1, 100), "image/jpeg"),
    "webp": ("WebP", (0, 100), "image/webp"),
    "avif": ("AVIF", (0, 100), "image/avif"),
}


@dataclass
class SameSize:
    codec: str  # the API name: jpeg, webp or avif
    label: str  # for people: "JPEG 4:2:0 (libjpeg-turbo)", ...
    media_type: str
    setting: int  # the quality setting chosen
    data: bytes  # the codec's own file
    fits: bool  # False when even the lowest setting is over the budget (the file is then that one)
    psnr: float
    ms_ssim: float
    encode_ms: float  # of the chosen setting (the bisection's other encodes not counted)
    decode_ms: float


def fitting(codec: BenchCodec, image: Image.Image, budget: int, low: int, high: int, deadline: float) -> tuple[int, bytes, bool, float]:
    """(setting, file, fits, encode seconds) of the highest setting in [low, high] whose file is at most
    ``budget`` bytes; the lowest setting's file, with fits False, when none is. ``Stopped`` after ``deadline``."""
    best: tuple[int, bytes, float] | None = None
    lowest: tuple[int, bytes, float] | None = None
    while low <= high:
        if time.monotonic() > deadline:
            raise Stopped("the comparison did not finish before the request's deadline")
        mid = (low + high) // 2
        started = time.perf_counter()
        data = codec.encode(image, mid)
        seconds = time.perf_counter() - started
        if len(data) <= budget:
            best, low = (mid, data, seconds), mid + 1
        else:
            lowest, high = (mid, data, seconds), mid - 1
    if best is not None:
        return best[0], best[1], True, best[2]
    assert lowest is not None
    return lowest[0], lowest[1], False, lowest[2]


_codecs = cache(classical_codecs)  # looked up once per process (plugin checks, library versions), not per request


def same_size(rgb: np.ndarray, budget: int, names: list[str], deadline: float) -> list[SameSize]:
    """Each codec in ``names`` (keys of CODECS) at ``budget`` bytes, measured against ``rgb`` (H, W, 3 uint8)."""
    available = _codecs()
    image = Image.fromarray(rgb)
    out = []
    for name in names:
        label, (low, high), media_type = CODECS[name]
        codec = available[label]
        setting, data, fits, encode_s = fitting(codec, image, budget, low, high, deadline)
        started = time.perf_counter()
        decoded = codec.decode(data)
        decode_s = time.perf_counter() - started
        out.append(SameSize(name, f"{label} ({codec.version})", media_type, setting, data, fits, psnr(rgb, decoded),
                            ms_ssim(rgb, decoded), 1000 * encode_s, 1000 * decode_s))
    return out
