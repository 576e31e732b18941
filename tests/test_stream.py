"""The progress stream against a real emulator on loopback: every fault it can inject, and clean exits.

Each test asserts what a user would notice: the stream ends with the right terminal event (carrying its files),
events never go backwards or repeat, and no socket or poller seat outlives the consumer.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import itertools
import json
import re
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from genstudio_async import AioHttpClient, AsyncGenStudio, ProgressEvent, Submission, TaskInfo, TaskStatus, _http
from genstudio_async import _constants as C
from genstudio_async import _stream as stream_module
from genstudio_async._stream import _went_further
from genstudio_async.emulator import Emulator

from .support import eventually

T2I = "wf-c73diz7kadp6ffgn"


@pytest.fixture(params=["websockets", "aiohttp"])
def via(request: pytest.FixtureRequest) -> str:
    """Whose sockets the stream runs on: websockets' (the default) or aiohttp's (a client given an AioHttpClient)."""
    name: str = request.param
    return name


@asynccontextmanager
async def stream_client(emulator: Emulator, via: str, **kwargs: Any) -> AsyncIterator[AsyncGenStudio]:
    """An emulator client whose progress sockets are ``via``'s."""
    if via == "websockets":
        async with emulator.client(**kwargs) as client:
            yield client
        return
    async with AioHttpClient() as http_client, emulator.client(http_client=http_client, **kwargs) as client:
        assert client._stream_settings.aiohttp_sockets is not None
        yield client


async def collect(client: AsyncGenStudio, task: Submission | str) -> list[ProgressEvent]:
    events: list[ProgressEvent] = []
    async with client.stream(task) as stream:
        async for event in stream:
            events.append(event)
    return events


def assert_well_formed(events: list[ProgressEvent], status: TaskStatus = TaskStatus.SUCCEEDED) -> None:
    """Terminal last and only last; progress never backwards; no consecutive duplicates; files on success."""
    assert events, "the stream yielded nothing"
    assert events[-1].status is status
    assert all(not event.is_terminal for event in events[:-1])
    progress = [event.progress for event in events]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    for before, after in itertools.pairwise(events):
        assert before.model_dump(exclude={"source"}) != after.model_dump(exclude={"source"}), "duplicate event"
    if status is TaskStatus.SUCCEEDED:
        assert events[-1].progress == 100
        assert events[-1].files and all(events[-1].files.values())
        assert events[-1].final_files


async def test_websocket_stream_yields_typed_events_until_the_terminal_one(
    genstudio_emulator: Emulator, via: str
) -> None:
    async with stream_client(genstudio_emulator, via) as client:
        sub = await client.submit(T2I)
        events = await collect(client, sub)
    assert_well_formed(events)
    assert {event.source for event in events} == {"websocket"}
    assert TaskStatus.RUNNING in {event.status for event in events}
    assert genstudio_emulator.stats.ws_connections_opened == 1
    assert genstudio_emulator.stats.task_info_requests == 0  # nothing needed HTTP
    await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="the socket to close")


async def test_queue_position_is_reported_while_queued(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client() as client:
        subs = [await client.submit(T2I) for _ in range(3)]
        stream = client.stream(subs[2])
        async with stream:
            first = await anext(stream)
            assert first.status is TaskStatus.QUEUED
            assert first.queue_position == 3
            assert first.queue_size == 3
            genstudio_emulator.resume()
            events = [first] + [event async for event in stream]
    assert_well_formed(events)


async def test_junk_frames_are_skipped(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.set_faults(ws_junk=True)
    async with genstudio_emulator.client() as client:
        events = await collect(client, await client.submit(T2I))
    assert_well_formed(events)
    assert {event.source for event in events} == {"websocket"}


@pytest.mark.parametrize("drop_after", [1, 3])
async def test_abnormal_close_reconnects_and_loses_nothing(genstudio_emulator: Emulator, drop_after: int, via: str
) -> None:
    genstudio_emulator.set_faults(ws_drop_after=drop_after)
    async with stream_client(genstudio_emulator, via, poll_interval=0.02) as client:
        events = await collect(client, await client.submit(T2I))
    assert_well_formed(events)
    assert genstudio_emulator.stats.ws_connections_dropped >= 1
    assert genstudio_emulator.stats.ws_connections_opened >= 2  # it reconnected
    assert genstudio_emulator.stats.task_info_requests >= 1  # and reconciled the gap over HTTP


async def test_a_terminal_status_reached_while_disconnected_is_not_missed(
    genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket drops; while the client waits to reconnect the task finishes and sockets start failing.
    No socket ever carries the terminal snapshot: only the HTTP reconciliation of the gap can."""
    genstudio_emulator.pause()
    genstudio_emulator.set_faults(ws_drop_after=1)
    async with genstudio_emulator.client(poll_interval=60.0) as client:
        sub = await client.submit(T2I)

        async def finish_during_backoff(seconds: float) -> None:
            genstudio_emulator.set_faults(ws_refuse_status=503)
            genstudio_emulator.resume()
            await genstudio_emulator.wait_status(sub.prompt_id, 3)

        monkeypatch.setattr(_http, "sleep", finish_during_backoff)
        events = await collect(client, sub)
    assert_well_formed(events)
    assert events[-1].source == "poll"
    assert genstudio_emulator.stats.ws_handshakes_refused == 1


async def test_early_normal_close_is_a_gap_too(genstudio_emulator: Emulator, via: str) -> None:
    genstudio_emulator.set_faults(ws_close_after=1)
    async with stream_client(genstudio_emulator, via, poll_interval=0.02) as client:
        events = await collect(client, await client.submit(T2I))
    assert_well_formed(events)
    assert genstudio_emulator.stats.ws_connections_opened >= 2


async def test_a_silent_socket_is_caught_by_the_idle_watchdog(genstudio_emulator: Emulator, via: str) -> None:
    genstudio_emulator.set_faults(ws_silent=True)
    async with stream_client(genstudio_emulator, via, stream_idle_timeout=0.05, poll_interval=0.02) as client:
        events = await collect(client, await client.submit(T2I))
    assert_well_formed(events)
    assert "poll" in {event.source for event in events}
    assert genstudio_emulator.stats.task_info_requests >= 1


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_refused_handshake_is_not_retried(genstudio_emulator: Emulator, status: int, via: str) -> None:
    genstudio_emulator.set_faults(ws_refuse_status=status)
    async with stream_client(genstudio_emulator, via, poll_interval=0.02) as client:
        events = await collect(client, await client.submit(T2I))
    assert_well_formed(events)
    assert genstudio_emulator.stats.requests["progress_ws"] == 1
    assert {event.source for event in events} == {"poll"}


async def test_a_server_error_at_handshake_is_retried_then_polling_takes_over(
    genstudio_emulator: Emulator, via: str
) -> None:
    genstudio_emulator.pause()
    genstudio_emulator.set_faults(ws_refuse_status=503)
    async with stream_client(genstudio_emulator, via, poll_interval=0.02) as client:
        sub = await client.submit(T2I)
        consumer = asyncio.create_task(collect(client, sub))
        # While the task is held in the queue, every reconnect is used up (each gap reconciled through the
        # poller) and the poller takes over.
        await eventually(lambda: genstudio_emulator.stats.requests["progress_ws"] == 1 + 3, what="every reconnect")
        await eventually(lambda: sub.prompt_id in client._poller.polling, what="polling mode")
        genstudio_emulator.resume()
        events = await consumer
    assert_well_formed(events)
    assert events[0].status is TaskStatus.QUEUED
    assert genstudio_emulator.stats.requests["progress_ws"] == 1 + 3  # first try + WS_MAX_RECONNECTS


async def test_a_forged_token_is_refused_and_the_stream_polls(genstudio_emulator: Emulator) -> None:
    async with genstudio_emulator.client(poll_interval=0.02) as client:
        sub = await client.submit(T2I)
        assert sub.prompt_token is not None
        header, claims, _ = sub.prompt_token.split(".")
        forged = Submission(prompt_id=sub.prompt_id, prompt_token=f"{header}.{claims}.Zm9yZ2Vk")
        events = await collect(client, forged)
    assert_well_formed(events)
    assert genstudio_emulator.stats.ws_handshakes_refused == 1
    assert genstudio_emulator.stats.requests["progress_ws"] == 1


async def test_an_expired_token_goes_straight_to_polling(genstudio_emulator: Emulator) -> None:
    async with genstudio_emulator.client(poll_interval=0.02) as client:
        sub = await client.submit(T2I)
        assert sub.prompt_token is not None
        header, claims, signature = sub.prompt_token.split(".")
        decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        decoded["exp"] = int(time.time()) - 10
        stale = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
        expired = Submission(prompt_id=sub.prompt_id, prompt_token=f"{header}.{stale}.{signature}")
        assert expired.token_expired
        events = await collect(client, expired)
    assert_well_formed(events)
    assert genstudio_emulator.stats.requests["progress_ws"] == 0


@pytest.mark.parametrize("how", ["use_websocket=False", "bare prompt_id"])
async def test_polling_only(genstudio_emulator: Emulator, how: str) -> None:
    use_websocket = how != "use_websocket=False"
    async with genstudio_emulator.client(poll_interval=0.02, use_websocket=use_websocket) as client:
        sub = await client.submit(T2I)
        events = await collect(client, sub if how != "bare prompt_id" else sub.prompt_id)
    assert_well_formed(events)
    assert {event.source for event in events} == {"poll"}
    assert genstudio_emulator.stats.requests["progress_ws"] == 0


async def test_failed_and_denied_tasks_end_the_stream_with_their_status(genstudio_emulator: Emulator) -> None:
    async with genstudio_emulator.client() as client:
        genstudio_emulator.set_faults(fail_tasks="CUDA out of memory")
        failed = await collect(client, await client.submit(T2I))
        genstudio_emulator.set_faults(fail_tasks=None, deny_tasks=True)
        denied = await collect(client, await client.submit(T2I))
    assert_well_formed(failed, TaskStatus.FAILED)
    assert failed[-1].error_message == "CUDA out of memory"
    assert_well_formed(denied, TaskStatus.PERMISSION_DENIED)


# --- leaving early ---------------------------------------------------------------------------------------


async def test_leaving_an_async_with_block_closes_the_socket_at_once(genstudio_emulator: Emulator, via: str) -> None:
    genstudio_emulator.pause()
    async with stream_client(genstudio_emulator, via) as client:
        sub = await client.submit(T2I)
        async with client.stream(sub) as stream:
            async for _event in stream:
                break
        # The close started before the block returned (it finishes in the background): the server sees it soon.
        await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, timeout=1.0, what="close")
        assert not client._poller.polling


async def test_breaking_out_of_a_plain_for_loop_closes_the_socket(genstudio_emulator: Emulator, via: str) -> None:
    genstudio_emulator.pause()
    async with stream_client(genstudio_emulator, via) as client:
        sub = await client.submit(T2I)
        async for _event in client.stream(sub):
            break
        await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="the socket to close")


async def test_cancelling_the_consumer_leaves_no_socket_task_or_poller_seat(
    genstudio_emulator: Emulator, via: str
) -> None:
    genstudio_emulator.pause()
    async with stream_client(genstudio_emulator, via, poll_interval=0.02) as client:
        ws_sub = await client.submit(T2I)
        poll_sub = await client.submit(T2I)
        started = asyncio.Event()

        async def consume(task: Submission | str) -> None:
            async for _event in client.stream(task):
                started.set()

        consumers = [asyncio.create_task(consume(ws_sub)), asyncio.create_task(consume(poll_sub.prompt_id))]
        await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 1, what="a socket")
        await eventually(lambda: poll_sub.prompt_id in client._poller.polling, what="a poller seat")
        for consumer in consumers:
            consumer.cancel()
        results = await asyncio.gather(*consumers, return_exceptions=True)
        assert all(isinstance(result, asyncio.CancelledError) for result in results)
        assert not client._poller.polling
        assert client._poller._runner is None
        await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="the socket to close")
        leftovers = [task for task in asyncio.all_tasks() if task.get_name().startswith("genstudio-poller")]
        assert leftovers == []


@pytest.mark.genstudio_emulator(workers=1)
async def test_idle_checks_of_many_quiet_streams_are_batched(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()  # every task stays queued: every socket is quiet
    async with genstudio_emulator.client(stream_idle_timeout=0.05, poll_interval=0.05) as client:
        subs = [await client.submit(T2I) for _ in range(10)]
        consumers = [asyncio.create_task(collect(client, sub)) for sub in subs]
        await eventually(lambda: genstudio_emulator.stats.task_ids_requested >= 30, what="idle checks")
        stats = genstudio_emulator.stats
        assert stats.task_ids_requested >= 2 * stats.task_info_requests  # several ids per request
        assert stats.ws_connections_opened == 10  # quiet sockets are kept, not abandoned
        genstudio_emulator.resume()
        for events in await asyncio.gather(*consumers):
            assert_well_formed(events)


# --- hostile or broken WebSocket peers (HTTP answered by the emulator) -----------------------------------

_WS_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _text_frame(text: str) -> bytes:
    """One unmasked server-to-client text frame."""
    payload = text.encode()
    if len(payload) < 126:
        header = struct.pack("!BB", 0x81, len(payload))
    elif len(payload) < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, len(payload))
    else:
        header = struct.pack("!BBQ", 0x81, 127, len(payload))
    return header + payload


def _snapshot_frame(emulator: Emulator, prompt_id: str) -> str:
    """The emulator's current snapshot of a task, as a progress frame."""
    return json.dumps({"comfy_task_info": emulator.task_info(prompt_id)})


class RawPeer:
    """A WebSocket peer in raw bytes on 127.0.0.1, to misbehave where a WebSocket library would not.

    ``answer=False``: it reads the handshake and never answers. ``answer=True``: it accepts (once ``gate`` is
    set, if given), sends ``frames``, then reads and ignores everything, the client's close frame included (it
    never sends one back). ``hung_up`` counts the connections the client closed (EOF or reset seen).
    """

    def __init__(self, *, answer: bool, frames: Sequence[str] = (), gate: asyncio.Event | None = None) -> None:
        self.answer = answer
        self.frames = list(frames)
        self.gate = gate
        self.connections = 0
        self.hung_up = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self.connections += 1
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            if self.answer and self.gate is not None:
                await self.gate.wait()
            if self.answer:
                key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", request)
                assert key is not None
                accept = base64.b64encode(hashlib.sha1(key.group(1) + _WS_ACCEPT_GUID).digest())
                writer.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                for frame in self.frames:
                    writer.write(_text_frame(frame))
                await writer.drain()
            while await reader.read(65536):
                pass  # whatever the client sends, its close frame included, goes unanswered
            self.hung_up += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            self.hung_up += 1
        finally:
            writer.close()
            self._handlers.discard(handler)


class RepeatingPeer:
    """A well-formed WebSocket server (websockets) running the test's handler for as long as each socket is open;
    ``opened`` and ``open`` count its sockets."""

    def __init__(self, handler: Callable[[ServerConnection], Awaitable[None]]) -> None:
        self._handler = handler
        self.opened = 0
        self.open = 0
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Self:
        self._server = await serve(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, socket: ServerConnection) -> None:
        self.opened += 1
        self.open += 1
        handler = asyncio.ensure_future(self._handler(socket))
        closed = asyncio.ensure_future(socket.wait_closed())
        try:
            await asyncio.wait({handler, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # the handler lasts as long as the socket, not longer
            handler.cancel()
            closed.cancel()
            outcomes = await asyncio.gather(handler, closed, return_exceptions=True)
            self.open -= 1
        for outcome in outcomes:
            if isinstance(outcome, Exception) and not isinstance(outcome, ConnectionClosed):
                raise outcome


async def test_a_socket_repeating_a_stale_snapshot_does_not_hide_the_end_of_the_task(
    genstudio_emulator: Emulator,
) -> None:
    """Frames keep coming, nothing changes, and the task finishes meanwhile: the watchdog fires on no change."""
    genstudio_emulator.pause()
    stale: list[str] = []

    async def repeat_stale(socket: ServerConnection) -> None:
        while True:  # the task as it was when queued, again and again
            await socket.send(stale[0])
            await asyncio.sleep(0.005)

    async with RepeatingPeer(repeat_stale) as peer:
        async with genstudio_emulator.client(ws_url=peer.url, stream_idle_timeout=0.1, poll_interval=0.02) as client:
            sub = await client.submit(T2I)
            stale.append(_snapshot_frame(genstudio_emulator, sub.prompt_id))
            events: list[ProgressEvent] = []
            async with asyncio.timeout(5.0), client.stream(sub) as stream:  # the bound only fails the test
                async for event in stream:
                    events.append(event)
                    genstudio_emulator.resume()
        assert_well_formed(events)
        assert events[0].status is TaskStatus.QUEUED and events[0].source == "websocket"
        assert events[-1].source == "poll"
        await eventually(lambda: peer.open == 0, what="the peer to see its socket closed")


async def test_a_quiet_task_on_a_chatty_socket_is_checked_once_per_idle_timeout_not_per_frame(
    genstudio_emulator: Emulator,
) -> None:
    """The socket repeats the task's (true) queued snapshot in bursts: each burst waits for one HTTP idle check.
    A check per frame would ask once per frame; the watchdog asks once per quiet ``stream_idle_timeout``."""
    genstudio_emulator.pause()
    frame: list[str] = []
    bursts_sent = 0

    def checked_since(checks_before: int) -> bool:
        return genstudio_emulator.stats.task_info_requests > checks_before

    async def bursts(socket: ServerConnection) -> None:
        nonlocal bursts_sent
        while True:
            checks_before = genstudio_emulator.stats.task_info_requests
            for _ in range(20):
                await socket.send(frame[0])
            bursts_sent += 1
            await eventually(functools.partial(checked_since, checks_before), what="an idle check")

    async with RepeatingPeer(bursts) as peer:
        client = genstudio_emulator.client(ws_url=peer.url, stream_idle_timeout=0.05, poll_interval=0.01)
        async with client:
            sub = await client.submit(T2I)
            frame.append(_snapshot_frame(genstudio_emulator, sub.prompt_id))
            events: list[ProgressEvent] = []

            async def consume() -> None:
                async for event in client.stream(sub):
                    events.append(event)

            consumer = asyncio.create_task(consume())
            await eventually(lambda: bursts_sent >= 6, what="six bursts")
            checks = genstudio_emulator.stats.task_info_requests
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            assert 5 <= checks <= 2 * bursts_sent, f"{checks} HTTP checks for {bursts_sent} bursts of 20 frames"
            assert [event.status for event in events] == [TaskStatus.QUEUED]  # nothing changed, nothing more
            assert peer.opened == 1  # a quiet socket is kept
            await eventually(lambda: peer.open == 0, what="the peer to see its socket closed")


async def test_the_result_does_not_wait_for_a_peer_that_ignores_the_close_frame(
    genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """After the terminal frame the peer never answers our close: ``wait()`` returns at once all the same, and
    closing the client cuts that connection, leaving no task behind."""
    monkeypatch.setattr(C, "WS_CLOSE_TIMEOUT", 60.0)  # a close that waits on the peer would hold wait() a minute
    async with genstudio_emulator.client() as http_only:
        sub = await http_only.submit(T2I)
    await genstudio_emulator.wait_status(sub.prompt_id, 3)
    async with RawPeer(answer=True, frames=[_snapshot_frame(genstudio_emulator, sub.prompt_id)]) as peer:
        client = genstudio_emulator.client(ws_url=peer.url)
        try:
            async with asyncio.timeout(5.0):  # the bound only fails the test
                result = await client.wait(sub)
            assert result.status is TaskStatus.SUCCEEDED and result.outputs
            assert genstudio_emulator.stats.task_info_requests == 0  # the socket brought the result
        finally:
            async with asyncio.timeout(5.0):
                await client.aclose()
        assert client._stream_settings.sockets.pending == 0
        await eventually(lambda: peer.hung_up == 1, what="the client to cut the connection")
    assert peer.connections == 1
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("genstudio-ws")]
    assert not [record for record in caplog.records if record.name == "asyncio"]


async def test_a_peer_that_answers_the_close_is_closed_without_closing_the_client(
    genstudio_emulator: Emulator,
) -> None:
    """The server keeps the socket open after the terminal snapshot (``ws_linger``): the client's own close,
    run in the background, finishes while the client is still open."""
    genstudio_emulator.set_faults(ws_linger=True)
    async with genstudio_emulator.client() as client:
        events = await collect(client, await client.submit(T2I))
        await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="the socket to close")
    assert_well_formed(events)
    assert {event.source for event in events} == {"websocket"}


async def test_a_hung_handshake_does_not_hold_the_stream(
    genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handshake is never answered: the task is followed over HTTP meanwhile, progress and end included,
    and the half-open connection is dropped when the stream ends."""
    monkeypatch.setattr(C, "WS_OPEN_TIMEOUT", 60.0)  # waiting for the handshake would hold the stream a minute
    genstudio_emulator.pause()
    async with RawPeer(answer=False) as peer:
        client = genstudio_emulator.client(ws_url=peer.url, stream_idle_timeout=0.05, poll_interval=0.02)
        async with client:
            sub = await client.submit(T2I)
            async with asyncio.timeout(5.0), client.stream(sub) as stream:  # the bound only fails the test
                first = await anext(stream)
                assert (first.status, first.source) == (TaskStatus.QUEUED, "poll")
                genstudio_emulator.resume()
                events = [first] + [event async for event in stream]
            assert_well_formed(events)
            assert {event.source for event in events} == {"poll"}
            await eventually(lambda: peer.hung_up == 1, what="the handshake's connection to be dropped")
            assert not client._poller.polling
            assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("genstudio-ws")]
    assert peer.connections == 1


async def test_a_slow_handshake_hands_over_to_the_socket_once_it_opens(genstudio_emulator: Emulator) -> None:
    """HTTP fills in while the handshake is slow; when the socket opens at last, it carries the stream on."""
    genstudio_emulator.pause()
    gate = asyncio.Event()
    async with RawPeer(answer=True, gate=gate) as peer:
        # poll_interval=60: after its first answer the poller stays quiet, so only the socket can bring the end.
        client = genstudio_emulator.client(ws_url=peer.url, stream_idle_timeout=0.05, poll_interval=60.0)
        async with client:
            sub = await client.submit(T2I)
            async with asyncio.timeout(5.0), client.stream(sub) as stream:  # the bound only fails the test
                first = await anext(stream)
                assert (first.status, first.source) == (TaskStatus.QUEUED, "poll")
                genstudio_emulator.resume()
                await genstudio_emulator.wait_status(sub.prompt_id, 3)
                peer.frames.append(_snapshot_frame(genstudio_emulator, sub.prompt_id))
                gate.set()
                events = [first] + [event async for event in stream]
            assert_well_formed(events)
            assert events[-1].source == "websocket"
            assert not client._poller.polling
    assert peer.connections == 1


async def test_a_handshake_given_up_after_it_succeeded_still_closes_its_socket() -> None:
    """The stream let go of a handshake that had just opened its socket: that socket is closed, not leaked."""
    from websockets.asyncio.client import ClientConnection, connect

    from genstudio_async._sockets import SocketPool

    async def hold(socket: ServerConnection) -> None:
        await socket.wait_closed()

    async def open_socket(url: str) -> ClientConnection:
        return await connect(url)

    async with RepeatingPeer(hold) as peer:
        pool = SocketPool(max_open=4)
        seat = pool.try_seat()
        assert seat is not None and pool.open == 1
        handshake = asyncio.create_task(open_socket(peer.url))
        await asyncio.wait({handshake})
        await eventually(lambda: peer.open == 1, what="the socket to open")
        pool.drop(handshake, seat)
        await eventually(lambda: peer.open == 0, what="the socket to close")
        await pool.aclose()
    assert handshake.result().state.name == "CLOSED"
    assert pool.open == 0  # its seat in the budget was given back once the socket was gone


async def test_a_client_given_an_aiohttp_client_streams_over_aiohttps_sockets(
    genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an ``AioHttpClient`` the progress sockets are aiohttp's (C framing): websockets' connect is not used."""

    async def no_websockets(*args: object, **kwargs: object) -> None:
        raise OSError("websockets' connect was used")

    monkeypatch.setattr(stream_module, "connect", no_websockets)
    async with stream_client(genstudio_emulator, "aiohttp") as client:
        events = await collect(client, await client.submit(T2I))
    assert_well_formed(events)
    assert {event.source for event in events} == {"websocket"}
    assert genstudio_emulator.stats.ws_connections_opened == 1
    await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="the socket to close")


async def test_an_oversized_message_is_refused_and_the_task_followed_over_http(
    genstudio_emulator: Emulator, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame over ``WS_MAX_MESSAGE_SIZE`` closes the socket with 1009 (never buffered whole); the stream ends
    over HTTP all the same, and no socket is left open."""
    monkeypatch.setattr(C, "WS_MAX_MESSAGE_SIZE", 1024)

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    monkeypatch.setattr(_http, "sleep", no_wait)
    close_codes: list[int | None] = []

    async def oversized(socket: ServerConnection) -> None:
        try:
            await socket.send("x" * 4096)
            await socket.wait_closed()
        finally:
            close_codes.append(socket.close_code)

    async with RepeatingPeer(oversized) as peer:
        async with stream_client(genstudio_emulator, via, ws_url=peer.url, poll_interval=0.02) as client:
            events = await collect(client, await client.submit(T2I))
        await eventually(lambda: peer.open == 0, what="every socket to close")
    assert_well_formed(events)
    assert {event.source for event in events} == {"poll"}
    assert peer.opened >= 1
    assert close_codes and set(close_codes) <= {1009}


# --- the idle watchdog against a socket that talks but says nothing, and an HTTP API that fails ---------------


def _running_frame(emulator: Emulator, prompt_id: str, **changes: object) -> str:
    """The task's snapshot as a progress frame, rewritten as still running at 50 % with no files yet."""
    info = emulator.task_info(prompt_id)
    assert info is not None
    info.update({"status": 2, "progress_num": 50, "files": {}, "final_files": []}, **changes)
    return json.dumps({"comfy_task_info": info})


# What a stream may run beside its consumer: none of it may outlive the stream.
_STREAM_TASKS = ("genstudio-poller", "genstudio-ws-read", "genstudio-ws-idle-check")


@pytest.mark.genstudio_emulator(steps=2, step_seconds=0.005)  # the task is done before the stream starts
async def test_the_socket_is_read_while_an_idle_check_waits_on_a_failing_http_api(
    genstudio_emulator: Emulator,
) -> None:
    """The socket repeats a running snapshot (no change: the watchdog fires) while every ``get_task_info`` answers
    500, which the poller waits out without end; the terminal frame the socket sends meanwhile ends the stream."""
    async with genstudio_emulator.client() as http_only:
        sub = await http_only.submit(T2I)
    await genstudio_emulator.wait_status(sub.prompt_id, 3)
    done = _snapshot_frame(genstudio_emulator, sub.prompt_id)
    running = _running_frame(genstudio_emulator, sub.prompt_id)
    genstudio_emulator.set_faults(http_error_rate=1.0, endpoints={"task_info"})
    stats = genstudio_emulator.stats

    async def heartbeat_then_done(socket: ServerConnection) -> None:
        while stats.http_errors_injected == 0:  # until the idle check has asked HTTP (and been answered 500)
            await socket.send(running)
            await asyncio.sleep(0.005)
        await socket.send(done)
        await socket.wait_closed()

    async with RepeatingPeer(heartbeat_then_done) as peer:
        async with genstudio_emulator.client(ws_url=peer.url, stream_idle_timeout=0.05, poll_interval=0.02) as client:
            async with asyncio.timeout(3.0):  # the bound only fails the test
                events = await collect(client, sub)
            assert_well_formed(events)
            assert [(event.status, event.source) for event in events] == [
                (TaskStatus.RUNNING, "websocket"),
                (TaskStatus.SUCCEEDED, "websocket"),
            ]
            assert stats.http_errors_injected >= 1  # the idle check did ask
            assert not client._poller.polling  # and left its seat when the socket won
            assert not [task for task in asyncio.all_tasks() if task.get_name().startswith(_STREAM_TASKS)]
        await eventually(lambda: peer.open == 0, what="the peer to see its socket closed")


@pytest.mark.genstudio_emulator(steps=2, step_seconds=0.005)  # the task is done before the stream starts
async def test_an_idle_check_is_given_up_as_soon_as_the_socket_shows_progress(genstudio_emulator: Emulator) -> None:
    """HTTP answers 500 while the socket repeats 50 %; once the check is under way the socket sends 60 % and then
    the end: the socket is alive, so the check (and its poller seat) is gone before the end arrives."""
    async with genstudio_emulator.client() as http_only:
        sub = await http_only.submit(T2I)
    await genstudio_emulator.wait_status(sub.prompt_id, 3)
    done = _snapshot_frame(genstudio_emulator, sub.prompt_id)
    at_50, at_60 = (_running_frame(genstudio_emulator, sub.prompt_id, progress_num=p) for p in (50, 60))
    genstudio_emulator.set_faults(http_error_rate=1.0, endpoints={"task_info"})
    stats = genstudio_emulator.stats

    async def stall_then_move(socket: ServerConnection) -> None:
        while stats.http_errors_injected == 0:  # until the idle check has asked HTTP
            await socket.send(at_50)
            await asyncio.sleep(0.005)
        await socket.send(at_60)
        await socket.send(done)
        await socket.wait_closed()

    async with RepeatingPeer(stall_then_move) as peer:
        client = genstudio_emulator.client(ws_url=peer.url, stream_idle_timeout=0.1, poll_interval=0.02)
        async with client:
            seated_at_the_end: list[frozenset[str]] = []
            events: list[ProgressEvent] = []
            async with asyncio.timeout(3.0), client.stream(sub) as stream:  # the bound only fails the test
                async for event in stream:
                    events.append(event)
                    if event.is_terminal:
                        seated_at_the_end.append(client._poller.polling)
    assert [event.progress for event in events] == [50, 60, 100]
    assert {event.source for event in events} == {"websocket"}
    assert stats.http_errors_injected >= 1
    assert seated_at_the_end == [frozenset()]  # no idle check was still waiting on HTTP


def _flipping_frames(emulator: Emulator, prompt_id: str, how: str) -> Callable[[int], str]:
    """Frame ``n`` of a socket that keeps changing without the task going anywhere."""
    if how == "queue position 1 <-> 2":
        return lambda n: _running_frame(emulator, prompt_id, status=1, progress_num=0, current_position=1 + n % 2)
    if how == "cache-busting query":
        url = "http://objects.example/out/a.png?v={n}&Expires=1&Signature=x"
        return lambda n: _running_frame(emulator, prompt_id, files={"9": [url.format(n=n)]})
    assert how == "queue counting down from 10**12"
    return lambda n: _running_frame(emulator, prompt_id, status=1, progress_num=0, current_position=10**12 - n)


@pytest.mark.genstudio_emulator(steps=2, step_seconds=0.005)  # the task is done before the stream starts
@pytest.mark.parametrize("how", ["queue position 1 <-> 2", "cache-busting query", "queue counting down from 10**12"])
async def test_a_socket_whose_changes_go_nowhere_does_not_hide_the_end_of_the_task(
    genstudio_emulator: Emulator, how: str
) -> None:
    """Every frame differs from the one before, so each is yielded, but none shows the task any further: the
    watchdog is not reset by them, and its HTTP check brings the end the socket never sends."""
    async with genstudio_emulator.client() as http_only:
        sub = await http_only.submit(T2I)
    await genstudio_emulator.wait_status(sub.prompt_id, 3)
    frame = _flipping_frames(genstudio_emulator, sub.prompt_id, how)

    async def flip(socket: ServerConnection) -> None:
        for n in itertools.count():
            await socket.send(frame(n))
            await asyncio.sleep(0.005)

    async with RepeatingPeer(flip) as peer:
        client = genstudio_emulator.client(ws_url=peer.url, stream_idle_timeout=0.05, poll_interval=0.02)
        async with client:
            async with asyncio.timeout(3.0):  # the bound only fails the test
                events = await collect(client, sub)
    assert_well_formed(events)
    assert events[-1].source == "poll"  # the end came from the idle check over HTTP
    assert {event.source for event in events[:-1]} == {"websocket"}  # the socket's changes were still yielded
    assert genstudio_emulator.stats.task_info_requests >= 1


async def test_a_move_up_the_queue_seen_only_over_http_does_not_make_the_socket_stale(
    genstudio_emulator: Emulator,
) -> None:
    """The service pushes changes of status and progress; its docs do not promise a frame per move up the queue.
    A socket that repeats position 3 while an idle check shows position 2 is kept: the end still comes over it."""
    genstudio_emulator.pause()
    async with genstudio_emulator.client() as http_only:
        subs = [await http_only.submit(T2I) for _ in range(3)]
        sub = subs[2]
        at_3 = _snapshot_frame(genstudio_emulator, sub.prompt_id)
        image = "http://objects.example/out/a.png"
        finished = {"status": 3, "progress_num": 100, "queue_size": 0, "current_position": 0}
        done = _running_frame(genstudio_emulator, sub.prompt_id, **finished, files={"9": [image]}, final_files=[image])
        moved_up = asyncio.Event()

        async def repeat_position_3(socket: ServerConnection) -> None:
            while not moved_up.is_set():
                await socket.send(at_3)
                await asyncio.sleep(0.005)
            await socket.send(done)
            await socket.wait_closed()

        async with RepeatingPeer(repeat_position_3) as peer:
            client = genstudio_emulator.client(ws_url=peer.url, stream_idle_timeout=0.05, poll_interval=0.02)
            async with client:
                events: list[ProgressEvent] = []
                async with asyncio.timeout(3.0), client.stream(sub) as stream:  # the bound only fails the test
                    async for event in stream:
                        events.append(event)
                        if len(events) == 1:
                            await http_only.cancel(subs[0])  # task 3 moves up to position 2, on HTTP only
                        if (event.queue_position, event.source) == (2, "poll"):
                            moved_up.set()
    assert [(event.queue_position, event.source) for event in events[:2]] == [(3, "websocket"), (2, "poll")]
    assert (events[-1].status, events[-1].source) == (TaskStatus.SUCCEEDED, "websocket")
    assert peer.opened == 1  # the socket was kept, not abandoned as stale


@pytest.mark.parametrize("leave", ["break", "cancel", "cancel twice"])
async def test_leaving_during_an_idle_check_leaves_no_task_or_poller_seat(
    genstudio_emulator: Emulator, leave: str
) -> None:
    """The idle check is under way (HTTP answers 500, the socket flips between two queue positions) when the
    consumer breaks out or is cancelled: the check's poller seat and the socket's reader go with the stream.
    Cancelled again while it is cleaning up, the stream lets go at once and leaves both to end on their own."""
    async with genstudio_emulator.client() as http_only:
        sub = await http_only.submit(T2I)
    frame = _flipping_frames(genstudio_emulator, sub.prompt_id, "queue position 1 <-> 2")
    genstudio_emulator.set_faults(http_error_rate=1.0, endpoints={"task_info"})
    stats = genstudio_emulator.stats

    async def flip(socket: ServerConnection) -> None:
        for n in itertools.count():
            await socket.send(frame(n))
            await asyncio.sleep(0.005)

    async with RepeatingPeer(flip) as peer:
        client = genstudio_emulator.client(ws_url=peer.url, stream_idle_timeout=0.05, poll_interval=0.02)
        async with client:
            checking = asyncio.Event()

            async def consume() -> None:
                async with client.stream(sub) as stream:
                    async for _event in stream:
                        if stats.http_errors_injected and client._poller.polling:  # an idle check is under way
                            checking.set()
                            if leave == "break":
                                break

            def nothing_left() -> bool:
                leftovers = [task for task in asyncio.all_tasks() if task.get_name().startswith(_STREAM_TASKS)]
                return not client._poller.polling and not leftovers

            consumer = asyncio.create_task(consume())
            async with asyncio.timeout(3.0):  # the bound only fails the test
                await checking.wait()
                if leave != "break":
                    consumer.cancel()
                if leave == "cancel twice":
                    await asyncio.sleep(0)  # the consumer starts cleaning up...
                    consumer.cancel()  # ...and is cancelled again
                await asyncio.gather(consumer, return_exceptions=True)
            assert consumer.cancelled() == (leave != "break")
            if leave == "cancel twice":
                await eventually(nothing_left, what="the check and the read to end")
            assert nothing_left()
            await eventually(lambda: peer.open == 0, what="the peer to see its socket closed")


def _info(status: int, progress: int = 0, position: int = 0, files: dict[str, list[str]] | None = None) -> TaskInfo:
    return TaskInfo(prompt_id="cft-1", status=status, progress=progress, queue_position=position, files=files or {})


@pytest.mark.parametrize(
    ("new", "old", "further"),
    [
        pytest.param(_info(2), _info(1, position=1), True, id="a later status"),
        pytest.param(_info(1, position=1), _info(2), False, id="an earlier status"),
        pytest.param(_info(2, progress=60), _info(2, progress=50), True, id="more progress"),
        pytest.param(_info(1, position=2), _info(1, position=3), True, id="up the queue"),
        pytest.param(_info(1, position=3), _info(1, position=2), False, id="down the queue"),
        pytest.param(_info(1, position=2), _info(1, position=0), False, id="a position where none was known"),
        pytest.param(_info(1, position=0), _info(1, position=2), False, id="no position where one was known"),
        pytest.param(_info(1, position=1), _info(1, progress=5, position=2), False, id="up the queue, less progress"),
        pytest.param(_info(1, progress=5, position=3), _info(1, position=2), True, id="more progress, down the queue"),
        pytest.param(
            _info(1, position=C.STREAM_MAX_QUEUE_POSITION),
            _info(1, position=C.STREAM_MAX_QUEUE_POSITION + 1),
            False,
            id="up from an unbelievable position",
        ),
        pytest.param(
            _info(2, progress=50, files={"9": ["http://o/a.png?v=2"]}), _info(2, progress=50), False, id="other files"
        ),
    ],
)
def test_what_counts_as_the_task_going_further(new: TaskInfo, old: TaskInfo, further: bool) -> None:
    """The idle watchdog's order: only a snapshot that goes further resets it; the order has no cycles (a flip
    back and forth goes further at most once) and no endless climb (unbelievable queue positions)."""
    assert _went_further(new, old) is further


# --- the idle watchdog's timer: one per socket, not one per frame (issue 12) ---------------------------------------


@pytest.mark.genstudio_emulator(steps=30, step_seconds=0.002)
async def test_a_socket_arms_its_idle_timer_once_not_once_per_frame(
    genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timer armed and cancelled around every read costs CPU per frame, and a thousand sockets leave thousands of
    cancelled timers in the loop's heap: the watchdog keeps one timer per socket, whose deadline moves on."""
    loop = asyncio.get_running_loop()
    armed: list[str] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Callable[..., object], *args: object, **kwargs: object) -> object:
        name = getattr(callback, "__qualname__", "")
        if name in ("Timeout._on_timeout", "_IdleWatch._fire"):
            armed.append(name)
        return call_at(when, callback, *args, **kwargs)  # type: ignore[arg-type]

    async with genstudio_emulator.client() as client:
        sub = await client.submit(T2I)
        monkeypatch.setattr(loop, "call_at", counting_call_at)
        events = await collect(client, sub)
    assert_well_formed(events)
    assert len(events) >= 20  # many frames read...
    # ...one idle timer, and websockets' own for the handshake and the close: not one per frame.
    assert len(armed) <= 4, f"{len(armed)} timers armed for {len(events)} events: {armed}"


async def test_the_idle_watch_times_out_a_read_only_once_its_deadline_has_passed() -> None:
    from genstudio_async._stream import _IdleWatch

    loop = asyncio.get_running_loop()
    watch = _IdleWatch(loop, loop.time() + 0.02)
    try:
        watch.deadline = loop.time() + 0.06  # moved on before the timer fires: it re-arms, no timeout at 0.02
        started = loop.time()
        with pytest.raises(TimeoutError), watch:
            await loop.create_future()  # a read that never ends
        assert loop.time() - started >= 0.055
        # A read that ends before the deadline is not cut short, and leaves the task uncancelled.
        watch.deadline = loop.time() + 5.0
        with watch:
            await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        # A deadline that passed between reads fires on the next read.
        watch.deadline = loop.time() - 1.0
        await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError), watch:
            await loop.create_future()
    finally:
        watch.close()


async def test_the_idle_watch_leaves_a_cancel_of_the_caller_a_cancel() -> None:
    from genstudio_async._stream import _IdleWatch

    loop = asyncio.get_running_loop()
    watch = _IdleWatch(loop, loop.time() + 5.0)
    entered = asyncio.Event()

    async def read() -> None:
        with watch:
            entered.set()
            await loop.create_future()

    reader = asyncio.create_task(read())
    await entered.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    watch.close()
    assert watch._handle is None


def test_poll_events_made_of_one_snapshot_share_no_extra_field() -> None:
    """The shared poller hands one snapshot to every stream of a task: an extra field (a list or an object the
    server sent) edited in one stream's event must not change in another's, nor in the poller's snapshot."""
    from genstudio_async._services.genstudio import parse_task_info

    info = parse_task_info({"comfy_task_id": "cft-1", "status": 2, "node": {"ids": [1, 2]}})
    one, other = stream_module._as_event(info, "poll"), stream_module._as_event(info, "poll")
    assert one.model_extra is not None and one.model_extra["node"] == {"ids": [1, 2]}
    one.model_extra["node"]["ids"].append(3)
    assert other.model_extra == {"node": {"ids": [1, 2]}}
    assert info.model_extra == {"node": {"ids": [1, 2]}}
