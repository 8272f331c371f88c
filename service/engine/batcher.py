"""Dynamic batching of tiles onto the worker pool, in the manner of Triton's dynamic batcher.

Work items are queued by key: (stage, model, tile shape), so every batch has one shape. Whenever a
worker slot is free, the oldest ready queue is flushed as one batch of up to ``max_batch`` items. A
queue is ready when it holds a full batch or its oldest item has waited ``max_delay``; with a delay
of 0 nothing ever waits for company, and batches still grow under load, while the workers are busy.
The queue is bounded: ``reserve`` refuses work beyond ``max_queue`` items (the caller answers 503).
Cancelled items (client gone, deadline passed) are dropped before they reach a worker.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

Execute = Callable[[Hashable, list[Any]], Awaitable[list[Any]]]


@dataclass
class _Item:
    value: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class QueueFull(Exception):
    pass


class DynamicBatcher:
    def __init__(self, execute: Execute, slots: int, max_batch: int, max_delay_s: float, max_queue: int,
                 on_batch: Callable[[Hashable, int, list[float]], None] | None = None):
        self.execute, self.max_batch, self.max_delay, self.max_queue = execute, max_batch, max_delay_s, max_queue
        self.on_batch = on_batch
        self.queues: dict[Hashable, deque[_Item]] = {}
        self.depth = 0
        self._slots = asyncio.Semaphore(slots)
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._dispatch())

    async def close(self) -> None:
        """Finish queued and running work, then stop."""
        while self.depth or self._running:
            await asyncio.sleep(0.01)
        if self._loop_task:
            self._loop_task.cancel()

    def submit(self, key: Hashable, values: list[Any]) -> list[asyncio.Future]:
        if self.depth + len(values) > self.max_queue:
            raise QueueFull(f"{self.depth} tiles queued; adding {len(values)} would pass the limit of {self.max_queue}")
        loop = asyncio.get_running_loop()
        queue = self.queues.setdefault(key, deque())
        items = [_Item(v, loop.create_future()) for v in values]
        queue.extend(items)
        self.depth += len(items)
        self._wakeup.set()
        return [item.future for item in items]

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
            if len(queue) >= self.max_batch or age >= self.max_delay:
                if best is None or queue[0].enqueued < self.queues[best][0].enqueued:
                    best = key
            else:
                wait = self.max_delay - age if wait is None else min(wait, self.max_delay - age)
        return best, wait

    async def _dispatch(self) -> None:
        while True:
            key, wait = self._next_ready(time.monotonic())
            if key is None:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                continue
            await self._slots.acquire()  # batches keep filling while every worker is busy
            queue, batch = self.queues[key], []
            while queue and len(batch) < self.max_batch:
                item = queue.popleft()
                self.depth -= 1
                if not item.future.cancelled():
                    batch.append(item)
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(key, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, key: Hashable, batch: list[_Item]) -> None:
        try:
            started = time.monotonic()
            if self.on_batch:
                self.on_batch(key, len(batch), [started - item.enqueued for item in batch])
            results = await self.execute(key, [item.value for item in batch])
            for item, result in zip(batch, results):
                if not item.future.done():
                    item.future.set_result(result)
        except Exception as exc:  # delivered to every request in the batch
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        finally:
            self._slots.release()
            self._wakeup.set()
