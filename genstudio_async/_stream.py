"""A task's progress stream: the WebSocket first, reconnects with every gap reconciled, then polling.

:class:`TaskStream` is what ``client.stream(task)`` returns: an async iterator of ``ProgressEvent`` that is also an
async context manager. The rules it keeps (DESIGN.md, "How the progress stream behaves"):

1. WebSocket first, unless disabled or the token's ``exp`` has passed; junk frames are skipped (DEBUG log).
2. Identical consecutive snapshots are yielded once; progress never goes backwards.
3. The terminal event is yielded last and ends the stream; the socket is closed by us if not by the server,
   in the background (``SocketCloser``): nobody waits on a peer that is slow to answer a close frame.
4. No *progress* for ``stream_idle_timeout`` (silence, repeats, or changes that take the task no further: a flip
   back and forth, fresh URLs for the same files) → one ``get_task_info`` through the shared poller, the socket
   still read meanwhile (whichever shows something new first wins); a socket shown to be stale is abandoned. A
   handshake still pending after a short moment is the same kind of silence: the task is followed over HTTP.
5. An abnormal close (or a normal close before a terminal status) is a gap: reconcile over HTTP, then reconnect
   with jittered back-off, a few times. A handshake refused with 401/403/404 is not retried.
6. Then the client's shared poller.
7. Leaving early (break, cancel, ``aclose``) starts closing the socket and leaves the poller at once.
8. The token is a credential: it never appears whole in a log line or an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidProxy, InvalidStatus, WebSocketException

from . import _constants as C
from . import _http
from ._exceptions import GenStudioError
from ._files import object_key
from ._http import RetryPolicy, retry_delay
from ._logs import log, redact_logger
from ._poller import TaskPoller
from ._redact import mask
from ._services import ProgressSocket
from ._sockets import (
    HandshakeStatus,
    OpenFailed,
    ProgressConnection,
    SocketPool,
    UnusableProxy,
    out_of_descriptors,
)
from ._status import _TERMINAL_STATUSES
from .types import ProgressEvent, TaskInfo, TaskStatus, token_expires_at

if TYPE_CHECKING:
    from ._aiohttp_ws import AioHttpSockets

# The logger handed to websockets, which logs the handshake line with the token: records are masked first.
_ws_log = redact_logger(log.getChild("websocket"))

Source = Literal["websocket", "poll"]

_RECONNECT_POLICY = RetryPolicy(
    max_retries=C.WS_MAX_RECONNECTS,
    initial_delay=C.WS_RECONNECT_INITIAL_DELAY,
    max_delay=C.WS_RECONNECT_MAX_DELAY,
)

# How far along a status is; a snapshot that goes back (RUNNING → QUEUED) is stale and not yielded.
_STATUS_RANK = {
    TaskStatus.QUEUED: 1,
    TaskStatus.RUNNING: 2,
    TaskStatus.SUCCEEDED: 3,
    TaskStatus.FAILED: 3,
    TaskStatus.PERMISSION_DENIED: 3,
    TaskStatus.CANCELLED: 3,
}
# ``event.is_terminal`` without its two property calls, for the checks made on every frame.
_TERMINAL = _TERMINAL_STATUSES


@dataclass(frozen=True)
class StreamSettings:
    """What a stream needs from its client."""

    socket: ProgressSocket | None
    """The service's push stream (``None``: the service has none, or the client was told not to use it)."""
    idle_timeout: float
    poller: TaskPoller
    # The client's sockets: how many may be open and opening; they are closed in the background.
    sockets: SocketPool
    # The proxy for the WebSocket, read from the environment once per client (websockets would re-read the
    # whole environment on every connect: 0.15-0.3 ms of CPU per stream).
    ws_proxy: str | None = None
    # Set when the client's http_client is an AioHttpClient: the sockets are aiohttp's (C framing), not websockets'.
    aiohttp_sockets: AioHttpSockets | None = None


def resolve_ws_proxy(ws_url: str) -> str | None:
    """The proxy websockets would use for ``ws_url`` (``ws_proxy``, ``https_proxy``... and ``no_proxy``)."""
    from websockets.proxy import get_proxy
    from websockets.uri import parse_uri

    try:
        return get_proxy(parse_uri(ws_url))
    except (ValueError, WebSocketException):
        log.debug("could not read the proxy settings for the progress WebSocket", exc_info=True)
        return None


class _HandshakeRefused(Exception):
    """The server answered the WebSocket handshake with a status that will not change on retry."""


class _SocketGap(Exception):
    """The socket ended before a terminal status: abnormal close, network error, early normal close, staleness.

    ``reconciled`` is true when the state was just read over HTTP, so the gap needs no second look.
    """

    def __init__(self, reason: str, *, reconciled: bool = False) -> None:
        super().__init__(reason)
        self.reconciled = reconciled


class TaskStream(AsyncIterator[ProgressEvent]):
    """Progress events of one task, ending with its terminal event. Use with ``async for`` (and ``async with``
    to close it deterministically when leaving early)."""

    def __init__(self, settings: StreamSettings, prompt_id: str, prompt_token: str | None) -> None:
        self.prompt_id = prompt_id
        # The generator and its state live in a core that does not point back here: with no reference cycle,
        # dropping a TaskStream after ``break`` finalises (and so closes) the generator at once.
        self._core = _StreamCore(settings, prompt_id, prompt_token)
        self._events = self._core.events()

    def __repr__(self) -> str:
        return f"TaskStream(prompt_id={self.prompt_id!r}, prompt_token={mask(self._core.token)!r})"

    def __aiter__(self) -> AsyncIterator[ProgressEvent]:
        # ``async for`` runs the generator itself: no coroutine of ours between the loop and each event.
        return self._events

    async def __anext__(self) -> ProgressEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Close the socket and leave the poller now. Safe to call more than once."""
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def last_event(self) -> ProgressEvent | None:
        """The last event yielded, if any."""
        return self._core.last


class _StreamCore:
    """The generators behind a ``TaskStream`` and what they remember."""

    def __init__(self, settings: StreamSettings, prompt_id: str, prompt_token: str | None) -> None:
        self.prompt_id = prompt_id
        self.token = prompt_token
        self.last: ProgressEvent | None = None
        # The furthest the task was seen (``_went_further``): only a snapshot past it resets the idle watchdog.
        self.furthest: ProgressEvent | None = None
        self._settings = settings

    # --- rule 2: once per change, never backwards ----------------------------------------------------------

    def _admit(self, snapshot: ProgressEvent) -> ProgressEvent | None:
        """``snapshot`` as the event to yield next (rule 2), noted as the last and maybe the furthest; ``None``
        when it says nothing new. Every event but a socket's frames (checked as they are read) passes here."""
        event = self._forward_only(snapshot)
        if event is not None:
            self.last = event
            if self.furthest is None or _went_further(event, self.furthest):
                self.furthest = event
        return event

    def _forward_only(self, event: ProgressEvent) -> ProgressEvent | None:
        last = self.last
        if last is None:
            return event
        if event.status in _TERMINAL:
            return event
        last_rank = _STATUS_RANK.get(last.status)
        rank = _STATUS_RANK.get(event.status)
        if last_rank is not None and rank is not None and rank < last_rank:
            log.debug("stream %s: skipped a stale snapshot (%s after %s)", self.prompt_id, event.status.name,
                      last.status.name)
            return None
        if event.progress < last.progress and event.status == last.status:
            event = event.model_copy(update={"progress": last.progress})
        if _same_state(event, last):
            return None
        return event

    # --- rules 1, 3-6: where the snapshots come from -------------------------------------------------------

    async def events(self) -> AsyncGenerator[ProgressEvent, None]:
        """The stream's one generator: rules 1-7 in one frame, so that a socket's frame reaches the caller through
        no other generator (each layer cost ~1.5 µs a frame, and kept its own objects alive for the socket's life).

        The rarer ways (waiting for a seat, a slow handshake) go through ``_over_http_until``; every snapshot but a
        socket's frames goes through ``_admit`` right before it is yielded (there too).
        """
        settings = self._settings
        if settings.socket is not None and self.token and not _token_expired(self.token):
            loop = asyncio.get_running_loop()
            reconnects = 0
            while True:
                needs_reconcile = True
                first_snapshot_at: float | None = None
                seat = settings.sockets.try_seat()
                if seat is None:  # the budget is spent: follow the task over HTTP until a socket frees
                    waiting = asyncio.create_task(settings.sockets.seat(), name="genstudio-ws-seat")
                    try:
                        async with aclosing(self._over_http_until(waiting)) as polled:
                            async for update in polled:
                                yield update
                                if update.is_terminal:
                                    return
                        seat = waiting.result()
                    finally:
                        if seat is None:
                            await _end_tasks(waiting)
                            if not waiting.cancelled() and waiting.exception() is None:
                                waiting.result().release()
                # One socket's session, in ``seat``: it ends normally only after a terminal snapshot; a gap raises.
                # However it ends, its socket is closed (or its handshake dropped) in the background, and the seat
                # given back when the socket is gone.
                handshake: asyncio.Task[ProgressConnection] | None
                try:
                    handshake = asyncio.create_task(self._open_socket(), name="genstudio-ws-handshake")
                except BaseException:
                    seat.release()
                    raise
                socket: ProgressConnection | None = None
                try:
                    # Most handshakes end within the grace: only a slow one needs the generator that polls meanwhile.
                    await asyncio.wait({handshake}, timeout=min(C.WS_HANDSHAKE_GRACE, settings.idle_timeout))
                    if not handshake.done():
                        async with aclosing(self._over_http_until(handshake)) as polled:
                            async for update in polled:
                                yield update
                                if update.is_terminal:
                                    return
                    socket = handshake.result()  # raises the handshake's _SocketGap or _HandshakeRefused
                    # Only the socket is needed from here: the done task, its coroutine and its context are not kept
                    # alive (and scanned by every collection of the GC) for the socket's whole life.
                    handshake = None
                    log.debug("stream %s: socket open", self.prompt_id)
                    # The frames (rule 4's watchdog on no progress). Every change is yielded, but only a snapshot
                    # that shows the task *went further* (``_went_further``: a later status, more progress, a
                    # smaller queue position) resets the watchdog: a socket that repeats a stale snapshot, or flips
                    # between two, is checked over HTTP like a silent one, once per timeout. The check runs beside
                    # the socket, which is read meanwhile: whichever shows something new first wins. A check
                    # waiting on an HTTP API that answers 5xx does not hide the terminal frame sent meanwhile.
                    idle_timeout = settings.idle_timeout
                    # One timer for the socket's life, not one per frame (``_IdleWatch``); ``deadline`` moves on.
                    watch = _IdleWatch(loop, loop.time() + idle_timeout)
                    # While an idle check is under way the socket is read in a task beside it; a read still pending
                    # when the check answers is kept for the next turn. Otherwise it is read inline: no task a frame.
                    reading: asyncio.Task[ProgressEvent] | None = None
                    check: asyncio.Task[ProgressEvent | None] | None = None
                    try:
                        while True:
                            if reading is None and check is None:
                                try:
                                    with watch:
                                        news = await self._next_news(socket)
                                except TimeoutError:
                                    # Rule 4: no progress for a while. Ask over HTTP, reading the socket meanwhile.
                                    check = asyncio.create_task(self._ask_http(), name="genstudio-ws-idle-check")
                                    continue
                            else:
                                if reading is None:
                                    reading = asyncio.create_task(self._next_news(socket), name="genstudio-ws-read")
                                if check is None:
                                    await asyncio.wait({reading}, timeout=max(watch.deadline - loop.time(), 0.0))
                                else:
                                    await asyncio.wait({reading, check}, return_when=asyncio.FIRST_COMPLETED)
                                if check is not None and check.done():  # first: a flood of news must not starve it
                                    checked, check = check.result(), None
                                    if checked is not None and not (
                                        self.last is not None and _same_state(checked, self.last)
                                    ):
                                        stale = self.last is None or _went_further(checked, self.last, queue=False)
                                        if (event := self._admit(checked)) is not None:
                                            yield event
                                        if checked.is_terminal:
                                            return
                                        if stale:  # the socket missed a change: abandon it
                                            raise _SocketGap(
                                                "the socket said nothing new while the task moved on: stale",
                                                reconciled=True,
                                            )
                                    # The socket is kept (the task was quiet, or moved no further on HTTP): ask
                                    # again later.
                                    watch.deadline = loop.time() + idle_timeout
                                    continue
                                if not reading.done():
                                    if check is None:  # no progress by the deadline, a read kept from the last check
                                        check = asyncio.create_task(self._ask_http(), name="genstudio-ws-idle-check")
                                    continue
                                news, reading = reading.result(), None  # result() raises the socket's _SocketGap
                                # Again: an idle check may have been yielded since it was read. (Read inline,
                                # nothing was.)
                                checked_news = self._forward_only(news)
                                if checked_news is None:
                                    continue
                                news = checked_news
                            # ``news`` is forward-only already: noted here, not through ``_admit``.
                            furthest = self.furthest
                            moved = furthest is None or _went_further(news, furthest)
                            self.last = news
                            if moved:
                                self.furthest = news
                            if first_snapshot_at is None:
                                first_snapshot_at = loop.time()
                            yield news
                            if news.status in _TERMINAL:
                                return
                            if moved:
                                if check is not None:  # the socket is alive and moving: HTTP has nothing to add
                                    await _end_tasks(check)
                                    check = None
                                # From when the consumer asks again: its time on an event is not the socket's silence.
                                watch.deadline = loop.time() + idle_timeout
                    finally:
                        watch.close()
                        await _end_tasks(reading, check)
                except _HandshakeRefused as refused:
                    log.debug("stream %s: %s; falling back to polling", self.prompt_id, refused)
                    break
                except _SocketGap as gap:
                    log.debug("stream %s: socket gap (%s)", self.prompt_id, gap)
                    needs_reconcile = not gap.reconciled
                finally:
                    # No await here: a cancelled caller must not be held up, nor the close be cut short by it.
                    if socket is not None:
                        settings.sockets.close(socket, seat)
                    elif handshake is not None:
                        settings.sockets.drop(handshake, seat)
                if needs_reconcile:
                    # Whatever happened while no socket was open is read over HTTP before going on.
                    reconciled = await self._ask_http()
                    if reconciled is not None:
                        if (event := self._admit(reconciled)) is not None:
                            yield event
                        if reconciled.is_terminal:
                            return
                if first_snapshot_at is not None and loop.time() - first_snapshot_at >= C.WS_HEALTHY_SESSION_SECONDS:
                    reconnects = 0  # the budget is for a socket that keeps failing, not for a long task's lifetime
                if reconnects >= _RECONNECT_POLICY.max_retries:
                    log.debug("stream %s: %d reconnects used; falling back to polling", self.prompt_id, reconnects)
                    break
                await _http.sleep(retry_delay(reconnects, _RECONNECT_POLICY))
                reconnects += 1
        elif settings.socket is not None and self.token:
            log.debug("stream %s: the prompt token has expired; polling", self.prompt_id)

        async with settings.poller.watch(self.prompt_id) as waiter:
            while True:
                info = await waiter.next()
                if (event := self._admit(_as_event(info, "poll"))) is not None:
                    yield event
                if info.is_terminal:
                    return

    async def _open_socket(self) -> ProgressConnection:
        assert self.token is not None and self._settings.socket is not None
        url = self._settings.socket.url(self.token)
        aiohttp_sockets = self._settings.aiohttp_sockets
        try:
            async with self._settings.sockets.handshakes:  # a bounded number in flight: none times the others out
                if aiohttp_sockets is not None:
                    return await aiohttp_sockets.connect(url, proxy=self._settings.ws_proxy)
                return await connect(
                    url,
                    open_timeout=C.WS_OPEN_TIMEOUT,
                    close_timeout=C.WS_CLOSE_TIMEOUT,
                    max_size=C.WS_MAX_MESSAGE_SIZE,
                    compression=None,
                    user_agent_header=C.USER_AGENT,
                    logger=_ws_log,
                    proxy=self._settings.ws_proxy,
                )
        except (InvalidStatus, HandshakeStatus) as exc:
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else exc.status
            if status in C.WS_FATAL_HANDSHAKE_STATUSES:
                raise _HandshakeRefused(f"handshake refused with HTTP {status}") from None
            raise _SocketGap(f"handshake answered HTTP {status}") from None
        except (InvalidProxy, UnusableProxy, ImportError, ValueError) as exc:
            # A proxy from the environment that websockets cannot use (a SOCKS proxy without python-socks...):
            # no retry will cure it.
            raise _HandshakeRefused(f"cannot open a socket here: {type(exc).__name__}") from None
        except (WebSocketException, OpenFailed, OSError, TimeoutError) as exc:
            if out_of_descriptors(exc):  # the process is at its open-file limit: hold fewer sockets, not an error
                self._settings.sockets.shrink()
            raise _SocketGap(f"could not open the socket: {type(exc).__name__}") from None

    async def _over_http_until(self, pending: asyncio.Task[Any]) -> AsyncGenerator[ProgressEvent, None]:
        """The events (``_admit``-ed) of what HTTP says while ``pending`` (a slow handshake, or the wait for a
        seat) is not done; ends when it is done.

        A hung handshake, or a budget of sockets spent, is silence like any other (rule 4): it must not hide what
        HTTP already knows. The task is followed through the shared poller, so a thousand waiting streams cost
        one batched request per interval.
        """
        await asyncio.wait({pending}, timeout=0.0)  # one turn of the loop: a seat freed just now is taken
        if pending.done():
            return
        log.debug("stream %s: no socket yet; following the task over HTTP meanwhile", self.prompt_id)
        try:
            async with self._settings.poller.watch(self.prompt_id) as waiter:
                while not pending.done():
                    polled = asyncio.create_task(waiter.next(), name="genstudio-ws-wait-poll")
                    try:
                        await asyncio.wait({pending, polled}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        polled.cancel()  # a no-op once it is done
                    if not polled.done() or polled.cancelled():
                        continue
                    event = self._admit(_as_event(polled.result(), "poll"))  # result() raises the poller's error
                    if event is not None:
                        yield event
        except GenStudioError as exc:
            log.debug("stream %s: following the task over HTTP failed: %s", self.prompt_id, exc)
        await asyncio.wait({pending})

    async def _next_news(self, socket: ProgressConnection) -> ProgressEvent:
        """The next frame that is a snapshot of this task and that the forward-only rules would yield; junk
        frames, repeats and stale snapshots are skipped."""
        frames = self._settings.socket
        assert frames is not None
        prompt_id = self.prompt_id
        while True:
            try:
                frame = await socket.recv()
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else 1006
                raise _SocketGap(f"socket closed with code {code}") from None
            snapshot = frames.parse_frame(frame, prompt_id)
            if snapshot is not None and (event := self._forward_only(snapshot)) is not None:
                return event

    async def _ask_http(self) -> ProgressEvent | None:
        """One snapshot through the shared poller (an idle check, or the reconcile of a gap): ten thousand streams
        asking cost one batched request per 50 ids per interval, not one request each."""
        try:
            async with self._settings.poller.watch(self.prompt_id) as waiter:
                info = await waiter.next()
        except GenStudioError as exc:
            log.debug("stream %s: asking over HTTP failed: %s", self.prompt_id, exc)
            return None
        return _as_event(info, "poll")


class _IdleWatch:
    """The idle watchdog of one socket (rule 4): ``with watch:`` around a read raises ``TimeoutError`` once the
    loop's clock passes ``deadline``, the way ``asyncio.timeout_at(deadline)`` would.

    ``asyncio.timeout_at`` per read armed and cancelled a ``TimerHandle`` for every frame (and a thousand sockets
    left thousands of cancelled ones in the loop's heap). Here one timer serves the socket's life: moving
    ``deadline`` later costs nothing, and the timer, when it fires early, re-arms itself for the new deadline. It
    cancels only a read under way (never the consumer's time between reads: a timeout must not span a ``yield``),
    and like ``asyncio.Timeout`` it turns only its own cancellation into ``TimeoutError``: a cancel of the caller
    meanwhile stays a cancel. A deadline that passed between reads fires as the next read starts; one moved
    earlier re-arms the timer there.
    """

    __slots__ = ("_cancelling", "_fired", "_handle", "_loop", "_task", "deadline")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self.deadline = deadline
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None  # the task reading, while a read is under way
        self._cancelling = 0
        self._fired = False

    def __enter__(self) -> None:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("the idle watch is used outside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        handle = self._handle
        if handle is None or handle.when() > self.deadline:  # none armed, or armed for later than now asked
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(self.deadline, self._fire)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if self._fired:
            self._fired = False
            assert task is not None
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def _fire(self) -> None:
        self._handle = None
        if self._task is None:  # between reads: the next read arms the timer again
            return
        if self._loop.time() < self.deadline:  # the deadline moved on since the timer was armed
            self._handle = self._loop.call_at(self.deadline, self._fire)
            return
        self._fired = True
        self._task.cancel()

    def close(self) -> None:
        """Cancel the timer (the socket is done with)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _as_event(info: TaskInfo, source: Source) -> ProgressEvent:
    if isinstance(info, ProgressEvent) and info.source == source:
        return info
    # ``model_dump``, not ``dict(info)``: the poller hands one snapshot to every stream of the task, and pydantic
    # keeps an extra field's value as it is given; each event gets copies of the extras' lists and objects.
    return ProgressEvent.model_validate({**info.model_dump(), "source": source})


def _same_state(a: TaskInfo, b: TaskInfo) -> bool:
    """Whether two snapshots say the same thing (where they came from does not matter)."""
    return (
        a.status == b.status
        and a.progress == b.progress
        and a.queue_position == b.queue_position
        and a.queue_size == b.queue_size
        and a.error_message == b.error_message
        and _object_keys(a) == _object_keys(b)
    )


def _object_keys(info: TaskInfo) -> tuple[dict[str, list[str]], list[str]]:
    """The objects a snapshot names, without their signatures: URLs are signed afresh on every answer."""
    files = {node_id: [object_key(url) for url in urls] for node_id, urls in info.files.items()}
    return files, [object_key(url) for url in info.final_files]


def _went_further(new: TaskInfo, old: TaskInfo, *, queue: bool = True) -> bool:
    """Whether ``new`` shows the task past where ``old`` left it: a later status, or the same status with more
    progress, or (queued, same progress; unless ``queue`` is false) a smaller queue position.

    Anything else is not progress: a repeat, a flip back and forth, other URLs for the same files. The order is
    strict and bounded (status, then progress, then queue position, each compared only when the ones before are
    equal; positions above ``STREAM_MAX_QUEUE_POSITION`` are not believed), so a snapshot chasing the furthest
    one seen cannot go further for ever. ``queue=False`` is for judging a socket stale: the service pushes a
    change of status or progress, but its docs do not promise a frame for each move up the queue.
    """
    new_rank, old_rank = _STATUS_RANK.get(new.status, 0), _STATUS_RANK.get(old.status, 0)
    if new_rank != old_rank:
        return new_rank > old_rank
    if new.status != old.status:
        return False
    if new.progress != old.progress:
        return new.progress > old.progress
    if not queue or new.status is not TaskStatus.QUEUED:
        return False
    return 0 < new.queue_position < old.queue_position <= C.STREAM_MAX_QUEUE_POSITION


async def _end_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` (a no-op for one that is done) and wait until they have ended; what they ended with is no
    longer wanted. All are cancelled before any is waited for: a second cancel of the caller leaves none running.
    """
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.debug("a stream task no longer waited for ended with %s", type(error).__name__)


def _token_expired(token: str) -> bool:
    expires_at = token_expires_at(token)
    return expires_at is not None and expires_at <= datetime.now(tz=UTC)
