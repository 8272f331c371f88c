"""The per-tile toolkit shared by the library (``Codec``), the service's engine and its workers.

A tile's *window* is the tile plus ``context`` pixels of its neighbours (``tiles.TileView``):
- encoding: ``window_pixels`` cuts a window from the image, ``analyze_windows`` runs g_a over a batch
  of same-view windows and keeps the latents under each tile;
- decoding: ``window_feeds`` stitches what g_s reads of a tile (y_hat and any hyper features) from its
  own and its neighbours' decoded planes, ``synthesize_windows`` runs g_s and keeps each tile's pixels;
- ``plan_region`` picks the tiles a region needs, ``region_alpha`` checks and crops the alpha plane
  first, ``assemble`` places the tiles, smooths the seams and crops the region.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.codec import bitstream, image_io
from service.codec.tile_coder import TileCoder
from service.codec.tiles import DEBLOCK_TAPS, TileGrid, TileView, deblock, extract, stitch

SynthesisPlanes = dict[str, dict[int, np.ndarray]]  # synthesis input name -> tile index -> that tile's plane


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


def add_planes(planes: SynthesisPlanes, chunk: list[int], batch: dict[str, np.ndarray]) -> None:
    """File a batch of decoded synthesis inputs (name -> (B, C, h, w)) under the chunk's tile indices."""
    for name, array in batch.items():
        planes.setdefault(name, {}).update(zip(chunk, array))


def window_feeds(grid: TileGrid, index: int, view: TileView, planes: SynthesisPlanes) -> dict[str, np.ndarray]:
    """What g_s reads for tile ``index``: each synthesis input stitched over its window."""
    return {name: stitch(grid, index, view, by_tile) for name, by_tile in planes.items()}


def synthesize_windows(coder: TileCoder, view: TileView, windows: list[dict[str, np.ndarray]],
                       sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """g_s over a batch of same-view windows, keeping each tile's pixels: (h, w, 3) uint8 per tile."""
    pixels = view.inner(coder.synthesize({name: np.stack([w[name] for w in windows]) for name in windows[0]}))
    return [tile_array(p, h, w) for p, (h, w) in zip(pixels, sizes)]


def tile_array(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """One tile's synthesis output (3, H, W) in [0, 1] -> (height, width, 3) uint8, padding cropped."""
    return np.ascontiguousarray(_to_uint8(pixels[:, :height, :width].transpose(1, 2, 0)))


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


def region_alpha(data: bytes, header: bitstream.Header, plan: RegionPlan) -> np.ndarray | None:
    """The region's alpha plane, or None. Decoders call it before any tile: a stream whose alpha plane
    is unreadable or of the wrong size is refused before the tiles' work, not after."""
    alpha_data = bitstream.alpha_payload(data, header)
    if not alpha_data:
        return None
    x, y, w, h = plan.region
    return image_io.decode_alpha(alpha_data, (header.height, header.width))[y : y + h, x : x + w]


def assemble(data: bytes, header: bitstream.Header, plan: RegionPlan, tiles: dict[int, np.ndarray],
             alpha: np.ndarray | None) -> Image.Image:
    """The decoded region as a PIL image in the bitstream's mode, with its alpha (``region_alpha``) and
    a kept ICC profile."""
    rgb = assemble_rgb(header.grid, header.deblock, plan, tiles)
    return image_io.to_image(rgb, alpha, header.mode, bitstream.icc_payload(data, header))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
