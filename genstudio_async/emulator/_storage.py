"""The storage origin: result images at signed URLs, and (GPUGeek) pre-signed uploads, on a port of their own,
answering like Aliyun OSS.

- A request carrying an ``Authorization`` header is refused with 400 (OSS rejects a foreign auth header),
  and counted in ``stats.storage_requests_with_authorization``: tests use it to prove a client never sends
  its API key to the storage host.
- A missing, tampered or percent-decoded signature, or a URL past its ``Expires``: 403. A PUT is signed for
  its ``Content-Type`` too (``application/octet-stream``): another one is refused the same way.
- An object past the retention period (or never made): 404. A PUT larger than the upload limit: 413.
- HTTP faults reach this origin only when ``Faults.endpoints`` names ``storage`` (downloads) or ``upload_put``.

Errors carry an OSS-style XML body. The query is read as OSS reads it, so ``+`` means a space.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ._auth import read_capped
from ._core import EmulatorCore
from ._defaults import EMULATOR_OSS_BUCKET
from ._endpoints import client_disconnected, draw_fault, retry_after
from ._signing import SignatureRejected
from ._wire import html_error_page


def oss_error(
    status_code: int, code: str, message: str, *, host: str, headers: Mapping[str, str] | None = None
) -> Response:
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
        headers={"x-oss-request-id": request_id, **(headers or {})},
    )


class StorageEndpoints:
    """The handlers of the storage origin, bound to one service."""

    def __init__(self, service: EmulatorCore) -> None:
        self._service = service

    async def _refusal(self, request: Request, endpoint: str, *, method: str) -> Response | str:
        """Count the request; the answer that refuses it (a key sent, an injected fault, a bad signature), or the
        object key it names."""
        service, stats = self._service, self._service.stats
        stats.requests[endpoint] += 1
        host = _host(request)
        key_sent = service.settings.api_key.encode("latin-1", "replace")
        carried = "authorization" in request.headers or any(
            key_sent in value for _name, value in request.scope.get("headers", ())
        ) or key_sent in request.scope.get("query_string", b"")
        if carried:  # an Authorization header, or the key anywhere else: another header, a cookie, the query
            stats.storage_requests_with_authorization += 1
            stats.storage_requests_refused += 1
            return oss_error(
                400, "InvalidArgument", "Authorization header is invalid: this URL is already signed.", host=host
            )
        fault = await draw_fault(service, endpoint)
        if fault is not None and fault.status is not None:
            if fault.html:
                return html_error_page(fault.status)
            code = "TooManyRequests" if fault.status == 429 else "InternalError"
            return oss_error(fault.status, code, "Injected by the emulator.", host=host, headers=retry_after(fault))
        raw_path = request.scope.get("raw_path") or request.url.path.encode("latin-1")
        key = unquote(raw_path.decode("latin-1").lstrip("/"))
        query = request.scope.get("query_string", b"").decode("latin-1")
        params = dict(parse_qsl(query, keep_blank_values=True))
        try:
            if service.signer is None:
                raise SignatureRejected("AccessDenied", "The storage is not ready.")
            service.signer.verify(
                key, params, now=service.clock.now(), method=method,
                content_type=request.headers.get("content-type", "") if method == "PUT" else "",
            )
        except SignatureRejected as exc:
            stats.storage_requests_refused += 1
            return oss_error(403, exc.code, exc.message, host=host)
        return key

    async def get_object(self, request: Request) -> Response:
        refused = await self._refusal(request, "storage", method="GET")
        if isinstance(refused, Response):
            return refused
        service = self._service
        result = service.objects.result(refused, now=service.clock.now())
        if result is None:
            service.stats.storage_requests_refused += 1
            return oss_error(404, "NoSuchKey", "The specified key does not exist.", host=_host(request))
        data = await service.objects.render(result)
        headers = {"ETag": _etag(data), "x-oss-object-type": "Normal"}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return Response(content=b"", media_type="image/png", headers=headers)
        service.stats.storage_downloads += 1
        return Response(content=data, media_type="image/png", headers=headers)

    async def put_object(self, request: Request) -> Response:
        """A pre-signed upload: the bytes land at the key, to be committed by the API (GPUGeek's flow)."""
        refused = await self._refusal(request, "upload_put", method="PUT")
        if isinstance(refused, Response):
            return refused
        service = self._service
        limit = service.settings.max_upload_bytes
        data = await read_capped(request, limit)
        if data is None:
            service.stats.storage_requests_refused += 1
            return oss_error(
                413, "EntityTooLarge", f"Your proposed upload exceeds the maximum allowed size ({limit} bytes).",
                host=_host(request),
            )
        service.objects.put_upload(
            refused, data, content_type=request.headers.get("content-type"), now=service.clock.now()
        )
        service.stats.uploads += 1
        return Response(content=b"", headers={"ETag": _etag(data), "x-oss-request-id": secrets.token_hex(12).upper()})


def _host(request: Request) -> str:
    return f"{EMULATOR_OSS_BUCKET}.{request.url.netloc}"


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest().upper()}"'


def build_storage_app(service: EmulatorCore) -> Starlette:
    """The Starlette app of the storage origin."""
    storage = StorageEndpoints(service)
    return Starlette(
        routes=[
            Route("/{key:path}", storage.get_object, methods=["GET", "HEAD"]),
            Route("/{key:path}", storage.put_object, methods=["PUT"]),
        ],
        exception_handlers={ClientDisconnect: client_disconnected},
    )
