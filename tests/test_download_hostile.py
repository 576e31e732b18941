"""Downloads from hostile or broken storage servers: tiny raw HTTP servers of our own on 127.0.0.1 port 0.

Each server here writes its answers byte by byte (asyncio.start_server), so a test can drip, never end, lie
about sizes or close connections exactly when it wants. Everything is closed when a test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import logging
import os
import sys
import warnings
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import genstudio_async
from genstudio_async import (
    APITimeoutError,
    AsyncGenStudio,
    InternalServerError,
    InvalidInputError,
    InvalidResponseError,
    NotFoundError,
    ResponseTooLargeError,
    TaskInfo,
    TaskResult,
)
from genstudio_async._files import download_result
from genstudio_async._http import HTTPCore, RetryPolicy
from genstudio_async._redact import Redactor
from tests.support import PNG_SIGNATURE, eventually, peak_memory, raw_http_server, zero_bomb

API_KEY = "sk-hostile-test-2b7e151628aed2a6"
PAYLOAD = PNG_SIGNATURE + b"\x00" * 1000

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]
"""Answers one request (its head in bytes); returns whether the connection may serve another one."""


def ok_head(length: int | None, content_type: str = "image/png", extra: str = "") -> bytes:
    sized = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{sized}{extra}\r\n".encode()


class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 whose ``handler`` writes each answer itself."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers_done = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._no_connections = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def origin(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def url(self, name: str, query: str = "Expires=9999999999&OSSAccessKeyId=LTAI5t&Signature=ab%2Bcd%3D") -> str:
        return f"{self.origin}/te-1%2Fcft-1%2F{name}" + (f"?{query}" if query else "")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._no_connections.clear()
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                if not await self.handler(reader, writer, head):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.handlers_done += 1
            self._tasks.discard(task)
            if not self._tasks:
                self._no_connections.set()

    async def hang_up(self) -> None:
        """Close the server's side of every connection, and wait until each is closed."""
        for writer in self.writers:
            writer.close()
        await self._no_connections.wait()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[RawServer]:
    async with RawServer(handler) as server:
        yield server


@contextlib.contextmanager
def resource_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """The ResourceWarnings (unclosed sockets, files) raised inside the block, garbage collection included."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        found: list[warnings.WarningMessage] = []
        try:
            yield found
        finally:
            gc.collect()
            found.extend(w for w in caught if issubclass(w.category, ResourceWarning))


def result_of(*urls: str, node_id: str = "9") -> TaskResult:
    return TaskResult(prompt_id="cft-1", files={node_id: list(urls)})


async def outcome_of(task: asyncio.Task[list[Path]]) -> str:
    """How ``task`` ended. Waited for, not awaited: an exception raised here would keep the task, its traceback
    and every object in its frames alive (a cycle through the task that Python 3.11's gc cannot see)."""
    await asyncio.wait([task])
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return "done" if error is None else type(error).__name__


def files_in(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()]


def part_files_in(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.name.endswith(".part")]


# --- cancellation ---------------------------------------------------------------------------------------------


class _CancelOnPoolClose(logging.Handler):
    """Cancels ``victim`` the moment httpcore starts closing a pooled connection (its DEBUG trace says so)."""

    def __init__(self) -> None:
        super().__init__()
        self.victim: asyncio.Task[list[Path]] | None = None
        self.fired = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.victim is not None and not self.fired and record.getMessage().startswith("close.started"):
            self.fired = True
            self.victim.cancel()


async def test_cancelling_a_download_while_the_pool_closes_dead_connections_closes_them_all(
    tmp_path: Path,
) -> None:
    # Eight downloads leave eight keep-alive connections in the pool; the storage then closes its side of each.
    # The next download's request makes the pool close all eight, and the download is cancelled right then: a
    # cancel landing inside httpcore's shielded clean-up must not leave the other seven sockets open.
    connections = 8
    everyone_asked = asyncio.Event()

    async def answer_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        if len(server.requests) >= connections:
            everyone_asked.set()
        await everyone_asked.wait()  # so that every download has its own connection
        writer.write(ok_head(len(PAYLOAD)) + PAYLOAD)
        await writer.drain()
        return True  # keep-alive: the client pools the connection

    closer = _CancelOnPoolClose()
    pool_logger = logging.getLogger("httpcore.connection")
    with resource_warnings() as leaked:
        async with (
            raw_server(answer_then_hang_up) as server,
            AsyncGenStudio(API_KEY, base_url=server.origin) as client,  # the SDK's own pool
        ):
            await asyncio.gather(
                *(client.download(result_of(server.url(f"{i}.png")), tmp_path / str(i)) for i in range(8))
            )
            await server.hang_up()  # the storage closes its side: each pooled socket is now dead
            pool_logger.addHandler(closer)
            level = pool_logger.level
            pool_logger.setLevel(logging.DEBUG)
            try:
                closer.victim = asyncio.create_task(client.download(result_of(server.url("v.png")), tmp_path / "v"))
                cancelled = await outcome_of(closer.victim) == "cancelled"
            finally:
                closer.victim = None
                pool_logger.removeHandler(closer)
                pool_logger.setLevel(level)
    assert closer.fired and cancelled  # the cancel did land while the pool was closing connections
    assert [str(warning.message) for warning in leaked] == []
    assert not (tmp_path / "v").exists() or files_in(tmp_path / "v") == []


STORAGE_URL = "https://bucket.oss.test/te-1%2Fcft-1%2Fimage.png?Expires=9999999999&Signature=ab%2Bcd%3D"


@pytest.mark.parametrize("loop_turns", range(8))
async def test_a_cancel_just_after_the_data_reached_the_disk_leaves_no_open_file(
    api: respx.MockRouter,
    client: AsyncGenStudio,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    loop_turns: int,
) -> None:
    # The download is cancelled a few turns of the event loop after its fsync: while the part file is being
    # closed, renamed or removed. Wherever that lands, nothing may stay open or half-written.
    api.get(STORAGE_URL).respond(200, content=PAYLOAD, headers={"Content-Type": "image/png"})
    loop = asyncio.get_running_loop()
    victims: list[asyncio.Task[list[Path]]] = []
    real_fsync = os.fsync

    def fsync_then_cancel(fd: int) -> None:
        real_fsync(fd)

        def countdown(turns: int) -> None:
            if turns:
                loop.call_soon(countdown, turns - 1)
            else:
                victims[0].cancel()

        loop.call_soon_threadsafe(countdown, loop_turns)

    monkeypatch.setattr(os, "fsync", fsync_then_cancel)
    with resource_warnings() as leaked:
        victims.append(asyncio.create_task(client.download(result_of(STORAGE_URL), tmp_path)))
        outcome = await outcome_of(victims[0])
        victims.clear()
    assert outcome in ("cancelled", "done")
    assert [str(warning.message) for warning in leaked] == []
    assert all(path.read_bytes() == PAYLOAD for path in files_in(tmp_path))  # the whole file, or none
    assert part_files_in(tmp_path) == []


# --- a crash in the middle of a download -----------------------------------------------------------------------

_DOWNLOAD_IN_A_CHILD = """
import asyncio, sys
from genstudio_async import AsyncGenStudio, TaskResult

async def main() -> None:
    async with AsyncGenStudio("sk-child-process-key", base_url=sys.argv[1]) as client:
        await client.download(TaskResult(prompt_id="cft-1", files={"9": [sys.argv[2]]}), sys.argv[3])

asyncio.run(main())
"""


async def test_a_rerun_removes_the_part_file_a_killed_download_left(tmp_path: Path) -> None:
    pytest.importorskip("fcntl")
    body = PNG_SIGNATURE + b"\x01" * 50_000
    first_half_sent = asyncio.Event()

    async def halfway_then_whole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        if len(server.requests) == 1:  # the download that gets killed: half the body, then nothing
            writer.write(ok_head(len(body)) + body[:20_000])
            await writer.drain()
            first_half_sent.set()
            await asyncio.Event().wait()
        writer.write(ok_head(len(body)) + body)
        await writer.drain()
        return True

    out = tmp_path / "out"
    async with raw_server(halfway_then_whole) as server:
        url = server.url("image.png")
        code_root = Path(genstudio_async.__file__).parents[1]  # the child runs this same code
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _DOWNLOAD_IN_A_CHILD, server.origin, url, str(out),
            env={**os.environ, "PYTHONPATH": str(code_root)},
        )
        try:
            await first_half_sent.wait()
            await eventually(lambda: part_files_in(out) != [], what="the child's part file")
        finally:
            child.kill()  # SIGKILL: no clean-up of any kind runs in the child
            await child.wait()
        left = part_files_in(out)
        assert len(left) == 1  # what a crash leaves

        async with AsyncGenStudio(API_KEY, base_url=server.origin) as client:
            paths = await client.download(result_of(url), out)
    assert [path.read_bytes() for path in paths] == [body]
    assert part_files_in(out) == []


# --- size caps and deadlines ------------------------------------------------------------------------------------

CAP = 256 * 1024


async def download_with_limits(server: RawServer, directory: Path, **limits: Any) -> list[Path]:
    """``download_result`` as ``client.download`` calls it, with the caps passed straight in."""
    async with httpx.AsyncClient() as http_client:
        core = HTTPCore(
            api_key=API_KEY,
            base_url=server.origin,
            http_client=http_client,
            timeout=httpx.Timeout(5.0),
            retry_policy=RetryPolicy(),
            redactor=Redactor([API_KEY]),
        )

        async def no_refresh(prompt_id: str) -> TaskInfo:
            raise AssertionError("no URL needed refreshing")

        limits.setdefault("deadline", 5.0)  # a failure bound: every case here ends long before it
        return await download_result(
            result_of(server.url("image.png")), directory, http=core, fetch_task=no_refresh, **limits
        )


async def test_a_file_announced_over_the_cap_is_refused_before_its_body_is_read(tmp_path: Path) -> None:
    async def announce_a_terabyte(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(ok_head(10**12) + PAYLOAD)
        await writer.drain()
        await asyncio.Event().wait()  # the rest never comes: only an up-front refusal ends this quickly
        return False

    async with raw_server(announce_a_terabyte) as server:
        with pytest.raises(ResponseTooLargeError) as raised:
            await download_with_limits(server, tmp_path, max_bytes=CAP)
    assert raised.value.limit == CAP and raised.value.what == "9/image.png"
    assert "262,144 bytes" in str(raised.value) and "max_download_bytes" in str(raised.value)
    assert "1,000,000,000,000" in str(raised.value)  # what the storage claimed
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("framing", ["until-close", "chunked"])
async def test_an_endless_body_is_cut_off_at_the_cap(tmp_path: Path, framing: str) -> None:
    block = PNG_SIGNATURE + b"\x00" * (64 * 1024 - len(PNG_SIGNATURE))

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        chunked = framing == "chunked"
        writer.write(ok_head(None, extra="Transfer-Encoding: chunked\r\n" if chunked else "Connection: close\r\n"))
        while True:  # until the client hangs up
            writer.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            await writer.drain()

    async with raw_server(endless) as server:
        with pytest.raises(ResponseTooLargeError, match="max_download_bytes") as raised:
            await download_with_limits(server, tmp_path, max_bytes=CAP)
    assert raised.value.limit == CAP
    assert files_in(tmp_path) == []


async def test_a_gzip_bomb_is_measured_by_what_it_inflates_to(tmp_path: Path) -> None:
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    bomb = squeezer.compress(PNG_SIGNATURE) + b"".join(squeezer.compress(bytes(1 << 20)) for _ in range(16))
    bomb += squeezer.flush()
    assert len(bomb) < CAP < 16 << 20  # small on the wire, 16 MiB on disk

    async def gzip_bomb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(ok_head(len(bomb), extra="Content-Encoding: gzip\r\n") + bomb)
        await writer.drain()
        return True

    async with raw_server(gzip_bomb) as server:
        with pytest.raises(ResponseTooLargeError):
            await download_with_limits(server, tmp_path, max_bytes=CAP)
    assert b"accept-encoding: identity" in server.requests[0].lower()  # the stored bytes were asked for
    assert files_in(tmp_path) == []


SMALL_CAP = 64 * 1024


def coded_answer(body: bytes, coding: str, *, status: str = "200 OK", sized: bool = True) -> Handler:
    """Answers with ``body`` under ``Content-Encoding: coding``; unsized, it ends the body by closing."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        framing = f"Content-Length: {len(body)}" if sized else "Connection: close"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: image/png\r\nContent-Encoding: {coding}\r\n{framing}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        return sized

    return answer


async def test_a_storage_answer_in_stacked_codings_is_refused_before_anything_is_inflated(tmp_path: Path) -> None:
    bomb = zero_bomb(100, layers=2)  # r02: 1.8 kB as "gzip, gzip" took 3 GB against a 1 MiB cap

    async with raw_server(coded_answer(bomb, "gzip, gzip", sized=False)) as server:
        with peak_memory() as peak, pytest.raises(InvalidResponseError) as raised:
            await download_with_limits(server, tmp_path, max_bytes=SMALL_CAP)
    assert type(raised.value) is InvalidResponseError
    assert "download of 9/image.png" in str(raised.value) and "'gzip, gzip'" in str(raised.value)
    assert peak.bytes < 4 << 20
    assert files_in(tmp_path) == []


async def test_a_gzip_bomb_from_storage_never_inflates_more_than_a_chunk_past_the_cap(tmp_path: Path) -> None:
    async with raw_server(coded_answer(zero_bomb(100), "gzip", sized=False)) as server:
        with peak_memory() as peak, pytest.raises(ResponseTooLargeError) as raised:
            await download_with_limits(server, tmp_path, max_bytes=SMALL_CAP)
    assert raised.value.limit == SMALL_CAP
    assert peak.bytes < 4 << 20  # httpx inflated each network chunk whole, tens of MB at once
    assert files_in(tmp_path) == []


async def test_a_file_the_storage_gzips_anyway_is_saved_as_stored(tmp_path: Path) -> None:
    async with raw_server(coded_answer(gzip.compress(PAYLOAD), "gzip")) as server:
        paths = await download_with_limits(server, tmp_path)
    assert [path.read_bytes() for path in paths] == [PAYLOAD]


async def test_a_gzip_body_that_ends_early_is_refused_not_saved_as_if_whole(tmp_path: Path) -> None:
    cut_off = gzip.compress(PAYLOAD + bytes(range(256)) * 64)[:-40]  # framed right; the gzip stream is not ended

    async with raw_server(coded_answer(cut_off, "gzip")) as server:
        with pytest.raises(InvalidResponseError, match="ends before"):
            await download_with_limits(server, tmp_path)
    assert files_in(tmp_path) == []


async def test_a_storage_error_in_stacked_codings_is_still_its_status_error(tmp_path: Path) -> None:
    bomb = zero_bomb(100, layers=2)

    async with raw_server(coded_answer(bomb, "gzip, gzip", status="404 Not Found", sized=False)) as server:
        with peak_memory() as peak, pytest.raises(NotFoundError) as raised:
            await download_with_limits(server, tmp_path)
    assert raised.value.status_code == 404
    assert peak.bytes < 4 << 20
    assert files_in(tmp_path) == []


async def test_a_dripping_body_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(ok_head(len(PAYLOAD)))
        for byte in PAYLOAD:  # one byte at a time, each well within httpx's read timeout
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.01)
        return True

    async with raw_server(drip) as server:
        with pytest.raises(APITimeoutError, match="download_timeout") as raised:
            await download_with_limits(server, tmp_path, deadline=0.2)
    assert "0.2 s" in str(raised.value) and "9/image.png" in str(raised.value)
    assert len(server.requests) == 1  # cut off, not retried
    assert files_in(tmp_path) == []


async def test_a_file_at_the_cap_within_the_deadline_is_saved(tmp_path: Path) -> None:
    exact = PNG_SIGNATURE + b"\x02" * (CAP - len(PNG_SIGNATURE))

    async def whole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(ok_head(len(exact)) + exact)
        await writer.drain()
        return True

    async with raw_server(whole) as server:
        paths = await download_with_limits(server, tmp_path, max_bytes=CAP, deadline=5.0)
    assert [path.read_bytes() for path in paths] == [exact]


@pytest.mark.parametrize(
    "limits", [{"max_bytes": 0}, {"max_bytes": -1}, {"max_bytes": True}, {"max_bytes": 1.5}, {"deadline": 0},
               {"deadline": -1.0}, {"deadline": float("nan")}],
)
async def test_limits_that_make_no_sense_are_refused(tmp_path: Path, limits: dict[str, Any]) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        raise AssertionError("nothing may be fetched")

    async with raw_server(never) as server:
        with pytest.raises(InvalidInputError):
            await download_with_limits(server, tmp_path, **limits)


async def test_an_endless_error_body_is_not_read_to_its_end(tmp_path: Path) -> None:
    async def fail_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        while True:  # an error page that never ends, at a pace a failing test survives
            writer.write(b"x" * 65536)
            await writer.drain()
            await asyncio.sleep(0.001)

    async with (
        raw_server(fail_forever) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, max_retries=1) as client,
        asyncio.timeout(3),  # a failure bound: the old code read the body until this fired
    ):
        with pytest.raises(InternalServerError, match="xxxx") as raised:
            await client.download(result_of(server.url("image.png")), tmp_path)
    assert raised.value.status_code == 500 and len(server.requests) == 2  # retried once, as a 500 is
    assert files_in(tmp_path) == []


async def test_the_clients_download_limits_reach_every_file(tmp_path: Path) -> None:
    """``max_download_bytes`` and ``download_timeout`` given to the client are the ones its downloads keep."""
    from genstudio_async import AsyncGenStudio, ResponseTooLargeError, TaskResult

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"\x89PNG\r\n\x1a\n" + b"\x00" * 4096
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        await reader.read()

    async with raw_http_server(big) as origin, AsyncGenStudio(
        "sk-limits-0123456789", base_url="https://genstudio.test", max_download_bytes=1024
    ) as client:
        result = TaskResult(prompt_id="cft-1", files={"9": [f"{origin}/out/a.png"]})
        with pytest.raises(ResponseTooLargeError) as caught:
            await asyncio.wait_for(client.download(result, tmp_path), timeout=10)
    assert caught.value.limit == 1024
    assert files_in(tmp_path) == []  # nothing partial or oversized left behind
