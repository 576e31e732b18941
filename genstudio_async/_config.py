"""A client's settings: arguments checked, environment fallbacks applied, in one place for every service.

``resolve`` turns what a caller passed (``None`` meaning "not given") into ``Settings`` or raises
``ConfigurationError`` naming the argument or environment variable at fault. Nothing here does I/O.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from . import _constants as C
from ._exceptions import ConfigurationError
from ._services import Environment


@dataclass(frozen=True)
class Settings:
    """What a client runs with (every value checked)."""

    api_key: str
    base_url: str
    ws_url: str | None
    timeout: httpx.Timeout
    max_retries: int
    poll_interval: float
    stream_idle_timeout: float
    use_websocket: bool
    max_response_bytes: int
    max_download_bytes: int
    download_timeout: float
    max_sockets: int | None = None
    """At most this many progress sockets open at once (``None``: derived from the open-file limit)."""
    max_requests_per_second: float | None = None
    """A ceiling on the client's request rate, for a user who knows the account's limit (``None``: none)."""


def resolve(
    environment: Environment,
    default_base_url: str,
    *,
    api_key: str | None,
    base_url: str | None,
    ws_url: str | None = None,
    timeout: float | httpx.Timeout,
    max_retries: int,
    poll_interval: float,
    stream_idle_timeout: float = C.DEFAULT_STREAM_IDLE_TIMEOUT,
    use_websocket: bool = False,
    max_response_bytes: int,
    max_download_bytes: int,
    download_timeout: float,
    max_sockets: int | None = None,
    max_requests_per_second: float | None = None,
) -> Settings:
    """Check every argument and fill what was not given from ``environment`` (then the defaults)."""
    from_env = api_key is None
    key = api_key if api_key is not None else os.environ.get(environment.api_key)
    if not key or not key.strip():
        raise ConfigurationError(f"no API key: pass api_key=... or set the {environment.api_key} environment variable")
    key = key.strip()
    check_api_key(key, environment.api_key if from_env else "api_key")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an int >= 0, got {max_retries!r}")
    _positive_seconds("poll_interval", poll_interval)
    _positive_seconds("stream_idle_timeout", stream_idle_timeout)
    _positive_seconds("download_timeout", download_timeout)
    for name, limit in (("max_response_bytes", max_response_bytes), ("max_download_bytes", max_download_bytes)):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"{name} must be a positive int of bytes, got {limit!r}")
    bad_sockets = isinstance(max_sockets, bool) or not isinstance(max_sockets, int) or max_sockets < 1
    if max_sockets is not None and bad_sockets:
        raise ConfigurationError(
            f"max_sockets must be a positive int (or None: from the open-file limit), got {max_sockets!r}"
        )
    if max_requests_per_second is not None:
        _positive_rate(max_requests_per_second)
    base = http_url(base_url or os.environ.get(environment.base_url) or default_base_url, "base_url")
    socket_url = None
    if environment.ws_url is not None:
        socket_url = ws_url or os.environ.get(environment.ws_url) or None
    return Settings(
        api_key=key,
        base_url=base,
        ws_url=socket_url,
        timeout=timeout if isinstance(timeout, httpx.Timeout) else default_timeout(timeout),
        max_retries=max_retries,
        poll_interval=float(poll_interval),
        stream_idle_timeout=float(stream_idle_timeout),
        use_websocket=use_websocket,
        max_response_bytes=max_response_bytes,
        max_download_bytes=max_download_bytes,
        download_timeout=float(download_timeout),
        max_sockets=max_sockets,
        max_requests_per_second=None if max_requests_per_second is None else float(max_requests_per_second),
    )


def _positive_rate(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isinf(value):
        raise ConfigurationError(f"max_requests_per_second must be a positive number, got {value!r}")


def _positive_seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isinf(value):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")


def check_api_key(api_key: str, source: str) -> None:
    """Refuse a key that cannot travel in an HTTP header. h11 would quote it whole in the error it raises (and so
    in every traceback and log line), so the key itself is never shown here: only where the bad character is."""
    for position, char in enumerate(api_key):
        if not "\x21" <= char <= "\x7e":
            if char in "\r\n":
                kind = "a line break"
            elif char.isspace():
                kind = "a space"
            elif ord(char) < 0x20 or ord(char) == 0x7F:
                kind = "a control character"
            else:
                kind = "a non-ASCII character"
            raise ConfigurationError(
                f"the API key ({source}) holds {kind} at position {position + 1} of {len(api_key)}: a key is "
                "printable ASCII without spaces (was it pasted with a line break?)"
            )


def default_timeout(seconds: float) -> httpx.Timeout:
    """The per-request timeout for ``timeout=seconds``: connecting gets at most ``DEFAULT_CONNECT_TIMEOUT``."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:  # also NaN
        raise ConfigurationError(f"timeout must be > 0 seconds, got {seconds!r}")
    return httpx.Timeout(seconds, connect=min(seconds, C.DEFAULT_CONNECT_TIMEOUT))


def http_url(url: str, name: str) -> str:
    """``url`` checked to be http(s) with a host, its trailing slash, query and fragment dropped."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:  # also "Invalid IPv6 URL"
        raise ConfigurationError(f"{name} is not a valid URL ({exc}): {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"{name} must be an http:// or https:// URL, got {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
