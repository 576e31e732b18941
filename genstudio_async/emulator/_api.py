"""GenStudio's API origin: its four HTTP endpoints and the progress WebSocket (plus the admin routes).

Authentication, bodies, injected HTTP faults and envelopes are the shared ones of ``_endpoints``; the routes and
the multipart upload are GenStudio's. The admin routes (``/_emulator/...``) are in ``_admin``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._services.genstudio import CANCEL_PATH, PROGRESS_WS_PATH, SUBMIT_PATH, TASK_INFO_PATH, UPLOAD_FIELD, UPLOAD_PATH
from ._endpoints import Endpoints, build_api_app
from ._progress import ProgressSocket
from ._service import EmulatorService
from ._wire import CODE_BAD_REQUEST, CODE_INVALID_PARAMETER, CODE_PAYLOAD_TOO_LARGE, error


class ApiEndpoints(Endpoints[EmulatorService]):
    """GenStudio's request handlers, bound to one service."""

    async def submit(self, request: Request) -> Response:
        return await self.serve_json(request, "submit", self.service.submit)

    async def task_info(self, request: Request) -> Response:
        return await self.serve_json(request, "task_info", self.service.task_info)

    async def cancel(self, request: Request) -> Response:
        return await self.serve_json(request, "cancel", self.service.cancel)

    async def upload(self, request: Request) -> Response:
        service = self.service
        service.stats.requests["upload"] += 1
        refused = self.refuse_key(request)
        if refused is not None:
            return refused
        injected = await self.injected_fault("upload")
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
        return self.answer(lambda _: service.upload(data, filename=filename, content_type=content_type), None)


class ApiApp:
    """The ASGI app of GenStudio's API origin: the progress WebSocket goes straight to its handler (so that it
    gets uvicorn's own ``send``, see ``_abort``), everything else to the Starlette app."""

    def __init__(self, service: EmulatorService, connections: Callable[[], Iterable[Any]]) -> None:
        api = ApiEndpoints(service)
        self._http = build_api_app(
            service,
            [
                (SUBMIT_PATH, api.submit, ["POST"]),
                (TASK_INFO_PATH, api.task_info, ["POST"]),
                (CANCEL_PATH, api.cancel, ["POST"]),
                (UPLOAD_PATH, api.upload, ["POST"]),
            ],
        )
        self._progress = ProgressSocket(service, connections)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == PROGRESS_WS_PATH:
            await self._progress(scope, receive, send)
            return
        await self._http(scope, receive, send)
