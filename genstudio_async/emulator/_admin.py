"""Admin routes of the API origin, for tests and for other processes that drive an emulator.

Admin routes, under ``EMULATOR_ADMIN_PATH_PREFIX`` (``/_emulator``) and bearer-authenticated like the rest,
let another process drive the emulator, whichever service it plays (answers use that service's envelope):

=======  =========================  ==========================================================================
method   path                       does
=======  =========================  ==========================================================================
GET      /_emulator/stats           the counters
POST     /_emulator/stats/reset     zero the counters
GET      /_emulator/faults          ``{"faults": {...}, "workflows": {id: {...}}}``
POST     /_emulator/faults          body ``{"faults": {NAME: VALUE}, "workflow_id"?: id}`` replaces that scope's
                                    faults (``"faults": null`` with a workflow id removes its own faults)
DELETE   /_emulator/faults          every fault off
POST     /_emulator/pause|resume    stop or restart the workers
GET      /_emulator/workflows       the registered workflow ids
POST     /_emulator/workflows       body ``{"workflow_id", "spec"}`` registers a workflow (GenStudio: a string
                                    id and a parameter spec; GPUGeek: an integer id and, under ``"workflow"``,
                                    an API-format workflow)
POST     /_emulator/clock           body ``{"advance": seconds}`` moves the emulator clock forward
POST     /_emulator/timing          body ``{"steps"?, "step_seconds"?, "queue_notify_interval"?}`` changes how
                                    tasks advance, and how often queue changes are pushed (the answer names
                                    ``queue_notify_interval`` when the body did)
=======  =========================  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._exceptions import InvalidInputError
from ._auth import MALFORMED, TOO_LARGE, bearer_matches, json_body
from ._core import EmulatorCore
from ._faults import FaultError, Faults
from ._wire import CODE_BAD_REQUEST, CODE_INVALID_PARAMETER, CODE_UNAUTHORIZED


class AdminEndpoints:
    """Routes that let tests and other processes drive the emulator (see the module docstring)."""

    def __init__(self, service: EmulatorCore) -> None:
        self._service = service
        self._ok = service.envelope.ok
        self._error = service.envelope.error

    async def _guard(self, request: Request) -> Response | object:
        self._service.stats.requests["admin"] += 1
        if not bearer_matches(request.headers.get("authorization"), self._service.settings.api_key):
            self._service.stats.unauthorized += 1
            return self._error(CODE_UNAUTHORIZED, "invalid or missing API key", status_code=401)
        if request.method in ("GET", "DELETE") or not await request.body():
            return {}
        body = await json_body(request)
        if body is MALFORMED or body is TOO_LARGE or not isinstance(body, Mapping):
            return self._error(CODE_BAD_REQUEST, "the request body must be a JSON object", status_code=400)
        return body

    def _faults_view(self) -> dict[str, Any]:
        controller = self._service.faults
        return {
            "faults": controller.faults.as_dict(),
            "workflows": {wf: faults.as_dict() for wf, faults in controller.workflow_faults().items()},
        }

    async def stats(self, request: Request) -> Response:
        body = await self._guard(request)
        if isinstance(body, Response):
            return body
        return self._ok(self._service.stats.snapshot())

    async def reset_stats(self, request: Request) -> Response:
        body = await self._guard(request)
        if isinstance(body, Response):
            return body
        self._service.stats.reset()
        return self._ok(self._service.stats.snapshot())

    async def faults(self, request: Request) -> Response:
        body = await self._guard(request)
        if isinstance(body, Response):
            return body
        controller = self._service.faults
        if request.method == "DELETE":
            controller.clear()
        elif request.method == "POST":
            assert isinstance(body, Mapping)
            workflow_id = body.get("workflow_id")
            values = body.get("faults", {})
            key = self._service.workflow_key(workflow_id)
            if workflow_id is not None and key is None:
                return self._error(CODE_INVALID_PARAMETER, f"workflow_id {workflow_id!r} is not a workflow id")
            try:
                if values is not None and not isinstance(values, Mapping):
                    raise FaultError("faults must be an object of NAME: VALUE")
                faults = Faults.from_mapping(values) if values is not None else None
                if key is not None:
                    controller.set_for_workflow(key, faults)
                else:
                    controller.set(faults or Faults())
            except FaultError as exc:
                return self._error(CODE_INVALID_PARAMETER, str(exc))
        return self._ok(self._faults_view())

    async def pause(self, request: Request) -> Response:
        body = await self._guard(request)
        if isinstance(body, Response):
            return body
        self._service.tasks.pause()
        return self._ok({"paused": True})

    async def resume(self, request: Request) -> Response:
        body = await self._guard(request)
        if isinstance(body, Response):
            return body
        self._service.tasks.resume()
        return self._ok({"paused": False})

    async def workflows(self, request: Request) -> Response:
        body = await self._guard(request)
        if isinstance(body, Response):
            return body
        if request.method == "POST":
            assert isinstance(body, Mapping)
            field = self._service.workflow_field
            workflow_id, source = body.get("workflow_id"), body.get(field)
            if self._service.workflow_key(workflow_id) is None:
                return self._error(CODE_INVALID_PARAMETER, "workflow_id is required and must be a workflow id")
            if not isinstance(source, Mapping):
                return self._error(CODE_INVALID_PARAMETER, f"{field} must be a workflow object")
            try:
                self._service.register_workflow(workflow_id, source)
            except (InvalidInputError, ValueError) as exc:
                return self._error(CODE_INVALID_PARAMETER, f"{field}: {exc}")
        return self._ok({"workflows": self._service.workflow_ids()})

    async def clock(self, request: Request) -> Response:
        body = await self._guard(request)
        if isinstance(body, Response):
            return body
        assert isinstance(body, Mapping)
        seconds = body.get("advance", 0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return self._error(CODE_INVALID_PARAMETER, "advance must be a number of seconds, 0 or more")
        self._service.clock.advance(float(seconds))
        return self._ok({"offset": self._service.clock.offset, "now": self._service.clock.now()})

    async def timing(self, request: Request) -> Response:
        body = await self._guard(request)
        if isinstance(body, Response):
            return body
        assert isinstance(body, Mapping)
        steps, step_seconds = body.get("steps"), body.get("step_seconds")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
            return self._error(CODE_INVALID_PARAMETER, "steps must be an integer, 0 or more")
        if step_seconds is not None and (
            isinstance(step_seconds, bool) or not isinstance(step_seconds, int | float) or step_seconds < 0
        ):
            return self._error(CODE_INVALID_PARAMETER, "step_seconds must be a number, 0 or more")
        interval = body.get("queue_notify_interval")
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval < math.inf
        ):
            return self._error(CODE_INVALID_PARAMETER, "queue_notify_interval must be a number of seconds, above 0")
        self._service.tasks.set_timing(steps=steps, step_seconds=step_seconds, queue_notify_interval=interval)
        tasks = self._service.tasks
        answer: dict[str, float] = {"steps": tasks.steps, "step_seconds": tasks.step_seconds}
        if interval is not None:
            answer["queue_notify_interval"] = tasks.queue_notify_interval
        return self._ok(answer)
