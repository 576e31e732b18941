"""``AsyncGenStudio``: the public methods. It wires the parts together; the parts live in their own modules."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import sys
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeAlias, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from . import _constants as C
from ._batch import Job, run_many
from ._exceptions import (
    APIError,
    APIStatusError,
    ConfigurationError,
    InvalidInputError,
    InvalidResponseError,
    NotFoundError,
    TaskCancelledError,
    TaskFailedError,
    TaskPermissionError,
    TaskTimeoutError,
)
from ._files import ImageUploader, UploadSource, download_result, read_upload
from ._http import HTTPCore, RetryPolicy, log
from ._poller import TaskPoller
from ._prompt import normalise_prompt
from ._redact import Redactor, mask
from ._stream import SocketCloser, StreamSettings, TaskStream, resolve_ws_proxy
from .types import ImagePostProcess, JobOutcome, ProgressEvent, Submission, TaskInfo, TaskResult, TaskStatus
from .workflow import WorkflowSpec

TaskInfoT = TypeVar("TaskInfoT", bound=TaskInfo)

TaskRef: TypeAlias = Submission | str
"""A task, named by the ``Submission`` that ``submit`` returned or by its ``prompt_id``."""

ProgressCallback: TypeAlias = Callable[[ProgressEvent], Awaitable[None] | None]
"""``on_progress``: called with each event; may be a plain function or a coroutine function."""

JobProgressCallback: TypeAlias = Callable[[int, ProgressEvent], Awaitable[None] | None]
"""``run_many``'s ``on_progress``: called with the job's index and each of its events; sync or async."""


class AsyncGenStudio:
    """An asyncio client for GenStudio's hosted ComfyUI workflow API.

    Use it as ``async with AsyncGenStudio() as client: ...`` (or call ``aclose()``). The API key comes from the
    ``api_key`` argument or ``GENSTUDIO_API_KEY``; the base URL from ``base_url``, ``GENSTUDIO_BASE_URL`` or the
    public service; the WebSocket URL from ``ws_url``, ``GENSTUDIO_WS_URL`` or the base URL (https→wss).
    An ``http_client`` passed in is used as it is and left open; one the client made itself is closed.
    """

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
    ) -> None:
        configure_logging_from_env()
        from_env = api_key is None
        api_key = api_key if api_key is not None else os.environ.get(C.ENV_API_KEY)
        if not api_key or not api_key.strip():
            raise ConfigurationError(
                f"no API key: pass api_key=... or set the {C.ENV_API_KEY} environment variable"
            )
        _check_api_key(api_key.strip(), C.ENV_API_KEY if from_env else "api_key")
        for name, limit in (("max_response_bytes", max_response_bytes), ("max_download_bytes", max_download_bytes)):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ConfigurationError(f"{name} must be a positive int of bytes, got {limit!r}")
        if not download_timeout > 0:  # also NaN
            raise ConfigurationError(f"download_timeout must be > 0 seconds, got {download_timeout}")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {max_retries}")
        if not poll_interval > 0:  # also NaN
            raise ConfigurationError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        if not stream_idle_timeout > 0:  # also NaN
            raise ConfigurationError(f"stream_idle_timeout must be > 0 seconds, got {stream_idle_timeout}")

        self._api_key = api_key.strip()
        self.base_url = _http_url(base_url or os.environ.get(C.ENV_BASE_URL) or C.DEFAULT_BASE_URL, "base_url")
        self.ws_url = _progress_ws_url(ws_url or os.environ.get(C.ENV_WS_URL), self.base_url)
        self.poll_interval = float(poll_interval)
        self.stream_idle_timeout = float(stream_idle_timeout)
        self.use_websocket = use_websocket
        self.max_retries = max_retries
        self.max_download_bytes = max_download_bytes
        self.download_timeout = float(download_timeout)

        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else _default_timeout(timeout)
        self._owns_http_client = http_client is None
        try:
            self._http_client = http_client or httpx.AsyncClient(
                timeout=self._timeout,
                limits=httpx.Limits(
                    max_connections=C.HTTP_MAX_CONNECTIONS, max_keepalive_connections=C.HTTP_MAX_KEEPALIVE
                ),
                follow_redirects=False,
            )
        except ImportError as exc:  # e.g. a SOCKS proxy in the environment without httpx[socks]
            raise ConfigurationError(f"cannot build the HTTP client: {exc}") from exc
        self._redact = Redactor([self._api_key])
        self._http = HTTPCore(
            api_key=self._api_key,
            base_url=self.base_url,
            http_client=self._http_client,
            timeout=self._timeout,
            retry_policy=RetryPolicy(max_retries=max_retries),
            redactor=self._redact,
            max_response_bytes=max_response_bytes,
        )
        # prompt_ids this client asked to cancel: status 4 for them is a cancellation, not a failure.
        self._cancelled: set[str] = set()
        self._poller = TaskPoller(self._poll_tasks, interval=self.poll_interval)
        self._images = ImageUploader(self._upload_content)
        self._stream_settings = StreamSettings(
            ws_url=self.ws_url,
            use_websocket=use_websocket,
            idle_timeout=self.stream_idle_timeout,
            fetch_task=self.get_task,
            poller=self._poller,
            sockets=SocketCloser(),
            ws_proxy=resolve_ws_proxy(self.ws_url) if use_websocket else None,
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncGenStudio(base_url={self.base_url!r}, api_key={mask(self._api_key)!r})"

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
        self._closed = True
        await self._poller.aclose()
        await self._stream_settings.sockets.aclose()
        if self._owns_http_client:
            await self._http_client.aclose()

    # --- tasks -------------------------------------------------------------------------------------------

    async def submit(
        self,
        workflow_id: str,
        prompt: Mapping[str, Any] | None = None,
        *,
        spec: WorkflowSpec | None = None,
    ) -> Submission:
        """Queue a task of ``workflow_id`` with the input overrides ``prompt``; returns its ``Submission``.

        ``prompt`` is ``{node_id: {"inputs": {name: value}}}`` (only what changes). It is checked before anything
        is sent: its shape always, and against ``spec`` (the workflow's "入参范围") when given, every problem
        listed in one ``PromptValidationError``. A ``pathlib.Path`` or ``LocalImage`` value (for a ``LoadImage``
        input) is uploaded first and replaced by its ``image_id``; the same bytes are uploaded once per client.
        A submit that may have reached the server is never sent twice.
        """
        if not isinstance(workflow_id, str) or not workflow_id.strip():
            raise InvalidInputError(f"workflow_id must be a non-empty string, got {workflow_id!r}")
        body: dict[str, Any] = {"workflow_id": workflow_id.strip()}
        overrides = normalise_prompt(prompt)
        if spec is not None:
            spec.validate(overrides)
        if overrides is not None:
            body["prompt"] = await self._images.substitute(overrides)
        data = await self._http.call("POST", C.SUBMIT_PATH, json=body, idempotent=False)
        try:
            submission = Submission.model_validate(data)
        except ValidationError as exc:
            raise InvalidResponseError(
                f"submit answered without a prompt_id and prompt_token ({exc.error_count()} problems)"
            ) from None
        if submission.prompt_token is None:
            raise InvalidResponseError("submit answered without a prompt_token")
        self._redact.add(submission.prompt_token)
        log.debug("submitted %s as %s", workflow_id, submission.prompt_id)
        return submission

    async def get_tasks(
        self,
        prompt_ids: Iterable[TaskRef] | TaskRef,
        *,
        url_expire_period: int | None = None,
        image_post_process: ImagePostProcess | Mapping[str, Any] | None = None,
    ) -> list[TaskInfo]:
        """The state of many tasks in one request, in the order asked. Ids the service does not know are left
        out. ``url_expire_period`` (seconds) sets how long the returned file URLs stay valid (service default
        600); ``image_post_process`` asks OSS to convert the images (format, quality)."""
        ids = _task_ids(prompt_ids)
        body: dict[str, Any] = {"comfy_task_ids": ids}
        if url_expire_period is not None:
            if isinstance(url_expire_period, bool) or not isinstance(url_expire_period, int) or url_expire_period < 1:
                raise InvalidInputError(
                    f"url_expire_period must be a positive int of seconds, got {url_expire_period!r}"
                )
            body["url_expire_period"] = url_expire_period
        if image_post_process is not None:
            body["image_post_process_cmd"] = _post_process_command(image_post_process)
        data = await self._http.call("POST", C.TASK_INFO_PATH, json=body, idempotent=True)
        return [redact_info(info, self._redact) for info in _parse_task_infos(data, ids)]

    async def get_task(
        self,
        task: TaskRef,
        *,
        url_expire_period: int | None = None,
        image_post_process: ImagePostProcess | Mapping[str, Any] | None = None,
    ) -> TaskInfo:
        """The state of one task; raises ``NotFoundError`` when the service does not know it."""
        prompt_id = task_id(task)
        infos = await self.get_tasks(
            [prompt_id], url_expire_period=url_expire_period, image_post_process=image_post_process
        )
        if not infos:
            raise NotFoundError(f"the service does not know task {prompt_id!r}", status_code=404)
        return infos[0]

    async def cancel(self, task: TaskRef) -> None:
        """Ask the service to cancel ``task``. Its status becomes 4; ``wait`` then raises ``TaskCancelledError``.

        The request body is ``{CANCEL_BODY_FIELD: prompt_id}`` (see the README: the service docs do not name it).
        """
        prompt_id = task_id(task)
        self._cancelled.add(prompt_id)
        try:
            await self._http.call("POST", C.CANCEL_PATH, json={C.CANCEL_BODY_FIELD: prompt_id}, idempotent=True)
        except (APIError, APIStatusError):
            # The service answered and refused (a business error or an HTTP error status): not cancelled by us.
            self._cancelled.discard(prompt_id)
            raise

    def was_cancelled(self, task: TaskRef) -> bool:
        """True when this client asked to cancel ``task``."""
        return task_id(task) in self._cancelled

    # --- progress and results ----------------------------------------------------------------------------

    def stream(self, task: TaskRef) -> TaskStream:
        """Progress events of ``task`` until its terminal event, which comes last.

        WebSocket first (it needs the ``Submission``'s token; a bare prompt_id is polled), reconnecting and
        reconciling gaps over HTTP, then the shared poller. Use ``async for``; wrap in ``async with`` to close
        the socket the moment you leave early.
        """
        if isinstance(task, Submission):
            return TaskStream(self._stream_settings, task.prompt_id, task.prompt_token)
        return TaskStream(self._stream_settings, task_id(task), None)

    async def wait(
        self,
        task: TaskRef,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> TaskResult:
        """Follow ``task`` to its end and return its ``TaskResult``.

        Raises ``TaskFailedError`` (status 4, with the server's ``errMsg``), ``TaskCancelledError`` (status 4
        after this client cancelled it), ``TaskPermissionError`` (5) or ``TaskTimeoutError`` when ``timeout``
        seconds pass first (the task itself goes on; cancel it if you no longer want it).
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
            last = events.last_event
            raise TaskTimeoutError(
                f"task {events.prompt_id} did not finish within {timeout} s",
                prompt_id=events.prompt_id,
                timeout=timeout or 0.0,
                last_info=redact_info(last, self._redact) if last is not None else None,
            ) from None
        final = events.last_event
        assert final is not None and final.is_terminal
        return self._result_of(final)

    async def run(
        self,
        workflow_id: str,
        prompt: Mapping[str, Any] | None = None,
        *,
        spec: WorkflowSpec | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> TaskResult:
        """``submit`` then ``wait``: one generation, start to finish."""
        submission = await self.submit(workflow_id, prompt, spec=spec)
        return await self.wait(submission, timeout=timeout, on_progress=on_progress)

    def run_many(
        self,
        jobs: Iterable[Job],
        *,
        concurrency: int = C.DEFAULT_RUN_MANY_CONCURRENCY,
        timeout: float | None = None,
        spec: WorkflowSpec | None = None,
        on_progress: JobProgressCallback | None = None,
    ) -> AsyncGenerator[JobOutcome, None]:
        """Run ``(workflow_id, prompt)`` jobs, at most ``concurrency`` at once; yield each ``JobOutcome`` as it
        finishes. A failed job is an outcome with ``error`` set; it never stops the batch. Leaving the loop
        early cancels the jobs still running (on the service too). ``timeout`` bounds each job's wait;
        ``spec`` validates every prompt (a bad one is that job's ``PromptValidationError``); ``on_progress``
        gets ``(job_index, event)`` for every event of every job."""

        async def submit(workflow_id: str, prompt: Mapping[str, Any] | None) -> Submission:
            return await self.submit(workflow_id, prompt, spec=spec)

        async def wait_for(index: int, submission: Submission) -> TaskResult:
            callback = None if on_progress is None else functools.partial(on_progress, index)
            return await self.wait(submission, timeout=timeout, on_progress=callback)

        return run_many(jobs, submit=submit, wait=wait_for, cancel=self.cancel, concurrency=concurrency)

    async def download(self, result: TaskResult | TaskInfo, directory: str | os.PathLike[str]) -> list[Path]:
        """Save every file of ``result`` as ``directory/<node_id>/<file name>`` and return the paths.

        Streamed through a temporary file and an atomic rename; transient errors retried; a signed URL that has
        expired is refreshed through ``get_task_info``. The storage host never receives the API key.
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
        info = redact_info(info, self._redact)
        if info.status is TaskStatus.PERMISSION_DENIED:
            raise TaskPermissionError(f"task {info.prompt_id}: permission denied (status 5)", info)
        if info.prompt_id in self._cancelled:
            raise TaskCancelledError(f"task {info.prompt_id} was cancelled", info)
        reason = info.error_message or "no error message given"
        raise TaskFailedError(f"task {info.prompt_id} failed: {reason}", info)

    async def _poll_tasks(self, prompt_ids: Sequence[str]) -> list[TaskInfo]:
        return await self.get_tasks(list(prompt_ids))

    # --- files -------------------------------------------------------------------------------------------

    async def upload_image(self, file: UploadSource, *, filename: str | None = None) -> str:
        """Upload an image (a path, ``bytes`` or a binary file object) and return its ``image_id``, the value
        to give a ``LoadImage`` / ``LoadImageMask`` input."""
        return await self._upload_content(file, filename)

    async def _upload_content(self, file: UploadSource, filename: str | None) -> str:
        name, content, content_type = await read_upload(file, filename)
        data = await self._http.call(
            "POST",
            C.UPLOAD_PATH,
            files={C.UPLOAD_FIELD: (name, content, content_type)},
            idempotent=False,
            timeout=self._http.upload_timeout,
        )
        image_id = data.get("image_id") if isinstance(data, Mapping) else None
        if not isinstance(image_id, str) or not image_id:
            raise InvalidResponseError("upload answered without an image_id")
        return image_id


# --- helpers of the public methods -----------------------------------------------------------------------


def task_id(task: TaskRef) -> str:
    """The ``prompt_id`` of a ``Submission`` or of a prompt_id string."""
    if isinstance(task, Submission):
        return task.prompt_id
    if isinstance(task, str) and task.strip():
        return task.strip()
    raise InvalidInputError(f"expected a Submission or a non-empty prompt_id string, got {task!r}")


def redact_info(info: TaskInfoT, redact: Redactor) -> TaskInfoT:
    """``info`` with known secrets masked in its free text (a server may echo the key or a token in ``errMsg``)."""
    if not info.error_message:
        return info
    cleaned = redact(info.error_message)
    return info if cleaned == info.error_message else info.model_copy(update={"error_message": cleaned})


def _check_api_key(api_key: str, source: str) -> None:
    """Refuse a key that cannot travel in an HTTP header. h11 would quote it whole in the error it raises (and so
    in every traceback and log line), so the key itself is never shown here: only where the bad character is."""
    for position, char in enumerate(api_key):
        if not "\x21" <= char <= "\x7e":
            kind = "a line break" if char in "\r\n" else "a space" if char.isspace() else (
                "a control character" if ord(char) < 0x20 or ord(char) == 0x7F else "a non-ASCII character"
            )
            raise ConfigurationError(
                f"the API key ({source}) holds {kind} at position {position + 1} of {len(api_key)}: a key is "
                "printable ASCII without spaces (was it pasted with a line break?)"
            )


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


def _post_process_command(value: ImagePostProcess | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, ImagePostProcess):
        return value.to_wire()
    if isinstance(value, Mapping):
        return dict(value)
    raise InvalidInputError(f"image_post_process must be an ImagePostProcess or a dict, got {type(value).__name__}")


def _parse_task_infos(data: Any, asked: list[str]) -> list[TaskInfo]:
    items = data.get("comfy_task_info") if isinstance(data, Mapping) else None
    if items is None:
        items = []
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        raise InvalidResponseError("get_task_info answered without a comfy_task_info list")
    by_id: dict[str, TaskInfo] = {}
    for item in items:
        try:
            info = TaskInfo.model_validate(item)
        except ValidationError:
            raise InvalidResponseError(
                "get_task_info answered with a task entry that has no comfy_task_id"
            ) from None
        by_id[info.prompt_id] = info
    return [by_id[prompt_id] for prompt_id in asked if prompt_id in by_id]


def _default_timeout(seconds: float) -> httpx.Timeout:
    if not seconds > 0:  # also NaN
        raise ConfigurationError(f"timeout must be > 0 seconds, got {seconds}")
    return httpx.Timeout(seconds, connect=min(seconds, C.DEFAULT_CONNECT_TIMEOUT))


def _http_url(url: str, name: str) -> str:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:  # also "Invalid IPv6 URL"
        raise ConfigurationError(f"{name} is not a valid URL ({exc}): {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"{name} must be an http:// or https:// URL, got {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _progress_ws_url(ws_url: str | None, base_url: str) -> str:
    """The full progress-stream endpoint; a ``ws_url`` without the endpoint path gets it appended."""
    if ws_url is None:
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + C.PROGRESS_WS_PATH, "", ""))
    try:
        parts = urlsplit(ws_url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigurationError(f"ws_url is not a valid URL ({exc}): {ws_url!r}") from None
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigurationError(f"ws_url must be a ws:// or wss:// URL, got {ws_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(C.PROGRESS_WS_PATH):
        path += C.PROGRESS_WS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


_logging_configured = False
_LOG_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "WARN": logging.WARNING,
               "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}


def configure_logging_from_env() -> None:
    """Honour ``GENSTUDIO_LOG=debug|info|warning``: send the SDK's log to stderr at that level (once)."""
    global _logging_configured
    if _logging_configured:
        return
    _logging_configured = True
    level_name = os.environ.get(C.ENV_LOG, "").strip().upper()
    if not level_name:
        return
    level = _LOG_LEVELS.get(level_name)
    if level is None:
        warnings.warn(
            f"{C.ENV_LOG}={os.environ.get(C.ENV_LOG)!r} is not a log level: use one of "
            f"{', '.join(name.lower() for name in _LOG_LEVELS)}; the SDK's log stays off",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
