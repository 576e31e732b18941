"""The socket budget: at most ``max_sockets`` progress sockets open at once, the rest followed over HTTP, freed
sockets reused by the streams waiting longest; and the budget derived from the open-file limit."""

from __future__ import annotations

import asyncio
import errno

import pytest

from genstudio_async import TaskStatus
from genstudio_async import _constants as C
from genstudio_async._sockets import SocketPool, default_socket_budget, out_of_descriptors
from genstudio_async.emulator import Emulator

from .support import eventually

T2I = "wf-c73diz7kadp6ffgn"


@pytest.mark.genstudio_emulator(workers=4, steps=4, step_seconds=0.01)
async def test_the_budget_is_never_exceeded_and_every_task_completes(genstudio_emulator: Emulator) -> None:
    async with genstudio_emulator.client(max_sockets=3, poll_interval=0.02) as client:
        subs = [await client.submit(T2I) for _ in range(12)]
        results = await asyncio.gather(*(client.wait(sub, timeout=30) for sub in subs))
        pool = client._stream_settings.sockets
        assert pool.peak_open <= 3  # the client never held more
    assert all(result.status is TaskStatus.SUCCEEDED for result in results)  # the overflow completed too
    stats = genstudio_emulator.stats
    assert stats.ws_connections_peak <= 3  # ... nor did the server ever see more open at once
    assert stats.ws_connections_opened > 3  # sockets freed by finished tasks went to waiting ones
    assert stats.task_ids_requested > 0  # the waiting ones were followed over HTTP meanwhile


@pytest.mark.genstudio_emulator(workers=1, steps=2, step_seconds=0.01)
async def test_a_freed_seat_goes_to_the_stream_waiting_longest(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client(max_sockets=1, poll_interval=0.02) as client:
        first, second, third = [await client.submit(T2I) for _ in range(3)]
        streams = [asyncio.create_task(client.wait(sub, timeout=30)) for sub in (first, second, third)]
        pool = client._stream_settings.sockets
        await eventually(lambda: pool.open == 1 and pool.waiting == 2, what="one socket, two waiting")
        genstudio_emulator.resume()
        await asyncio.gather(*streams)
    assert genstudio_emulator.stats.ws_connections_peak == 1


async def test_seats_are_handed_on_first_come_first_served() -> None:
    pool = SocketPool(max_open=1)
    held = pool.try_seat()
    assert held is not None and pool.try_seat() is None
    order: list[str] = []

    async def wait(name: str) -> None:
        seat = await pool.seat()
        order.append(name)
        seat.release()

    waiters = [asyncio.create_task(wait(name)) for name in ("a", "b", "c")]
    await asyncio.sleep(0)
    waiters[1].cancel()  # one leaves the queue: it must not take a seat with it
    held.release()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert order == ["a", "c"] and pool.open == 0
    held.release()  # idempotent: a seat given back twice frees one place only
    assert pool.open == 0


def test_the_default_budget_follows_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    for soft, expected in ((1024, 400), (256, 16), (16, 8), (1_048_576, 4096)):
        monkeypatch.setattr(resource, "getrlimit", lambda _kind, soft=soft: (soft, soft))
        assert default_socket_budget() == expected


def test_running_out_of_descriptors_is_recognised_through_causes() -> None:
    inner = OSError(errno.EMFILE, "Too many open files")
    outer = RuntimeError("could not connect")
    outer.__cause__ = inner
    assert out_of_descriptors(outer) and not out_of_descriptors(OSError(errno.ECONNREFUSED, "refused"))
    pool = SocketPool(max_open=100)
    seats = [pool.try_seat() for _ in range(5)]
    pool.shrink()
    assert pool.max_open == 4 and pool.try_seat() is None
    for seat in seats:
        assert seat is not None
        seat.release()


@pytest.mark.genstudio_emulator(steps=2, step_seconds=0.01)
async def test_out_of_file_descriptors_is_never_an_error_the_caller_sees(
    genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genstudio_async import _stream

    async def no_descriptors(*args: object, **kwargs: object) -> object:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(_stream, "connect", no_descriptors)
    async with genstudio_emulator.client(max_sockets=10, poll_interval=0.02) as client:
        result = await client.run(T2I, timeout=30)
        pool = client._stream_settings.sockets
        assert pool.max_open < 10  # the budget shrank to what the process could hold
    assert result.status is TaskStatus.SUCCEEDED  # followed over HTTP instead


def test_a_shrunk_budget_grows_back_after_a_quiet_while(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    pool = SocketPool(max_open=5)
    seats = [seat for seat in (pool.try_seat() for _ in range(3)) if seat is not None]
    pool.shrink()  # one shortage of descriptors with three open
    assert pool.max_open == 2 and len(seats) == 3
    seats.pop().release()  # too soon: no growth
    assert pool.max_open == 2
    now[0] += C.SOCKET_BUDGET_RECOVER_AFTER
    for seat in seats:
        seat.release()
    assert pool.max_open == 4  # one more for each socket given back after the quiet while, up to what it was
    for _ in range(5):
        extra = pool.try_seat()
        assert extra is not None
        extra.release()
    assert pool.max_open == 5
