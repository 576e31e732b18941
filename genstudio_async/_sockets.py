"""A client's progress sockets: how many may be open, how many may be opening, and closing them in the background.

Ten thousand streams from one process must not open ten thousand sockets: under the default ``ulimit -n 1024``
they would run out of file descriptors, and even with more, ten thousand handshakes at once time each other out.
``SocketPool`` holds a client's budget:

- at most ``max_open`` sockets open (or being opened) at once; the default is derived from ``RLIMIT_NOFILE``
  (``default_socket_budget``). A stream that finds the budget spent is followed through the client's shared
  batched poller until a socket frees, then gets one. Freed sockets go to the streams waiting longest first:
  the service runs its queue first in, first out, so the oldest waiting task is the one nearest completion;
- at most ``max_handshakes`` handshakes in flight (a handshake waiting here is a slow handshake, which the stream
  already follows over HTTP meanwhile);
- a socket is closed in the background (a close waits for the peer's close frame, up to ``WS_CLOSE_TIMEOUT``,
  and no stream should wait for that): each close runs in a task held here, so it is never garbage-collected
  half-way, and its seat in the budget is given back once the socket is really gone. The client's ``aclose``
  lets the closes finish for ``WS_ACLOSE_GRACE`` s, then cuts the rest.

Running out of file descriptors anyway (other parts of the process use them too) shrinks the budget to what was
open then: the stream is followed over HTTP instead, and the caller never sees the error.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections import deque
from typing import TYPE_CHECKING, Any, TypeAlias

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException
from websockets.protocol import State

from . import _constants as C
from ._logs import log

if TYPE_CHECKING:
    from ._aiohttp_ws import AioHttpSocket

#: A progress socket: websockets' (the default) or aiohttp's (a client given an ``AioHttpClient``).
ProgressConnection: TypeAlias = "ClientConnection | AioHttpSocket"


class HandshakeStatus(Exception):
    """An aiohttp handshake answered ``status`` (not a WebSocket): what websockets' ``InvalidStatus`` says."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake answered HTTP {status}")
        self.status = status


class UnusableProxy(Exception):
    """The proxy from the environment cannot carry the socket (aiohttp has no SOCKS): what ``InvalidProxy`` says."""


class OpenFailed(Exception):
    """An aiohttp socket could not be opened (network, timeout, protocol); the cause is chained."""


def default_socket_budget() -> int:
    """How many progress sockets a client opens at most, from this process's soft limit on open files.

    ``SOCKET_BUDGET_RESERVED_FDS`` are left for everything else (the HTTP pool, files, the interpreter), and of the
    rest ``SOCKET_BUDGET_SHARE``: a process may hold more than one client. 1,024 gives 400; never more than
    ``SOCKET_BUDGET_MAX``, never fewer than ``SOCKET_BUDGET_MIN``.
    """
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # not POSIX, or an unreadable limit: a modest budget
        return C.SOCKET_BUDGET_MIN * 4
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return C.SOCKET_BUDGET_MAX
    usable = int((soft - C.SOCKET_BUDGET_RESERVED_FDS) * C.SOCKET_BUDGET_SHARE)
    budget: int = max(C.SOCKET_BUDGET_MIN, min(usable, C.SOCKET_BUDGET_MAX))
    return budget


def out_of_descriptors(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the process or the system ran out of file descriptors."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            return True
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return False


class Seat:
    """One stream's place in the budget, from the moment it is granted until its socket is gone. ``release`` is
    idempotent: whoever learns first that the socket is gone (or was never opened) gives the seat back."""

    __slots__ = ("_pool", "_released")

    def __init__(self, pool: SocketPool) -> None:
        self._pool = pool
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._give_back()


class SocketPool:
    """A client's progress sockets (see the module docstring)."""

    def __init__(self, max_open: int | None = None, *, max_handshakes: int = C.WS_MAX_HANDSHAKES) -> None:
        self.max_open = default_socket_budget() if max_open is None else max_open
        self._configured = self.max_open
        self._short_at = float("-inf")
        self.handshakes = asyncio.Semaphore(max_handshakes)
        self.open = 0  # seats granted and not yet given back: sockets open, opening or closing
        self.peak_open = 0  # the most ever held at once (for tests and benchmarks)
        self._waiting: deque[asyncio.Future[Seat]] = deque()
        self._pending: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """How many closes and dropped handshakes are still under way."""
        return len(self._pending)

    @property
    def waiting(self) -> int:
        """How many streams wait for a seat (they are followed over HTTP meanwhile)."""
        return sum(1 for future in self._waiting if not future.done())

    # --- the budget --------------------------------------------------------------------------------------
    def try_seat(self) -> Seat | None:
        """A seat now if the budget allows and nobody waits ahead; else ``None``."""
        while self._waiting and self._waiting[0].done():  # waiters that left (cancelled) hold no place
            self._waiting.popleft()
        if self._closed or self.open >= self.max_open or self._waiting:
            return None
        return self._grant()

    async def seat(self) -> Seat:
        """A seat, waiting (first come, first served) until one is free."""
        seat = self.try_seat()
        if seat is not None:
            return seat
        future: asyncio.Future[Seat] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                future.result().release()  # granted just as the waiter left: hand it on
            raise

    def shrink(self) -> None:
        """The process ran out of file descriptors: hold no more sockets than are open now (then, after
        ``SOCKET_BUDGET_RECOVER_AFTER`` s without another shortage, one more each time a socket is given back)."""
        self._short_at = time.monotonic()
        smaller = max(1, self.open - 1)
        if smaller < self.max_open:
            log.debug("out of file descriptors with %d progress sockets: the budget is now %d", self.open, smaller)
            self.max_open = smaller

    def _grant(self) -> Seat:
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        return Seat(self)

    def _give_back(self) -> None:
        self.open -= 1
        if self.max_open < self._configured and time.monotonic() - self._short_at >= C.SOCKET_BUDGET_RECOVER_AFTER:
            self.max_open += 1
        while self._waiting and self.open < self.max_open and not self._closed:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(self._grant())

    # --- closing -----------------------------------------------------------------------------------------
    def close(self, socket: ProgressConnection, seat: Seat) -> None:
        """Close ``socket`` in the background (at once, cutting it, once the client is closed); its seat is given
        back when it is gone."""
        if socket.state is State.CLOSED:
            seat.release()
            return
        if self._closed:
            socket.transport.abort()
            seat.release()
            return
        task = asyncio.create_task(_close_socket(socket), name="genstudio-ws-close")
        task.add_done_callback(lambda _: seat.release())
        self._keep(task)

    def drop(self, handshake: asyncio.Task[ProgressConnection], seat: Seat) -> None:
        """Give up on ``handshake``: cancel it; a socket it opened all the same is closed, then the seat freed."""
        if handshake.done():
            self._opened(handshake, seat)
            return
        handshake.cancel()
        self._keep(handshake)
        handshake.add_done_callback(lambda done: self._opened(done, seat))

    async def aclose(self) -> None:
        """Let the closes under way finish for ``WS_ACLOSE_GRACE`` s, then cut their connections. Idempotent."""
        self._closed = True
        for future in self._waiting:
            future.cancel()
        self._waiting.clear()
        pending = set(self._pending)
        try:
            if pending:
                _, pending = await asyncio.wait(pending, timeout=C.WS_ACLOSE_GRACE)
        finally:  # cancelled or not, what is left is cut now
            for task in pending:
                task.cancel()
        if pending:
            await asyncio.wait(pending)

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _opened(self, handshake: asyncio.Task[ProgressConnection], seat: Seat) -> None:
        if handshake.cancelled():
            seat.release()
            return
        error = handshake.exception()
        if error is not None:
            log.debug("a handshake no longer waited for ended with %s", type(error).__name__)
            seat.release()
            return
        self.close(handshake.result(), seat)


async def _close_socket(socket: ProgressConnection) -> None:
    try:
        await socket.close()
    except asyncio.CancelledError:
        socket.transport.abort()  # the client is closing: no more waiting for the peer
        await socket.wait_closed()
        raise
    except (WebSocketException, OSError) as exc:  # close() swallows ConnectionClosed; anything else, logged
        log.debug("closing a progress socket failed: %s", type(exc).__name__)
