"""Whole images <-> .lic bitstreams: the library's façade.

    codec = Codec()
    result = codec.compress(open("kodim01.png", "rb").read(), quality=4)      # or target_bpp / target_psnr
    image = codec.decompress(result.data, region=(0, 0, 256, 256))            # PIL image

Compressing: read the image, cut it into tiles, run g_a over each tile's window (``windows``), then code
at one quality: quantise and entropy-code each tile (``TileCoder``), optionally after refining its
latents (``refine``), and write the container (``bitstream.write``). Rate control (``rate_control``)
repeats the coding step at other qualities; the analysis runs once.
Decompressing: parse the container, entropy-decode the tiles a region needs and the neighbours their
context reaches, run g_s over each tile's window, assemble the region.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from service.codec import bitstream, image_io
from service.codec.backend import Backend, OnnxBackend
from service.codec.errors import BitstreamError, LimitError, ModelError
from service.codec.limits import (
    AUTO_REFINE,
    DEFAULT_CONTEXT,
    DEFAULT_QUALITY,
    DEFAULT_TILE,
    PSNR_TOLERANCE,
    RATE_TOLERANCE,
    check_context,
    check_quality,
    check_refine,
    check_tile,
)
from service.codec.rate_control import auto_refine_steps, bisect_quality, target_kind
from service.codec.refine import check_refinable
from service.codec.refine import refine as refine_latents
from service.codec.tile_coder import TileCoder
from service.codec.tiles import TileGrid, TileView
from service.codec.windows import (
    RegionPlan,
    SynthesisPlanes,
    add_planes,
    analyze_windows,
    assemble,
    assemble_rgb,
    plan_region,
    region_alpha,
    synthesize_windows,
    tile_size,
    window_feeds,
    window_pixels,
)
from service.codec.zoo import DEFAULT_MODEL, ModelPackage, load_model

Progress = Callable[[int], None]
K = TypeVar("K")


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


@dataclass
class _Analysis:
    """One image after g_a: what every coding step (one per quality tried) starts from."""
    model: str
    coder: TileCoder
    planes: image_io.Planes
    grid: TileGrid
    context: int
    groups: list[tuple[TileView, list[int]]]  # same-view chunks of tile indices
    y: list[np.ndarray]  # per chunk, unscaled latents
    alpha: bytes | None


@dataclass
class _Coded:
    result: CompressResult
    latents: list  # per chunk, the decoded latents (what the decoder will synthesise from)


class Codec:
    def __init__(
        self,
        backend_factory: Callable[[ModelPackage], Backend] = OnnxBackend,
        tile: int = DEFAULT_TILE,
        context: int = DEFAULT_CONTEXT,
        batch: int = 4,
        max_pixels: int = 1 << 28,
        max_tiles: int = 1 << 16,
        max_decode_bytes: int = 4 << 30,
        zoo: Path | None = None,
    ):
        """``max_decode_bytes``: estimated peak transform memory of one batch (``ModelPackage.window_bytes``):
        batches are cut to fit it, and an image or bitstream whose single window does not is refused."""
        self.zoo = zoo
        self.backend_factory, self.tile, self.context, self.batch = backend_factory, check_tile(tile), check_context(context), batch
        self.max_pixels, self.max_tiles, self.max_decode_bytes = max_pixels, max_tiles, max_decode_bytes
        self._coders: dict[str, TileCoder] = {}

    def coder(self, model: str) -> TileCoder:
        if model not in self._coders:
            package = load_model(model, self.zoo)
            self._coders[model] = TileCoder(package, self.backend_factory(package))
        return self._coders[model]

    # ------------------------------------------------------------------ compress
    def compress(
        self,
        source: bytes | str | Image.Image | image_io.Planes,
        model: str = DEFAULT_MODEL,
        quality: float | None = None,
        target_bpp: float | None = None,
        target_psnr: float | None = None,
        tile: int | None = None,
        context: int | None = None,
        deblock_radius: int | None = None,
        refine: int | str = 0,
        progress: Progress | None = None,
        checkpoint: Callable[[], None] = lambda: None,
        keep_icc: bool = False,
    ) -> CompressResult:
        """One of ``quality`` (default 4), ``target_bpp`` or ``target_psnr``. ``refine``: gradient steps of
        encoder-side latent refinement (``service.codec.refine``), 0 for the one-pass encoder, "auto" for
        what a bounded budget allows at this image's size (``rate_control.auto_refine_steps``).
        ``checkpoint`` runs before every coding pass and refinement step; it raises (``Stopped``) to end
        the work early, e.g. at a deadline. ``keep_icc``: code an RGB image in its own profile and keep the
        profile in the container (``image_io.read_image``), instead of converting it to sRGB."""
        if sum(v is not None for v in (quality, target_bpp, target_psnr)) > 1:
            raise ValueError("give one of quality, target_bpp, target_psnr")
        check_refine(refine)
        if quality is not None:
            check_quality(quality)
        started = time.perf_counter()
        analysis = self._analyze(source, model, check_tile(tile or self.tile), self.context if context is None else context,
                                 refine != 0, progress, keep_icc)
        if refine == AUTO_REFINE:
            refine = auto_refine_steps(analysis.grid.coded_megapixels(analysis.coder.package.padding_multiple),
                                       target_kind(target_bpp, target_psnr))
        analysed = time.perf_counter()
        encode_at = partial(self._code, analysis, refine, deblock_radius, checkpoint)
        if target_bpp is not None:
            coded = bisect_quality(encode_at, lambda c: c.result.bpp, target_bpp, RATE_TOLERANCE * target_bpp)
        elif target_psnr is not None:
            coded = bisect_quality(encode_at, partial(self._measure_psnr, analysis), target_psnr, PSNR_TOLERANCE)
        else:
            coded = encode_at(DEFAULT_QUALITY if quality is None else quality)
        done = time.perf_counter()
        coded.result.timings = {"analysis": analysed - started, "encode": done - analysed, "total": done - started}
        return coded.result

    def _analyze(self, source, model: str, tile: int, context: int, refinable: bool, progress: Progress | None,
                 keep_icc: bool) -> _Analysis:
        """Read and check the image, then g_a over every tile's window."""
        planes = source if isinstance(source, image_io.Planes) else (
            image_io.to_planes(source, keep_icc) if isinstance(source, Image.Image)
            else image_io.read_image(source, self.max_pixels, keep_icc=keep_icc)
        )
        height, width = planes.rgb.shape[:2]
        if width * height > self.max_pixels:
            raise LimitError(f"image has {width * height} pixels; the limit is {self.max_pixels}")
        coder = self.coder(model)
        check_context(context, coder.package.context_multiple)
        if refinable:
            check_refinable(coder)
        grid = TileGrid(width, height, tile)
        if grid.count > self.max_tiles:
            raise LimitError(f"{grid.count} tiles exceed the limit of {self.max_tiles}; use a larger tile")
        groups = list(self._windows(coder, grid.by_view(coder.package.padding_multiple, context)))
        y = []
        for view, chunk in groups:
            y.append(analyze_windows(coder, view, [window_pixels(planes.rgb, grid, i, context) for i in chunk]))
            if progress:
                progress(len(chunk))
        alpha = image_io.encode_alpha(planes.alpha) if planes.alpha is not None else None
        return _Analysis(model, coder, planes, grid, context, groups, y, alpha)

    def _code(self, a: _Analysis, refine: int, deblock_radius: int | None, checkpoint: Callable[[], None], quality: float) -> _Coded:
        """The analysed image coded at one quality (the one the container holds)."""
        checkpoint()
        q = bitstream.coded_quality(quality)
        prepared = [a.coder.prepare(y, np.full(len(chunk), q)) for (_, chunk), y in zip(a.groups, a.y)]
        if refine:
            refine_latents(a.coder, a.grid, a.context, a.groups, prepared, a.planes.rgb, q, refine, checkpoint=checkpoint)
        payloads: list[bytes] = [b""] * a.grid.count
        latents = []
        for (_, chunk), chunk_prepared in zip(a.groups, prepared):
            chunk_payloads, decoded = a.coder.finish(chunk_prepared)
            latents.append(decoded)
            for i, payload in zip(chunk, chunk_payloads):
                payloads[i] = payload
        data = bitstream.write(a.model, a.coder.package.fingerprint, q, a.grid.width, a.grid.height, a.planes.mode, a.grid.tile,
                               a.context, payloads, a.alpha, deblock_radius, a.planes.icc)
        return _Coded(CompressResult(data, a.model, q, a.grid.width, a.grid.height, a.grid.count), latents)

    def _measure_psnr(self, a: _Analysis, coded: _Coded) -> float:
        """PSNR of the image as the decoder will see it, from the encoder's latents (for rate control)."""
        planes: SynthesisPlanes = {}
        for (_, chunk), decoded in zip(a.groups, coded.latents):
            add_planes(planes, chunk, a.coder.synthesis_feeds(decoded, np.full(len(chunk), coded.result.quality)))
        tiles = self._synthesize(a.coder, a.grid, a.context, list(range(a.grid.count)), planes)
        whole = (0, 0, a.grid.width, a.grid.height)
        deblock = bitstream.parse(coded.result.data, check_payloads=False).deblock
        recon = assemble_rgb(a.grid, deblock, RegionPlan(whole, list(tiles), whole), tiles)
        coded.result.psnr = image_io.psnr(a.planes.rgb, recon)
        return coded.result.psnr

    def _chunks(self, groups: dict[K, list[int]], batch: Callable[[K], int] | None = None) -> Iterator[tuple[K, list[int]]]:
        """Groups of tiles (by shape or view) in chunks of at most ``batch(key)``, else ``self.batch``."""
        for key, members in groups.items():
            size = batch(key) if batch else self.batch
            for k in range(0, len(members), size):
                yield key, members[k : k + size]

    def _windows(self, coder: TileCoder, views: dict[TileView, list[int]]) -> Iterator[tuple[TileView, list[int]]]:
        """Groups of tiles by view in chunks whose transform memory fits ``max_decode_bytes``."""
        return self._chunks(views, lambda view: min(self.batch, coder.package.windows_per_batch(view.window, self.max_decode_bytes)))

    def _synthesize(self, coder: TileCoder, grid: TileGrid, context: int, indices: list[int], planes: SynthesisPlanes,
                    progress: Progress | None = None) -> dict[int, np.ndarray]:
        tiles: dict[int, np.ndarray] = {}
        for view, chunk in self._windows(coder, grid.by_view(coder.package.padding_multiple, context, indices)):
            windows = [window_feeds(grid, i, view, planes) for i in chunk]
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
        planes: SynthesisPlanes = {}
        for shape, chunk in self._chunks(grid.by_shape(coder.package.padding_multiple, grid.sources(indices, header.context))):
            latents = coder.decode_latents([bitstream.tile_payload(data, header, i) for i in chunk], shape)
            add_planes(planes, chunk, coder.synthesis_feeds(latents, np.full(len(chunk), header.quality)))
        return self._synthesize(coder, grid, header.context, indices, planes, progress)

    def decompress(self, data: bytes, region: tuple[int, int, int, int] | None = None, progress: Progress | None = None) -> Image.Image:
        header = bitstream.parse(data)
        plan = plan_region(header, region)
        alpha = region_alpha(data, header, plan)
        tiles = self.decode_tiles(data, header, plan.tiles, progress)
        return assemble(data, header, plan, tiles, alpha)

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
