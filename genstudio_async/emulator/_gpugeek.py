"""GPUGeek's layer: its statuses, task snapshots, request handlers (submit, task, cancel, presign, commit) and
workflow registry, on the shared core (``_core``). The wire is ``gpugeek-api.txt``'s, as the SDK reads it
(``genstudio_async._services.gpugeek``, whose paths and formats are used here rather than retyped).

Where the doc is silent the emulator guesses, and says so here:

- a ``GET /api/v1/task/{id}`` for an id it does not know answers HTTP 404 with an error envelope; a cancel of
  one answers HTTP 200 with ``code != 0`` (the id is in the body, not the path);
- error ``code``s are the emulator's own (the doc's appendix of codes is not published);
- a pre-signed upload URL is valid ``GPUGEEK_PRESIGN_TTL_SECONDS``; ``file_name`` must be a plain file name;
- a ``LoadImage`` URL that points at this emulator's object store must name a committed upload (the real
  service would fail to fetch anything else); other http(s) URLs are taken on trust.

There is no WebSocket and no token: progress is polled. Handlers take parsed bodies and plain values; the web
layer (``_gpugeek_api``) only translates to and from HTTP. A refused request raises ``BusinessError``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from starlette.types import ASGIApp

from .._services.gpugeek import CREATED_AT_FORMAT, CREATED_AT_ZONE, TASK_TYPE, UPLOAD_CONTENT_TYPE
from ..workflow import ApiWorkflow, SpecSource
from ._core import BusinessError, EmulatorCore, ServiceSettings, number_states, prompt_refusal, quoted, type_name
from ._defaults import (
    DEFAULT_URL_EXPIRE_PERIOD,
    GPUGEEK_ENV_ID,
    GPUGEEK_MAX_FILE_NAME_BYTES,
    GPUGEEK_PRESIGN_TTL_SECONDS,
    GPUGEEK_PRICE_PER_RUN,
    GPUGEEK_PROMPT_ID_DIGITS,
    GPUGEEK_UPLOAD_PREFIX,
)
from ._faults import PRESIGN_FIELDS, Faults
from ._gpugeek_workflows import (
    ApiWorkflowRegistry,
    builtin_gpugeek_workflows,
    image_values,
    is_workflow_id,
    output_nodes,
    prompt_problems,
    run_nodes,
)
from ._plan import plan_run
from ._state import Task
from ._wire import (
    CODE_INVALID_PARAMETER,
    CODE_NOT_FOUND,
    CODE_TASK_NOT_FOUND,
    CODE_WORKFLOW_NOT_FOUND,
    GPUGEEK_ENVELOPE,
)

_NO_SOCKET = "it has no WebSocket: progress is polled"


class GPUGeekStatus(IntEnum):
    """GPUGeek's task statuses (``5`` is a cancel here, not GenStudio's permission denial)."""

    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5


def _milliseconds(start: float | None, end: float) -> int:
    return 0 if start is None else max(0, round((end - start) * 1000))


class GPUGeekService(EmulatorCore):
    """A GPUGeek emulator's state and the operations of its API."""

    name = "GPUGeek"
    statuses = number_states(GPUGeekStatus, DENIED=GPUGeekStatus.FAILED)  # never made: deny_tasks does not apply
    error_field = "error_msg"
    envelope = GPUGEEK_ENVELOPE
    endpoints = frozenset({"submit", "task", "cancel", "presign", "commit", "upload_put", "storage"})
    workflow_field = "workflow"
    url_keeps_slashes = True
    unsupported_faults: ClassVar[Mapping[str, str]] = {
        **dict.fromkeys(
            ("ws_refuse_status", "ws_drop_after", "ws_silent", "ws_close_after", "ws_junk", "ws_linger",
             "ws_skip_initial"),
            _NO_SOCKET,
        ),
        "deny_tasks": "it has no permission-denied status (its 5 is a cancel)",
        "tutorial_shapes": "those are the shapes of GenStudio's tutorial",
    }

    def __init__(self, settings: ServiceSettings, *, faults: Faults | None = None) -> None:
        super().__init__(settings, faults=faults)
        self._workflows = ApiWorkflowRegistry()

    @staticmethod
    def new_task_id() -> str:
        low = 10 ** (GPUGEEK_PROMPT_ID_DIGITS - 1)
        return str(low + secrets.randbelow(9 * low))

    def build_api_app(self, connections: Callable[[], Iterable[Any]]) -> ASGIApp:
        from ._gpugeek_api import build_gpugeek_app

        return build_gpugeek_app(self)

    # --- workflows -------------------------------------------------------------------------------------------
    @property
    def workflows(self) -> ApiWorkflowRegistry:
        return self._workflows

    def workflow_key(self, workflow_id: object) -> str | None:
        return str(workflow_id) if is_workflow_id(workflow_id) else None

    def parse_workflow_id(self, text: str) -> int:
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"a GPUGeek workflow id is an integer, got {text!r}")
        return int(text)

    def register_workflow(
        self, workflow_id: int, source: ApiWorkflow | SpecSource, *, output_nodes: tuple[str, ...] | None = None
    ) -> ApiWorkflow:
        if output_nodes is not None:
            raise ValueError("GPUGeek's outputs are the SaveImage/PreviewImage nodes of each submitted workflow")
        return self.workflows.register(workflow_id, source)

    def register_builtin_workflows(self) -> None:
        for workflow_id, export in builtin_gpugeek_workflows().items():
            self.workflows.register(workflow_id, export)

    def workflow(self, workflow_id: int) -> ApiWorkflow:
        return self.workflows.require(workflow_id)

    # --- what clients see ----------------------------------------------------------------------------------
    def snapshot(self, task: Task) -> dict[str, Any]:
        """The task as ``GET /api/v1/task/{prompt_id}`` reports it, with freshly signed result URLs."""
        now = self.clock.now()
        queued_until = task.started_at if task.started_at is not None else (task.finished_at or now)
        return self.stamped(task, {
            "prompt_id": int(task.task_id),
            "workflow_id": int(task.workflow_id),
            "env_id": GPUGEEK_ENV_ID,
            "status": self.status_of(task),
            "queue_duration": _milliseconds(task.submitted_at, queued_until),
            "run_duration": _milliseconds(task.started_at, task.finished_at or now),
            "result_url": self.signed_results(task, expire_period=DEFAULT_URL_EXPIRE_PERIOD),
            "error_msg": task.error_message,
            "queue_size": self.tasks.queue_size_for(task),
            "current_position": self.tasks.position(task),
            "origin_price": GPUGEEK_PRICE_PER_RUN,
            "created_at": datetime.fromtimestamp(task.submitted_at, CREATED_AT_ZONE).strftime(CREATED_AT_FORMAT),
        })

    # --- the API ---------------------------------------------------------------------------------------------
    def submit(self, body: object) -> dict[str, str]:
        """``POST /api/v1/prompt``: validate the whole workflow, queue a task, return its ``prompt_id`` (a string
        of digits, as the doc's sample has it)."""
        if not isinstance(body, Mapping):
            raise BusinessError(CODE_INVALID_PARAMETER, "the request body must be a JSON object")
        workflow_id = body.get("workflow_id")
        if not isinstance(workflow_id, int) or not is_workflow_id(workflow_id):
            raise BusinessError(
                CODE_INVALID_PARAMETER, f"workflow_id must be a positive integer, got {type_name(workflow_id)}"
            )
        if self.workflows.get(workflow_id) is None:
            raise BusinessError(CODE_WORKFLOW_NOT_FOUND, f"workflow_id {workflow_id} not found")
        task_type = body.get("task_type")
        if task_type != TASK_TYPE or isinstance(task_type, bool):
            raise BusinessError(
                CODE_INVALID_PARAMETER, f"task_type must be {TASK_TYPE} (the only one), got {task_type!r}"
            )
        prompt = body.get("prompt")
        problems = prompt_problems(prompt, self._image_problem)
        if problems:
            raise prompt_refusal("prompt is not a workflow this service can run", problems)
        assert isinstance(prompt, Mapping)
        images = [value for _, value in image_values(prompt) if isinstance(value, str)]
        plan = plan_run(run_nodes(prompt), output_nodes(prompt), self._uploaded_size)
        unreadable = [value for value in images if self._is_unreadable(value)]
        task = self.queue_task(str(workflow_id), plan, unreadable_images=unreadable)
        return {"prompt_id": task.task_id}

    def task(self, prompt_id: str) -> dict[str, Any]:
        """``GET /api/v1/task/{prompt_id}``: one task's snapshot; HTTP 404 for an id it does not know."""
        self.stats.task_info_requests += 1
        self.stats.task_ids_requested += 1
        task = self.tasks.get(prompt_id) if prompt_id.isascii() and prompt_id.isdigit() else None
        if task is None:
            raise BusinessError(CODE_TASK_NOT_FOUND, f"task {quoted(prompt_id)} not found", status_code=404)
        return self.snapshot(task)

    def cancel(self, body: object) -> None:
        """``POST /api/v1/task/cancel {"task_id": <int>}``: a queued or running task becomes status 5; an ended one
        is left as it is. Answers ``data: null``."""
        if not isinstance(body, Mapping):
            raise BusinessError(CODE_INVALID_PARAMETER, "the request body must be a JSON object")
        task_id = body.get("task_id")
        if not isinstance(task_id, int) or isinstance(task_id, bool):
            raise BusinessError(
                CODE_INVALID_PARAMETER, f"task_id must be an integer (the prompt_id), got {type_name(task_id)}"
            )
        task = self.tasks.get(str(task_id))
        if task is None:
            raise BusinessError(CODE_TASK_NOT_FOUND, f"task_id {task_id} not found")
        self.cancel_task(task)

    def presign(self, file_name: str | None) -> dict[str, str]:
        """``GET|POST /api/v1/file/upload/pre-signed-url?file_name=NAME`` (or ``fileName``): a URL to PUT the file
        to, on the object-store origin, and when it expires (ISO 8601, UTC)."""
        name = _checked_file_name(file_name)
        if self.signer is None:
            raise BusinessError(CODE_INVALID_PARAMETER, "the object store is not ready")
        expires_at = int(self.clock.now()) + GPUGEEK_PRESIGN_TTL_SECONDS
        signed_url = self.signer.sign_url(
            GPUGEEK_UPLOAD_PREFIX + name, expires_at=expires_at, method="PUT", content_type=UPLOAD_CONTENT_TYPE
        )
        only = self.faults.faults.presign_field
        answer = {field: signed_url for field in PRESIGN_FIELDS if only is None or field == only}
        answer["expired_at"] = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return answer

    def commit(self, body: object) -> dict[str, str]:
        """``POST /api/v1/file/upload/commit {"oss_url"}``: the object a PUT wrote becomes an upload a workflow's
        ``LoadImage`` may name by that URL."""
        if not isinstance(body, Mapping):
            raise BusinessError(CODE_INVALID_PARAMETER, "the request body must be a JSON object")
        oss_url = body.get("oss_url")
        if not isinstance(oss_url, str) or not oss_url:
            raise BusinessError(CODE_INVALID_PARAMETER, f"oss_url must be a URL string, got {type_name(oss_url)}")
        parts = urlsplit(oss_url)
        if parts.query or parts.fragment:
            raise BusinessError(
                CODE_INVALID_PARAMETER, "oss_url is the object's URL without its query: leave the signature out"
            )
        key = self._upload_key(oss_url)
        if key is None:
            raise BusinessError(
                CODE_INVALID_PARAMETER,
                f"oss_url {quoted(oss_url)} is not an upload URL of this service (ask pre-signed-url for one)",
            )
        if not self.objects.commit(key):
            raise BusinessError(
                CODE_NOT_FOUND, f"nothing was uploaded to {quoted(oss_url)}: PUT the file to its signed URL first"
            )
        self.stats.commits += 1
        return {"oss_url": oss_url}

    # --- uploads, as LoadImage values ------------------------------------------------------------------------
    def _upload_key(self, url: str) -> str | None:
        """The object key an upload URL of this emulator's object store names; ``None`` for any other URL."""
        if self.signer is None:
            return None
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.signer.origin:
            return None
        key = unquote(parts.path).lstrip("/")
        return key if key.startswith(GPUGEEK_UPLOAD_PREFIX) else None

    def _image_problem(self, value: object) -> str | None:
        if not isinstance(value, str):
            return f"the image must be a URL string, got {type_name(value)}"
        if not value.startswith(("http://", "https://")):
            return f"image {quoted(value)} is neither a committed upload of this service nor an http(s) URL"
        key = self._upload_key(value)
        if key is None:
            return None  # somebody else's URL: the real service would fetch it
        upload = self.objects.upload(key)
        if upload is None:
            return f"image {quoted(value)} was never uploaded to this service"
        if not upload.committed:
            return f"image {quoted(value)} was uploaded but not committed (POST /api/v1/file/upload/commit)"
        return None

    def _uploaded_size(self, value: str) -> tuple[int, int] | None:
        key = self._upload_key(value)
        return self.objects.upload_size(key) if key is not None else None

    def _is_unreadable(self, value: str) -> bool:
        key = self._upload_key(value)
        return key is not None and self.objects.is_unreadable_upload(key)


def _checked_file_name(file_name: str | None) -> str:
    """The ``file_name`` of a presign, refused unless it is one plain file name."""
    if not file_name:
        raise BusinessError(CODE_INVALID_PARAMETER, "file_name is required (the name to store the upload under)")
    plain = (
        "/" not in file_name
        and "\\" not in file_name
        and file_name not in (".", "..")
        and all(ord(char) >= 32 and ord(char) != 127 for char in file_name)
    )
    if not plain:
        raise BusinessError(CODE_INVALID_PARAMETER, f"file_name must be a plain file name, got {quoted(file_name)}")
    if len(file_name.encode("utf-8")) > GPUGEEK_MAX_FILE_NAME_BYTES:
        raise BusinessError(CODE_INVALID_PARAMETER, f"file_name is longer than {GPUGEEK_MAX_FILE_NAME_BYTES} bytes")
    return file_name
