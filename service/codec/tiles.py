"""Fixed-size tiles: geometry, context windows, extraction with padding and seam deblocking.

Tiles are what let requests of any size batch together, huge images code in bounded memory, and one
region decode without the rest. Edge tiles are padded (edge replication) only up to the model's
padding multiple, so the padding costs few bits; decoding crops it away.

Each tile's payload is entropy-coded alone, but the transforms may see ``context`` pixels of the
neighbours on each side (a ``TileView``): the analysis runs on the tile's window of the image and keeps
the latents under the tile; the synthesis runs on the window's latents (stitched from the tile's and
its neighbours') and keeps the pixels under the tile. With 32 px of context the tiles meet at their
seams as if the image had been coded whole (benchmarks/tile_context.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

DEBLOCK_TAPS = 2  # radius of the binomial smoothing kernel [1, 4, 6, 4, 1] / 16
K = TypeVar("K")


@dataclass(frozen=True)
class TileView:
    """What the transforms see of one tile: its coded shape plus the context around it."""

    coded: tuple[int, int]  # (H, W) the tile is coded at
    margins: tuple[int, int, int, int]  # context px above, left, below, right (0 at the image's edge)

    @property
    def window(self) -> tuple[int, int]:
        top, left, bottom, right = self.margins
        return top + self.coded[0] + bottom, left + self.coded[1] + right

    def inner(self, array: np.ndarray) -> np.ndarray:
        """The part of a window-sized array (..., h, w), at any stride, that lies under the tile."""
        stride = self.window[0] // array.shape[-2]
        top, left = self.margins[0] // stride, self.margins[1] // stride
        return array[..., top : top + self.coded[0] // stride, left : left + self.coded[1] // stride]

    def grow(self, plane: np.ndarray) -> np.ndarray:
        """A tile's own (C, h, w) plane grown to the window by edge replication: the window's shape
        without the neighbours' content (for warm-up and timing)."""
        stride = self.coded[0] // plane.shape[-2]
        top, left, bottom, right = (m // stride for m in self.margins)
        return np.pad(plane, [(0, 0), (top, bottom), (left, right)], mode="edge")


@dataclass(frozen=True)
class TileGrid:
    width: int
    height: int
    tile: int

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.tile)

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.tile)

    @property
    def count(self) -> int:
        return self.cols * self.rows

    def rect(self, index: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of tile ``index`` in raster order."""
        r, c = divmod(index, self.cols)
        x0, y0 = c * self.tile, r * self.tile
        return x0, y0, min(x0 + self.tile, self.width), min(y0 + self.tile, self.height)

    def coded_shape(self, index: int, multiple: int) -> tuple[int, int]:
        """(H, W) the tile is coded at: its size rounded up to the model's padding multiple."""
        x0, y0, x1, y1 = self.rect(index)
        return -(-(y1 - y0) // multiple) * multiple, -(-(x1 - x0) // multiple) * multiple

    def coded_megapixels(self, multiple: int) -> float:
        """Megapixels of all tiles as coded (padded to the model's multiple): what whole-image work costs."""
        return sum(h * w for h, w in (self.coded_shape(i, multiple) for i in range(self.count))) / 1e6

    def _group(self, key: Callable[[int], K], indices: list[int] | None) -> dict[K, list[int]]:
        groups: dict[K, list[int]] = {}
        for i in indices if indices is not None else range(self.count):
            groups.setdefault(key(i), []).append(i)
        return groups

    def by_shape(self, multiple: int, indices: list[int] | None = None) -> dict[tuple[int, int], list[int]]:
        """Tile indices grouped by coded shape (what can share one batch of latents)."""
        return self._group(lambda i: self.coded_shape(i, multiple), indices)

    def view(self, index: int, multiple: int, context: int) -> TileView:
        x0, y0, x1, y1 = self.rect(index)
        margins = tuple(context if inside else 0 for inside in (y0 > 0, x0 > 0, y1 < self.height, x1 < self.width))
        return TileView(self.coded_shape(index, multiple), margins)

    def by_view(self, multiple: int, context: int, indices: list[int] | None = None) -> dict[TileView, list[int]]:
        """Tile indices grouped by view (what can share one batch of windows)."""
        return self._group(lambda i: self.view(i, multiple, context), indices)

    def window_rect(self, index: int, context: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the image the tile's window reads: the tile and up to ``context`` px around it."""
        x0, y0, x1, y1 = self.rect(index)
        return max(0, x0 - context), max(0, y0 - context), min(self.width, x1 + context), min(self.height, y1 + context)

    def sources(self, indices: list[int], context: int) -> list[int]:
        """Tiles whose latents the synthesis of ``indices`` reads: they and their neighbours within context."""
        needed: set[int] = set()
        for i in indices:
            needed.update(self.covering(*self.window_rect(i, context)))
        return sorted(needed)

    def covering(self, x0: int, y0: int, x1: int, y1: int) -> list[int]:
        """Tiles intersecting the half-open box, in raster order."""
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(self.width, x1), min(self.height, y1)
        cols = range(x0 // self.tile, (x1 - 1) // self.tile + 1)
        rows = range(y0 // self.tile, (y1 - 1) // self.tile + 1)
        return [r * self.cols + c for r in rows for c in cols]


def extract(image: np.ndarray, rect: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """(3, H, W) float32 in [0, 1] from an (h, w, 3) uint8 image, edge-padded to ``shape``."""
    x0, y0, x1, y1 = rect
    crop = image[y0:y1, x0:x1]
    padded = np.pad(crop, ((0, shape[0] - crop.shape[0]), (0, shape[1] - crop.shape[1]), (0, 0)), mode="edge")
    return padded.transpose(2, 0, 1).astype(np.float32) / 255.0


def _overlaps(grid: TileGrid, index: int, view: TileView, planes: Mapping[int, np.ndarray]) -> Iterator[tuple[int, tuple, tuple]]:
    """For each tile whose plane tile ``index``'s window reaches: (tile, window slices, plane slices)."""
    own = planes[index]
    stride = view.coded[0] // own.shape[-2]
    height, width = view.window
    x0, y0, _, _ = grid.rect(index)
    wx, wy = x0 - view.margins[1], y0 - view.margins[0]
    for j in grid.covering(wx, wy, wx + width, wy + height):
        jx, jy, _, _ = grid.rect(j)
        plane = planes[j]
        ax0, ay0 = max(wx, jx), max(wy, jy)
        ax1, ay1 = min(wx + width, jx + plane.shape[-1] * stride), min(wy + height, jy + plane.shape[-2] * stride)
        window_part = (..., slice((ay0 - wy) // stride, (ay1 - wy) // stride), slice((ax0 - wx) // stride, (ax1 - wx) // stride))
        plane_part = (..., slice((ay0 - jy) // stride, (ay1 - jy) // stride), slice((ax0 - jx) // stride, (ax1 - jx) // stride))
        yield j, window_part, plane_part


def stitch(grid: TileGrid, index: int, view: TileView, planes: Mapping[int, np.ndarray]) -> np.ndarray:
    """Tile ``index``'s window of a latent-space array, from per-tile planes (..., h, w) at one stride.

    ``planes`` holds the coded planes of the tile and of every neighbour its window reaches.
    """
    own = planes[index]
    stride = view.coded[0] // own.shape[-2]
    out = np.zeros((*own.shape[:-2], view.window[0] // stride, view.window[1] // stride), own.dtype)
    for j, window_part, plane_part in _overlaps(grid, index, view, planes):
        out[window_part] = planes[j][plane_part]
    return out


def scatter_add(grid: TileGrid, index: int, view: TileView, window: np.ndarray, planes: Mapping[int, np.ndarray]) -> None:
    """The adjoint of ``stitch``: add a window-shaped latent array onto the planes it was read from."""
    for j, window_part, plane_part in _overlaps(grid, index, view, planes):
        planes[j][plane_part] += window[window_part]


def deblock(canvas: np.ndarray, seams_x: list[int], seams_y: list[int], radius: int) -> np.ndarray:
    """Smooth ``radius`` pixels each side of tile seams (float canvas (H, W, 3), modified in place).

    Each pixel in the band moves toward a binomial low-pass of its row (vertical seams), then of its
    column (horizontal seams), with a weight falling linearly from the seam. A pixel's result depends
    only on pixels within radius + DEBLOCK_TAPS of it, which is what region decoding relies on.
    """
    if radius <= 0:
        return canvas
    weights = 1.0 - (np.abs(np.arange(2 * radius) + 0.5 - radius) / radius)
    kernel = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16
    for axis, seams in ((1, seams_x), (0, seams_y)):
        size = canvas.shape[axis]
        for s in seams:
            band = np.arange(s - radius, s + radius)
            taps = np.clip(band[:, None] + np.arange(-DEBLOCK_TAPS, DEBLOCK_TAPS + 1)[None, :], 0, size - 1)
            # Tap by tap in a fixed order: a BLAS reduction (tensordot) rounds differently with the
            # box's shape, so a region decode would not match the full decode bit for bit.
            smooth = kernel[0] * np.take(canvas, taps[:, 0], axis=axis)
            for k in range(1, len(kernel)):
                smooth += kernel[k] * np.take(canvas, taps[:, k], axis=axis)
            current = np.take(canvas, np.clip(band, 0, size - 1), axis=axis)  # the band may pass a thin edge tile
            w = weights.reshape([-1 if a == axis else 1 for a in range(canvas.ndim)]).astype(np.float32)
            updated = current + w * (smooth - current)
            valid = (band >= 0) & (band < size)
            index = [slice(None)] * canvas.ndim
            index[axis] = band[valid]
            canvas[tuple(index)] = np.compress(valid, updated, axis=axis)
    return canvas
