"""Request helpers shared by the API, admin and storage routes: the bearer-key check and capped body reads."""

from __future__ import annotations

import hmac
import json

from starlette.requests import Request

from ._defaults import EMULATOR_MAX_JSON_BODY_BYTES

#: What ``json_body`` returns for a body that is not JSON.
MALFORMED = object()
#: What ``json_body`` returns for a body larger than ``EMULATOR_MAX_JSON_BODY_BYTES``.
TOO_LARGE = object()


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def bearer_matches(header: str | None, api_key: str) -> bool:
    """Whether an ``Authorization`` header is ``Bearer <api_key>`` (compared in constant time)."""
    if not header:
        return False
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8"), api_key.encode("utf-8"))


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request's body, or ``None`` once it is larger than ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, *, limit: int = EMULATOR_MAX_JSON_BODY_BYTES) -> object:
    """The request's body parsed as strict JSON (UTF-8, no NaN/Infinity), ``MALFORMED`` or ``TOO_LARGE``."""
    body = await read_capped(request, limit)
    if body is None:
        return TOO_LARGE
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return MALFORMED
