"""GenStudio's progress WebSocket: ``PROGRESS_WS_PATH?authorization=<prompt_token>``, on the API's own port.

On connect the handler checks the token (a forged, malformed or expired one, or one for an unknown task, is
refused with an HTTP 401 answer to the handshake, through ASGI's ``websocket.http.response`` extension),
pushes the task's full snapshot ``{"comfy_task_info": {...}}`` at once, then a new one on every change, and
after a terminal status pushes it and closes with 1000. Frames come from ``EmulatorService.frame``, serialised once
per change whatever the number of sockets; a socket that falls behind skips to the latest snapshot.

The WebSocket faults of ``Faults`` (refuse, drop, silent, early close, junk) are applied here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._services.genstudio import PROGRESS_WS_TOKEN_PARAM
from ._abort import abort_connection
from ._faults import Faults
from ._jwt import TokenError
from ._service import EmulatorService
from ._state import Task, Watcher
from ._wire import dumps, error_envelope, json_response

#: What ``ws_junk`` sends, in turn, before each snapshot: text that is not JSON, and JSON without the key.
JUNK_FRAMES = ("emulator junk frame: this is not JSON", dumps({"type": "heartbeat", "emulator": "junk"}))


class ProgressSocket:
    """The ASGI handler of the progress WebSocket."""

    def __init__(self, service: EmulatorService, connections: Callable[[], Iterable[Any]]) -> None:
        self._service = service
        self._connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self._service
        service.stats.requests["progress_ws"] += 1
        websocket = WebSocket(scope, receive, send)
        token = websocket.query_params.get(PROGRESS_WS_TOKEN_PARAM)
        if not token:
            await self._deny(websocket, 401, f"the {PROGRESS_WS_TOKEN_PARAM} query parameter is required")
            return
        try:
            task = service.task_for_token(token)
        except TokenError as exc:
            await self._deny(websocket, 401, f"invalid prompt token: {exc}")
            return
        faults = service.faults.for_workflow(task.workflow_id)
        if faults.ws_refuse_status is not None:
            await self._deny(websocket, faults.ws_refuse_status, "progress socket refused (fault injected)")
            return
        await websocket.accept()
        service.stats.ws_connections_opened += 1
        service.stats.ws_connections_open += 1
        service.stats.ws_connections_peak = max(service.stats.ws_connections_peak, service.stats.ws_connections_open)
        try:
            await self._stream(websocket, task, faults, scope, send)
        except WebSocketDisconnect:
            pass
        finally:
            service.stats.ws_connections_open -= 1

    async def _deny(self, websocket: WebSocket, status_code: int, message: str) -> None:
        self._service.stats.ws_handshakes_refused += 1
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            response = json_response(error_envelope(status_code, message), status_code=status_code)
            await websocket.send_denial_response(response)
        else:  # a server without the denial extension can only say 403
            await websocket.close()

    async def _stream(self, websocket: WebSocket, task: Task, faults: Faults, scope: Scope, send: Send) -> None:
        service = self._service
        stats = service.stats
        with service.tasks.watch(task) as watcher:
            disconnected = asyncio.Event()
            receiver = asyncio.create_task(_drain(websocket, watcher, disconnected))
            try:
                if faults.ws_silent:
                    await disconnected.wait()
                    return
                if faults.ws_drop_after == 0:
                    self._drop(scope, send)
                    return
                if faults.ws_close_after == 0 and not task.is_terminal:
                    await websocket.close(1000)
                    return
                snapshots_sent = 0
                junk_sent = 0
                last_frame: str | None = service.frame(task) if faults.ws_skip_initial else None
                while not disconnected.is_set():
                    watcher.changed.clear()
                    frame = service.frame(task)
                    terminal = task.is_terminal
                    if frame != last_frame:
                        if faults.ws_junk:
                            await websocket.send_text(JUNK_FRAMES[junk_sent % len(JUNK_FRAMES)])
                            junk_sent += 1
                            stats.ws_frames_sent += 1
                        await websocket.send_text(frame)
                        last_frame = frame
                        snapshots_sent += 1
                        stats.ws_frames_sent += 1
                        if faults.ws_drop_after is not None and snapshots_sent >= faults.ws_drop_after:
                            self._drop(scope, send)
                            return
                        close_early = faults.ws_close_after is not None and snapshots_sent >= faults.ws_close_after
                        if close_early and not terminal:
                            await websocket.close(1000)
                            return
                    if terminal and faults.ws_linger:
                        await disconnected.wait()
                        return
                    if terminal:
                        await websocket.close(1000)
                        return
                    await watcher.changed.wait()
            finally:
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver

    def _drop(self, scope: Scope, send: Send) -> None:
        if abort_connection(send, scope, self._connections()):
            self._service.stats.ws_connections_dropped += 1
        else:  # pragma: no cover - every uvicorn protocol exposes its transport
            raise RuntimeError("cannot reach the connection's transport to drop it")


async def _drain(websocket: WebSocket, watcher: Watcher, disconnected: asyncio.Event) -> None:
    """Read (and ignore) what the client sends until it goes away, then wake the sender."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
    finally:
        disconnected.set()
        watcher.changed.set()
