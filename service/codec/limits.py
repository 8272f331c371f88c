"""Every limit and default of the codec, defined once (the settings, the CLI, the API's validation,
the container's reader and writer import them from here; compare CompressAI's ``models/base.py``)."""
from __future__ import annotations

QUALITY_MIN, QUALITY_MAX = 1.0, 8.0  # the quality scale: CompressAI's lambda ladder, fractions allowed
DEFAULT_QUALITY = 4.0
QUALITY_SCALE = 1000  # the container stores round(quality * 1000): qualities are what that can hold

TILE_MULTIPLE, TILE_MIN, TILE_MAX = 64, 64, 4096  # px; the largest stride of any model divides 64
DEFAULT_TILE = 512

CONTEXT_MULTIPLE, MAX_CONTEXT = 16, 64  # px; at most the smallest tile, so a window reaches only the 8 neighbours
DEFAULT_CONTEXT = 32  # px of each neighbour the transforms see: seams as if coded whole (benchmarks/tile_context.py)

MAX_REFINE = 200  # encoder-side refinement steps
AUTO_REFINE = "auto"  # refine=auto: the steps a bounded budget allows (rate_control.auto_refine_steps)
MAX_FRAME = 255  # of an animated input: reaching frame K decodes the K before it
MAX_ICC_BYTES = 1 << 20  # an ICC profile kept with an image (photos' are 0.5-60 KB)
RATE_TOLERANCE = 0.01  # rate control stops within 1% of a bpp target
PSNR_TOLERANCE = 0.05  # dB, for a PSNR target


def check_quality(quality: float) -> float:
    if not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise ValueError(f"quality must be in [{QUALITY_MIN:g}, {QUALITY_MAX:g}], got {quality}")
    return quality


def check_tile(tile: int) -> int:
    if tile % TILE_MULTIPLE or not TILE_MIN <= tile <= TILE_MAX:
        raise ValueError(f"tile must be a multiple of {TILE_MULTIPLE} in [{TILE_MIN}, {TILE_MAX}], got {tile}")
    return tile


def check_context(context: int, multiple: int = CONTEXT_MULTIPLE) -> int:
    """``multiple``: the model's own (whole latent pixels of everything its synthesis reads)."""
    if context % multiple or not 0 <= context <= MAX_CONTEXT:
        raise ValueError(f"context must be a multiple of {multiple} px in [0, {MAX_CONTEXT}], got {context}")
    return context


def check_refine(steps: int | str) -> int | str:
    if steps != AUTO_REFINE and not (isinstance(steps, int) and 0 <= steps <= MAX_REFINE):
        raise ValueError(f"refine must be in [0, {MAX_REFINE}] steps or {AUTO_REFINE!r}, got {steps!r}")
    return steps
