"""The inference worker processes, seen from the gateway's event loop: two lanes, health and recovery.

- The *tile* lane (``LIC_WORKERS`` processes) runs the batches the batcher forms: every request's tiles.
- The *image* lane (``LIC_IMAGE_WORKERS`` processes) runs whole-image jobs (rate control, refinement),
  which take seconds to minutes: on their own processes they never hold up the tile lane.

A worker that dies (out of memory, killed) breaks its lane's executor: the requests it was serving get
``WorkerLost`` (the HTTP layer answers 503 with Retry-After), the lane is replaced at once, and
``ready`` is False until every process of both lanes is alive and warmed up again.
Whole-image jobs can be cancelled: their job id is written to a small shared array that the worker's
job polls between steps (``worker.cancelled``).
"""
from __future__ import annotations

import asyncio
import itertools
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from service.core.config import Settings
from service.engine import worker

CANCEL_SLOTS = 64  # job ids remembered as cancelled (a ring): more than image jobs ever run at once


class WorkerLost(Exception):
    """The worker serving this work died before answering."""


class _Lane:
    def __init__(self, name: str, size: int, spawn: Callable[[int], ProcessPoolExecutor]):
        self.name, self.size, self._spawn = name, size, spawn
        self.executor: ProcessPoolExecutor | None = None
        self.devices: list[str] = []
        self.warm = False

    def start(self) -> None:
        self.executor, self.warm = self._spawn(self.size), False

    def alive(self) -> int:
        processes = getattr(self.executor, "_processes", None) or {}  # the executor starts them on first use
        return sum(p.is_alive() for p in processes.values())


class WorkerPool:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")  # no fork of a process with threads and an event loop
        self._cancelled = self._context.Array("q", CANCEL_SLOTS, lock=False)
        self._job_ids = itertools.count(1)
        self.lanes = {"tiles": _Lane("tiles", settings.workers, self._spawn),
                      "images": _Lane("images", settings.image_workers, self._spawn)}
        self._recovering: set[asyncio.Task] = set()

    def _spawn(self, size: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=size, mp_context=self._context, initializer=worker.initialize,
                                   initargs=(self.settings, self._context.Value("i", 0), self._cancelled))

    @property
    def devices(self) -> list[str]:
        return self.lanes["tiles"].devices

    @property
    def ready(self) -> bool:
        return all(lane.warm and lane.alive() == lane.size for lane in self.lanes.values())

    async def start(self) -> None:
        """Start every worker and wait until each has opened its sessions and warmed up."""
        for lane in self.lanes.values():
            lane.start()
        await asyncio.gather(*(self._warm(lane) for lane in self.lanes.values()))

    async def _warm(self, lane: _Lane) -> None:
        seen: dict[int, str] = {}
        while len(seen) < lane.size:
            pings = await asyncio.gather(*(self._submit(lane, worker.ping) for _ in range(lane.size)))
            seen.update(pings)
        lane.devices, lane.warm = list(seen.values()), True

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the tile lane."""
        return await self._submit(self.lanes["tiles"], fn, *args)

    async def run_job(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A whole-image job on the image lane: ``fn(job_id, *args)``; cancelled in the worker as well
        when the caller is cancelled (deadline passed, client gone)."""
        job = next(self._job_ids)
        try:
            return await self._submit(self.lanes["images"], fn, job, *args)
        except asyncio.CancelledError:
            self._cancelled[job % CANCEL_SLOTS] = job
            raise

    async def _submit(self, lane: _Lane, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        executor = lane.executor
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except BrokenProcessPool as exc:
            if lane.executor is executor:  # the first to see it replaces the lane; the others just fail
                self._replace(lane)
            raise WorkerLost(f"a {lane.name} worker died while serving this request") from exc

    async def watch(self, period_s: float = 0.5) -> None:
        """Replace a lane as soon as one of its warm workers is found dead, busy or not."""
        while True:
            await asyncio.sleep(period_s)
            for lane in self.lanes.values():
                if lane.warm and lane.alive() < lane.size:
                    self._replace(lane)

    def _replace(self, lane: _Lane) -> None:
        lane.executor.shutdown(wait=False, cancel_futures=True)
        lane.start()
        self._recovering.add(task := asyncio.create_task(self._warm(lane)))
        task.add_done_callback(self._recovering.discard)

    def close(self) -> None:
        for lane in self.lanes.values():
            if lane.executor is not None:
                lane.executor.shutdown(wait=True, cancel_futures=True)
