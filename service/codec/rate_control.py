"""Rate control: the continuous quality that meets a target (bits per pixel or PSNR) for one image.

A model codes every quality in [QUALITY_MIN, QUALITY_MAX]; bits and PSNR both grow with quality, so a
bisection over it finds the target in at most 16 encodes of the analysed image (the analysis is run
once; each encode re-quantises and entropy-codes).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from service.codec.limits import QUALITY_MAX, QUALITY_MIN

T = TypeVar("T")
STEPS = 14
MAX_PASSES = STEPS + 2  # both ends, then the halvings

# The cost of whole-image work in *megapixel-steps*: one unit is one refinement step over one megapixel
# (about 1.35 s on the 2-core CPU of benchmarks/refinement.json, 1.4 decodes). A coding pass (quantise
# and entropy-code) costs 0.19 s/MP there (benchmarks/stage_times.json), a PSNR pass adds the synthesis.
CODING_PASS = 0.15
PSNR_PASS = 0.9
# A step also has a fixed cost (onnxruntime calls, Python) that no pixel count shows: about 22 ms beside
# 3.9 s/MP on the busy 2-core CPU, i.e. a step over 0.006 MP more. It is what a tiny image costs: a 1 px
# image is coded as a 64x64 tile: counted as 1 px, `refine=200&target_psnr=30` on it cost 0.003 and ran
# into the 60 s deadline (503); counted as a padded tile plus the overhead, it costs 32 and is refused.
STEP_OVERHEAD_MP = 0.006


# refine=auto: the refinement steps that the schedule's sweet spot and a bounded budget allow.
AUTO_REFINE_STEPS = 20  # most steps auto takes (benchmarks/refinement_schedule.json)
AUTO_REFINE_WORK = 8.0  # megapixel-steps auto may spend: 19 steps on a Kodak image, about 11 s on the 2-core CPU
MIN_AUTO_STEPS = 5  # fewer buy too little to be worth a pass (benchmarks/refinement.json): auto gives 0 instead


def target_kind(target_bpp: float | None, target_psnr: float | None) -> str | None:
    """What a request's rate control aims at: "bpp", "psnr", or None (a given quality)."""
    return "bpp" if target_bpp is not None else "psnr" if target_psnr is not None else None


def job_cost(megapixels: float, refine: int, target: str | None) -> float:
    """Megapixel-steps of one compression of an image whose tiles, padded to the model's multiple, cover
    ``megapixels``: ``target`` is None (one pass at a given quality), "bpp" or "psnr"."""
    passes = MAX_PASSES if target else 1
    return (megapixels + STEP_OVERHEAD_MP) * passes * (refine + (PSNR_PASS if target == "psnr" else CODING_PASS))


def auto_refine_steps(megapixels: float, target: str | None) -> int:
    """The steps ``refine=auto`` takes for an image whose padded tiles cover ``megapixels`` (``target`` as
    for ``job_cost``): as many as fit AUTO_REFINE_WORK, at most AUTO_REFINE_STEPS, 0 below MIN_AUTO_STEPS."""
    passes = MAX_PASSES if target else 1
    pass_cost = PSNR_PASS if target == "psnr" else CODING_PASS
    steps = min(AUTO_REFINE_STEPS, int(AUTO_REFINE_WORK / ((megapixels + STEP_OVERHEAD_MP) * passes) - pass_cost))
    return steps if steps >= MIN_AUTO_STEPS else 0


def bisect_quality(encode_at: Callable[[float], T], measure: Callable[[T], float], target: float, tolerance: float) -> T:
    """The encoding whose ``measure`` is closest to ``target``: stops once within ``tolerance``; a target
    outside the model's range gets the nearest end."""
    lo, hi = QUALITY_MIN, QUALITY_MAX
    best: tuple[float, T] | None = None
    for q in (lo, hi):
        encoded = encode_at(q)
        value = measure(encoded)
        if best is None or abs(value - target) < best[0]:
            best = (abs(value - target), encoded)
        if (q == lo and value >= target) or (q == hi and value <= target):
            return encoded
    for _ in range(STEPS):
        q = (lo + hi) / 2
        encoded = encode_at(q)
        value = measure(encoded)
        if abs(value - target) < best[0]:
            best = (abs(value - target), encoded)
        if abs(value - target) <= tolerance:
            break
        lo, hi = (q, hi) if value < target else (lo, q)
    return best[1]
