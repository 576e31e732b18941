"""``AsyncGenStudio`` and ``AsyncGPUGeek``: the public methods, one service-neutral set for both services.

The methods wire the parts together; the parts live in their own modules, and each service's wire in its module
of ``_services``. A client class is the engine plus a service and that service's constructor arguments.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeAlias

import httpx

from . import _constants as C
from ._batch import Job, WorkflowId, run_many
from ._config import Settings, resolve
from ._exceptions import (
    APIError,
    APIStatusError,
    ConfigurationError,
    GenStudioError,
    InvalidInputError,
    NotFoundError,
    TaskCancelledError,
    TaskFailedError,
    TaskPermissionError,
    TaskTimeoutError,
)
from ._files import ImageUploader, UploadSource, download_result, read_upload
from ._http import HTTPCore, RetryPolicy, api_headers
from ._logs import configure_from_env, log
from ._poller import TaskPoller
from ._redact import Redactor, mask
from ._services import GenStudio, GPUGeek, Service, TaskQuery
from ._services.genstudio import progress_ws_url
from ._sockets import SocketPool
from ._stream import StreamSettings, TaskStream, resolve_ws_proxy
from ._transports import AioHttpClient, default_http_client
from .types import ImagePostProcess, JobOutcome, ProgressEvent, Submission, TaskInfo, TaskResult, TaskStatus
from .workflow import WorkflowSpec

if TYPE_CHECKING:
    from ._aiohttp_ws import AioHttpSockets

TaskRef: TypeAlias = Submission | str
"""A task, named by the ``Submission`` that ``submit`` returned or by its ``prompt_id``."""

ProgressCallback: TypeAlias = Callable[[ProgressEvent], Awaitable[None] | None]
"""``on_progress``: called with each event; may be a plain function or a coroutine function."""

JobProgressCallback: TypeAlias = Callable[[int, ProgressEvent], Awaitable[None] | None]
"""``run_many``'s ``on_progress``: called with the job's index and each of its events; sync or async."""


class _AsyncClient:
    """The public methods, the same for every service; a subclass names its service and its own arguments.

    It wires the parts (request loop, service wire, poller, stream, uploads, downloads, batches) and holds
    none of their logic. Use it as ``async with`` (or call ``aclose()``); an ``http_client`` passed in is used as
    it is and left open, one the client made itself is closed.
    """

    _service_type: ClassVar[type[Service]]

    def __init__(self, settings: Settings, http_client: httpx.AsyncClient | None) -> None:
        self._settings = settings
        self._api_key = settings.api_key
        self.base_url = settings.base_url
        self.poll_interval = settings.poll_interval
        self.max_retries = settings.max_retries
        self.max_download_bytes = settings.max_download_bytes
        self.download_timeout = settings.download_timeout
        self._timeout = settings.timeout
        self._owns_http_client = http_client is None
        try:
            # api_headers() as its defaults: then a request adds only the key (HTTPCore).
            self._http_client = http_client or default_http_client(self._timeout, api_headers())
        # httpx reads the proxy environment here: a SOCKS proxy without httpx[socks] (ImportError), a scheme it
        # cannot proxy through (ValueError), a value that is no URL (InvalidURL). Its messages mask a password.
        except (ImportError, ValueError, httpx.InvalidURL) as exc:
            raise ConfigurationError(f"cannot build the HTTP client: {exc}") from exc
        self._redact = Redactor([self._api_key])
        self._http = HTTPCore(
            api_key=self._api_key,
            base_url=self.base_url,
            http_client=self._http_client,
            timeout=self._timeout,
            retry_policy=RetryPolicy(max_retries=settings.max_retries),
            redactor=self._redact,
            max_response_bytes=settings.max_response_bytes,
            message_fields=self._service_type.message_fields,
            client_name=self._service_type.client_name,
            max_requests_per_second=settings.max_requests_per_second,
            client_has_default_headers=self._owns_http_client,
        )
        self._service = self._service_type(self._http, self._redact)
        # prompt_ids this client asked to cancel: a failure status for them is a cancellation (GenStudio's 4).
        self._cancelled: set[str] = set()
        batch = self._service_type.status_batch_size
        self._poller = TaskPoller(self._poll_tasks, interval=self.poll_interval, chunk_size=batch, spread=batch == 1)
        self._images = ImageUploader(self._upload_content)
        socket = self._service.progress_socket(settings.ws_url) if settings.use_websocket else None
        self._stream_settings = StreamSettings(
            socket=socket,
            idle_timeout=settings.stream_idle_timeout,
            poller=self._poller,
            sockets=SocketPool(settings.max_sockets),
            ws_proxy=resolve_ws_proxy(socket.ws_url) if socket is not None else None,
            aiohttp_sockets=_aiohttp_sockets(self._http_client) if socket is not None else None,
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={mask(self._api_key)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release what the client holds. Safe to call more than once."""
        if self._closed:
            return
        self._http.check_loop()  # what it closes belongs to the loop that used it
        self._closed = True
        try:
            await self._poller.aclose()
            await self._stream_settings.sockets.aclose()
        finally:
            if self._stream_settings.aiohttp_sockets is not None:
                await self._stream_settings.aiohttp_sockets.aclose()
            if self._owns_http_client:
                await self._http_client.aclose()

    # --- tasks -------------------------------------------------------------------------------------------

    async def submit(
        self,
        workflow_id: WorkflowId,
        prompt: Mapping[str, Any] | None = None,
        *,
        spec: WorkflowSpec | None = None,
    ) -> Submission:
        """Queue a task of ``workflow_id`` with ``prompt``; returns its ``Submission``.

        ``prompt`` is checked before anything is sent, once: its shape (GenStudio: the input overrides
        ``{node_id: {"inputs": {...}}}``; GPUGeek: the whole API-format workflow), and against ``spec`` (the
        workflow's "入参范围") when given, every problem listed in one ``PromptValidationError``. A
        ``pathlib.Path`` or ``LocalImage`` value (for a ``LoadImage`` input) is uploaded first and replaced by
        what the service calls it; the same bytes are uploaded once per client. A submit that may have reached
        the server is never sent twice.
        """
        wire_id = self._service.workflow_id(workflow_id)
        checked = self._service.check_prompt(prompt, spec)
        if checked is not None:
            checked = await self._images.substitute(checked)
        submission = await self._service.submit(wire_id, checked)
        log.debug("submitted %s as %s", wire_id, submission.prompt_id)
        return submission

    async def get_tasks(
        self,
        prompt_ids: Iterable[TaskRef] | TaskRef,
        *,
        url_expire_period: int | None = None,
        image_post_process: ImagePostProcess | Mapping[str, Any] | None = None,
    ) -> list[TaskInfo]:
        """The state of many tasks, in the order asked; ids the service does not know are left out.

        GenStudio answers them in one request; ``url_expire_period`` (seconds) sets how long the returned file
        URLs stay valid (service default 600), ``image_post_process`` asks OSS to convert the images. GPUGeek has
        neither, and answers one task per request (a few in flight at once).
        """
        ids = [self._service_type.task_id(prompt_id) for prompt_id in _task_ids(prompt_ids)]
        query = TaskQuery(url_expire_period=url_expire_period, image_post_process=image_post_process)
        return await self._service.get_tasks(ids, query)

    async def get_task(
        self,
        task: TaskRef,
        *,
        url_expire_period: int | None = None,
        image_post_process: ImagePostProcess | Mapping[str, Any] | None = None,
    ) -> TaskInfo:
        """The state of one task; raises ``NotFoundError`` when the service does not know it."""
        prompt_id = self._task_id(task)
        infos = await self.get_tasks(
            [prompt_id], url_expire_period=url_expire_period, image_post_process=image_post_process
        )
        if not infos:
            raise NotFoundError(f"the service does not know task {prompt_id!r}", status_code=404)
        return infos[0]

    async def cancel(self, task: TaskRef) -> None:
        """Ask the service to cancel ``task``; ``wait`` then raises ``TaskCancelledError``.

        (GenStudio's docs do not name the cancel body's field: see ``CANCEL_BODY_FIELD`` and the README.)
        """
        prompt_id = self._task_id(task)
        self._cancelled.add(prompt_id)
        try:
            await self._service.cancel(prompt_id)
        except (APIError, APIStatusError):
            # The service answered and refused (a business error or an HTTP error status): not cancelled by us.
            self._cancelled.discard(prompt_id)
            raise

    def _task_id(self, task: TaskRef) -> str:
        """The prompt_id of ``task``, checked to be one this service can have."""
        return self._service_type.task_id(task_id(task))

    def was_cancelled(self, task: TaskRef) -> bool:
        """True when this client asked to cancel ``task``."""
        return self._task_id(task) in self._cancelled

    # --- progress and results ----------------------------------------------------------------------------

    def stream(self, task: TaskRef) -> TaskStream:
        """Progress events of ``task`` until its terminal event, which comes last.

        On a service with a push stream (GenStudio), WebSocket first (it needs the ``Submission``'s token; a bare
        prompt_id is polled), reconnecting and reconciling gaps over HTTP, then the shared poller; elsewhere
        (GPUGeek) the shared poller. Use ``async for``; wrap in ``async with`` to close the socket the moment you
        leave early.
        """
        self._http.check_loop()  # a stream may open a socket before any request: checked here too
        prompt_id = self._task_id(task)
        token = task.prompt_token if isinstance(task, Submission) else None
        self._redact.add(token)  # a Submission rebuilt elsewhere (a journal, a queue): its token masked here too
        return TaskStream(self._stream_settings, prompt_id, token)

    async def wait(
        self,
        task: TaskRef,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel_on_timeout: bool = False,
    ) -> TaskResult:
        """Follow ``task`` to its end and return its ``TaskResult``.

        Raises ``TaskFailedError`` (with the server's error message), ``TaskCancelledError`` (cancelled: by
        anyone on GPUGeek; on GenStudio, which reports a cancel as a failure, by this client),
        ``TaskPermissionError`` (GenStudio's 5) or ``TaskTimeoutError`` when ``timeout`` seconds pass first. The
        task itself goes on, unless ``cancel_on_timeout``: then it is cancelled on the service before the error is
        raised (and the error says so: ``cancelled``), so nobody pays for a task nobody waits for.
        """
        if timeout is not None and timeout <= 0:
            raise InvalidInputError(f"timeout must be > 0 seconds, got {timeout}")
        events = self.stream(task)
        try:
            async with asyncio.timeout(timeout) as deadline, events:
                async for event in events:
                    if on_progress is not None:
                        outcome = on_progress(event)
                        if inspect.isawaitable(outcome):
                            await outcome
        except TimeoutError:
            if not deadline.expired():
                raise  # a TimeoutError of the caller's own on_progress, not ours
            message = f"task {events.prompt_id} did not finish within {timeout} s"
            cancelled = False
            if cancel_on_timeout:
                try:
                    await self.cancel(events.prompt_id)
                except GenStudioError as error:
                    message += f"; cancelling it failed, it may go on: {error}"
                else:
                    cancelled = True
                    message += "; it was cancelled on the service"
            raise TaskTimeoutError(
                message,
                prompt_id=events.prompt_id,
                timeout=timeout or 0.0,
                last_info=events.last_event,
                cancelled=cancelled,
            ) from None
        final = events.last_event
        assert final is not None and final.is_terminal
        return self._result_of(final)

    async def run(
        self,
        workflow_id: WorkflowId,
        prompt: Mapping[str, Any] | None = None,
        *,
        spec: WorkflowSpec | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel_on_timeout: bool = False,
    ) -> TaskResult:
        """``submit`` then ``wait``: one generation, start to finish."""
        submission = await self.submit(workflow_id, prompt, spec=spec)
        return await self.wait(
            submission, timeout=timeout, on_progress=on_progress, cancel_on_timeout=cancel_on_timeout
        )

    def run_many(
        self,
        jobs: Iterable[Job],
        *,
        concurrency: int = C.DEFAULT_RUN_MANY_CONCURRENCY,
        timeout: float | None = None,
        spec: WorkflowSpec | None = None,
        on_progress: JobProgressCallback | None = None,
        cancel_on_timeout: bool = False,
    ) -> AsyncGenerator[JobOutcome, None]:
        """Run ``(workflow_id, prompt)`` jobs, at most ``concurrency`` at once; yield each ``JobOutcome`` as it
        finishes. A failed job is an outcome with ``error`` set; it never stops the batch. Leaving the loop
        early cancels the jobs still running (on the service too). ``timeout`` bounds each job's wait (and with
        ``cancel_on_timeout`` a job that times out is cancelled on the service); ``spec`` validates every prompt
        (a bad one is that job's ``PromptValidationError``); ``on_progress`` gets ``(job_index, event)`` for
        every event of every job."""

        async def submit(workflow_id: WorkflowId, prompt: Mapping[str, Any] | None) -> Submission:
            return await self.submit(workflow_id, prompt, spec=spec)

        async def wait_for(index: int, submission: Submission) -> TaskResult:
            callback = None if on_progress is None else functools.partial(on_progress, index)
            return await self.wait(
                submission, timeout=timeout, on_progress=callback, cancel_on_timeout=cancel_on_timeout
            )

        return run_many(jobs, submit=submit, wait=wait_for, cancel=self.cancel, concurrency=concurrency)

    async def download(self, result: TaskResult | TaskInfo, directory: str | os.PathLike[str]) -> list[Path]:
        """Save every file of ``result`` as ``directory/<node_id>/<file name>`` and return the paths.

        Streamed through a temporary file and an atomic rename; transient errors retried; a signed URL that has
        expired is refreshed by asking for the task again. The storage host never receives the API key.
        """
        if isinstance(result, TaskInfo):
            result = TaskResult.from_info(result)
        return await download_result(
            result,
            directory,
            http=self._http,
            fetch_task=self.get_task,
            retry_policy=RetryPolicy(max_retries=self.max_retries),
            max_bytes=self.max_download_bytes,
            deadline=self.download_timeout,
        )

    def _result_of(self, info: TaskInfo) -> TaskResult:
        """The result of a terminal snapshot, or the ``TaskError`` it stands for."""
        if info.status is TaskStatus.SUCCEEDED:
            return TaskResult.from_info(info)
        if info.status is TaskStatus.PERMISSION_DENIED:
            raise TaskPermissionError(f"task {info.prompt_id}: permission denied", info)
        cancelled_by_us = self._service_type.failure_may_be_cancel and info.prompt_id in self._cancelled
        if info.status is TaskStatus.CANCELLED or cancelled_by_us:
            raise TaskCancelledError(f"task {info.prompt_id} was cancelled", info)
        reason = info.error_message or "no error message given"
        raise TaskFailedError(f"task {info.prompt_id} failed: {reason}", info)

    async def _poll_tasks(self, prompt_ids: Sequence[str]) -> list[TaskInfo]:
        return await self._service.get_tasks(list(prompt_ids), TaskQuery())

    # --- files -------------------------------------------------------------------------------------------

    async def upload_image(self, file: UploadSource, *, filename: str | None = None) -> str:
        """Upload an image (a path, ``bytes`` or a binary file object) and return the value to give a
        ``LoadImage`` / ``LoadImageMask`` input: GenStudio's ``image_id``, GPUGeek's committed URL."""
        return await self._upload_content(file, filename)

    async def _upload_content(self, file: UploadSource, filename: str | None) -> str:
        name, content, content_type = await read_upload(file, filename)
        return await self._service.upload(name, content, content_type)


class AsyncGenStudio(_AsyncClient):
    """An asyncio client for GenStudio's hosted ComfyUI workflow API (HTTP + a progress WebSocket).

    The API key comes from ``api_key`` or ``GENSTUDIO_API_KEY``; the base URL from ``base_url``,
    ``GENSTUDIO_BASE_URL`` or the public service; the WebSocket URL from ``ws_url``, ``GENSTUDIO_WS_URL`` or the
    base URL (https→wss). Each attempt of a request is bounded as a whole by ``timeout`` and its answer by
    ``max_response_bytes``; each downloaded file by ``download_timeout`` and ``max_download_bytes``. At most
    ``max_sockets`` progress sockets are open at once (default: from the process's open-file limit; 400 for
    1,024): streams beyond it are followed by the shared batched poller and get a socket when one frees, the
    longest-waiting first. ``max_requests_per_second`` caps the client's request rate.
    """

    _service_type = GenStudio

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        ws_url: str | None = None,
        timeout: float | httpx.Timeout = C.DEFAULT_TIMEOUT,
        max_retries: int = C.DEFAULT_MAX_RETRIES,
        poll_interval: float = C.DEFAULT_POLL_INTERVAL,
        stream_idle_timeout: float = C.DEFAULT_STREAM_IDLE_TIMEOUT,
        use_websocket: bool = True,
        http_client: httpx.AsyncClient | None = None,
        max_response_bytes: int = C.DEFAULT_MAX_RESPONSE_BYTES,
        max_download_bytes: int = C.DEFAULT_MAX_DOWNLOAD_BYTES,
        download_timeout: float = C.DEFAULT_DOWNLOAD_DEADLINE,
        max_sockets: int | None = None,
        max_requests_per_second: float | None = None,
    ) -> None:
        configure_from_env()
        settings = resolve(
            GenStudio.environment,
            GenStudio.default_base_url,
            api_key=api_key,
            base_url=base_url,
            ws_url=ws_url,
            timeout=timeout,
            max_retries=max_retries,
            poll_interval=poll_interval,
            stream_idle_timeout=stream_idle_timeout,
            use_websocket=use_websocket,
            max_response_bytes=max_response_bytes,
            max_download_bytes=max_download_bytes,
            download_timeout=download_timeout,
            max_sockets=max_sockets,
            max_requests_per_second=max_requests_per_second,
        )
        self.ws_url = progress_ws_url(settings.ws_url, settings.base_url)
        super().__init__(dataclasses.replace(settings, ws_url=self.ws_url), http_client)
        self.stream_idle_timeout = settings.stream_idle_timeout
        self.use_websocket = use_websocket


class AsyncGPUGeek(_AsyncClient):
    """An asyncio client for GPUGeek's hosted ComfyUI workflow API (HTTP only: progress is polled).

    Every method of ``AsyncGenStudio``, with the same names, arguments and results. ``workflow_id`` is an int (or
    a string of digits); ``prompt`` is the whole API-format workflow (``ApiWorkflow.load(...).builder()``
    builds one). The API key comes from ``api_key`` or ``GPUGEEK_API_KEY``; the base URL from ``base_url``,
    ``GPUGEEK_BASE_URL`` or the public service. The shared poller asks each task in flight about once per
    ``poll_interval``, a few requests at a time, spread over the interval.
    """

    _service_type = GPUGeek

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = C.DEFAULT_TIMEOUT,
        max_retries: int = C.DEFAULT_MAX_RETRIES,
        poll_interval: float = C.DEFAULT_POLL_INTERVAL,
        http_client: httpx.AsyncClient | None = None,
        max_response_bytes: int = C.DEFAULT_MAX_RESPONSE_BYTES,
        max_download_bytes: int = C.DEFAULT_MAX_DOWNLOAD_BYTES,
        download_timeout: float = C.DEFAULT_DOWNLOAD_DEADLINE,
        max_requests_per_second: float | None = None,
    ) -> None:
        configure_from_env()
        settings = resolve(
            GPUGeek.environment,
            GPUGeek.default_base_url,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            poll_interval=poll_interval,
            max_response_bytes=max_response_bytes,
            max_download_bytes=max_download_bytes,
            download_timeout=download_timeout,
            max_requests_per_second=max_requests_per_second,
        )
        super().__init__(settings, http_client)


# --- helpers of the public methods -----------------------------------------------------------------------


def task_id(task: TaskRef) -> str:
    """The ``prompt_id`` of a ``Submission`` or of a prompt_id string."""
    if isinstance(task, Submission):
        return task.prompt_id
    if isinstance(task, str) and task.strip():
        return task.strip()
    raise InvalidInputError(f"expected a Submission or a non-empty prompt_id string, got {task!r}")


def _task_ids(tasks: Iterable[TaskRef] | TaskRef) -> list[str]:
    if isinstance(tasks, Submission | str):
        tasks = [tasks]
    elif not isinstance(tasks, Iterable):
        raise InvalidInputError(f"expected prompt_ids (a list of Submissions or strings), got {tasks!r}")
    ids: list[str] = []
    seen: set[str] = set()
    for task in tasks:
        prompt_id = task_id(task)
        if prompt_id not in seen:
            seen.add(prompt_id)
            ids.append(prompt_id)
    if not ids:
        raise InvalidInputError("get_tasks needs at least one prompt_id")
    return ids


def _aiohttp_sockets(http_client: httpx.AsyncClient) -> AioHttpSockets | None:
    """The aiohttp session for the progress sockets of a client given an ``AioHttpClient`` (its TLS settings);
    ``None`` otherwise: the sockets stay websockets'."""
    if not isinstance(http_client, AioHttpClient):
        return None
    from ._aiohttp_transport import AioHttpTransport
    from ._aiohttp_ws import AioHttpSockets

    transport = http_client._transport
    if isinstance(transport, AioHttpTransport):
        return AioHttpSockets(ssl_context=transport.ssl_context)
    return AioHttpSockets()
