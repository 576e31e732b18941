"""``WorkerPool``: the bounded pool that ``run_many`` and ``genstudio batch`` both run on.

Driven with events, never with time: a handle blocks until the test lets it go, so what is running at each
moment is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from genstudio_async._batch import WorkerPool

BOUND = 5.0  # a failure bound only: every wait here ends as soon as the pool does what it should


class Jobs:
    """Items handed out one by one (recording how many were taken) to handles that wait for the test."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.taken = 0
        self.running: set[int] = set()
        self.most_at_once = 0
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.release: dict[int, asyncio.Event] = {n: asyncio.Event() for n in range(count)}
        self.started: dict[int, asyncio.Event] = {n: asyncio.Event() for n in range(count)}

    def items(self) -> Iterator[int]:
        for number in range(self.count):
            self.taken += 1
            yield number

    async def handle(self, number: int) -> None:
        self.running.add(number)
        self.most_at_once = max(self.most_at_once, len(self.running))
        self.started[number].set()
        try:
            await self.release[number].wait()
        except asyncio.CancelledError:
            self.cancelled.append(number)
            raise
        finally:
            self.running.discard(number)
        self.finished.append(number)


async def test_at_most_size_items_run_at_once_and_items_are_taken_only_when_a_worker_is_free() -> None:
    jobs = Jobs(6)
    pool = WorkerPool(jobs.items(), jobs.handle, size=2, name="test-pool")
    try:
        async with asyncio.timeout(BOUND):
            await jobs.started[0].wait()
            await jobs.started[1].wait()
        assert jobs.taken == 2 and jobs.running == {0, 1}  # lazily: the third is not even taken yet
        jobs.release[1].set()
        async with asyncio.timeout(BOUND):
            await jobs.started[2].wait()
        assert jobs.running == {0, 2} and jobs.taken == 3
        for event in jobs.release.values():
            event.set()
        async with asyncio.timeout(BOUND):
            await pool.join()
    finally:
        await pool.aclose()
    assert sorted(jobs.finished) == list(range(6)) and jobs.most_at_once == 2
    assert [worker.get_name() for worker in pool.workers] == ["test-pool-0", "test-pool-1"]


async def test_stop_from_a_handle_starts_nothing_more_and_cancels_the_other_workers() -> None:
    jobs = Jobs(5)
    pool: WorkerPool[int]

    async def handle(number: int) -> None:
        if number == 1:
            await jobs.started[0].wait()
            pool.stop()  # e.g. the key was refused: every other job would fail the same way
            return
        await jobs.handle(number)

    pool = WorkerPool(jobs.items(), handle, size=2, name="test-pool")
    try:
        async with asyncio.timeout(BOUND):
            await pool.join()  # returns: cancelled workers are not an error
    finally:
        await pool.aclose()
    assert jobs.cancelled == [0] and jobs.finished == []
    assert jobs.taken == 2  # nothing taken after the stop


async def test_join_raises_the_first_error_at_once_and_aclose_ends_the_rest() -> None:
    jobs = Jobs(3)

    async def handle(number: int) -> None:
        if number == 1:
            await jobs.started[0].wait()
            raise RuntimeError("a bug in one job")
        await jobs.handle(number)

    pool = WorkerPool(jobs.items(), handle, size=2, name="test-pool")
    try:
        with pytest.raises(RuntimeError, match="a bug in one job"):
            async with asyncio.timeout(BOUND):
                await pool.join()
        assert jobs.running == {0}  # the other worker is still at its job until the pool is closed
    finally:
        await pool.aclose()
    assert jobs.cancelled == [0] and all(worker.done() for worker in pool.workers)


async def test_a_pool_stopped_from_outside_takes_nothing() -> None:
    jobs = Jobs(3)
    pool = WorkerPool(jobs.items(), jobs.handle, size=3, name="test-pool")
    pool.stop()  # a signal handler: not a worker
    try:
        async with asyncio.timeout(BOUND):
            await pool.join()
    finally:
        await pool.aclose()
    assert jobs.taken == 0 and jobs.finished == [] and jobs.cancelled == []
