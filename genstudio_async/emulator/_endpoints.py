"""Request handling both services' API origins share: the bearer key, injected faults, JSON bodies, envelopes.

Every API call needs ``Authorization: Bearer <api_key>`` (else HTTP 401 with the service's envelope). A body
that is not JSON gets HTTP 400; a request the service refuses gets its ``BusinessError``'s status (HTTP 200
with ``code != 0`` unless it says otherwise). HTTP faults (delay, 429, 5xx, an nginx HTML page) are applied
after authentication, before the request is served. ``build_api_app`` adds the admin routes (``_admin``) and
the error handlers every origin has; a service layer gives its own routes.

A client that goes away in the middle of its request (its body never finishes) is let go quietly: one DEBUG
line, no traceback, no answer (there is nobody to read it). Under thousands of clients that give up, uvicorn
would otherwise log a traceback for each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route

from ._admin import AdminEndpoints
from ._auth import MALFORMED, TOO_LARGE, bearer_matches, json_body
from ._core import BusinessError, EmulatorCore
from ._defaults import EMULATOR_ADMIN_PATH_PREFIX
from ._faults import HttpFault
from ._wire import CODE_BAD_REQUEST, CODE_PAYLOAD_TOO_LARGE, CODE_RATE_LIMITED, CODE_UNAUTHORIZED, html_error_page

log = logging.getLogger("genstudio_async")

Handler = Callable[[Request], Awaitable[Response]]
#: A route: its path, its handler and the methods it answers.
RouteSpec = tuple[str, Handler, list[str]]


async def draw_fault(service: EmulatorCore, endpoint: str, workflow_key: str | None = None) -> HttpFault | None:
    """Decide one request's injected fault, wait its delay, and count it; the fault to answer with, or ``None``
    to serve the request."""
    fault = service.faults.draw_http_fault(endpoint, workflow_key)
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.status == 429:
        service.stats.rate_limited += 1
    elif fault.status is not None:
        service.stats.http_errors_injected += 1
    return fault if fault.status is not None else None


def retry_after(fault: HttpFault) -> dict[str, str] | None:
    """The ``Retry-After`` header of a rate-limited answer."""
    return {"Retry-After": str(fault.retry_after or 1)} if fault.status == 429 else None


Service = TypeVar("Service", bound=EmulatorCore)


class Endpoints(Generic[Service]):
    """The pieces of an API origin's request handlers, bound to one service."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def refuse_key(self, request: Request) -> Response | None:
        """HTTP 401 unless the request carries the emulator's bearer key."""
        if bearer_matches(request.headers.get("authorization"), self.service.settings.api_key):
            return None
        self.service.stats.unauthorized += 1
        return self.service.envelope.error(
            CODE_UNAUTHORIZED, "invalid or missing API key (Authorization: Bearer <key>)", status_code=401
        )

    async def injected_fault(self, endpoint: str, workflow_key: str | None = None) -> Response | None:
        """The answer an injected fault gives instead of serving the request, if one is drawn."""
        fault = await draw_fault(self.service, endpoint, workflow_key)
        if fault is None or fault.status is None:
            return None
        envelope = self.service.envelope
        if fault.status == 429:
            return envelope.error(
                CODE_RATE_LIMITED,
                "too many requests, slow down (rate limit injected by the emulator)",
                status_code=429,
                headers=retry_after(fault),
            )
        if fault.html:
            return html_error_page(fault.status)
        message = "internal server error (injected by the emulator)"
        return envelope.error(fault.status, message, status_code=fault.status)

    def answer(self, handler: Callable[[Any], Any], argument: Any) -> Response:
        """``handler(argument)`` in a success envelope, or the envelope of the ``BusinessError`` it raised."""
        try:
            return self.service.envelope.ok(handler(argument))
        except BusinessError as exc:
            return self.service.envelope.error(exc.code, exc.msg, data=exc.data, status_code=exc.status_code)

    async def serve_json(self, request: Request, endpoint: str, handler: Callable[[object], Any]) -> Response:
        """Count, check the key, read the JSON body, apply the faults (scoped by its ``workflow_id``), serve."""
        self.service.stats.requests[endpoint] += 1
        refused = self.refuse_key(request)
        if refused is not None:
            return refused
        body = await json_body(request)
        envelope = self.service.envelope
        if body is TOO_LARGE:
            return envelope.error(CODE_PAYLOAD_TOO_LARGE, "the request body is too large", status_code=413)
        if body is MALFORMED:
            return envelope.error(CODE_BAD_REQUEST, "the request body is not valid JSON", status_code=400)
        workflow_key = self.service.workflow_key(body.get("workflow_id")) if isinstance(body, Mapping) else None
        injected = await self.injected_fault(endpoint, workflow_key)
        if injected is not None:
            return injected
        return self.answer(handler, body)

    async def serve(self, request: Request, endpoint: str, handler: Callable[[Request], Any]) -> Response:
        """Count, check the key, apply the faults, and serve a request whose handler reads the request itself
        (its path or query) rather than a JSON body."""
        self.service.stats.requests[endpoint] += 1
        refused = self.refuse_key(request)
        if refused is not None:
            return refused
        injected = await self.injected_fault(endpoint)
        if injected is not None:
            return injected
        return self.answer(handler, request)


async def client_disconnected(connection: HTTPConnection, exc: Exception) -> None:
    """A client that left before its request was read: nothing to answer, nothing to report but a DEBUG line."""
    log.debug("emulator: %s %s: the client went away mid-request", connection.scope.get("method"), connection.url.path)


def error_handlers(service: EmulatorCore) -> dict[Any, Any]:
    """The error handlers of an API origin: a client gone mid-request, Starlette's refusals and the emulator's
    own bugs, each answered with the service's envelope (uvicorn still logs a bug's traceback)."""
    envelope = service.envelope

    async def http_exception(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal server error"
        service.stats.requests["other"] += 1
        return envelope.error(status, f"{request.method} {request.url.path}: {detail}", status_code=status)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        return envelope.error(500, f"internal emulator error: {type(exc).__name__}", status_code=500)

    return {ClientDisconnect: client_disconnected, HTTPException: http_exception, Exception: unexpected_error}


def build_api_app(service: EmulatorCore, routes: Iterable[RouteSpec]) -> Starlette:
    """The Starlette app of an API origin: the service's ``routes`` plus the admin routes."""
    admin = AdminEndpoints(service)
    prefix = EMULATOR_ADMIN_PATH_PREFIX
    every_route: list[RouteSpec] = [
        *routes,
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
        routes=[Route(path, endpoint, methods=methods) for path, endpoint, methods in every_route],
        exception_handlers=error_handlers(service),
    )
    app.router.redirect_slashes = False  # the services have no "/prompt/" to redirect from: 404, not 307
    return app
