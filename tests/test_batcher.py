"""The dynamic batcher's scheduling, in-process with a fake worker (the real pool is covered by test_service)."""
import asyncio
import contextlib
import time

import pytest

from service.engine.batcher import DynamicBatcher, QueueFull


@contextlib.asynccontextmanager
async def serving(execute, **limits):
    """A batcher with a consumer loop that runs each batch through ``execute``, as the engine does."""
    batcher = DynamicBatcher(**limits)

    async def run(batch):
        try:
            batch.resolve(await execute(batch.key, batch.values))
        except Exception as exc:
            batch.fail(exc)
        finally:
            batcher.release(batch)

    async def consume():
        tasks = set()
        while True:
            task = asyncio.create_task(run(await batcher.next_batch()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    consumer = asyncio.create_task(consume())
    try:
        yield batcher
        await batcher.drained()
    finally:
        consumer.cancel()


class RecordingWorker:
    def __init__(self, seconds: float = 0.05):
        self.batches: list[list] = []
        self.seconds = seconds

    async def __call__(self, key, values):
        self.batches.append(list(values))
        await asyncio.sleep(self.seconds)
        return [(key, v) for v in values]


def run(coro):
    return asyncio.run(coro)


def test_no_delay_means_no_waiting_when_idle():
    async def scenario():
        worker = RecordingWorker(seconds=0.0)
        async with serving(worker, slots=1, max_batch=8, max_delay_s=0.0, max_queue=100) as batcher:
            started = time.monotonic()
            (result,) = await asyncio.gather(*batcher.submit("k", [1]))
            elapsed = time.monotonic() - started
        return result, elapsed, worker.batches

    result, elapsed, batches = run(scenario())
    assert result == ("k", 1) and batches == [[1]] and elapsed < 0.05


def test_batches_grow_while_the_worker_is_busy_and_keep_shapes_apart():
    async def scenario():
        worker = RecordingWorker(seconds=0.1)
        async with serving(worker, slots=1, max_batch=4, max_delay_s=0.0, max_queue=100) as batcher:
            first = batcher.submit("a", [0])
            await asyncio.sleep(0.02)  # the worker is now busy with [0]
            rest = batcher.submit("a", [1, 2, 3, 4, 5]) + batcher.submit("b", [6])
            results = await asyncio.gather(*first, *rest)
        return results, worker.batches

    results, batches = run(scenario())
    assert [v for _, v in results] == [0, 1, 2, 3, 4, 5, 6]
    assert batches[0] == [0] and batches[1] == [1, 2, 3, 4]  # a full batch formed while busy
    assert sorted(map(tuple, batches[2:])) == [(5,), (6,)]  # shapes never mix


def test_delay_waits_for_a_fuller_batch():
    async def scenario():
        worker = RecordingWorker(seconds=0.0)
        async with serving(worker, slots=1, max_batch=8, max_delay_s=0.1, max_queue=100) as batcher:
            futures = batcher.submit("k", [1])
            await asyncio.sleep(0.03)
            futures += batcher.submit("k", [2, 3])
            await asyncio.gather(*futures)
        return worker.batches

    assert run(scenario()) == [[1, 2, 3]]


def test_queue_bound_and_cancelled_items_are_dropped():
    async def scenario():
        worker = RecordingWorker(seconds=0.1)
        async with serving(worker, slots=1, max_batch=2, max_delay_s=0.0, max_queue=4) as batcher:
            busy = batcher.submit("k", [0])
            await asyncio.sleep(0.02)
            doomed = batcher.submit("k", [1, 2, 3])
            with pytest.raises(QueueFull):
                batcher.submit("k", [4, 5])
            for future in doomed[:2]:
                future.cancel()  # client went away
            await asyncio.gather(*busy, doomed[2])
        return worker.batches

    assert run(scenario()) == [[0], [3]]


def test_worker_errors_reach_every_request_of_the_batch():
    async def failing(key, values):
        raise RuntimeError("boom")

    async def scenario():
        async with serving(failing, slots=1, max_batch=4, max_delay_s=0.0, max_queue=10) as batcher:
            results = await asyncio.gather(*batcher.submit("k", [1, 2]), return_exceptions=True)
        return results

    assert all(isinstance(r, RuntimeError) for r in run(scenario()))
