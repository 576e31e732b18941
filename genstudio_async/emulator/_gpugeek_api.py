"""GPUGeek's API origin: ``/api/v1/...`` (plus the admin routes). No WebSocket.

Authentication, bodies, injected HTTP faults and envelopes are the shared ones of ``_endpoints``, in GPUGeek's
envelope (``message``, a ``traceid`` on every answer). The pre-signed URL answers both GET (the doc's table)
and POST (the doc's Python sample), with the name in ``file_name`` or ``fileName``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from .._services.gpugeek import CANCEL_PATH, COMMIT_PATH, PRESIGN_PATH, SUBMIT_PATH, TASK_PATH
from ._endpoints import Endpoints, build_api_app
from ._gpugeek import GPUGeekService

#: The query parameters a presign may name the file in: the doc's table's, then its sample's.
FILE_NAME_PARAMS = ("file_name", "fileName")


class GPUGeekEndpoints(Endpoints[GPUGeekService]):
    """GPUGeek's request handlers, bound to one service."""

    async def submit(self, request: Request) -> Response:
        return await self.serve_json(request, "submit", self.service.submit)

    async def task(self, request: Request) -> Response:
        return await self.serve(request, "task", lambda req: self.service.task(req.path_params["prompt_id"]))

    async def cancel(self, request: Request) -> Response:
        return await self.serve_json(request, "cancel", self.service.cancel)

    async def presign(self, request: Request) -> Response:
        return await self.serve(request, "presign", lambda req: self.service.presign(_file_name(req)))

    async def commit(self, request: Request) -> Response:
        return await self.serve_json(request, "commit", self.service.commit)


def _file_name(request: Request) -> str | None:
    for param in FILE_NAME_PARAMS:
        value = request.query_params.get(param)
        if value:
            return value
    return None


def build_gpugeek_app(service: GPUGeekService) -> Starlette:
    """The Starlette app of GPUGeek's API origin."""
    api = GPUGeekEndpoints(service)
    return build_api_app(
        service,
        [
            (SUBMIT_PATH, api.submit, ["POST"]),
            (CANCEL_PATH, api.cancel, ["POST"]),  # before the task route, whose {prompt_id} would also match
            (TASK_PATH, api.task, ["GET"]),
            (PRESIGN_PATH, api.presign, ["GET", "POST"]),
            (COMMIT_PATH, api.commit, ["POST"]),
        ],
    )
