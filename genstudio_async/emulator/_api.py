"""The API origin: the service's four HTTP endpoints, the progress WebSocket, and the admin routes.

Every HTTP call needs ``Authorization: Bearer <api_key>`` (else HTTP 401 with an envelope). A body that is not
JSON gets HTTP 400; a request the service refuses gets HTTP 200 with ``code != 0``. HTTP faults (delay, 429,
5xx) are applied after authentication, before the request is served. The admin routes (``/_emulator/...``)
are in ``_admin``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._constants import (
    CANCEL_PATH,
    EMULATOR_ADMIN_PATH_PREFIX,
    PROGRESS_WS_PATH,
    SUBMIT_PATH,
    TASK_INFO_PATH,
    UPLOAD_FIELD,
    UPLOAD_PATH,
)
from ._admin import AdminEndpoints
from ._auth import MALFORMED, TOO_LARGE, bearer_matches, json_body
from ._progress import ProgressSocket
from ._service import BusinessError, EmulatorService
from ._wire import (
    CODE_BAD_REQUEST,
    CODE_INVALID_PARAMETER,
    CODE_PAYLOAD_TOO_LARGE,
    CODE_RATE_LIMITED,
    CODE_UNAUTHORIZED,
    error,
    ok,
)


class ApiEndpoints:
    """The request handlers of the API origin, bound to one service."""

    def __init__(self, service: EmulatorService) -> None:
        self._service = service

    def _unauthorized(self, request: Request) -> Response | None:
        if bearer_matches(request.headers.get("authorization"), self._service.settings.api_key):
            return None
        self._service.stats.unauthorized += 1
        return error(CODE_UNAUTHORIZED, "invalid or missing API key (Authorization: Bearer sk-…)", status_code=401)

    async def _injected_fault(self, endpoint: str, workflow_id: str | None = None) -> Response | None:
        fault = self._service.faults.draw_http_fault(endpoint, workflow_id)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status == 429:
            self._service.stats.rate_limited += 1
            return error(
                CODE_RATE_LIMITED,
                "too many requests, slow down (rate limit injected by the emulator)",
                status_code=429,
                headers={"Retry-After": str(fault.retry_after or 1)},
            )
        if fault.status is not None:
            self._service.stats.http_errors_injected += 1
            return error(fault.status, "internal server error (injected by the emulator)", status_code=fault.status)
        return None

    async def _serve_json(self, request: Request, endpoint: str, handler: Callable[[object], Any]) -> Response:
        self._service.stats.requests[endpoint] += 1
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        body = await json_body(request)
        if body is TOO_LARGE:
            return error(CODE_PAYLOAD_TOO_LARGE, "the request body is too large", status_code=413)
        if body is MALFORMED:
            return error(CODE_BAD_REQUEST, "the request body is not valid JSON", status_code=400)
        workflow_id = body.get("workflow_id") if isinstance(body, Mapping) else None
        injected = await self._injected_fault(endpoint, workflow_id if isinstance(workflow_id, str) else None)
        if injected is not None:
            return injected
        try:
            return ok(handler(body))
        except BusinessError as exc:
            return error(exc.code, exc.msg, data=exc.data)

    async def submit(self, request: Request) -> Response:
        return await self._serve_json(request, "submit", self._service.submit)

    async def task_info(self, request: Request) -> Response:
        return await self._serve_json(request, "task_info", self._service.task_info)

    async def cancel(self, request: Request) -> Response:
        return await self._serve_json(request, "cancel", self._service.cancel)

    async def upload(self, request: Request) -> Response:
        service = self._service
        service.stats.requests["upload"] += 1
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        injected = await self._injected_fault("upload")
        if injected is not None:
            return injected
        limit = service.settings.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + 64 * 1024:
            return error(CODE_PAYLOAD_TOO_LARGE, f"{UPLOAD_FIELD} is larger than {limit} bytes", status_code=413)
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return error(CODE_INVALID_PARAMETER, f"send the image as multipart/form-data field {UPLOAD_FIELD!r}")
        try:
            async with request.form(max_files=4, max_fields=16) as form:
                item = form.get(UPLOAD_FIELD)
                if not isinstance(item, UploadFile):
                    return error(CODE_INVALID_PARAMETER, f"multipart file field {UPLOAD_FIELD!r} is required")
                data = await item.read(limit + 1)
                filename, content_type = item.filename, item.content_type
        except HTTPException as exc:  # a multipart body python-multipart cannot parse
            return error(CODE_BAD_REQUEST, f"malformed multipart body: {exc.detail}", status_code=400)
        if len(data) > limit:
            return error(CODE_PAYLOAD_TOO_LARGE, f"{UPLOAD_FIELD} is larger than {limit} bytes", status_code=413)
        try:
            return ok(service.upload(data, filename=filename, content_type=content_type))
        except BusinessError as exc:
            return error(exc.code, exc.msg, data=exc.data)



async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug in the emulator still answers with an envelope (and uvicorn logs the traceback)."""
    return error(500, f"internal emulator error: {type(exc).__name__}", status_code=500)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) as envelopes."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal server error"
    request.app.state.counts["other"] += 1
    return error(status, f"{request.method} {request.url.path}: {detail}", status_code=status)


Handler = Callable[[Request], Awaitable[Response]]


def build_http_app(service: EmulatorService) -> Starlette:
    """The Starlette app of the API origin's HTTP routes."""
    api = ApiEndpoints(service)
    admin = AdminEndpoints(service)
    prefix = EMULATOR_ADMIN_PATH_PREFIX
    routes: list[tuple[str, Handler, list[str]]] = [
        (SUBMIT_PATH, api.submit, ["POST"]),
        (TASK_INFO_PATH, api.task_info, ["POST"]),
        (CANCEL_PATH, api.cancel, ["POST"]),
        (UPLOAD_PATH, api.upload, ["POST"]),
        (f"{prefix}/stats", admin.stats, ["GET"]),
        (f"{prefix}/stats/reset", admin.reset_stats, ["POST"]),
        (f"{prefix}/faults", admin.faults, ["GET", "POST", "DELETE"]),
        (f"{prefix}/pause", admin.pause, ["POST"]),
        (f"{prefix}/resume", admin.resume, ["POST"]),
        (f"{prefix}/workflows", admin.workflows, ["GET", "POST"]),
        (f"{prefix}/clock", admin.clock, ["POST"]),
        (f"{prefix}/timing", admin.timing, ["POST"]),
    ]
    app = Starlette(
        routes=[Route(path, endpoint, methods=methods) for path, endpoint, methods in routes],
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected_error},
    )
    app.router.redirect_slashes = False  # the service has no "/prompt/" to redirect from: 404, not 307
    app.state.counts = service.stats.requests
    return app


class ApiApp:
    """The ASGI app of the API origin: the progress WebSocket goes straight to its handler (so that it gets
    uvicorn's own ``send``, see ``_abort``), everything else to the Starlette app."""

    def __init__(self, service: EmulatorService, connections: Callable[[], Iterable[Any]]) -> None:
        self._http = build_http_app(service)
        self._progress = ProgressSocket(service, connections)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == PROGRESS_WS_PATH:
            await self._progress(scope, receive, send)
            return
        await self._http(scope, receive, send)
