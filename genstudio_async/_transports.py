"""The HTTP clients: the httpx one a client makes itself (``default_http_client``), and opt-in transports, an
``http_client`` to pass to a client instead.

``AioHttpClient`` is an ``httpx.AsyncClient`` whose requests travel over aiohttp's connection pool (the
``[aiohttp]`` extra: ``aiohttp`` and ``httpx-aiohttp``), as openai-python's ``DefaultAioHttpClient`` does: the
SDK still speaks httpx (its retries, size caps, deadlines, redaction and errors are the same), only the sockets
are aiohttp's, which costs less CPU per request. A client given one opens its progress WebSockets with
aiohttp too (``_aiohttp_ws``: frames parsed in C; same URL, caps, timeouts and errors). The default stays
httpx's own transport; nothing here is imported until a user asks for it, and the extra is checked when an
``AioHttpClient`` is made, not when ``genstudio_async`` is imported::

    async with AioHttpClient() as http_client, AsyncGenStudio(http_client=http_client) as client:
        ...

Like any ``http_client`` passed in, it is the caller's to close (``async with`` or ``aclose()``).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore
import httpx
from httpcore._utils import is_socket_readable  # httpcore's own check, the one its streams make

from . import _constants as C
from ._config import default_timeout
from ._logs import log

if TYPE_CHECKING:
    from ._aiohttp_transport import AioHttpTransport

#: What to install when the extra is missing.
AIOHTTP_INSTALL_HINT = "pip install 'genstudio-async[aiohttp]'"


def default_http_client(timeout: httpx.Timeout, headers: dict[str, str]) -> httpx.AsyncClient:
    """The httpx client a client makes when it is given none: the SDK's pool (``HTTP_MAX_CONNECTIONS``, of which
    ``HTTP_MAX_KEEPALIVE`` kept alive), no redirects, ``headers`` as its defaults, and a cheaper readiness check
    (``ReadinessCachingBackend``) on its connection pools."""
    client = httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=C.HTTP_MAX_CONNECTIONS, max_keepalive_connections=C.HTTP_MAX_KEEPALIVE),
        follow_redirects=False,
        headers=headers,
    )
    reads_cookies_when_set(client)
    # A mount of None is a host no_proxy sends straight: it has no pool of its own.
    for transport in [client._transport, *(mount for mount in client._mounts.values() if mount is not None)]:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.AsyncNetworkBackend) and not isinstance(backend, ReadinessCachingBackend):
            pool._network_backend = ReadinessCachingBackend(backend)  # type: ignore[union-attr]
        else:
            log.debug("the HTTP pool's network backend is not where httpcore 1.0 keeps it: left as it is")
    return client


def reads_cookies_when_set(client: httpx.AsyncClient) -> None:
    """Give ``client`` a cookie store (the same jar) that reads an answer's cookies only when it sets some."""
    cookies = getattr(client, "_cookies", None)
    if type(cookies) is httpx.Cookies:
        client._cookies = _CookiesWhenSet(cookies.jar)
    else:
        log.debug("the client's cookies are not where httpx keeps them: left as they are")


class _CookiesWhenSet(httpx.Cookies):
    """httpx's cookie store, whose ``extract_cookies`` skips an answer with no ``Set-Cookie`` (or ``Set-Cookie2``).

    httpx calls it for every response, and it wraps each one in urllib's request and response shapes and an
    ``email`` message of all its headers (~27 µs a request) for ``http.cookiejar``, which reads those two headers
    alone: an answer without them sets nothing either way. Any other answer is read as httpx reads it.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class ReadinessCachingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, whose connections answer "is the socket readable?" without asking anyio.

    httpcore's pool asks every idle connection whether the server has closed it (``is_readable``) each time it
    assigns a request, for every request: with twenty kept alive that is forty questions a request, and over
    anyio each one rebuilds the stream's whole attribute table and calls ``getpeername`` (the costliest part of
    a submit at a thousand concurrent tasks). Here each connection finds its socket once; the answer is the same
    poll of that socket httpcore makes. Everything else is the wrapped backend's.
    """

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _ReadinessCachingStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)
        return _ReadinessCachingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _ReadinessCachingStream(httpcore.AsyncNetworkStream):
    __slots__ = ("_socket", "_stream")

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket = stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _ReadinessCachingStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return is_socket_readable(self._socket)  # a socket gone or closed counts as readable: dropped
        return self._stream.get_extra_info(info)


class AioHttpClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` over aiohttp (``pip install 'genstudio-async[aiohttp]'``), for ``http_client=``.

    With no arguments it has the pool and timeouts the SDK gives its own client (``HTTP_MAX_CONNECTIONS``
    connections; the default ``timeout``) and follows no redirect. ``verify``, ``cert``, ``trust_env`` and
    ``limits`` go to the transport; every other keyword argument (``headers``, ``event_hooks``...) to
    ``httpx.AsyncClient``. Raises ``ImportError`` with the install hint when the extra is not installed.
    """

    def __init__(
        self,
        *,
        timeout: httpx.Timeout | float | None = None,
        limits: httpx.Limits | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        trust_env: bool = True,
        **kwargs: Any,
    ) -> None:
        transport_class = _aiohttp_transport_class()
        transport = transport_class(
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            limits=limits
            or httpx.Limits(max_connections=C.HTTP_MAX_CONNECTIONS, max_keepalive_connections=C.HTTP_MAX_KEEPALIVE),
        )
        kwargs.setdefault("follow_redirects", False)
        super().__init__(
            timeout=default_timeout(C.DEFAULT_TIMEOUT) if timeout is None else timeout,
            transport=transport,
            trust_env=trust_env,
            **kwargs,
        )
        reads_cookies_when_set(self)


def _aiohttp_transport_class() -> type[AioHttpTransport]:
    """The aiohttp transport class, imported now; ``ImportError`` saying what to install when it cannot be."""
    try:
        from ._aiohttp_transport import AioHttpTransport as transport_class
    except ImportError as exc:
        raise ImportError(
            f"AioHttpClient needs the optional packages aiohttp and httpx-aiohttp ({exc.name or exc} is missing):"
            f" {AIOHTTP_INSTALL_HINT}"
        ) from exc
    return transport_class
