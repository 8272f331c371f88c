"""Dynamic batching of tiles, in the manner of Triton's dynamic batcher.

Work items are queued by key: (stage, model, tile geometry), so every batch has one shape. The
consumer (the engine, once per free worker slot) takes the oldest ready queue as one ``Batch`` of up to
``max_batch`` items with ``next_batch``, runs it, and hands it back with ``Batch.resolve`` or
``Batch.fail`` and ``release``. A queue is ready when it holds a full batch or its oldest item has
waited ``max_delay``; with a delay of 0 nothing ever waits for company, and batches still grow under
load, while every slot is busy. The queue is bounded: ``submit`` refuses work beyond ``max_queue``
items (the caller answers 503). Cancelled items (client gone, deadline passed) are dropped before they
are handed out. The batcher calls nothing: it only queues, forms batches and delivers results.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Item:
    value: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class Batch:
    key: Hashable
    items: list[_Item]
    formed: float = field(default_factory=time.monotonic)

    @property
    def values(self) -> list[Any]:
        return [item.value for item in self.items]

    @property
    def waits(self) -> list[float]:
        """Seconds each item spent queued."""
        return [self.formed - item.enqueued for item in self.items]

    def resolve(self, results: list[Any]) -> None:
        for item, result in zip(self.items, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    def fail(self, exc: BaseException) -> None:
        """Deliver an error to every request of the batch."""
        for item in self.items:
            if not item.future.done():
                item.future.set_exception(exc)


class QueueFull(Exception):
    pass


class DynamicBatcher:
    def __init__(self, slots: int, max_batch: int, max_delay_s: float, max_queue: int):
        self.max_batch, self.max_delay, self.max_queue = max_batch, max_delay_s, max_queue
        self.queues: dict[Hashable, deque[_Item]] = {}
        self.depth = 0  # items queued
        self.in_flight = 0  # batches handed out and not yet released
        self._batch_limits: dict[Hashable, int] = {}
        self._slots = asyncio.Semaphore(slots)
        self._wakeup = asyncio.Event()

    def submit(self, key: Hashable, values: list[Any], max_batch: int | None = None) -> list[asyncio.Future]:
        """Queue ``values`` under ``key``; ``max_batch`` caps this key's batches below the batcher's own
        (large windows: a batch's memory)."""
        if self.depth + len(values) > self.max_queue:
            raise QueueFull(f"{self.depth} tiles queued; adding {len(values)} would pass the limit of {self.max_queue}")
        loop = asyncio.get_running_loop()
        queue = self.queues.setdefault(key, deque())
        items = [_Item(v, loop.create_future()) for v in values]
        queue.extend(items)
        if max_batch is not None:
            self._batch_limits[key] = min(max_batch, self.max_batch)
        self.depth += len(items)
        self._wakeup.set()
        return [item.future for item in items]

    async def next_batch(self) -> Batch:
        """Wait for a free slot and a ready queue; the slot is held until ``release``."""
        await self._slots.acquire()  # batches keep filling while every slot is busy
        while True:
            key, wait = self._next_ready(time.monotonic())
            if key is None:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                except TimeoutError:
                    pass
                continue
            queue, items, limit = self.queues[key], [], self._limit(key)
            while queue and len(items) < limit:
                item = queue.popleft()
                self.depth -= 1
                if not item.future.cancelled():
                    items.append(item)
            if items:
                self.in_flight += 1
                return Batch(key, items)

    def release(self, batch: Batch) -> None:
        """The batch's slot is free again."""
        self.in_flight -= 1
        self._slots.release()
        self._wakeup.set()

    async def drained(self) -> None:
        """Return once nothing is queued or in flight."""
        while self.depth or self.in_flight:
            await asyncio.sleep(0.01)

    def _limit(self, key: Hashable) -> int:
        return self._batch_limits.get(key, self.max_batch)

    def _next_ready(self, now: float) -> tuple[Hashable | None, float | None]:
        """The ready key with the oldest item, else the seconds until one becomes ready."""
        best, wait = None, None
        for key, queue in self.queues.items():
            while queue and queue[0].future.cancelled():
                queue.popleft()
                self.depth -= 1
            if not queue:
                continue
            age = now - queue[0].enqueued
            if len(queue) >= self._limit(key) or age >= self.max_delay:
                if best is None or queue[0].enqueued < self.queues[best][0].enqueued:
                    best = key
            else:
                wait = self.max_delay - age if wait is None else min(wait, self.max_delay - age)
        return best, wait
