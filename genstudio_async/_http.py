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
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
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
from ._redact import Redactor
from ._version import __version__

log = logging.getLogger("genstudio_async")

T = TypeVar("T")

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
    message = next((body[field] for field in message_fields if body.get(field) is not None), None)
    traceid = body.get("traceid") or body.get("trace_id") or body.get("request_id")
    return code, (str(message) if message is not None else None), (str(traceid) if traceid else None)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer whose body was read in full (within its size cap)."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes
    encoding: str | None = None

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
    def text(self) -> str:
        return self.content.decode(self.encoding or "utf-8", errors="replace")


class _DeadlineExceeded(Exception):
    """One attempt took longer than its overall deadline (a server that drips its answer, or never ends it)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within the overall deadline of {seconds:g} s")
        self.seconds = seconds


async def read_capped(response: httpx.Response, limit: int, *, what: str, setting: str) -> bytes:
    """The decoded body of ``response``, refusing it once it passes ``limit`` bytes.

    ``Content-Length`` is checked first; the decoded bytes are counted as they arrive, so a small compressed body
    that inflates past the cap is cut off without being held. ``setting`` names the argument that sets the cap.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(what, limit, setting)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(what, limit, setting)
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


class RateGate:
    """One pace for all of a client's requests: a rate limit (429) answered to any of them holds back every
    request not yet sent, honouring ``Retry-After``, so a thousand tasks answer one limit with one pause rather
    than a thousand separate retries. It only ever delays a request; it never sends one again."""

    def __init__(self) -> None:
        self._resume_at = 0.0
        self.holds = 0  # how many rate limits were met (for tests and benchmarks)

    def hold(self, seconds: float) -> float:
        """Hold requests back for ``seconds`` from now (a later, longer hold wins); when the hold ends."""
        self.holds += 1
        self._resume_at = max(self._resume_at, time.monotonic() + max(seconds, 0.0))
        return self._resume_at

    async def wait(self, *, unless_until: float = 0.0) -> None:
        """Wait out the current hold, unless it ends by ``unless_until`` (the caller slept through it already)."""
        if self._resume_at <= unless_until:
            return
        delay = self._resume_at - time.monotonic()
        if delay > 0:
            await sleep(delay)


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
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._http = http_client
        self._timeout = timeout
        self._retry_policy = retry_policy
        self._redact = redactor
        self._max_response_bytes = max_response_bytes
        self.rate_gate = RateGate()
        self._message_fields = message_fields
        self._client_name = client_name
        # An upload carries an image: a longer per-read timeout than the small JSON calls.
        self.upload_timeout = httpx.Timeout(
            max(timeout.read or 0.0, C.DEFAULT_UPLOAD_TIMEOUT), connect=timeout.connect
        )
        # At most as many requests in flight as the pool has connections: past that, httpcore's pool does
        # quadratic work per waiting request (1,000 concurrent submits cost ~35 ms of CPU each, bounded ~2 ms).
        self._in_flight = asyncio.Semaphore(C.HTTP_MAX_CONNECTIONS)
        self._auth_headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": f"{C.USER_AGENT}/{__version__}",
        }
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
        url = self._base_url + path
        request_timeout = self._timeout if timeout is None else timeout

        def build() -> httpx.Request:
            return self._http.build_request(
                method,
                url,
                json=json,
                params=params,
                files=files,
                headers=self._auth_headers,
                timeout=request_timeout,
            )

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

    async def storage_put(self, url: str, content: bytes, *, content_type: str) -> None:
        """PUT ``content`` to a pre-signed storage URL, used exactly as given, with no credential.

        Retried like any idempotent call (the same bytes to the same object); bounded as an upload.
        """

        def build() -> httpx.Request:
            request = self._http.build_request(
                "PUT",
                httpx.URL(url),
                content=content,
                headers={"Content-Type": content_type, "User-Agent": f"{C.USER_AGENT}/{__version__}"},
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
                    await response.aclose()
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
        held_until = 0.0  # the hold this request itself set and has already slept through
        while True:
            await self.rate_gate.wait(unless_until=held_until)
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
                status = outcome.status_code if isinstance(outcome, Answer | httpx.Response) else 0
                log.debug("%s -> %d in %.1f ms (attempt %d)", label, status, elapsed_ms, attempt_number + 1)
                return outcome

            retry_after = parse_retry_after(outcome.headers)
            retry = should_retry(
                attempt=attempt_number, policy=policy, idempotent=idempotent, status_code=outcome.status_code
            )
            if retry and retry_after is not None and retry_after > policy.max_retry_after:
                retry = False
            log.debug(
                "%s -> %d in %.1f ms (attempt %d)%s",
                label, outcome.status_code, elapsed_ms, attempt_number + 1, "; retrying" if retry else "",
            )
            delay = retry_delay(attempt_number, policy, retry_after)
            if outcome.status_code == 429:
                held_until = self.rate_gate.hold(min(delay, policy.max_retry_after))  # every request slows down
            if not retry:
                raise self._status_error(outcome, retry_after)
            await sleep(delay)
            attempt_number += 1

    def _connection_error(self, exc: Exception, label: str) -> APIConnectionError:
        if isinstance(exc, _DeadlineExceeded):
            # The request may well have reached the server: a submit cut off here is never sent again.
            return APITimeoutError(f"{label} timed out: {exc}", request_sent=True)
        detail = self._redact(str(exc)) or type(exc).__name__
        sent = not never_sent(exc)
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"{label} timed out ({type(exc).__name__}): {detail}", request_sent=sent)
        return APIConnectionError(f"{label} failed: {detail}", request_sent=sent)

    def _status_error(self, answer: Answer, retry_after: float | None) -> APIStatusError:
        body = self._redact.scrub(answer.json())
        code, message, traceid = _envelope_fields(body, self._message_fields)
        # Redact before cutting the text short: a secret cut in half no longer matches and would leak its head.
        if not message:
            message = self._redact(answer.text)[:200].strip() or answer.reason_phrase or "error"
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
        code, message, traceid = _envelope_fields(body, self._message_fields)
        if code != 0:
            scrubbed = self._redact.scrub(body)
            code, message, traceid = _envelope_fields(scrubbed, self._message_fields)
            log.debug("%s -> code=%s traceid=%s", path, code, traceid)
            raise APIError(
                message or "the service reported an error",
                code=code if code is not None else INVALID_RESPONSE_CODE,
                traceid=traceid,
                body=scrubbed,
            )
        return body.get("data")


async def _error_answer(response: httpx.Response, label: str) -> Answer:
    """A streamed error answer, closed, holding no more than the first bytes of its body.

    Storage is not trusted to end an error body: only ``C.MAX_STORAGE_ERROR_BODY_BYTES`` (decoded) are read, enough
    for the message and the status error built from it.
    """
    body = b""
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= C.MAX_STORAGE_ERROR_BODY_BYTES:
                log.debug("%s: read only the first %d bytes of the error body", label, len(body))
                break
    except httpx.HTTPError as exc:
        # The body of an error answer broke off: what arrived, or the status code alone, has to do.
        log.debug("%s: the error body could not be read: %s", label, type(exc).__name__)
    finally:
        with anyio.CancelScope(shield=True):
            await response.aclose()
    return _answer(response, body[: C.MAX_STORAGE_ERROR_BODY_BYTES])


def _answer(response: httpx.Response, content: bytes) -> Answer:
    return Answer(
        status_code=response.status_code,
        reason_phrase=response.reason_phrase,
        headers=response.headers,
        content=content,
        encoding=response.charset_encoding,
    )
