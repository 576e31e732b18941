"""``Emulator``: a running local GenStudio or GPUGeek, as an async context manager.

It listens on two loopback ports: the API origin (HTTP endpoints, and GenStudio's progress WebSocket on the
same port as the real service) and the storage origin (signed result URLs; GPUGeek's pre-signed uploads), so a
client that would send its API key to the storage host, or assume results live on the API host, is caught::

    async with Emulator(api_key="sk-emulator", workers=2) as emu:
        emu.base_url     # "http://127.0.0.1:PORT"
        emu.ws_url       # "ws://127.0.0.1:PORT"
        emu.storage_url  # "http://127.0.0.1:OTHER_PORT"

    async with Emulator(service="gpugeek") as emu:  # GPUGeek's API on the same core: no WebSocket
        ...

Both services share the core (queue, workers, clock, faults, counters, object store, signer); what differs is
the service layer (``_service`` for GenStudio, ``_gpugeek`` for GPUGeek): routes, bodies, envelopes, status
numbers, snapshots and workflow registry.

Both servers are uvicorn servers run in-process on the current event loop (see ``_uvicorn``); uvicorn is
kept away from the process's signal handlers and logging configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, cast, overload

from typing_extensions import TypeVar

from .._services.genstudio import PROGRESS_WS_PATH, PROGRESS_WS_TOKEN_PARAM
from ..workflow import ApiWorkflow, SpecSource, WorkflowSpec
from ._core import EmulatorCore, ServiceSettings
from ._defaults import (
    DEFAULT_SERVICE,
    EMULATOR_DEFAULT_API_KEY,
    EMULATOR_DEFAULT_HOST,
    EMULATOR_DEFAULT_STEP_SECONDS,
    EMULATOR_DEFAULT_STEPS,
    EMULATOR_DEFAULT_WORKERS,
    EMULATOR_MAX_UPLOAD_BYTES,
    EMULATOR_QUEUE_NOTIFY_INTERVAL,
    EMULATOR_SHUTDOWN_TIMEOUT,
    EMULATOR_TOKEN_TTL_SECONDS,
    EMULATOR_WAIT_STATUS_TIMEOUT,
    RESULT_RETENTION_SECONDS,
    SERVICE_GENSTUDIO,
    SERVICE_GPUGEEK,
)
from ._faults import Faults
from ._gpugeek import GPUGeekService
from ._service import EmulatorService
from ._state import EmulatorError
from ._stats import EmulatorStats
from ._storage import build_storage_app
from ._uvicorn import EmbeddedServer, bind_socket, make_server

if TYPE_CHECKING:
    from .._client import AsyncGenStudio, AsyncGPUGeek

#: The services an emulator can play, by the name ``Emulator(service=...)`` takes.
SERVICES: Mapping[str, type[EmulatorCore]] = {SERVICE_GENSTUDIO: EmulatorService, SERVICE_GPUGEEK: GPUGeekService}

#: The service layer behind an ``Emulator`` (what ``emu.service`` is): GenStudio's unless annotated otherwise,
#: ``emu: Emulator[GPUGeekService] = Emulator(service="gpugeek")``.
ServiceT = TypeVar("ServiceT", bound=EmulatorCore, default=EmulatorService)


def _origin(scheme: str, host: str, port: int) -> str:
    """``scheme://host:port``, with an IPv6 host in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class Emulator(Generic[ServiceT]):
    """A local GenStudio (or GPUGeek) service: real HTTP, WebSocket and signed-URL storage on loopback, with faults.

    Parameters (every default lives in ``genstudio_async._constants`` or ``genstudio_async.emulator._defaults``):

    - ``api_key``: the bearer key every HTTP call must carry.
    - ``service``: ``"genstudio"`` (the default) or ``"gpugeek"``.
    - ``host``/``port``: the API origin; the default port 0 picks a free one (read it back from ``base_url``).
    - ``storage_host``/``storage_port``: the storage origin (defaults: the same host, another free port).
    - ``workers``: how many tasks run at once; ``steps`` and ``step_seconds``: how a task advances.
    - ``token_ttl``: prompt-token lifetime in seconds; ``retention``: how long result files live.
    - ``stamp_snapshots``: add ``"_emulator_changed_ns"`` (``time.monotonic_ns()`` of the task's last change) to
      every snapshot, HTTP and WebSocket, and ``"_emulator_serialised_ns"`` to WebSocket frames; off by default
      so the wire stays the service's (for benchmarks).
    - ``faults``: emulator-wide ``Faults`` (a fault the service cannot apply is refused with ``FaultError``);
      ``workflows``: extra workflows, GenStudio's ``{"wf-…": spec}`` or GPUGeek's ``{integer id: API-format
      workflow}``; ``builtin_workflows``: whether to register the docs' example workflows.
    """

    def __init__(
        self,
        api_key: str = EMULATOR_DEFAULT_API_KEY,
        *,
        service: str = DEFAULT_SERVICE,
        host: str = EMULATOR_DEFAULT_HOST,
        port: int = 0,
        storage_host: str | None = None,
        storage_port: int = 0,
        workers: int = EMULATOR_DEFAULT_WORKERS,
        steps: int = EMULATOR_DEFAULT_STEPS,
        step_seconds: float = EMULATOR_DEFAULT_STEP_SECONDS,
        token_ttl: float = EMULATOR_TOKEN_TTL_SECONDS,
        retention: float = RESULT_RETENTION_SECONDS,
        faults: Faults | None = None,
        workflows: Mapping[str, WorkflowSpec | SpecSource] | Mapping[int, ApiWorkflow | SpecSource] | None = None,
        builtin_workflows: bool = True,
        queue_notify_interval: float = EMULATOR_QUEUE_NOTIFY_INTERVAL,
        max_upload_bytes: int = EMULATOR_MAX_UPLOAD_BYTES,
        shutdown_timeout: float = EMULATOR_SHUTDOWN_TIMEOUT,
        stamp_snapshots: bool = False,
    ) -> None:
        if not api_key:
            raise ValueError("the emulator needs a non-empty api_key")
        layer = SERVICES.get(service)
        if layer is None:
            raise ValueError(f"unknown service {service!r}; the emulator plays {', '.join(SERVICES)}")
        self._host = host
        self._port = port
        self._storage_host = storage_host or host
        self._storage_port = storage_port
        self._shutdown_timeout = shutdown_timeout
        self._service: ServiceT = cast("type[ServiceT]", layer)(
            ServiceSettings(
                api_key=api_key,
                workers=workers,
                steps=steps,
                step_seconds=step_seconds,
                token_ttl=token_ttl,
                retention=retention,
                queue_notify_interval=queue_notify_interval,
                max_upload_bytes=max_upload_bytes,
                stamp_snapshots=stamp_snapshots,
            ),
            faults=faults,
        )
        if builtin_workflows:
            self._service.register_builtin_workflows()
        for workflow_id, source in (workflows or {}).items():
            self._service.register_workflow(workflow_id, source)
        self._servers: list[EmbeddedServer] = []
        self._serve_tasks: list[asyncio.Task[None]] = []
        self._base_url: str | None = None
        self._storage_url: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def __aenter__(self) -> Emulator[ServiceT]:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind both ports, start the workers and both servers; return once they accept connections."""
        if self._servers:
            raise EmulatorError("this emulator is already running")
        api_socket = bind_socket(self._host, self._port)
        try:
            storage_socket = bind_socket(self._storage_host, self._storage_port)
        except OSError:
            api_socket.close()
            raise
        self._base_url = _origin("http", self._host, api_socket.getsockname()[1])
        self._storage_url = _origin("http", self._storage_host, storage_socket.getsockname()[1])
        self._service.set_storage_origin(self._storage_url)
        self._service.tasks.start()
        secrets = (self.api_key,)
        api_server = make_server(
            self._service.build_api_app(self._api_connections),
            shutdown_timeout=self._shutdown_timeout,
            secrets=secrets,
        )
        storage_server = make_server(
            build_storage_app(self._service), shutdown_timeout=self._shutdown_timeout, secrets=secrets
        )
        self._servers = [api_server, storage_server]
        self._serve_tasks = [
            asyncio.create_task(api_server.serve(sockets=[api_socket]), name="genstudio-emulator-api"),
            asyncio.create_task(storage_server.serve(sockets=[storage_socket]), name="genstudio-emulator-storage"),
        ]
        try:
            while not all(server.started for server in self._servers):
                for task in self._serve_tasks:
                    if task.done():
                        await task  # re-raises what stopped it
                        raise EmulatorError("the emulator's server stopped while starting")
                await asyncio.sleep(0.005)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close both servers (open sockets get close code 1012), then stop the workers."""
        for server in self._servers:
            server.request_exit()
        serve_tasks, self._serve_tasks = self._serve_tasks, []
        try:
            if serve_tasks:
                await asyncio.gather(*serve_tasks)
        finally:
            self._servers = []
            await self._service.tasks.stop()

    def _api_connections(self) -> Collection[Any]:
        return self._servers[0].server_state.connections if self._servers else ()

    # --- what and where it is -----------------------------------------------------------------------------------
    @property
    def service_name(self) -> str:
        """The service it plays, as the service calls itself: ``"GenStudio"`` or ``"GPUGeek"``."""
        return self._service.name

    @property
    def api_key(self) -> str:
        """The key every HTTP call must carry as ``Authorization: Bearer <api_key>``."""
        return self._service.settings.api_key

    @property
    def base_url(self) -> str:
        """The API origin, e.g. ``http://127.0.0.1:8188`` (pass it as the client's ``base_url``)."""
        if self._base_url is None:
            raise EmulatorError("the emulator is not started")
        return self._base_url

    @property
    def ws_url(self) -> str:
        """The WebSocket origin of the API, e.g. ``ws://127.0.0.1:8188`` (same port as ``base_url``); GenStudio's
        only (``EmulatorError`` on GPUGeek, which has no WebSocket)."""
        if not self._service.push_stream:
            raise EmulatorError(f"the {self._service.name} emulator has no WebSocket: progress is polled")
        return "ws" + self.base_url.removeprefix("http")

    @property
    def storage_url(self) -> str:
        """The storage origin that serves result files (another port than the API)."""
        if self._storage_url is None:
            raise EmulatorError("the emulator is not started")
        return self._storage_url

    def progress_url(self, prompt_token: str) -> str:
        """The full progress WebSocket URL for a task's ``prompt_token``."""
        return f"{self.ws_url}{PROGRESS_WS_PATH}?{PROGRESS_WS_TOKEN_PARAM}={prompt_token}"

    # --- state for tests ---------------------------------------------------------------------------------------
    @property
    def stats(self) -> EmulatorStats:
        """Live counters of what was served (see ``EmulatorStats``)."""
        return self._service.stats

    @property
    def service(self) -> ServiceT:
        """The state behind the servers, for tests that need to look deeper: the core's ``tasks``, ``objects``,
        ``clock``, ``signer`` and the service layer's own parts (GenStudio's ``EmulatorService`` with its
        ``tokens``, or ``GPUGeekService``)."""
        return self._service

    def task_info(self, task_id: str | int) -> dict[str, Any] | None:
        """A task's snapshot as the service's status request would give it, or ``None`` if unknown."""
        task = self._service.tasks.get(str(task_id))
        return self._service.snapshot(task) if task is not None else None

    def task_ids(self) -> list[str]:
        """Every task id submitted so far, oldest first."""
        return [task.task_id for task in self._service.tasks]

    async def wait_status(
        self,
        task_id: str | int,
        status: int | Collection[int],
        *,
        timeout: float = EMULATOR_WAIT_STATUS_TIMEOUT,
    ) -> dict[str, Any]:
        """Wait until a task has ``status`` (or one of several), in the service's numbering; return its snapshot.

        Raises ``EmulatorError`` if the task is unknown or ends with another status, ``TimeoutError`` if
        ``timeout`` seconds pass first.
        """
        statuses = [status] if isinstance(status, int) else list(status)
        return await self._service.wait_status(str(task_id), statuses, timeout=timeout)

    # --- control -----------------------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._service.tasks.paused

    def pause(self) -> None:
        """Stop the workers from taking or advancing tasks, so queued states can be looked at calmly."""
        self._service.tasks.pause()

    def resume(self) -> None:
        """Let the workers go on."""
        self._service.tasks.resume()

    def set_timing(
        self, *, steps: int | None = None, step_seconds: float | None = None,
        queue_notify_interval: float | None = None,
    ) -> None:
        """Change how tasks advance (for tasks that start from now on), and how often queue changes are pushed."""
        self._service.tasks.set_timing(
            steps=steps, step_seconds=step_seconds, queue_notify_interval=queue_notify_interval
        )

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator clock forward: URL and token expiry and file retention see the future."""
        self._service.clock.advance(seconds)

    @property
    def faults(self) -> Faults:
        """The emulator-wide faults in force."""
        return self._service.faults.faults

    def set_faults(self, faults: Faults | None = None, /, **changes: Any) -> Faults:
        """Replace the emulator-wide faults: ``faults`` (default: none) with ``changes`` applied.

        ``emu.set_faults(ws_drop_after=2)`` turns every other fault off; ``emu.set_faults()`` turns all off.
        """
        new = dataclasses.replace(faults or Faults(), **changes)
        self._service.faults.set(new)
        return new

    def set_workflow_faults(
        self, workflow_id: str | int, faults: Faults | None = None, /, **changes: Any
    ) -> Faults | None:
        """Give one workflow its own faults (they replace the emulator-wide ones for it).

        With neither ``faults`` nor ``changes`` the workflow goes back to the emulator-wide faults.
        """
        key = self._service.workflow_key(workflow_id)
        if key is None:
            raise ValueError(f"{workflow_id!r} is not a {self._service.name} workflow id")
        if faults is None and not changes:
            self._service.faults.set_for_workflow(key, None)
            return None
        new = dataclasses.replace(faults or Faults(), **changes)
        self._service.faults.set_for_workflow(key, new)
        return new

    def clear_faults(self) -> None:
        """Turn every fault off, emulator-wide and per workflow."""
        self._service.faults.clear()

    # --- workflows -------------------------------------------------------------------------------------------
    @overload
    def register_workflow(
        self, workflow_id: str, spec: WorkflowSpec | SpecSource, *, output_nodes: Collection[str] | None = None
    ) -> WorkflowSpec: ...
    @overload
    def register_workflow(self, workflow_id: int, spec: ApiWorkflow | SpecSource) -> ApiWorkflow: ...
    def register_workflow(
        self,
        workflow_id: str | int,
        spec: WorkflowSpec | ApiWorkflow | SpecSource,
        *,
        output_nodes: Collection[str] | None = None,
    ) -> WorkflowSpec | ApiWorkflow:
        """Add (or replace) a workflow.

        GenStudio: a string id and a spec, a dict, a JSON text or a file path; ``output_nodes``: the ids of its
        output nodes, as ``files`` keys them (default: its SaveImage nodes, else ``"9"``). GPUGeek: an integer
        id and an API-format workflow (an ``ApiWorkflow``, a dict, a JSON text or a file path); its outputs are
        the SaveImage/PreviewImage nodes of each workflow submitted.
        """
        nodes = tuple(output_nodes) if output_nodes is not None else None
        registered: WorkflowSpec | ApiWorkflow = self._service.register_workflow(workflow_id, spec, output_nodes=nodes)
        return registered

    @overload
    def workflow(self, workflow_id: str) -> WorkflowSpec: ...
    @overload
    def workflow(self, workflow_id: int) -> ApiWorkflow: ...
    def workflow(self, workflow_id: str | int) -> WorkflowSpec | ApiWorkflow:
        """A registered workflow: GenStudio's spec by its string id, GPUGeek's ``ApiWorkflow`` by its integer id."""
        registered: WorkflowSpec | ApiWorkflow = self._service.workflow(workflow_id)
        return registered

    @property
    def workflow_ids(self) -> list[str] | list[int]:
        """The registered workflows' ids (GenStudio's strings, GPUGeek's integers)."""
        ids: list[str] | list[int] = self._service.workflow_ids()
        return ids

    # --- clients ---------------------------------------------------------------------------------------------
    @overload
    def client(self: Emulator[GPUGeekService], **kwargs: Any) -> AsyncGPUGeek: ...
    @overload
    def client(self: Emulator[EmulatorService], **kwargs: Any) -> AsyncGenStudio: ...
    def client(self, **kwargs: Any) -> AsyncGenStudio | AsyncGPUGeek:
        """A client pointed at this emulator: ``AsyncGenStudio(api_key=…, base_url=…, **kwargs)``, or for GPUGeek
        ``AsyncGPUGeek(api_key=…, base_url=…, **kwargs)``."""
        from .._client import AsyncGenStudio, AsyncGPUGeek

        if isinstance(self._service, GPUGeekService):
            return AsyncGPUGeek(api_key=self.api_key, base_url=self.base_url, **kwargs)
        return AsyncGenStudio(api_key=self.api_key, base_url=self.base_url, **kwargs)

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"<Emulator {where} service={self._service.name} workers={self._service.settings.workers}>"
