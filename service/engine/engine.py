"""The engine behind the routes: tiles in, payloads or pixels out, through the batcher and the cache.

One vocabulary, in batch keys, worker timings and metric labels alike:
- batch stages (``lic_queue_wait_seconds`` and ``lic_batch_size``, label ``stage``): ``encode`` (a
  tile's analysis and entropy encoding), ``entropy_decode`` (a tile's latents) and ``synthesis`` (a
  tile's pixels from its window's latents); whole-image jobs (rate control, refinement) are not
  batched but go to the pool's image lane;
- steps, timed in the workers: ``analysis`` and ``synthesis`` (``lic_inference_seconds{stage}``),
  entropy ``encode`` and ``decode`` (``lic_entropy_coding_seconds{direction}``).
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from service.codec import bitstream, image_io
from service.codec.errors import LimitError
from service.codec.image_io import Planes
from service.codec.limits import DEFAULT_QUALITY
from service.codec.rate_control import job_cost, target_kind
from service.codec.tiles import TileGrid, TileView
from service.codec.windows import RegionPlan, SynthesisPlanes, tile_size, window_feeds, window_pixels
from service.codec.zoo import ModelPackage
from service.core.config import Settings
from service.core.metrics import Metrics
from service.engine import worker
from service.engine.batcher import Batch, DynamicBatcher, QueueFull
from service.engine.cache import MemoryTileCache, RedisTileCache, TileCache, pack_arrays, tile_key, unpack_arrays
from service.engine.pool import WorkerPool


class Engine:
    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.pool = WorkerPool(settings)
        self.batcher = DynamicBatcher(slots=settings.workers, max_batch=settings.max_batch,
                                      max_delay_s=settings.max_queue_delay_ms / 1000, max_queue=settings.max_queue_tiles)
        self.cache: TileCache = (
            RedisTileCache(settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_s, settings.redis_retry_s,
                           on_error=metrics.cache.labels("error").inc)
            if settings.redis_url else MemoryTileCache(settings.cache_memory_bytes)
        )
        self.started = False
        self._dispatcher: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._image_jobs = 0  # whole-image jobs running or waiting

    async def start(self) -> None:
        await self.pool.start()
        for device in set(self.pool.devices):
            self.metrics.workers.labels(device).set(self.pool.devices.count(device))
        self._dispatcher = asyncio.create_task(self._dispatch())
        self._watchdog = asyncio.create_task(self.pool.watch())
        self.started = True

    async def stop(self) -> None:
        """Finish queued and running work, then stop the workers."""
        self.started = False
        await self.batcher.drained()
        for task in (self._dispatcher, self._watchdog):
            if task:
                task.cancel()
        self.pool.close()
        await self.cache.close()

    @property
    def ready(self) -> bool:
        """Started, and every worker of both lanes alive and warm."""
        return self.started and self.pool.ready

    # -------------------------------------------------------------- batching
    async def _dispatch(self) -> None:
        """One batch per free worker slot, as the batcher forms them."""
        while True:
            batch = await self.batcher.next_batch()
            stage = batch.key[0]
            self.metrics.batch_size.labels(stage).observe(len(batch.items))
            for wait in batch.waits:
                self.metrics.queue_wait.labels(stage).observe(wait)
            self.metrics.queue_depth.set(self.batcher.depth)
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: Batch) -> None:
        try:
            batch.resolve(await self._execute(batch.key, batch.values))
        except Exception as exc:  # delivered to every request in the batch
            batch.fail(exc)
        finally:
            self.batcher.release(batch)

    async def _execute(self, key: Hashable, values: list[Any]) -> list[Any]:
        stage, model, geometry = key  # geometry: the tiles' view (encode, synthesis) or coded shape (latents)
        columns = [list(column) for column in zip(*values)]
        if stage == "encode":
            payloads, timings = await self.pool.run(worker.encode_tiles, model, geometry, *columns)
            self.metrics.inference.labels("analysis").observe(timings["analysis"])
            self.metrics.entropy.labels("encode").observe(timings["entropy_encode"])
            return payloads
        if stage == "entropy_decode":
            planes, timings = await self.pool.run(worker.decode_latents, model, geometry, *columns)
            self.metrics.entropy.labels("decode").observe(timings["entropy_decode"])
            return planes
        if stage == "synthesis":
            arrays, timings = await self.pool.run(worker.synthesize_tiles, model, geometry, *columns)
            self.metrics.inference.labels("synthesis").observe(timings["synthesis"])
            return arrays
        raise ValueError(f"unknown stage {stage!r}")

    def _batch_limits(self, package: ModelPackage, views: dict[TileView, list[int]]) -> dict[TileView, int]:
        """Most windows of each view in one batch within ``max_decode_bytes``; a view whose single window
        exceeds it is refused (413) before any work."""
        return {view: package.windows_per_batch(view.window, self.settings.max_decode_bytes) for view in views}

    async def _run_groups(self, stage: str, model: str, groups: dict[Hashable, list[int]],
                          value: Callable[[Hashable, int], Any], limits: dict[Hashable, int] | None = None) -> dict[int, Any]:
        """Each group of tiles through the batcher under (stage, model, group key), with ``value(key, tile)``
        as a tile's work item and ``limits[key]`` its batches' largest size: the result per tile index. If
        any tile fails (or the caller is cancelled), the tiles that have not started are dropped, so no
        worker spends time on a request that is over."""
        futures: dict[int, asyncio.Future] = {}
        try:
            for key, members in groups.items():
                submitted = self.batcher.submit((stage, model, key), [value(key, i) for i in members], (limits or {}).get(key))
                futures |= zip(members, submitted)
                self.metrics.queue_depth.set(self.batcher.depth)
            results = await asyncio.gather(*futures.values())
        finally:
            for future in futures.values():
                future.cancel()
        return dict(zip(futures, results))

    # ------------------------------------------------------------ operations
    async def compress(self, model: str, package: ModelPackage, planes: Planes, grid: TileGrid, quality: float | None,
                       target_bpp: float | None, target_psnr: float | None, refine: int) -> tuple[bytes, float, float | None]:
        """The .lic file, the quality it was coded at, and its PSNR when rate control measured it.

        At a given quality the tiles are batched with other requests' tiles; rate control and refinement
        code the whole image in one worker (several codings of one image, or all its tiles refined together).
        """
        if target_bpp is not None or target_psnr is not None or refine:
            return await self._compress_image(model, package, planes, grid, quality, target_bpp, target_psnr, refine)
        q = bitstream.coded_quality(DEFAULT_QUALITY if quality is None else quality)
        context = self.settings.context
        views = grid.by_view(package.padding_multiple, context)
        encoded = await self._run_groups("encode", model, views, lambda _, i: (np.ascontiguousarray(window_pixels(planes.rgb, grid, i, context)), q),
                                         self._batch_limits(package, views))
        alpha = await asyncio.to_thread(image_io.encode_alpha, planes.alpha) if planes.alpha is not None else None
        payloads = [encoded[i] for i in range(grid.count)]
        data = bitstream.write(model, package.fingerprint, q, grid.width, grid.height, planes.mode, grid.tile, context, payloads, alpha,
                               icc=planes.icc)
        return data, q, None

    async def _compress_image(self, model: str, package: ModelPackage, planes: Planes, grid: TileGrid, quality: float | None, target_bpp: float | None,
                              target_psnr: float | None, refine: int) -> tuple[bytes, float, float | None]:
        """A whole-image job on the image lane, refused up front when it costs more than ``max_work``; it
        stops in the worker at the request's deadline or when the request is cancelled."""
        self._batch_limits(package, grid.by_view(package.padding_multiple, self.settings.context))  # the worker's Codec cuts its batches too
        target = target_kind(target_bpp, target_psnr)
        cost = job_cost(grid.coded_megapixels(package.padding_multiple), refine, target)
        if cost > self.settings.max_work:
            raise LimitError(f"this job would cost {cost:.1f} megapixel-steps (refine {refine}, rate control {target or 'none'}); "
                             f"the limit is {self.settings.max_work:g}: use fewer refinement steps, a quality, or a smaller image")
        if self._image_jobs >= self.settings.max_image_jobs:
            raise QueueFull(f"{self._image_jobs} whole-image jobs running or waiting (limit {self.settings.max_image_jobs})")
        self._image_jobs += 1
        try:
            deadline = time.time() + self.settings.request_timeout_s
            return await self.pool.run_job(worker.compress_image, deadline, model, planes, quality, target_bpp, target_psnr,
                                           grid.tile, refine)
        finally:
            self._image_jobs -= 1

    async def decode(self, data: bytes, header: bitstream.Header, package: ModelPackage, plan: RegionPlan) -> dict[int, np.ndarray]:
        """Decoded tiles for a region plan: cached ones from the cache, the rest through the batcher."""
        grid = header.grid
        content = hashlib.sha256(data).hexdigest()[:32]
        kind = "tile" if package.precision("g_s", self.settings.transforms) == "fp32" else "tile.int8"  # their pixels differ
        keys = {i: tile_key(header.model_id, package.fingerprint.hex(), content, i, kind) for i in plan.tiles}
        cached = await self.cache.get_many(list(keys.values()))
        tiles: dict[int, np.ndarray] = {}
        for i, value in zip(plan.tiles, cached):
            x0, y0, x1, y1 = grid.rect(i)
            if value is not None and len(value) == (y1 - y0) * (x1 - x0) * 3:
                tiles[i] = np.frombuffer(value, dtype=np.uint8).reshape(y1 - y0, x1 - x0, 3)
        self.metrics.cache.labels("hit").inc(len(tiles))
        missing = [i for i in plan.tiles if i not in tiles]
        self.metrics.cache.labels("miss").inc(len(missing))
        if not missing:
            return tiles
        # Latents of the missing tiles and of the neighbours their context reaches, then the synthesis.
        views = grid.by_view(package.padding_multiple, header.context, missing)
        limits = self._batch_limits(package, views)
        partial = header.context > 0 and len(plan.tiles) < grid.count
        planes = await self._latents(data, header, package, content, grid.sources(missing, header.context), reuse=partial)
        fresh = await self._run_groups("synthesis", header.model_id, views,
                                       lambda view, i: (window_feeds(grid, i, view, planes), tile_size(grid, i)), limits)
        await self.cache.set_many({keys[i]: array.tobytes() for i, array in fresh.items()})
        return tiles | fresh

    async def _latents(self, data: bytes, header: bitstream.Header, package: ModelPackage, content: str,
                       sources: list[int], reuse: bool) -> SynthesisPlanes:
        """What the synthesis reads of each source tile, entropy-decoded through the batcher.

        With ``reuse`` (a partial decode of tiles coded with context) the latents also go through the
        cache: the next request for a neighbouring tile needs most of them again.
        """
        grid, model = header.grid, header.model_id
        keys = {i: tile_key(model, package.fingerprint.hex(), content, i, kind="latents") for i in sources}
        known: dict[int, dict[str, np.ndarray]] = {}
        if reuse:
            for i, value in zip(sources, await self.cache.get_many(list(keys.values()))):
                arrays = unpack_arrays(value) if value is not None else None
                if arrays is not None and _fits(arrays, grid.coded_shape(i, package.padding_multiple), package):
                    known[i] = arrays
            self.metrics.latent_cache.labels("hit").inc(len(known))
            self.metrics.latent_cache.labels("miss").inc(len(sources) - len(known))
        shapes = grid.by_shape(package.padding_multiple, [i for i in sources if i not in known])
        fresh = await self._run_groups("entropy_decode", model, shapes, lambda _, i: (bitstream.tile_payload(data, header, i), header.quality))
        if reuse:
            await self.cache.set_many({keys[i]: pack_arrays(arrays) for i, arrays in fresh.items()})
        planes: SynthesisPlanes = {}
        for i, arrays in (known | fresh).items():
            for name, plane in arrays.items():
                planes.setdefault(name, {})[i] = plane
        return planes


def _fits(arrays: dict[str, np.ndarray], coded: tuple[int, int], package: ModelPackage) -> bool:
    """A cached latents entry has the planes this model's synthesis reads, at a shape the tile can have."""
    if set(arrays) != {"y_hat", *package.synthesis_features}:
        return False
    return all(a.ndim == 3 and a.dtype == np.float32 and coded[0] % a.shape[1] == 0 and coded[1] % a.shape[2] == 0
               and coded[0] // a.shape[1] == coded[1] // a.shape[2] for a in arrays.values())
