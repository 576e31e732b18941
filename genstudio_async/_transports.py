"""Opt-in HTTP transports: an ``http_client`` to pass to a client instead of the httpx one it makes itself.

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

from typing import TYPE_CHECKING, Any

import httpx

from . import _constants as C
from ._config import default_timeout

if TYPE_CHECKING:
    from ._aiohttp_transport import AioHttpTransport

#: What to install when the extra is missing.
AIOHTTP_INSTALL_HINT = "pip install 'genstudio-async[aiohttp]'"


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
