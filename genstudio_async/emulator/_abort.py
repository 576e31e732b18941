"""Cutting a WebSocket's TCP connection with no close frame, so the client sees close code 1006.

ASGI has no message for "drop the connection": ``websocket.close`` always sends a close frame. The emulator
therefore reaches the transport under the connection and calls ``transport.abort()`` (an immediate close,
discarding buffers: the peer gets a FIN or RST and never a close frame).

Two ways to find the transport, both relying only on attributes every uvicorn WebSocket protocol has
(``websockets``, ``websockets-sansio`` and ``wsproto`` implementations alike):

1. the ASGI ``send`` callable uvicorn hands the app is a bound method of the protocol object, which holds
   the connection's ``transport``;
2. failing that (say a middleware wrapped ``send``), the server's set of open connections is searched for
   the protocol whose ``client`` address is the scope's ``client``.

``test_faults.py`` proves both with a plain ``websockets`` client seeing 1006.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from starlette.types import Scope, Send


def _transport_of(protocol: object) -> asyncio.BaseTransport | None:
    transport = getattr(protocol, "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None


def find_transport(send: Send, scope: Scope, connections: Iterable[Any] = ()) -> asyncio.BaseTransport | None:
    """The transport of the connection ``send`` writes to, or ``None`` if it cannot be found."""
    transport = _transport_of(getattr(send, "__self__", None))
    if transport is not None:
        return transport
    client = scope.get("client")
    if client is None:
        return None
    for protocol in list(connections):
        peer = getattr(protocol, "client", None)
        if peer is not None and tuple(peer) == tuple(client):
            transport = _transport_of(protocol)
            if transport is not None:
                return transport
    return None


def abort_connection(send: Send, scope: Scope, connections: Iterable[Any] = ()) -> bool:
    """Drop the connection at once with no close frame; ``False`` if its transport could not be found."""
    transport = find_transport(send, scope, connections)
    if transport is None:
        return False
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()
    return True
