"""The one request loop: envelopes, error mapping, retries, redaction.

Every HTTP call the SDK makes goes through :class:`HTTPCore`: the API calls (``call``), which carry the API key
and answer in the ``{"code", "msg", "data"}`` envelope, and the storage downloads (``stream_get``), which carry
no key at all. Retrying is three small functions: :func:`should_retry` decides, :func:`retry_delay` computes
the jittered back-off (honouring ``Retry-After``), and :func:`sleep` waits (tests patch it).

The submit-safety rule lives here: a call that is not idempotent (``submit``) is only sent again when the
server certainly did not take it: the connection was never made, or the server answered 429 or 503.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import math
import random
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx

from . import _constants as C
from ._exceptions import INVALID_RESPONSE_CODE as INVALID_RESPONSE_CODE
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    EventLoopError,
    GenStudioError,
    InternalServerError,
    InvalidInputError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
)
from ._pacing import Pacer
from ._redact import Redactor
from ._version import __version__

log = logging.getLogger("genstudio_async")

T = TypeVar("T")

#: The ``httpx.Response.extensions`` key under which a transport of ours (aiohttp's) offers to read a body whole, capped
#: (``async (limit) -> bytes | None``; ``None`` past the limit): ``read_capped`` takes it for an uncoded body.
READ_WHOLE = "genstudio_async.read_whole"

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry."""

    max_retries: int = C.DEFAULT_MAX_RETRIES
    initial_delay: float = C.INITIAL_RETRY_DELAY
    max_delay: float = C.MAX_RETRY_DELAY
    max_retry_after: float = C.MAX_RETRY_AFTER


async def sleep(seconds: float) -> None:
    """Wait before a retry. A module-level function so tests can replace it."""
    await anyio.sleep(seconds)


def never_sent(error: BaseException) -> bool:
    """Whether a transport error proves the request never left: no connection, or none free in the pool."""
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def should_retry(
    *,
    attempt: int,
    policy: RetryPolicy,
    idempotent: bool,
    error: BaseException | None = None,
    status_code: int | None = None,
) -> bool:
    """Whether a failed attempt (``attempt`` counts from 0) may be sent again.

    ``error`` is the transport error, if the attempt got no answer; ``status_code`` the HTTP status otherwise.
    """
    if attempt >= policy.max_retries:
        return False
    if error is not None:
        if idempotent:
            return isinstance(error, httpx.TransportError | _DeadlineExceeded)
        return never_sent(error)
    if status_code is None:
        return False
    if idempotent:
        return status_code in C.RETRYABLE_STATUS_CODES
    return status_code in C.SUBMIT_RETRYABLE_STATUS_CODES


def retry_delay(attempt: int, policy: RetryPolicy, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt + 1``: the server's hint, or jittered exponential."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.max_retry_after)
    ceiling = min(policy.initial_delay * (2.0**attempt), policy.max_delay)
    jitter: float = 0.5 + random.random() / 2  # jitter, not cryptography
    return ceiling * jitter


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` (or ``retry-after-ms``) in seconds; ``None`` when absent or unreadable."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            seconds = float(milliseconds) / 1000
        except ValueError:
            pass
        else:
            if math.isfinite(seconds):  # float() also reads "nan" and "inf"
                return seconds
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def _envelope_fields(
    body: Any, message_fields: tuple[str, ...] = ("msg", "message")
) -> tuple[int | None, str | None, str | None]:
    """``(code, message, traceid)`` of an envelope; ``message_fields``: where the text may be, the service's own
    field first (GenStudio writes ``msg``, GPUGeek ``message``)."""
    if not isinstance(body, Mapping):
        return None, None, None
    raw_code = body.get("code")
    code: int | None
    try:
        code = None if raw_code is None or isinstance(raw_code, bool) else int(raw_code)
    except (TypeError, ValueError, OverflowError):
        code = None
    # Text or a number only: str() of a hostile list of millions of items would cost as much as the body itself.
    message = next((body[field] for field in message_fields if _is_scalar(body.get(field))), None)
    traceids = (body.get(field) for field in ("traceid", "trace_id", "request_id"))
    traceid = next((value for value in traceids if value and _is_scalar(value)), None)
    return code, (str(message) if message is not None else None), (str(traceid) if traceid else None)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer whose body was read in full (within its size cap)."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body parsed as JSON; ``None`` when it is not JSON (or nests absurdly deep)."""
        try:
            return json.loads(self.content)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None

    @property
    def encoding(self) -> str | None:
        """The charset its ``Content-Type`` names, if any. Read only when the text is wanted (an error message):
        httpx parses the header with ``email.message`` on every call, which every answer paid for before."""
        return httpx.Response(self.status_code, headers=self.headers).charset_encoding

    @property
    def text(self) -> str:
        encoding = self.encoding
        try:
            return self.content.decode(encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know: the bytes as UTF-8
            return self.content.decode("utf-8", errors="replace")


class _DeadlineExceeded(Exception):
    """One attempt took longer than its overall deadline (a server that drips its answer, or never ends it)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within the overall deadline of {seconds:g} s")
        self.seconds = seconds


# --- reading a body: one content coding at most, inflated in bounded steps ---------------------------------
#
# httpx's own decoding (``aiter_bytes``) chains every coding an answer lists and inflates each network chunk in
# one unbounded call: 1.8 kB sent as "gzip, gzip" became 2 GB in memory before any cap could count a byte. So
# bodies are read raw here and decoded by ``decoded_body``, which every reader of an answer uses (an answer with no
# coding at all may be read whole by the transport instead: ``READ_WHOLE``).

# The codings undone, by the names an answer may give them.
_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def content_coding(response: httpx.Response, what: str) -> str | None:
    """The content coding to undo for ``response``: ``"gzip"``, ``"deflate"`` or ``None`` (none, or identity).

    More than one coding ("gzip, gzip") or one not undone here ("br") is ``InvalidResponseError``, naming it.
    """
    listed = [value.strip().lower() for value in response.headers.get_list("content-encoding", split_commas=True)]
    codings = [coding for coding in listed if coding and coding != "identity"]
    if not codings:
        return None
    shown = ", ".join(codings)
    shown = repr(shown[:60] + ("…" if len(shown) > 60 else ""))
    if len(codings) > 1:
        raise InvalidResponseError(
            f"{what}: the answer's Content-Encoding is {shown}: more than one coding is refused "
            "(one of gzip or deflate at most)"
        )
    if codings[0] not in _CODINGS:
        raise InvalidResponseError(
            f"{what}: the answer's Content-Encoding is {shown}, which the SDK does not decode (gzip or deflate only)"
        )
    return _CODINGS[codings[0]]


def _has_zlib_header(head: bytes) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950: method 8, a window of at most 32 KiB, the header's
    checksum) rather than raw deflate."""
    return head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0


class _Inflater:
    """Undoes one gzip or deflate coding, never more than ``step`` decoded bytes at a time.

    ``deflate`` is taken as zlib-wrapped or raw, whichever its first two bytes say (the servers that send raw
    deflate under that name are why httpx's ``DeflateDecoder`` falls back too). A gzip body may hold several
    members one after another (RFC 1952), and zero bytes of padding after the last.
    """

    def __init__(self, coding: str, what: str) -> None:
        self._coding = coding
        self._what = what
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16) if coding == "gzip" else None
        self._head = b""  # deflate: the first bytes, until there are two to tell zlib from raw
        self._started = False  # any coded byte arrived (an empty body needs no stream at all)

    def inflate(self, data: bytes, step: int) -> Iterator[bytes]:
        """What ``data``, coming next, decodes to, in pieces of at most ``step`` bytes."""
        if not data:
            return
        self._started = True
        if self._inflater is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if _has_zlib_header(data) else -zlib.MAX_WBITS)
        while data:
            inflater = self._inflater
            if inflater.eof:
                data = self._after_the_end(data)
                continue
            try:
                piece = inflater.decompress(data, step)
            except zlib.error as exc:
                raise InvalidResponseError(f"{self._what}: the {self._coding}-coded body is corrupt ({exc})") from None
            data = inflater.unconsumed_tail
            if piece:
                yield piece
            if not data and not inflater.eof and len(piece) == step:
                yield from self._drain(step)
            if inflater.eof:
                data = inflater.unused_data + data

    def _drain(self, step: int) -> Iterator[bytes]:
        """Output the inflater still holds after its input ran out while a piece was full."""
        assert self._inflater is not None
        while not self._inflater.eof:
            try:
                piece = self._inflater.decompress(b"", step)
            except zlib.error as exc:
                raise InvalidResponseError(f"{self._what}: the {self._coding}-coded body is corrupt ({exc})") from None
            if piece:
                yield piece
            if len(piece) < step:
                return

    def _after_the_end(self, data: bytes) -> bytes:
        """Bytes after the end of a coded stream: a next gzip member (or zero padding); for deflate, refused."""
        if self._coding == "gzip":
            data = data.lstrip(b"\0")
            if data:
                self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
            return data
        raise InvalidResponseError(f"{self._what}: the answer goes on after the end of its deflate-coded body")

    def finish(self) -> None:
        """The body ended: it must not have ended inside a coded stream (a cut-off file would pass for whole)."""
        if self._started and (self._inflater is None or not self._inflater.eof):
            raise InvalidResponseError(f"{self._what}: the answer ends before its {self._coding}-coded body does")


def decoded_body(
    response: httpx.Response, *, what: str, chunk_size: int = C.DECODE_CHUNK_BYTES
) -> AsyncGenerator[bytes, None]:
    """The body of streamed ``response``, its content coding undone. A coded body is inflated at most
    ``chunk_size`` bytes at a time (an uncoded one comes as the network delivers it), so a caller counting the
    chunks against a cap never holds more than one chunk past it.

    The coding is checked here, before anything is read (``content_coding``: ``InvalidResponseError``); a body
    that is not what its coding says is ``InvalidResponseError`` as it is read. Use it as
    ``async with contextlib.aclosing(decoded_body(...)) as chunks``, so it is closed however the loop ends.
    """
    coding = content_coding(response, what)
    return _decoded_chunks(response, coding, what, chunk_size)


async def _decoded_chunks(
    response: httpx.Response, coding: str | None, what: str, chunk_size: int
) -> AsyncGenerator[bytes, None]:
    if response.is_stream_consumed:
        # Read whole already, decoded by httpx: an in-memory answer (a mock transport), not one off the network.
        content = response.content
        for start in range(0, len(content), chunk_size):
            yield content[start : start + chunk_size]
        return
    inflater = _Inflater(coding, what) if coding is not None else None
    raw = response.aiter_raw()  # an async generator, typed as a plain iterator by httpx
    try:
        async for chunk in raw:
            if inflater is None:
                yield chunk
                continue
            for piece in inflater.inflate(chunk, chunk_size):
                yield piece
        if inflater is not None:
            inflater.finish()
    finally:
        if isinstance(raw, AsyncGenerator):
            await raw.aclose()


async def read_capped(response: httpx.Response, limit: int, *, what: str, setting: str) -> bytes:
    """The decoded body of ``response``, refusing it once it passes ``limit`` bytes.

    ``Content-Length`` is checked first; the decoded bytes are counted as they are inflated (``decoded_body``),
    so a small compressed body that inflates past the cap is cut off without being held. A body with no coding is
    read whole by the transport when it offers to (``READ_WHOLE``: ``AioHttpClient``'s), counted the same
    way. ``setting`` names the argument that sets the cap.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(what, limit, setting)
    coding = content_coding(response, what)
    read_whole = response.extensions.get(READ_WHOLE) if coding is None else None
    content: bytes | None
    if read_whole is not None and not response.is_stream_consumed:
        try:
            content = await read_whole(limit)
        except httpx.RequestError as exc:
            exc.request = response.request  # as httpx's own reads attach it
            raise
        response.is_stream_consumed = True  # a second read is httpx's StreamConsumed, as after ``aiter_raw``
    else:
        async with aclosing(_decoded_chunks(response, coding, what, C.DECODE_CHUNK_BYTES)) as body:
            content = await read_up_to(lambda: anext(body, None), limit)
    if content is None:
        raise _too_large(what, limit, setting)
    return content


async def read_up_to(next_chunk: Callable[[], Awaitable[bytes | None]], limit: int) -> bytes | None:
    """The chunks ``next_chunk()`` gives until it gives none (``b""`` or ``None``), joined; ``None`` as soon as they
    pass ``limit`` bytes (one chunk past it is the most ever held)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await next_chunk():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str, limit: int, setting: str) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"{what}: the answer is larger than {limit:,} bytes (raise the client's {setting} if it should be allowed)",
        limit=limit,
        what=what,
    )


def overall_deadline(timeout: httpx.Timeout | float | None) -> float | None:
    """The whole-attempt deadline for a request with this ``timeout``: its longest per-operation part."""
    if timeout is None:
        return None
    if isinstance(timeout, int | float):
        return float(timeout)
    parts = [part for part in (timeout.connect, timeout.read, timeout.write, timeout.pool) if part is not None]
    return max(parts) if parts else None


@functools.lru_cache(maxsize=C.API_URL_CACHE_SIZE)
def _api_url(base_url: str, path: str) -> httpx.URL:
    """``base_url + path`` parsed; the same ``httpx.URL`` (immutable) for every request to that endpoint."""
    return httpx.URL(base_url + path)


def api_headers() -> dict[str, str]:
    """The headers of every API call other than the key: what it accepts and who asks."""
    return {
        "Accept": "application/json",
        # Exactly the codings ``decoded_body`` undoes (httpx would offer br and zstd when they are installed).
        "Accept-Encoding": C.ACCEPT_ENCODING,
        "User-Agent": f"{C.USER_AGENT}/{__version__}",
    }


class HTTPCore:
    """Sends requests with retries and turns every outcome into data or one of the SDK's errors.

    Each attempt of an API call is bounded as a whole by its timeout (httpx's own timeouts bound each read, so
    a server that drips its answer would otherwise hold a call for ever), and its answer by
    ``max_response_bytes``.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        http_client: httpx.AsyncClient,
        timeout: httpx.Timeout,
        retry_policy: RetryPolicy,
        redactor: Redactor,
        max_response_bytes: int = C.DEFAULT_MAX_RESPONSE_BYTES,
        message_fields: tuple[str, ...] = ("msg", "message"),
        client_name: str = "AsyncGenStudio",
        max_requests_per_second: float | None = None,
        client_has_default_headers: bool = False,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._http = http_client
        self._timeout = timeout
        self._retry_policy = retry_policy
        self._redact = redactor
        self._max_response_bytes = max_response_bytes
        self.pacer = Pacer(max_requests_per_second)
        self._message_fields = message_fields
        self._client_name = client_name
        # An upload carries an image: a longer per-read timeout than the small JSON calls.
        self.upload_timeout = httpx.Timeout(
            max(timeout.read or 0.0, C.DEFAULT_UPLOAD_TIMEOUT), connect=timeout.connect
        )
        # At most as many requests in flight as the pool has connections: past that, httpcore's pool does
        # quadratic work per waiting request (1,000 concurrent submits cost ~35 ms of CPU each, bounded ~2 ms).
        self._in_flight = asyncio.Semaphore(C.HTTP_MAX_CONNECTIONS)
        # The API key on every API call, and ``api_headers()`` unless ``http_client`` carries them already (the
        # client the SDK builds itself): each is one scan of the request's headers.
        self._auth_headers = {"Authorization": f"Bearer {api_key}"}
        if not client_has_default_headers:
            self._auth_headers.update(api_headers())
        # The event loop that first used this client: its connections (and its poller's task) belong to it.
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return self._base_url

    def check_loop(self) -> None:
        """Raise ``EventLoopError`` when running on another event loop than the one that first used the client.

        Called where every request and poll (``_send``) and every stream (the client's ``stream``) starts: a
        pooled connection of a loop that has ended fails deep in httpx with ``Event loop is closed``. Outside any
        loop there is nothing to check (no I/O happens there). One lookup and one comparison per call.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop is self._loop:
            return
        if self._loop is None:
            self._loop = loop
            return
        twin = self._client_name.removeprefix("Async")
        raise EventLoopError(
            f"this {self._client_name} was first used on another event loop, and its connections belong to that "
            "loop (each asyncio.run() starts a new one). Use one client per event loop, created inside it "
            f"('async with {self._client_name}() as client:' in the coroutine you run), or the sync client "
            f"{twin}, which runs its own loop: 'with {twin}() as client: client.run(...)'"
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        idempotent: bool,
        timeout: httpx.Timeout | float | None = None,
    ) -> Any:
        """Call an API endpoint (with the key) and return the envelope's ``data``.

        A body without ``code`` is taken to be the data itself (GenStudio's upload is documented both ways).
        """
        request_timeout = self._timeout if timeout is None else timeout

        def build() -> httpx.Request:
            url = _api_url(self._base_url, path)  # here: an invalid URL is the caller's error (InvalidInputError)
            request = self._http.build_request(
                method, url, json=json, params=params, files=files, timeout=request_timeout
            )
            # Set on the request, not merged by build_request: its merge copies the client's headers and works out
            # their encoding twice over, ~25 µs per request. A default of an injected client is overridden.
            headers = request.headers
            for name, value in self._auth_headers.items():
                headers[name] = value
            return request

        label = f"{method} {path}"
        deadline = overall_deadline(request_timeout)

        async def attempt(request: httpx.Request) -> Answer:
            async with self._in_flight:
                return await self._fetch_whole(request, label=label, deadline=deadline)

        answer = await self._send(build, attempt, idempotent=idempotent, label=label)
        return self._parse_envelope(answer, path)

    @asynccontextmanager
    async def stream_get(
        self, url: str, *, timeout: httpx.Timeout | float | None = None
    ) -> AsyncIterator[httpx.Response]:
        """GET a storage URL (no API key sent) and yield the streaming response once its status is 2xx.

        The URL is used exactly as given: percent-escapes in a signed URL are never decoded.
        """

        def build() -> httpx.Request:
            request = self._http.build_request(
                "GET",
                httpx.URL(url),
                # The stored bytes as they are: Content-Length is then the file's real size, checked up front.
                headers={"User-Agent": f"{C.USER_AGENT}/{__version__}", "Accept-Encoding": "identity"},
                timeout=self._timeout if timeout is None else timeout,
            )
            # An injected http_client may carry default headers: the storage host never gets a credential.
            request.headers.pop("Authorization", None)
            return request

        label = "GET <storage>"

        async def attempt(request: httpx.Request) -> httpx.Response | Answer:
            # A download holds its connection until the caller closes it: not bounded by ``_in_flight``.
            response = await self._http.send(request, stream=True, auth=None)
            if response.is_success:
                return response
            return await _error_answer(response, label)

        response = await self._send(build, attempt, idempotent=True, label=label)
        assert isinstance(response, httpx.Response)
        try:
            yield response
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"download timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"download failed: {self._redact(str(exc)) or type(exc).__name__}") from exc
        finally:
            # Shielded, so that a cancel delivered by anyio (downloads run under it) cannot cut the close short.
            with anyio.CancelScope(shield=True):
                await response.aclose()
            spend(response)

    async def storage_put(self, url: str, content: bytes, *, content_type: str) -> None:
        """PUT ``content`` to a pre-signed storage URL, used exactly as given, with no credential.

        Retried like any idempotent call (the same bytes to the same object); bounded as an upload.
        """

        def build() -> httpx.Request:
            request = self._http.build_request(
                "PUT",
                httpx.URL(url),
                content=content,
                headers={
                    "Content-Type": content_type,
                    "Accept-Encoding": C.ACCEPT_ENCODING,
                    "User-Agent": f"{C.USER_AGENT}/{__version__}",
                },
                timeout=self.upload_timeout,
            )
            request.headers.pop("Authorization", None)  # an injected client's default headers included
            return request

        label = "PUT <storage>"
        deadline = overall_deadline(self.upload_timeout)

        async def attempt(request: httpx.Request) -> Answer:
            async with self._in_flight:
                return await self._fetch_whole(request, label=label, deadline=deadline)

        await self._send(build, attempt, idempotent=True, label=label)

    async def _fetch_whole(self, request: httpx.Request, *, label: str, deadline: float | None) -> Answer:
        """Send ``request`` and read its whole answer, within ``deadline`` seconds and the size cap."""
        try:
            async with asyncio.timeout(deadline) as scope:
                response = await self._http.send(request, stream=True, auth=None)
                try:
                    content = await read_capped(
                        response, self._max_response_bytes, what=label, setting="max_response_bytes"
                    )
                finally:
                    try:
                        await response.aclose()
                    finally:
                        spend(response)
        except TimeoutError:
            if deadline is not None and scope.expired():
                raise _DeadlineExceeded(deadline) from None
            raise
        return _answer(response, content)

    async def _send(
        self,
        build: Callable[[], httpx.Request],
        attempt: Callable[[httpx.Request], Awaitable[T]],
        *,
        idempotent: bool,
        label: str,
    ) -> T:
        """Run ``attempt`` on a fresh request until it answers 2xx, retrying what ``should_retry`` allows."""
        self.check_loop()
        policy = self._retry_policy
        attempt_number = 0
        rate_limited = 0  # 429s met: retried apart from max_retries, the pace slowing down until they pass
        placed = False  # a place in the pace already taken and waited for (a 429's retry takes it at once)
        while True:
            if not placed:
                await self._take_place()
            placed = False
            if self._http.is_closed:
                raise GenStudioError(f"the client is closed: create a new {self._client_name}")
            try:
                request = build()
            except httpx.InvalidURL as exc:
                raise InvalidInputError(f"{label}: not a valid URL: {self._redact(str(exc))}") from None
            except (TypeError, ValueError) as exc:
                # json.dumps refused the body (a set, an object, NaN, a non-string key...): the caller's input.
                raise InvalidInputError(
                    f"{label}: the request cannot be sent as JSON: {self._redact(str(exc))}"
                ) from None
            started = time.perf_counter()
            sent_at = self.pacer.now()
            try:
                # auth=None (in ``attempt``): an injected client's own auth= is never applied; the SDK alone
                # decides which request carries a credential (the storage host gets none).
                outcome = await attempt(request)
            except (httpx.RequestError, _DeadlineExceeded) as exc:
                # TransportError (no answer), and also DecodingError / TooManyRedirects (an answer that could not
                # be read): none of them may reach the caller as a raw httpx exception.
                elapsed_ms = (time.perf_counter() - started) * 1000
                retry = should_retry(attempt=attempt_number, policy=policy, idempotent=idempotent, error=exc)
                log.debug(
                    "%s failed after %.1f ms (attempt %d): %s%s",
                    label, elapsed_ms, attempt_number + 1, type(exc).__name__, "; retrying" if retry else "",
                )
                if not retry:
                    raise self._connection_error(exc, label) from exc
                await sleep(retry_delay(attempt_number, policy))
                attempt_number += 1
                continue

            elapsed_ms = (time.perf_counter() - started) * 1000
            if not isinstance(outcome, Answer) or outcome.is_success:
                self.pacer.succeeded()
                status = outcome.status_code if isinstance(outcome, Answer | httpx.Response) else 0
                log.debug("%s -> %d in %.1f ms (attempt %d)", label, status, elapsed_ms, attempt_number + 1)
                return outcome

            retry_after = parse_retry_after(outcome.headers)
            if outcome.status_code == 429:
                # A rate limit: the whole client holds back and slows down (the pacer). It is retried apart from
                # max_retries (a 429 proves the server did not take the request, a submit included), unless
                # retries are off altogether (max_retries=0).
                delay = retry_delay(rate_limited, policy, retry_after)
                self.pacer.limited(delay, sent_at=sent_at)
                retry = policy.max_retries > 0 and rate_limited < C.RATE_LIMIT_MAX_RETRIES
                rate_limited += 1
            else:
                delay = retry_delay(attempt_number, policy, retry_after)
                retry = should_retry(
                    attempt=attempt_number, policy=policy, idempotent=idempotent, status_code=outcome.status_code
                )
                attempt_number += 1
            if retry and retry_after is not None and retry_after > policy.max_retry_after:
                retry = False
            log.debug(
                "%s -> %d in %.1f ms (attempt %d)%s",
                label, outcome.status_code, elapsed_ms, attempt_number + rate_limited, "; retrying" if retry else "",
            )
            if not retry:
                raise self._status_error(outcome, retry_after)
            if outcome.status_code == 429:
                # Its place in the pace is taken now, after the hold: a request refused waits in line ahead of
                # those that come to the pace later, so no request is refused again and again (RateLimitError).
                await self._take_place()
                placed = True
            else:
                await sleep(delay)

    async def _take_place(self) -> None:
        """Wait for this request's place in the client's pace (``Pacer``); a hold that began meanwhile (a 429 of a
        request sent since the last one) sends it back in line, at the slower rate."""
        while (paced := self.pacer.delay()) > 0:
            holds, place = self.pacer.hold_count, self.pacer.now() + paced
            try:
                await sleep(paced)
            except asyncio.CancelledError:
                if self.pacer.hold_count == holds:  # its place still stands: it goes back to the pace
                    self.pacer.refund(place)
                raise
            if self.pacer.hold_count == holds:
                return
            # The places were voided meanwhile (a new burst of 429s): take a new one, at the lower rate.

    def _connection_error(self, exc: Exception, label: str) -> APIConnectionError:
        if isinstance(exc, _DeadlineExceeded):
            # The request may well have reached the server: a submit cut off here is never sent again.
            return APITimeoutError(f"{label} timed out: {exc}", request_sent=True)
        detail = self._redact(str(exc)) or type(exc).__name__
        sent = not never_sent(exc)
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"{label} timed out ({type(exc).__name__}): {detail}", request_sent=sent)
        return APIConnectionError(f"{label} failed: {detail}", request_sent=sent)

    def _reported(self, body: Any) -> tuple[int | None, str | None, str | None, Any]:
        """What a server reported in an error body: ``(code, message, traceid, excerpt of the body)``, redacted
        and bounded (``Redactor.cut``, ``Redactor.excerpt``). The fields are read from the whole body, so one
        that lies past the excerpt's budget still counts; the body kept for the error is only the excerpt."""
        code, message, traceid = _envelope_fields(body, self._message_fields)
        limit = C.ERROR_BODY_MAX_STRING_CHARS
        if message:
            message = self._redact.cut(message, limit)
        if traceid:
            traceid = self._redact.cut(traceid, limit)
        return code, message, traceid, self._redact.excerpt(body)

    def _status_error(self, answer: Answer, retry_after: float | None) -> APIStatusError:
        code, message, traceid, body = self._reported(answer.json())
        if not message:
            # ``cut`` redacts a margin past the cut: a secret cut in half would no longer match and leak its head.
            text = self._redact.cut(answer.text, 200).strip()
            message = text or self._redact.cut(answer.reason_phrase, 200) or "error"
        status = answer.status_code
        error_class = _STATUS_ERRORS.get(status, InternalServerError if status >= 500 else APIStatusError)
        return error_class(
            message, status_code=status, code=code, traceid=traceid, body=body, retry_after=retry_after
        )

    def _parse_envelope(self, answer: Answer, path: str) -> Any:
        body = answer.json()
        if not isinstance(body, Mapping):
            raise InvalidResponseError(
                f"{path} answered HTTP {answer.status_code} with a body that is not a JSON object"
            )
        if "code" not in body:
            return body
        if _envelope_fields(body, self._message_fields)[0] != 0:
            code, message, traceid, excerpt = self._reported(body)
            log.debug("%s -> code=%s traceid=%s", path, code, traceid)
            raise APIError(
                message or "the service reported an error",
                code=code if code is not None else INVALID_RESPONSE_CODE,
                traceid=traceid,
                body=excerpt,
            )
        return body.get("data")


async def _error_answer(response: httpx.Response, label: str) -> Answer:
    """A streamed error answer, closed, holding no more than the first bytes of its body.

    Storage is not trusted to end an error body: only ``C.MAX_STORAGE_ERROR_BODY_BYTES`` (decoded, in bounded
    steps) are read, enough for the message and the status error built from it.
    """
    body = b""
    try:
        async with aclosing(decoded_body(response, what=label)) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) >= C.MAX_STORAGE_ERROR_BODY_BYTES:
                    log.debug("%s: read only the first %d bytes of the error body", label, len(body))
                    break
    except (httpx.HTTPError, InvalidResponseError) as exc:
        # The body of an error answer broke off, or is coded in a way it may not be: what arrived, or the status
        # code alone, has to do (the status is what the caller acts on: a 403 still refreshes a signed URL).
        log.debug("%s: the error body could not be read: %s", label, type(exc).__name__)
    finally:
        with anyio.CancelScope(shield=True):
            await response.aclose()
        spend(response)
    return _answer(response, body[: C.MAX_STORAGE_ERROR_BODY_BYTES])


#: What a response whose body was read and closed holds instead of its stream (``spend``).
_SPENT = httpx.ByteStream(b"")


def spend(response: httpx.Response) -> None:
    """Once ``response`` is closed: drop its stream. httpx's response and the stream bound to it refer to each
    other, a cycle (a dozen objects) only the garbage collector frees, one per request; nothing reads it again."""
    response.stream = _SPENT


def _answer(response: httpx.Response, content: bytes) -> Answer:
    return Answer(
        status_code=response.status_code,
        reason_phrase=response.reason_phrase,
        headers=response.headers,
        content=content,
    )
