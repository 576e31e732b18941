"""The storage origin: result images at signed URLs, on a port of their own, answering like Aliyun OSS.

- A request carrying an ``Authorization`` header is refused with 400 (OSS rejects a foreign auth header),
  and counted in ``stats.storage_requests_with_authorization``: tests use it to prove a client never sends
  its API key to the storage host.
- A missing, tampered or percent-decoded signature, or a URL past its ``Expires``: 403.
- An object past the retention period (or never made): 404.

Errors carry an OSS-style XML body. The query is read as OSS reads it, so ``+`` means a space.
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import parse_qsl, unquote
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._constants import EMULATOR_OSS_BUCKET
from ._core import EmulatorCore
from ._signing import SignatureRejected


def oss_error(status_code: int, code: str, message: str, *, host: str) -> Response:
    """An OSS-style XML error response."""
    request_id = secrets.token_hex(12).upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error>\n"
        f"  <Code>{escape(code)}</Code>\n"
        f"  <Message>{escape(message)}</Message>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        f"  <HostId>{escape(host)}</HostId>\n"
        "</Error>\n"
    )
    return Response(
        content=body.encode("utf-8"),
        status_code=status_code,
        media_type="application/xml",
        headers={"x-oss-request-id": request_id},
    )


def build_storage_app(service: EmulatorCore) -> Starlette:
    """The Starlette app of the storage origin."""

    async def get_object(request: Request) -> Response:
        stats = service.stats
        stats.requests["storage"] += 1
        host = f"{EMULATOR_OSS_BUCKET}.{request.url.netloc}"
        if "authorization" in request.headers:
            stats.storage_requests_with_authorization += 1
            stats.storage_requests_refused += 1
            return oss_error(
                400, "InvalidArgument", "Authorization header is invalid: this URL is already signed.", host=host
            )
        raw_path = request.scope.get("raw_path") or request.url.path.encode("latin-1")
        key = unquote(raw_path.decode("latin-1").lstrip("/"))
        query = request.scope.get("query_string", b"").decode("latin-1")
        params = dict(parse_qsl(query, keep_blank_values=True))
        signer = service.signer
        now = service.clock.now()
        try:
            if signer is None:
                raise SignatureRejected("AccessDenied", "The storage is not ready.")
            signer.verify(key, params, now=now)
        except SignatureRejected as exc:
            stats.storage_requests_refused += 1
            return oss_error(403, exc.code, exc.message, host=host)
        result = service.objects.result(key, now=now)
        if result is None:
            stats.storage_requests_refused += 1
            return oss_error(404, "NoSuchKey", "The specified key does not exist.", host=host)
        data = await service.objects.render(result)
        headers = {
            "ETag": f'"{hashlib.md5(data, usedforsecurity=False).hexdigest().upper()}"',
            "x-oss-object-type": "Normal",
        }
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return Response(content=b"", media_type="image/png", headers=headers)
        stats.storage_downloads += 1
        return Response(content=data, media_type="image/png", headers=headers)

    return Starlette(routes=[Route("/{key:path}", get_object, methods=["GET", "HEAD"])])
