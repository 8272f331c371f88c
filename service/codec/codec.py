"""Whole images <-> .lic bitstreams: tiling, batching, rate control, region decoding.

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

import numpy as np
from PIL import Image

from service.codec import bitstream, image_io
from service.codec.backend import Backend, OnnxBackend
from service.codec.errors import BitstreamError, LimitError, ModelError
from service.codec.tile_coder import TileCoder
from service.codec.tiles import DEBLOCK_TAPS, TileGrid, deblock, extract
from service.codec.zoo import DEFAULT_MODEL, QUALITY_MAX, QUALITY_MIN, ModelPackage, load_model

DEFAULT_TILE = 512
RATE_TOLERANCE = 0.01  # bisection stops within 1% of a bpp target
Progress = Callable[[int], None]


def default_deblock(quality: float) -> int:
    """Seam smoothing radius: tile seams show at low rates only (measured in benchmarks/kodak_core.json)."""
    return 4 if quality < 3 else 2 if quality < 5 else 0


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
        batch: int = 4,
        max_pixels: int = 1 << 28,
        max_tiles: int = 1 << 16,
        zoo: Path | None = None,
    ):
        self.zoo = zoo
        self.backend_factory, self.tile, self.batch = backend_factory, tile, batch
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
        deblock_radius: int | None = None,
        progress: Progress | None = None,
    ) -> CompressResult:
        if sum(v is not None for v in (quality, target_bpp, target_psnr)) > 1:
            raise ValueError("give one of quality, target_bpp, target_psnr")
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
        grid = TileGrid(width, height, tile)
        if grid.count > self.max_tiles:
            raise LimitError(f"{grid.count} tiles exceed the limit of {self.max_tiles}; use a larger tile")
        alpha = image_io.encode_alpha(planes.alpha) if planes.alpha is not None else None
        timings = {"read": time.perf_counter() - started}

        t = time.perf_counter()
        groups = list(self._shape_groups(grid, coder.package.padding_multiple))
        analyzed = []
        for shape, chunk in groups:
            analyzed.append(coder.analyze(np.stack([extract(planes.rgb, grid.rect(i), shape) for i in chunk])))
            if progress:
                progress(len(chunk))
        timings["analysis"] = time.perf_counter() - t

        def radius_for(q: float) -> int:
            return default_deblock(q) if deblock_radius is None else deblock_radius

        def encode_at(q: float) -> tuple[CompressResult, list]:
            q = bitstream.quality_code(q) / 1000  # exactly what the decoder will read
            payloads: list[bytes] = [b""] * grid.count
            latents = []
            for (shape, chunk), y in zip(groups, analyzed):
                chunk_payloads, decoded = coder.encode(y, np.full(len(chunk), q))
                latents.append(decoded)
                for i, p in zip(chunk, chunk_payloads):
                    payloads[i] = p
            header = bitstream.Header(model, coder.package.fingerprint, q, width, height, planes.mode, tile, radius_for(q))
            data = bitstream.pack(header, payloads, alpha)
            return CompressResult(data, model, q, width, height, grid.count), latents

        t = time.perf_counter()
        if target_bpp is not None:
            result, _ = self._bisect(encode_at, lambda r, _: r.bpp, target_bpp, RATE_TOLERANCE)
        elif target_psnr is not None:
            def measured_psnr(r: CompressResult, latents: list) -> float:
                recon = self._assemble_from_latents(coder, grid, groups, latents, r.quality, radius_for(r.quality))
                r.psnr = psnr(planes.rgb, recon)
                return r.psnr

            result, _ = self._bisect(encode_at, measured_psnr, target_psnr, 0.05, absolute=True)
        else:
            result, _ = encode_at(4.0 if quality is None else quality)
        result.timings = {**timings, "encode": time.perf_counter() - t, "total": time.perf_counter() - started}
        return result

    def _shape_groups(self, grid: TileGrid, multiple: int, indices: list[int] | None = None) -> Iterator[tuple[tuple[int, int], list[int]]]:
        """Tiles grouped by coded shape, in chunks of at most ``batch``."""
        for shape, members in grid.by_shape(multiple, indices).items():
            for k in range(0, len(members), self.batch):
                yield shape, members[k : k + self.batch]

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

    def _assemble_from_latents(self, coder, grid, groups, latents, quality, radius) -> np.ndarray:
        tiles: dict[int, np.ndarray] = {}
        for (shape, chunk), decoded in zip(groups, latents):
            tiles.update(zip(chunk, tile_arrays(grid, chunk, coder.synthesize(decoded, np.full(len(chunk), quality)))))
        return assemble_rgb(grid, radius, RegionPlan((0, 0, grid.width, grid.height), list(tiles), (0, 0, grid.width, grid.height)), tiles)

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
        """Decoded tiles (h, w, 3) uint8, cropped to their place in the image, before deblocking."""
        coder = self.checked_coder(header)
        tiles: dict[int, np.ndarray] = {}
        for shape, chunk in self._shape_groups(header.grid, coder.package.padding_multiple, indices):
            payloads = [bitstream.tile_payload(data, header, i) for i in chunk]
            pixels = coder.decode(payloads, shape, np.full(len(chunk), header.quality))
            tiles.update(zip(chunk, tile_arrays(header.grid, chunk, pixels)))
            if progress:
                progress(len(chunk))
        return tiles

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
            "bytes": len(data),
            "bpp": len(data) * 8 / (header.width * header.height),
            "alpha_bytes": header.alpha_entry[0] if header.alpha_entry else 0,
        }


def check_model(header: bitstream.Header, package: ModelPackage | None) -> None:
    """Refuse a bitstream whose model is not installed (package None) or is another version."""
    if package is None:
        raise BitstreamError(f"bitstream needs model {header.model_id!r}, which is not installed")
    if package.fingerprint != header.fingerprint:
        raise BitstreamError(
            f"bitstream was written by a different version of model {header.model_id!r} "
            f"(fingerprint {header.fingerprint.hex()}, installed {package.fingerprint.hex()})"
        )


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


def tile_arrays(grid: TileGrid, chunk: list[int], pixels: np.ndarray) -> list[np.ndarray]:
    rects = [grid.rect(i) for i in chunk]
    return [tile_array(p, y1 - y0, x1 - x0) for p, (x0, y0, x1, y1) in zip(pixels, rects)]


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
