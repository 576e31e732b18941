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
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

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
    GenStudioError,
    InternalServerError,
    InvalidInputError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from ._redact import Redactor
from ._version import __version__

log = logging.getLogger("genstudio_async")

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
            return isinstance(error, httpx.TransportError)
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


def _envelope_fields(body: Any) -> tuple[int | None, str | None, str | None]:
    """``(code, message, traceid)`` of an envelope; ``msg`` and ``message`` are both used by the platforms."""
    if not isinstance(body, Mapping):
        return None, None, None
    raw_code = body.get("code")
    code: int | None
    try:
        code = None if raw_code is None or isinstance(raw_code, bool) else int(raw_code)
    except (TypeError, ValueError):
        code = None
    message = body.get("msg")
    if message is None:
        message = body.get("message")
    traceid = body.get("traceid") or body.get("trace_id") or body.get("request_id")
    return code, (str(message) if message is not None else None), (str(traceid) if traceid else None)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError, httpx.ResponseNotRead):
        return None


def _text_or_empty(response: httpx.Response) -> str:
    try:
        return response.text
    except httpx.ResponseNotRead:
        return ""


async def _error_answer(response: httpx.Response, label: str) -> httpx.Response:
    """A streamed error answer, closed, as a response holding no more than the first bytes of its body.

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
    framing = {"content-encoding", "content-length", "transfer-encoding"}  # they describe the wire, not ``body``
    return httpx.Response(
        response.status_code,
        headers=[(name, value) for name, value in response.headers.multi_items() if name.lower() not in framing],
        content=body[: C.MAX_STORAGE_ERROR_BODY_BYTES],
        request=response.request,
    )


class HTTPCore:
    """Sends requests with retries and turns every outcome into data or one of the SDK's errors."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        http_client: httpx.AsyncClient,
        timeout: httpx.Timeout,
        retry_policy: RetryPolicy,
        redactor: Redactor,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._http = http_client
        self._timeout = timeout
        self._retry_policy = retry_policy
        self._redact = redactor
        # At most as many requests in flight as the pool has connections: past that, httpcore's pool does
        # quadratic work per waiting request (1,000 concurrent submits cost ~35 ms of CPU each, bounded ~2 ms).
        self._in_flight = asyncio.Semaphore(C.HTTP_MAX_CONNECTIONS)
        self._auth_headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": f"{C.USER_AGENT}/{__version__}",
        }

    @property
    def base_url(self) -> str:
        return self._base_url

    async def call(
        self,
        path: str,
        *,
        json: Any = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        idempotent: bool,
        timeout: httpx.Timeout | float | None = None,
    ) -> Any:
        """POST to an API endpoint and return the envelope's ``data``.

        A body without ``code`` is taken to be the data itself (the upload endpoint is documented both ways).
        """
        url = self._base_url + path

        def build() -> httpx.Request:
            return self._http.build_request(
                "POST",
                url,
                json=json,
                files=files,
                headers=self._auth_headers,
                timeout=self._timeout if timeout is None else timeout,
            )

        response = await self._send(build, idempotent=idempotent, stream=False, label=f"POST {path}")
        return self._parse_envelope(response, path)

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

        response = await self._send(build, idempotent=True, stream=True, label="GET <storage>")
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

    async def _send(
        self, build: Any, *, idempotent: bool, stream: bool, label: str
    ) -> httpx.Response:
        policy = self._retry_policy
        attempt = 0
        while True:
            if self._http.is_closed:
                raise GenStudioError("the client is closed: create a new AsyncGenStudio")
            try:
                request: httpx.Request = build()
            except httpx.InvalidURL as exc:
                raise InvalidInputError(f"{label}: not a valid URL: {self._redact(str(exc))}") from None
            except (TypeError, ValueError) as exc:
                # json.dumps refused the body (a set, an object, NaN, a non-string key...): the caller's input.
                raise InvalidInputError(
                    f"{label}: the request cannot be sent as JSON: {self._redact(str(exc))}"
                ) from None
            started = time.perf_counter()
            try:
                # auth=None: an injected client's own auth= is never applied; the SDK alone decides which
                # request carries a credential (the storage host gets none).
                if stream:  # a download holds its connection until the caller closes it: not bounded here
                    response = await self._http.send(request, stream=True, auth=None)
                else:
                    async with self._in_flight:
                        response = await self._http.send(request, stream=False, auth=None)
            except httpx.RequestError as exc:
                # TransportError (no answer), and also DecodingError / TooManyRedirects (an answer that could not
                # be read): none of them may reach the caller as a raw httpx exception.
                elapsed_ms = (time.perf_counter() - started) * 1000
                retry = should_retry(attempt=attempt, policy=policy, idempotent=idempotent, error=exc)
                log.debug(
                    "%s failed after %.1f ms (attempt %d): %s%s",
                    label, elapsed_ms, attempt + 1, type(exc).__name__, "; retrying" if retry else "",
                )
                if not retry:
                    raise self._connection_error(exc, label) from exc
                await sleep(retry_delay(attempt, policy))
                attempt += 1
                continue

            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.is_success:
                log.debug("%s -> %d in %.1f ms (attempt %d)", label, response.status_code, elapsed_ms, attempt + 1)
                return response

            if stream:
                response = await _error_answer(response, label)
            retry_after = parse_retry_after(response.headers)
            retry = should_retry(
                attempt=attempt, policy=policy, idempotent=idempotent, status_code=response.status_code
            )
            if retry and retry_after is not None and retry_after > policy.max_retry_after:
                retry = False
            log.debug(
                "%s -> %d in %.1f ms (attempt %d)%s",
                label, response.status_code, elapsed_ms, attempt + 1, "; retrying" if retry else "",
            )
            if not retry:
                raise self._status_error(response, retry_after)
            await sleep(retry_delay(attempt, policy, retry_after))
            attempt += 1

    def _connection_error(self, exc: httpx.RequestError, label: str) -> APIConnectionError:
        detail = self._redact(str(exc)) or type(exc).__name__
        sent = not never_sent(exc)
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"{label} timed out ({type(exc).__name__}): {detail}", request_sent=sent)
        return APIConnectionError(f"{label} failed: {detail}", request_sent=sent)

    def _status_error(self, response: httpx.Response, retry_after: float | None) -> APIStatusError:
        body = _json_or_none(response)
        code, message, traceid = _envelope_fields(body)
        # Redact before cutting the text short: a secret cut in half no longer matches and would leak its head.
        if not message:
            message = self._redact(_text_or_empty(response))[:200].strip() or response.reason_phrase or "error"
        message = self._redact(message)
        status = response.status_code
        error_class = _STATUS_ERRORS.get(status, InternalServerError if status >= 500 else APIStatusError)
        return error_class(
            message, status_code=status, code=code, traceid=traceid, body=body, retry_after=retry_after
        )

    def _parse_envelope(self, response: httpx.Response, path: str) -> Any:
        body = _json_or_none(response)
        if not isinstance(body, Mapping):
            raise InvalidResponseError(
                f"{path} answered HTTP {response.status_code} with a body that is not a JSON object"
            )
        if "code" not in body:
            return body
        code, message, traceid = _envelope_fields(body)
        if code != 0:
            text = self._redact(message or "the service reported an error")
            log.debug("%s -> code=%s traceid=%s", path, code, traceid)
            raise APIError(
                text,
                code=code if code is not None else INVALID_RESPONSE_CODE,
                traceid=traceid,
                body=body,
            )
        return body.get("data")
