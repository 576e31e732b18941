"""Request helpers shared by the API and admin routes: the bearer-key check and a tolerant JSON body read."""

from __future__ import annotations

import hmac
import json

from starlette.requests import Request

#: What ``json_body`` returns for a body that is not JSON.
MALFORMED = object()


def bearer_matches(header: str | None, api_key: str) -> bool:
    """Whether an ``Authorization`` header is ``Bearer <api_key>`` (compared in constant time)."""
    if not header:
        return False
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8"), api_key.encode("utf-8"))


async def json_body(request: Request) -> object:
    """The request's body parsed as JSON, or ``MALFORMED``."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError:
        return MALFORMED
