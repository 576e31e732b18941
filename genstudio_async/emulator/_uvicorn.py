"""Running uvicorn inside another program: on a socket the emulator bound, on the caller's event loop.

``EmbeddedServer`` leaves the process's signal handlers alone (its host decides when to stop), wakes at once
when asked to exit instead of polling every 0.1 s, and shuts down without uvicorn's fixed 0.1 s pause, so a
test's emulator stops in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from .._logs import redact_logger
from .._redact import Redactor


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server run inside another program: it leaves the process's signal handlers alone (its host
    decides when to stop) and wakes at once when asked to exit instead of polling every 0.1 s."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the Date header when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit_requested.wait()

    def request_exit(self) -> None:
        """Begin a graceful shutdown."""
        self.should_exit = True
        self._exit_requested.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful shutdown, minus its fixed 0.1 s pause: stop listening, ask every connection to
        close (open WebSockets get 1012), wait until they have (at most ``timeout_graceful_shutdown`` s), then
        cut whatever is left."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                for _ in itertools.count():  # no event tells when uvicorn's last connection is gone: poll
                    if not (state.connections or state.tasks):
                        break
                    await asyncio.sleep(0.002)
        except TimeoutError:
            for task in list(state.tasks):
                task.cancel()
            for connection in list(state.connections):
                connection.transport.abort()
        for server in self.servers:
            await server.wait_closed()


def websocket_protocol() -> str:
    """uvicorn's WebSocket implementation to use: the sans-I/O one, which avoids websockets' deprecated legacy
    API and answers a refused handshake with any status (``websocket.http.response``); older uvicorns lack it."""
    if importlib.util.find_spec("uvicorn.protocols.websockets.websockets_sansio_impl") is not None:
        return "websockets-sansio"
    return "auto"  # pragma: no cover


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), for uvicorn to listen on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (else Nagle adds ~40 ms a reply)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


#: Masks, in uvicorn's logs, secret shapes and the API key of every emulator of this process (a client may send
#: the key in a form no shape catches: ``authorization: sk-…`` without "Bearer", ``x-api-key``, ``?api_key=``).
SERVER_LOG_REDACTOR = Redactor()


class _RefusedHandshakeNoise(logging.Filter):
    """Drops uvicorn's ERROR after a handshake the emulator refused on purpose (``websocket.http.response``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def make_server(app: Any, *, shutdown_timeout: float, secrets: tuple[str, ...] = ()) -> EmbeddedServer:
    """A server for ``app``: no lifespan, no logging set-up of its own, no permessage-deflate.

    uvicorn's access and error logs name the progress path with its ``?authorization=<token>``: masked, as are
    ``secrets`` (the emulator's API key) wherever they appear.
    """
    for secret in secrets:
        SERVER_LOG_REDACTOR.add(secret)
    for name in ("uvicorn.access", "uvicorn.error"):
        redact_logger(logging.getLogger(name), SERVER_LOG_REDACTOR)
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _RefusedHandshakeNoise) for existing in error_log.filters):
        error_log.addFilter(_RefusedHandshakeNoise())
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        ws=websocket_protocol(),
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
    )
    return EmbeddedServer(config)
