"""The pool of inference worker processes, seen from the gateway's event loop."""
from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from service.core.config import Settings
from service.engine import worker


class WorkerPool:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.devices: list[str] = []
        self._executor: ProcessPoolExecutor | None = None

    def _spawn(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads and an event loop
        return ProcessPoolExecutor(
            max_workers=self.settings.workers, mp_context=context,
            initializer=worker.initialize, initargs=(self.settings, context.Value("i", 0)),
        )

    async def start(self) -> None:
        """Start every worker and wait until each has opened its sessions and warmed up."""
        self._executor = self._spawn()
        seen: dict[int, str] = {}
        while len(seen) < self.settings.workers:
            pings = await asyncio.gather(*(self.run(worker.ping) for _ in range(self.settings.workers)))
            seen.update(pings)
        self.devices = list(seen.values())

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except BrokenProcessPool:
            # A worker died (e.g. out of memory): replace the pool so later requests are served.
            self._executor = self._spawn()
            raise

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
