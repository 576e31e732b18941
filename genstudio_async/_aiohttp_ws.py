"""The progress WebSocket over aiohttp, for a client given an ``AioHttpClient`` (issue #12).

websockets parses frames in pure Python; aiohttp in C. A client whose ``http_client`` is an ``AioHttpClient``
opens its progress sockets here, with ``aiohttp.ClientSession.ws_connect``, behind :class:`AioHttpSocket`: the
few things the stream and the socket pool use of websockets' ``ClientConnection``, with the same behaviour
(``recv`` gives ``str`` for a text frame and ``bytes`` for a binary one, and raises websockets'
``ConnectionClosed`` once the socket is closed, by either side or by an error; ``state``; ``transport.abort()``;
``close``; ``wait_closed``).

The sockets get a session of their own (one per SDK client, made on first use, closed with the client), not the
``AioHttpClient``'s: an open WebSocket holds its connection in the connector for its whole life, and a thousand
of them in the HTTP pool (``HTTP_MAX_CONNECTIONS``) would leave no connection for the requests the stream needs.
The TLS settings (``verify``, ``cert``) are the ``AioHttpClient``'s; the proxy is the one the default path uses
(``StreamSettings.ws_proxy``: the environment read once per client, by websockets' rules, ``no_proxy`` included),
and one aiohttp cannot use (SOCKS) is refused as websockets' ``InvalidProxy`` is.

Imported only once the ``[aiohttp]`` extra is known to be installed (an ``AioHttpClient`` exists).
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import yarl
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.protocol import State

from . import _constants as C
from ._logs import log
from ._sockets import HandshakeStatus, OpenFailed, UnusableProxy

_TEXT = aiohttp.WSMsgType.TEXT
_BINARY = aiohttp.WSMsgType.BINARY
_CLOSE = aiohttp.WSMsgType.CLOSE


class AioHttpSocket:
    """One progress socket over aiohttp, as the stream and ``SocketPool`` use a websockets ``ClientConnection``."""

    __slots__ = ("_response", "_ws", "transport")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool], transport: asyncio.Transport) -> None:
        self._ws = ws
        # What ``ws.close()`` closes: the connection in the session's connector (aiohttp has no public name for it).
        self._response: aiohttp.ClientResponse = ws._response
        self.transport = transport  # ``SocketPool`` aborts it when there is no time left to close politely

    @property
    def state(self) -> State:
        """``CLOSED`` once the connection is gone (closed by either side, or cut)."""
        return State.CLOSED if self.transport.is_closing() else State.OPEN

    async def recv(self) -> str | bytes:
        """The next text (``str``) or binary (``bytes``) message. Raises ``ConnectionClosed`` once the socket is
        closed: a close frame (its code in ``rcvd``), a lost connection, a message over ``WS_MAX_MESSAGE_SIZE``,
        a protocol error (no ``rcvd``: code 1006 to the stream). Cancelling it loses no message."""
        msg = await self._ws.receive()
        kind = msg.type
        if kind is _TEXT or kind is _BINARY:
            data: str | bytes = msg.data
            return data
        if kind is _CLOSE:
            code = msg.data if isinstance(msg.data, int) else 1005
            raise ConnectionClosed(Close(code, ""), None)
        if kind is aiohttp.WSMsgType.ERROR:
            log.debug("progress socket (aiohttp): %s", type(msg.data).__name__)
        # CLOSING, CLOSED, ERROR; and PING / PONG, which autoping keeps from here: nothing more will come.
        self._cut()
        raise ConnectionClosed(None, None)

    async def close(self) -> None:
        """Send a close frame and wait (up to ``WS_CLOSE_TIMEOUT``) for the peer's; then the connection is closed.
        Never raises but ``CancelledError`` (aiohttp then closes the connection itself)."""
        try:
            await self._ws.close()
        except (aiohttp.ClientError, OSError) as exc:
            log.debug("closing a progress socket (aiohttp) failed: %s", type(exc).__name__)
        finally:
            self._response.close()  # a no-op once aiohttp did it; gives the connection back to the connector

    async def wait_closed(self) -> None:
        """After ``transport.abort()``: give the connection back (the descriptor goes with the abort)."""
        self._cut()

    def _cut(self) -> None:
        self.transport.abort()
        self._response.close()


class AioHttpSockets:
    """A client's aiohttp session for its progress sockets: made on first use, closed by ``aclose``."""

    def __init__(self, *, ssl_context: ssl.SSLContext | bool = True) -> None:
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # No limit here: the client's SocketPool decides how many sockets are open at once.
                connector=aiohttp.TCPConnector(limit=0, ssl=self._ssl),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                # The proxy is the client's ``ws_proxy`` (read once, by websockets' rules, as on the default path):
                # with trust_env aiohttp would read the environment again in a thread on every handshake.
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=C.WS_OPEN_TIMEOUT),
            )
        return self._session

    async def connect(self, url: str, *, proxy: str | None) -> AioHttpSocket:
        """Open a socket to ``url`` (as it is: never re-quoted) within ``WS_OPEN_TIMEOUT``.

        Raises ``HandshakeStatus`` (an answer other than 101, or a 101 that is not a WebSocket), ``UnusableProxy``
        (a proxy aiohttp cannot use: SOCKS...) or ``OpenFailed`` (any other failure, the cause chained so that
        running out of file descriptors can be seen).
        """
        if self._closed:
            raise OpenFailed("the client is closed")
        if proxy is not None and yarl.URL(proxy).scheme not in ("http", "https"):
            raise UnusableProxy(f"aiohttp cannot use a {yarl.URL(proxy).scheme or 'schemeless'} proxy")
        try:
            async with asyncio.timeout(C.WS_OPEN_TIMEOUT):
                ws = await self._get_session().ws_connect(
                    yarl.URL(url, encoded=True),
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=C.WS_CLOSE_TIMEOUT),
                    autoclose=False,  # a close frame ends the read at once; the close is the pool's, in the background
                    autoping=True,
                    max_msg_size=C.WS_MAX_MESSAGE_SIZE,
                    compress=0,
                    headers={"User-Agent": C.USER_AGENT},
                    proxy=proxy,
                )
        except aiohttp.WSServerHandshakeError as exc:
            raise HandshakeStatus(exc.status) from None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            # Chained (not ``from None``): ``out_of_descriptors`` looks for an EMFILE in the causes. The message
            # names only the type: aiohttp's would carry the URL, and so the token.
            raise OpenFailed(type(exc).__name__) from exc
        connection = ws._response.connection
        transport = connection.transport if connection is not None else None
        if transport is None:  # closed between the handshake and here
            ws._response.close()
            raise OpenFailed("the connection closed during the handshake")
        return AioHttpSocket(ws, transport)

    async def aclose(self) -> None:
        """Close the session and every connection it still holds. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
