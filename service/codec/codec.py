"""Whole images <-> .lic bitstreams: tiling with context, batching, rate control, region decoding.

    codec = Codec()
    result = codec.compress(open("kodim01.png", "rb").read(), quality=4)      # or target_bpp / target_psnr
    image = codec.decompress(result.data, region=(0, 0, 256, 256))            # PIL image
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from service.codec import bitstream, image_io
from service.codec.backend import Backend, OnnxBackend
from service.codec.errors import BitstreamError, LimitError, ModelError
from service.codec.refine import check_refinable
from service.codec.refine import refine as refine_latents
from service.codec.tile_coder import TileCoder
from service.codec.tiles import DEBLOCK_TAPS, MAX_CONTEXT, TileGrid, TileView, deblock, extract, stitch
from service.codec.zoo import DEFAULT_MODEL, QUALITY_MAX, QUALITY_MIN, ModelPackage, load_model

DEFAULT_TILE = 512
DEFAULT_CONTEXT = 32  # px of each neighbour the transforms see: seams as if coded whole (benchmarks/tile_context.py)
RATE_TOLERANCE = 0.01  # bisection stops within 1% of a bpp target
MAX_REFINE = 200
Progress = Callable[[int], None]
K = TypeVar("K")
TileFeeds = dict[str, dict[int, np.ndarray]]  # synthesis input name -> tile index -> that tile's plane


def default_deblock(quality: float, context: int) -> int:
    """Seam smoothing radius: for tiles coded without context, where seams show at low rates
    (measured in benchmarks/kodak_core.json); tiles coded with context need none."""
    if context:
        return 0
    return 4 if quality < 3 else 2 if quality < 5 else 0


def check_context(context: int, package: ModelPackage) -> None:
    if context % package.context_multiple or not 0 <= context <= MAX_CONTEXT:
        raise ValueError(f"context must be a multiple of {package.context_multiple} px in [0, {MAX_CONTEXT}] for model {package.id}, got {context}")


@dataclass
class CompressResult:
    data: bytes
    model: str
    quality: float
    width: int
    height: int
    tiles: int
    timings: dict[str, float] = field(default_factory=dict)
    psnr: float | None = None  # set when rate control computed it

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)


class Codec:
    def __init__(
        self,
        backend_factory: Callable[[ModelPackage], Backend] = OnnxBackend,
        tile: int = DEFAULT_TILE,
        context: int = DEFAULT_CONTEXT,
        batch: int = 4,
        max_pixels: int = 1 << 28,
        max_tiles: int = 1 << 16,
        zoo: Path | None = None,
    ):
        self.zoo = zoo
        self.backend_factory, self.tile, self.context, self.batch = backend_factory, tile, context, batch
        self.max_pixels, self.max_tiles = max_pixels, max_tiles
        self._coders: dict[str, TileCoder] = {}

    def coder(self, model: str) -> TileCoder:
        if model not in self._coders:
            package = load_model(model, self.zoo)
            self._coders[model] = TileCoder(package, self.backend_factory(package))
        return self._coders[model]

    # ------------------------------------------------------------------ compress
    def compress(
        self,
        source: bytes | str | Image.Image,
        model: str = DEFAULT_MODEL,
        quality: float | None = None,
        target_bpp: float | None = None,
        target_psnr: float | None = None,
        tile: int | None = None,
        context: int | None = None,
        deblock_radius: int | None = None,
        refine: int = 0,
        progress: Progress | None = None,
    ) -> CompressResult:
        """``refine``: gradient steps of encoder-side latent refinement (``service.codec.refine``),
        0 for the one-pass encoder; each step costs about three syntheses of the image."""
        if sum(v is not None for v in (quality, target_bpp, target_psnr)) > 1:
            raise ValueError("give one of quality, target_bpp, target_psnr")
        if not 0 <= refine <= MAX_REFINE:
            raise ValueError(f"refine must be in [0, {MAX_REFINE}] steps, got {refine}")
        if quality is not None and not QUALITY_MIN <= quality <= QUALITY_MAX:
            raise ValueError(f"quality must be in [{QUALITY_MIN:g}, {QUALITY_MAX:g}], got {quality}")
        tile = tile or self.tile
        if tile % 64 or not 64 <= tile <= 4096:
            raise ValueError(f"tile must be a multiple of 64 in [64, 4096], got {tile}")
        started = time.perf_counter()
        planes = source if isinstance(source, image_io.Planes) else (
            image_io.to_planes(source) if isinstance(source, Image.Image) else image_io.read_image(source, self.max_pixels)
        )
        height, width = planes.rgb.shape[:2]
        if width * height > self.max_pixels:
            raise LimitError(f"image has {width * height} pixels; the limit is {self.max_pixels}")
        coder = self.coder(model)
        context = self.context if context is None else context
        check_context(context, coder.package)
        if refine:
            check_refinable(coder)
        grid = TileGrid(width, height, tile)
        if grid.count > self.max_tiles:
            raise LimitError(f"{grid.count} tiles exceed the limit of {self.max_tiles}; use a larger tile")
        alpha = image_io.encode_alpha(planes.alpha) if planes.alpha is not None else None
        timings = {"read": time.perf_counter() - started}

        t = time.perf_counter()
        groups = list(self._chunks(grid.by_view(coder.package.padding_multiple, context)))
        analyzed = []
        for view, chunk in groups:
            analyzed.append(analyze_windows(coder, view, [window_pixels(planes.rgb, grid, i, context) for i in chunk]))
            if progress:
                progress(len(chunk))
        timings["analysis"] = time.perf_counter() - t

        def radius_for(q: float) -> int:
            return default_deblock(q, context) if deblock_radius is None else deblock_radius

        def encode_at(q: float) -> tuple[CompressResult, list]:
            q = bitstream.quality_code(q) / 1000  # exactly what the decoder will read
            payloads: list[bytes] = [b""] * grid.count
            latents = []
            prepared = [coder.prepare(y, np.full(len(chunk), q)) for (_, chunk), y in zip(groups, analyzed)]
            if refine:
                refine_latents(coder, grid, context, groups, prepared, planes.rgb, q, refine)
            for (_, chunk), chunk_prepared in zip(groups, prepared):
                chunk_payloads, decoded = coder.finish(chunk_prepared)
                latents.append(decoded)
                for i, p in zip(chunk, chunk_payloads):
                    payloads[i] = p
            header = bitstream.Header(model, coder.package.fingerprint, q, width, height, planes.mode, tile, radius_for(q), context)
            data = bitstream.pack(header, payloads, alpha)
            return CompressResult(data, model, q, width, height, grid.count), latents

        t = time.perf_counter()
        if target_bpp is not None:
            result, _ = self._bisect(encode_at, lambda r, _: r.bpp, target_bpp, RATE_TOLERANCE)
        elif target_psnr is not None:
            def measured_psnr(r: CompressResult, latents: list) -> float:
                recon = self._reconstruct(coder, grid, context, groups, latents, r.quality, radius_for(r.quality))
                r.psnr = psnr(planes.rgb, recon)
                return r.psnr

            result, _ = self._bisect(encode_at, measured_psnr, target_psnr, 0.05, absolute=True)
        else:
            result, _ = encode_at(4.0 if quality is None else quality)
        result.timings = {**timings, "encode": time.perf_counter() - t, "total": time.perf_counter() - started}
        return result

    def _chunks(self, groups: dict[K, list[int]]) -> Iterator[tuple[K, list[int]]]:
        """Groups of tiles (by shape or view) in chunks of at most ``batch``."""
        for key, members in groups.items():
            for k in range(0, len(members), self.batch):
                yield key, members[k : k + self.batch]

    @staticmethod
    def _bisect(encode_at, measure, target: float, tolerance: float, absolute: bool = False):
        """Bisection over the continuous quality; returns the closest result (measure grows with q)."""
        lo, hi = QUALITY_MIN, QUALITY_MAX
        best = None
        for q in (lo, hi):
            result, latents = encode_at(q)
            value = measure(result, latents)
            if best is None or abs(value - target) < best[0]:
                best = (abs(value - target), result, latents)
            if (q == lo and value >= target) or (q == hi and value <= target):
                return result, latents  # target outside the model's range: the nearest end
        for _ in range(14):
            q = (lo + hi) / 2
            result, latents = encode_at(q)
            value = measure(result, latents)
            if abs(value - target) < best[0]:
                best = (abs(value - target), result, latents)
            if abs(value - target) <= (tolerance if absolute else tolerance * target):
                break
            lo, hi = (q, hi) if value < target else (lo, q)
        return best[1], best[2]

    def _reconstruct(self, coder, grid, context, groups, latents, quality, radius) -> np.ndarray:
        """The whole image as the decoder will see it, from the encoder's latents (for rate control)."""
        feeds: TileFeeds = {}
        for (_, chunk), decoded in zip(groups, latents):
            add_feeds(feeds, chunk, coder.synthesis_feeds(decoded, np.full(len(chunk), quality)))
        tiles = self._synthesize(coder, grid, context, list(range(grid.count)), feeds)
        return assemble_rgb(grid, radius, RegionPlan((0, 0, grid.width, grid.height), list(tiles), (0, 0, grid.width, grid.height)), tiles)

    def _synthesize(self, coder: TileCoder, grid: TileGrid, context: int, indices: list[int], feeds: TileFeeds,
                    progress: Progress | None = None) -> dict[int, np.ndarray]:
        tiles: dict[int, np.ndarray] = {}
        for view, chunk in self._chunks(grid.by_view(coder.package.padding_multiple, context, indices)):
            windows = [window_feeds(grid, i, view, feeds) for i in chunk]
            tiles.update(zip(chunk, synthesize_windows(coder, view, windows, [tile_size(grid, i) for i in chunk])))
            if progress:
                progress(len(chunk))
        return tiles

    # ---------------------------------------------------------------- decompress
    def checked_coder(self, header: bitstream.Header) -> TileCoder:
        """The tile coder for a bitstream's model, refusing a missing or different model version."""
        if header.width * header.height > self.max_pixels:
            raise LimitError(f"bitstream holds {header.width * header.height} pixels; the limit is {self.max_pixels}")
        try:
            coder = self.coder(header.model_id)
        except ModelError:
            coder = None
        check_model(header, coder.package if coder else None)
        return coder

    def decode_tiles(self, data: bytes, header: bitstream.Header, indices: list[int], progress: Progress | None = None) -> dict[int, np.ndarray]:
        """Decoded tiles (h, w, 3) uint8, cropped to their place in the image, before deblocking.

        The latents of the neighbours within the context are decoded too: the synthesis reads them.
        """
        coder = self.checked_coder(header)
        grid = header.grid
        feeds: TileFeeds = {}
        for shape, chunk in self._chunks(grid.by_shape(coder.package.padding_multiple, grid.sources(indices, header.context))):
            latents = coder.decode_latents([bitstream.tile_payload(data, header, i) for i in chunk], shape)
            add_feeds(feeds, chunk, coder.synthesis_feeds(latents, np.full(len(chunk), header.quality)))
        return self._synthesize(coder, grid, header.context, indices, feeds, progress)

    def decompress(self, data: bytes, region: tuple[int, int, int, int] | None = None, progress: Progress | None = None) -> Image.Image:
        header = bitstream.parse(data)
        plan = plan_region(header, region)
        tiles = self.decode_tiles(data, header, plan.tiles, progress)
        return assemble(data, header, plan, tiles)

    def info(self, data: bytes) -> dict:
        header = bitstream.parse(data)
        return {
            "model": header.model_id,
            "model_fingerprint": header.fingerprint.hex(),
            "quality": header.quality,
            "width": header.width,
            "height": header.height,
            "mode": header.mode,
            "tile": header.tile,
            "tiles": header.grid.count,
            "deblock": header.deblock,
            "context": header.context,
            "bytes": len(data),
            "bpp": len(data) * 8 / (header.width * header.height),
            "alpha_bytes": header.alpha_entry[0] if header.alpha_entry else 0,
        }


def check_model(header: bitstream.Header, package: ModelPackage | None) -> None:
    """Refuse a bitstream whose model is not installed (package None), is another version, or cannot
    have written the header's context."""
    if package is None:
        raise BitstreamError(f"bitstream needs model {header.model_id!r}, which is not installed")
    if package.fingerprint != header.fingerprint:
        raise BitstreamError(
            f"bitstream was written by a different version of model {header.model_id!r} "
            f"(fingerprint {header.fingerprint.hex()}, installed {package.fingerprint.hex()})"
        )
    if header.context % package.context_multiple:
        raise BitstreamError(f"corrupted .lic header: a context of {header.context} px does not fit model {header.model_id!r}")


@dataclass(frozen=True)
class RegionPlan:
    region: tuple[int, int, int, int]  # x, y, w, h requested
    tiles: list[int]  # tiles to decode: those under the region and within the deblocking reach
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 covered by those tiles


def plan_region(header: bitstream.Header, region: tuple[int, int, int, int] | None) -> RegionPlan:
    x, y, w, h = region if region is not None else (0, 0, header.width, header.height)
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > header.width or y + h > header.height:
        raise ValueError(f"region {x},{y},{w},{h} is outside the {header.width}x{header.height} image")
    grid = header.grid
    margin = header.deblock + DEBLOCK_TAPS if header.deblock else 0
    needed = grid.covering(x - margin, y - margin, x + w + margin, y + h + margin)
    rects = [grid.rect(i) for i in needed]
    box = (min(r[0] for r in rects), min(r[1] for r in rects), max(r[2] for r in rects), max(r[3] for r in rects))
    return RegionPlan((x, y, w, h), needed, box)


def tile_array(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """One tile's synthesis output (3, H, W) in [0, 1] -> (height, width, 3) uint8, padding cropped."""
    return np.ascontiguousarray(_to_uint8(pixels[:, :height, :width].transpose(1, 2, 0)))


def tile_size(grid: TileGrid, index: int) -> tuple[int, int]:
    x0, y0, x1, y1 = grid.rect(index)
    return y1 - y0, x1 - x0


def window_pixels(rgb: np.ndarray, grid: TileGrid, index: int, context: int) -> np.ndarray:
    """The (h, w, 3) uint8 pixels the analysis of tile ``index`` reads."""
    x0, y0, x1, y1 = grid.window_rect(index, context)
    return rgb[y0:y1, x0:x1]


def analyze_windows(coder: TileCoder, view: TileView, windows: list[np.ndarray]) -> np.ndarray:
    """g_a over a batch of same-view windows, keeping the latents under each tile: unscaled y."""
    x = np.stack([extract(w, (0, 0, w.shape[1], w.shape[0]), view.window) for w in windows])
    return view.inner(coder.analyze(x))


def add_feeds(feeds: TileFeeds, chunk: list[int], batch: dict[str, np.ndarray]) -> None:
    for name, array in batch.items():
        feeds.setdefault(name, {}).update(zip(chunk, array))


def window_feeds(grid: TileGrid, index: int, view: TileView, feeds: TileFeeds) -> dict[str, np.ndarray]:
    """What g_s reads for tile ``index``: each synthesis input stitched over its window."""
    return {name: stitch(grid, index, view, planes) for name, planes in feeds.items()}


def synthesize_windows(coder: TileCoder, view: TileView, windows: list[dict[str, np.ndarray]],
                       sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """g_s over a batch of same-view windows, keeping each tile's pixels: (h, w, 3) uint8 per tile."""
    pixels = view.inner(coder.synthesize({name: np.stack([w[name] for w in windows]) for name in windows[0]}))
    return [tile_array(p, h, w) for p, (h, w) in zip(pixels, sizes)]


def assemble_rgb(grid: TileGrid, radius: int, plan: RegionPlan, tiles: dict[int, np.ndarray]) -> np.ndarray:
    """Place decoded tiles, smooth the seams inside the box, crop the region: (h, w, 3) uint8."""
    bx0, by0, bx1, by1 = plan.box
    canvas = np.zeros((by1 - by0, bx1 - bx0, 3), dtype=np.float32)
    for i in plan.tiles:
        x0, y0, x1, y1 = grid.rect(i)
        canvas[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] = tiles[i] / np.float32(255.0)
    seams_x = [s - bx0 for s in range(grid.tile, grid.width, grid.tile) if bx0 < s < bx1]
    seams_y = [s - by0 for s in range(grid.tile, grid.height, grid.tile) if by0 < s < by1]
    rgb = _to_uint8(deblock(canvas, seams_x, seams_y, radius))
    x, y, w, h = plan.region
    return np.ascontiguousarray(rgb[y - by0 : y - by0 + h, x - bx0 : x - bx0 + w])


def assemble(data: bytes, header: bitstream.Header, plan: RegionPlan, tiles: dict[int, np.ndarray]) -> Image.Image:
    """The decoded region as a PIL image in the bitstream's mode, alpha included."""
    rgb = assemble_rgb(header.grid, header.deblock, plan, tiles)
    x, y, w, h = plan.region
    alpha_data = bitstream.alpha_payload(data, header)
    alpha = image_io.decode_alpha(alpha_data, (header.height, header.width))[y : y + h, x : x + w] if alpha_data else None
    return image_io.to_image(rgb, alpha, header.mode)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")
