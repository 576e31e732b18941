"""The aiohttp transport behind ``AioHttpClient``: httpx's request and response on aiohttp's connection pool.

Imported only by ``genstudio_async._transports`` once it knows the ``[aiohttp]`` extra is installed. It builds
on httpx-aiohttp's ``AiohttpTransport`` (its constructor: TLS context, limits, proxy; its ``aclose``) and
replaces the request itself, because three of its choices would break rules the SDK keeps:

- its error map turns every ``aiohttp.ClientConnectionError`` (a server hanging up after reading the request
  included) into ``httpx.ConnectTimeout``, which says "never sent": the SDK would send a submit again that the
  server may have taken. Here only a failure to connect is a connect error; everything after it may have been
  received (:func:`httpx_error`);
- it hands aiohttp the URL as a string, which yarl re-quotes (``%2F`` in a signed query becomes ``/``): here the URL
  goes as httpx encoded it, untouched;
- its session keeps a cookie jar of its own beside httpx's, and lets an unmapped aiohttp error reach the caller:
  here httpx alone handles cookies, and every aiohttp failure becomes an ``httpx.TransportError``;
- its ``trust_env`` session looks up the proxy environment and ``~/.netrc`` in a worker thread on every request
  (two thread hops: ~0.2 ms of CPU a request, the costliest part of a submit), and sends a netrc password for a
  host with an entry, which beside the SDK's ``Authorization`` header is a raw ``ValueError``: here the session
  trusts nothing, and the proxy for each scheme and host is read from the environment once per transport, by
  aiohttp's rules (httpx too reads it once per client, and reads no netrc unless asked).
"""

from __future__ import annotations

import functools
import importlib
import logging
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import httpx
import yarl
from httpx_aiohttp import AiohttpTransport

from ._exceptions import ConfigurationError
from ._http import READ_WHOLE, read_up_to

log = logging.getLogger("genstudio_async")

# The SDK's waits (retry and reconnect back-off) go through anyio, which imports its asyncio backend on first use.
# Over httpx's transport that first use is the first request; over aiohttp it may be the first back-off, when a
# process out of file descriptors (10,000 sockets under ulimit -n 1024) can no longer read a module: the import
# fails with a raw OSError (EMFILE) that reaches the caller. Imported now, while files can still be opened.
importlib.import_module("anyio._backends._asyncio")

#: Bytes handed to httpx per read of a response body.
CHUNK_SIZE = 64 * 1024

#: The proxies remembered per transport (scheme and host: the API host, the storage hosts); the oldest go first.
PROXY_CACHE_SIZE = 256

_Proxy = tuple[yarl.URL | None, aiohttp.BasicAuth | None]


def httpx_error(error: Exception) -> httpx.TransportError:
    """The httpx error that says what an aiohttp (or socket) failure means for the request.

    Connect errors and connect timeouts (the pool's wait included) happen before a byte is sent: the SDK may
    send a submit again after them. Anything later (a dropped connection, a read timeout, a malformed answer) is
    a request the server may have received.
    """
    message = str(error) or type(error).__name__
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(error, aiohttp.ServerTimeoutError):  # SocketTimeoutError (sock_read) and any later timeout
        return httpx.ReadTimeout(message)
    if isinstance(error, aiohttp.ClientConnectorError):  # refused, DNS, TLS: no connection was made
        return httpx.ConnectError(message)
    if isinstance(error, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)
    if isinstance(error, aiohttp.ClientPayloadError | aiohttp.ClientConnectionError | OSError):
        return httpx.ReadError(message)
    return httpx.TransportError(message)


def env_proxies() -> dict[str, aiohttp.helpers.ProxyInfo]:
    """aiohttp's reading of the proxy environment (``http_proxy``... and netrc credentials for a proxy's host), as
    its ``trust_env`` makes it; ``ConfigurationError`` for a value it cannot read."""
    try:
        proxies = aiohttp.helpers.proxies_from_env()
        for info in proxies.values():
            if info.proxy_auth is not None:
                info.proxy_auth.encode()  # what each request through it would do (a ':' in the login fails)
    except ValueError as exc:  # yarl: not a URL, a port out of range; BasicAuth: a ':' in a login
        raise ConfigurationError(f"cannot read the proxy environment: {exc}") from exc
    return proxies


class AioHttpResponseStream(httpx.AsyncByteStream):
    """A response body read from aiohttp as it arrives; closing it early closes the connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK_SIZE):
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx_error(exc) from exc

    async def read_whole(self, limit: int) -> bytes | None:
        """The whole body (``None`` once it passes ``limit`` bytes), read off aiohttp's buffer ``CHUNK_SIZE`` bytes
        at a time.

        What ``_http.read_capped`` reads an uncoded answer with (the ``READ_WHOLE`` extension): a submit's answer
        through httpx's ``aiter_raw`` went through four async generators, each made, stepped and closed per
        request (~8 % of a submit's CPU, and objects for the collector to scan). Cut at the cap, the rest is left
        unread and ``aclose`` closes the connection.
        """
        try:
            return await read_up_to(functools.partial(self._response.content.read, CHUNK_SIZE), limit)
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx_error(exc) from exc

    async def aclose(self) -> None:
        # A body read to its end gives the connection back to the pool; one cut short closes it (aiohttp's
        # ``should_close``), so the rest of a refused download is never read.
        self._response.release()


class AioHttpTransport(AiohttpTransport):
    """An ``httpx.AsyncBaseTransport`` that sends each request through one ``aiohttp.ClientSession``.

    The session is made on first use, on the loop that uses it, and closed by ``aclose()``. It follows no
    redirect, decompresses nothing and keeps no cookies (httpx does each of those, as it does over its own
    transport), and with ``trust_env`` it reads the proxy environment once (``proxy_for``).
    """

    def __init__(
        self,
        *,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        trust_env: bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),  # noqa: B008
    ) -> None:
        super().__init__(verify=verify, cert=cert, trust_env=trust_env, limits=limits)
        self._trust_env = trust_env
        # Read now, as httpx reads its proxies when its client is made: a value aiohttp cannot read is the
        # caller's to fix before any request, not a raw error from one.
        self._env_proxies = env_proxies() if trust_env else {}
        self._proxies: dict[tuple[str, str | None], _Proxy] = {}

    def get_client(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,  # the proxy is ``proxy_for``'s; no netrc
        )

    def proxy_for(self, url: yarl.URL) -> _Proxy:
        """The proxy (and its credentials) aiohttp's ``trust_env`` would use for ``url``: ``http_proxy``,
        ``https_proxy``... read once, ``no_proxy`` honoured; ``(None, None)`` for none, or without ``trust_env``."""
        if not self._trust_env:
            return None, None
        key = (url.scheme, url.host)
        found = self._proxies.get(key)
        if found is None:
            info = self._env_proxies.get(url.scheme)
            if info is None or (url.host is not None and urllib.request.proxy_bypass(url.host)):
                found = (None, None)
            else:
                found = (info.proxy, info.proxy_auth)
            if len(self._proxies) >= PROXY_CACHE_SIZE:
                del self._proxies[next(iter(self._proxies))]
            self._proxies[key] = found
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        # The body as httpx encoded it (a multipart upload is read here: the SDK holds uploads in memory).
        body = request.content if isinstance(request.stream, httpx.ByteStream) else await request.aread()
        url = yarl.URL(str(request.url), encoded=True)  # as httpx encoded it: never re-quoted
        proxy, proxy_auth = self.proxy_for(url)
        try:
            response = await self.client.request(
                request.method,
                url,
                proxy=proxy,
                proxy_auth=proxy_auth,
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                compress=None,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except (aiohttp.ClientError, OSError) as exc:
            log.debug("aiohttp transport: %s %s failed: %s", request.method, request.url.host, type(exc).__name__)
            raise httpx_error(exc) from exc
        stream = AioHttpResponseStream(response)
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1", READ_WHOLE: stream.read_whole}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", errors="replace")
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=stream,
            request=request,
            extensions=extensions,
        )
