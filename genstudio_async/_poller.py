"""The shared poller: one per client, however many tasks are waiting.

Every task in polling mode is asked for once per ``poll_interval``: batched where the service allows (GenStudio:
50 ids per ``get_task_info``, the chunks of a round in flight together), one request per task where it does not
(GPUGeek: the requests of a round start spread evenly over the interval, so a thousand tasks never make a burst
of a thousand requests at one instant). At most ``POLL_MAX_IN_FLIGHT`` requests are in flight; a round that
takes longer than the interval makes the next one start at once, never overlap. Each waiter is handed its own
latest snapshot. Waiters join and leave freely; the background task runs only while somebody is waiting, so
nothing outlives the last waiter. A rate limit (429) seen by any request holds back the whole client's requests
(``_pacing.Pacer``), this poller's too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from . import _constants as C
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    GenStudioError,
    NotFoundError,
    PermissionDeniedError,
)
from ._services import genstudio as GS
from .types import TaskInfo

log = logging.getLogger("genstudio_async")

FetchTasks = Callable[[Sequence[str]], Awaitable[list[TaskInfo]]]


def is_fatal_poll_error(error: GenStudioError) -> bool:
    """Errors that polling again will not cure. Only a failed connection and a 5xx/408/429 answer are worth another
    round; the rest (the service refused the request, an id it cannot have, a client used on another event loop,
    an answer that cannot be read) ends the waiter's polling with that error, instead of polling for ever."""
    if isinstance(error, APIConnectionError):
        return False
    if isinstance(error, APIStatusError):
        return error.status_code < 500 and error.status_code not in C.RETRYABLE_STATUS_CODES
    return True


class PollWaiter:
    """One task's seat at the poller: the latest snapshot, or the error that ended its polling."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self._latest: TaskInfo | None = None
        self._error: GenStudioError | None = None
        self._changed = asyncio.Event()
        self.misses = 0

    def deliver(self, info: TaskInfo) -> None:
        self.misses = 0
        self._latest = info
        self._changed.set()

    def fail(self, error: GenStudioError) -> None:
        self._error = error
        self._changed.set()

    async def next(self) -> TaskInfo:
        """The next snapshot the poller hands over (the latest one, if several arrived meanwhile)."""
        await self._changed.wait()
        self._changed.clear()
        if self._error is not None:
            raise self._error
        assert self._latest is not None
        return self._latest


class TaskPoller:
    """Polls every registered task together. Owned by one client; ``aclose`` stops it."""

    def __init__(
        self,
        fetch: FetchTasks,
        *,
        interval: float,
        chunk_size: int = GS.STATUS_BATCH_SIZE,
        missing_limit: int = C.POLL_MISSING_LIMIT,
        max_in_flight: int = C.POLL_MAX_IN_FLIGHT,
        spread: bool = False,
    ) -> None:
        self._fetch = fetch
        self._spread = spread
        self._interval = interval
        self._chunk_size = chunk_size
        self._slots = asyncio.Semaphore(max_in_flight)
        self._missing_limit = missing_limit
        self._waiters: dict[str, set[PollWaiter]] = {}
        self.rounds = 0  # polling rounds started (for tests and benchmarks)
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def polling(self) -> frozenset[str]:
        """The prompt_ids being polled now."""
        return frozenset(self._waiters)

    @asynccontextmanager
    async def watch(self, prompt_id: str) -> AsyncIterator[PollWaiter]:
        """Poll ``prompt_id`` for as long as the ``async with`` block lasts."""
        if self._closed:
            raise GenStudioError("the client is closed")
        waiter = PollWaiter(prompt_id)
        self._waiters.setdefault(prompt_id, set()).add(waiter)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="genstudio-poller")
        try:
            yield waiter
        finally:
            seats = self._waiters.get(prompt_id)
            if seats is not None:
                seats.discard(waiter)
                if not seats:
                    del self._waiters[prompt_id]
            if not self._waiters:
                await self._stop_runner()

    async def aclose(self) -> None:
        self._closed = True
        await self._stop_runner()
        self._fail_all(GenStudioError("the client was closed while this task was being polled"))

    def _fail_all(self, error: GenStudioError) -> None:
        for seats in list(self._waiters.values()):
            for waiter in list(seats):
                waiter.fail(error)

    async def _stop_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None or runner.done() or runner is asyncio.current_task():
            return
        runner.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiters:
                started = loop.time()
                await self._poll_round(started)
                await asyncio.sleep(max(self._interval - (loop.time() - started), 0.0))
        except Exception as error:  # a dead poller must not leave its waiters hanging for ever
            log.debug("the poller stopped on an unexpected error", exc_info=True)
            failure = GenStudioError(f"polling stopped on an unexpected error: {type(error).__name__}")
            failure.__cause__ = error
            self._fail_all(failure)

    async def _poll_round(self, started: float) -> None:
        """Ask once for every task being polled: in chunks of ``chunk_size`` ids, at most ``max_in_flight`` at a
        time; with ``spread``, their starts spread evenly over the interval (no burst at one instant)."""
        loop = asyncio.get_running_loop()
        self.rounds += 1
        ids = list(self._waiters)
        chunks = [ids[i : i + self._chunk_size] for i in range(0, len(ids), self._chunk_size)]
        spacing = self._interval / len(chunks) if self._spread else 0.0
        async with asyncio.TaskGroup() as group:
            for number, chunk in enumerate(chunks):
                if number:
                    await asyncio.sleep(max(started + number * spacing - loop.time(), 0.0))
                await self._slots.acquire()
                group.create_task(self._poll_in_slot(chunk))

    async def _poll_in_slot(self, ids: list[str]) -> None:
        try:
            await self._poll_chunk(ids)
        finally:
            self._slots.release()

    async def _poll_chunk(self, ids: list[str]) -> None:
        try:
            infos = await self._fetch(ids)
        except GenStudioError as error:
            if is_fatal_poll_error(error) and len(ids) > 1 and not isinstance(
                error, AuthenticationError | PermissionDeniedError
            ):
                # One id the service refuses can sink the whole request: ask for each alone, fail only that one.
                log.debug("poll of %d tasks refused (%s); asking for each on its own", len(ids), error)
                await asyncio.gather(*(self._poll_chunk([prompt_id]) for prompt_id in ids))
                return
            if is_fatal_poll_error(error):
                for prompt_id in ids:
                    for waiter in self._waiters.get(prompt_id, ()):
                        waiter.fail(error)
            else:
                log.debug("poll of %d tasks failed, trying again next interval: %s", len(ids), error)
            return
        found = {info.prompt_id: info for info in infos}
        for prompt_id in ids:
            info = found.get(prompt_id)
            for waiter in list(self._waiters.get(prompt_id, ())):
                if info is not None:
                    waiter.deliver(info)
                    continue
                waiter.misses += 1
                if waiter.misses >= self._missing_limit:
                    waiter.fail(NotFoundError(f"the service does not know task {prompt_id!r}", status_code=404))
