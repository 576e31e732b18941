"""GenStudio's layer: its statuses, snapshots, request handlers (submit, get_task_info, cancel, upload), prompt
tokens and workflow registry, on the shared core (``_core``).

``EmulatorService`` answers requests given as parsed bodies; its web layers (``_api``, ``_progress``) only
translate to and from HTTP. A request it refuses raises ``BusinessError``, which becomes
``{"code": != 0, "msg": …}`` with HTTP 200.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum
from typing import Any, ClassVar

from starlette.types import ASGIApp

from .._services.genstudio import CANCEL_BODY_FIELD
from ..workflow import SpecSource, WorkflowSpec
from ._core import BusinessError, EmulatorCore, ServiceSettings, number_states, prompt_refusal, type_name
from ._defaults import DEFAULT_URL_EXPIRE_PERIOD, EMULATOR_TENANT_ID, EMULATOR_TOKEN_ISSUER
from ._faults import Faults
from ._jwt import TokenError, TokenSigner
from ._objects import random_id
from ._state import SERIALISED_STAMP_FIELD, Task, TaskState
from ._wire import CODE_INVALID_PARAMETER, CODE_TASK_NOT_FOUND, CODE_WORKFLOW_NOT_FOUND, GENSTUDIO_ENVELOPE
from ._workflows import (
    WorkflowRegistry,
    builtin_workflows,
    image_problems,
    merge_prompt,
    plan_render,
    unreadable_images,
)

__all__ = ["BusinessError", "EmulatorService", "ServiceSettings", "Status"]


class Status(IntEnum):
    """GenStudio's task statuses."""

    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    PERMISSION_DENIED = 5


#: ``Faults.tutorial_shapes``, as the flag a task keeps from its submit.
TUTORIAL_SHAPES = "tutorial_shapes"

# The built-in specs, read once per process (specs are immutable; each emulator registers the same objects).
_BUILTIN_CACHE: dict[str, WorkflowSpec] = {}

#: Formats ``image_post_process_cmd.format`` may name (those of OSS's format conversion).
IMAGE_FORMATS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff", "heic", "avif"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_process_command(command: object) -> str | None:
    """Turn ``image_post_process_cmd`` into OSS's ``x-oss-process`` value (``image/format,jpg/quality,q_80``)."""
    if command is None:
        return None
    if not isinstance(command, Mapping):
        raise BusinessError(CODE_INVALID_PARAMETER, "image_post_process_cmd must be an object")
    unknown = sorted(set(command) - {"format", "quality"})
    if unknown:
        raise BusinessError(
            CODE_INVALID_PARAMETER,
            f"image_post_process_cmd: unsupported key {', '.join(map(repr, unknown))} (supported: format, quality)",
        )
    parts = ["image"]
    image_format = command.get("format")
    if image_format is not None:
        if not isinstance(image_format, str) or image_format.lower() not in IMAGE_FORMATS:
            raise BusinessError(
                CODE_INVALID_PARAMETER,
                f"image_post_process_cmd.format {image_format!r} is not one of {', '.join(sorted(IMAGE_FORMATS))}",
            )
        parts.append(f"format,{image_format.lower()}")
    quality = command.get("quality")
    if quality is not None:
        if not isinstance(quality, Mapping) or len(quality) != 1 or next(iter(quality)) not in ("q", "Q"):
            raise BusinessError(
                CODE_INVALID_PARAMETER, 'image_post_process_cmd.quality must be {"q": 1-100} or {"Q": 1-100}'
            )
        (name, value), = quality.items()
        if not _is_int(value) or not 1 <= value <= 100:
            raise BusinessError(CODE_INVALID_PARAMETER, f"image_post_process_cmd.quality.{name} must be 1-100")
        parts.append(f"quality,{name}_{value}")
    return "/".join(parts) if len(parts) > 1 else None


class EmulatorService(EmulatorCore):
    """A GenStudio emulator's state and the operations of its API."""

    name = "GenStudio"
    # The service reports a cancelled task as failed (4).
    statuses = number_states(Status, CANCELLED=Status.FAILED, DENIED=Status.PERMISSION_DENIED)
    error_field = "errMsg"
    envelope = GENSTUDIO_ENVELOPE
    endpoints = frozenset({"submit", "task_info", "cancel", "upload", "storage"})
    workflow_field = "spec"
    push_stream = True
    unsupported_faults: ClassVar[Mapping[str, str]] = {
        "presign_field": "its uploads go to upload/image, with no pre-signed URL",
    }

    def __init__(self, settings: ServiceSettings, *, faults: Faults | None = None) -> None:
        super().__init__(settings, faults=faults)
        self._workflows = WorkflowRegistry()
        self.tokens = TokenSigner(secrets.token_bytes(32), issuer=EMULATOR_TOKEN_ISSUER)

    @staticmethod
    def new_task_id() -> str:
        return f"cft-{random_id()}"

    def build_api_app(self, connections: Callable[[], Iterable[Any]]) -> ASGIApp:
        from ._api import ApiApp

        return ApiApp(self, connections)

    # --- workflows -------------------------------------------------------------------------------------------
    @property
    def workflows(self) -> WorkflowRegistry:
        return self._workflows

    def workflow_key(self, workflow_id: object) -> str | None:
        return workflow_id if isinstance(workflow_id, str) else None

    def register_workflow(
        self, workflow_id: str, source: WorkflowSpec | SpecSource, *, output_nodes: tuple[str, ...] | None = None
    ) -> WorkflowSpec:
        return self.workflows.register(workflow_id, source, output_nodes=output_nodes).spec

    def register_builtin_workflows(self) -> None:
        if not _BUILTIN_CACHE:
            _BUILTIN_CACHE.update(builtin_workflows())
        for workflow_id, spec in _BUILTIN_CACHE.items():
            self.workflows.register(workflow_id, spec)

    def workflow(self, workflow_id: str) -> WorkflowSpec:
        return self.workflows.require(workflow_id).spec

    # --- what clients see ----------------------------------------------------------------------------------
    def snapshot(
        self, task: Task, *, expire_period: int = DEFAULT_URL_EXPIRE_PERIOD, process: str | None = None
    ) -> dict[str, Any]:
        """The task as ``get_task_info`` reports it, with freshly signed result URLs."""
        tasks = self.tasks
        status = self.status_of(task)
        info: dict[str, Any] = self.stamped(task, {
            "comfy_task_id": task.task_id,
            "status": status,
            "queue_size": tasks.queue_size_for(task),
            "current_position": tasks.position(task),
            "errMsg": task.error_message,
        })
        tutorial_shapes = TUTORIAL_SHAPES in task.flags
        if task.state is TaskState.QUEUED:
            info["files"] = "None"
            if not tutorial_shapes:
                info["progress_num"] = 0
            return info
        files = self.signed_results(task, expire_period=expire_period, process=process)
        if task.state is TaskState.SUCCEEDED and tutorial_shapes:
            info["files"] = {node_id: urls[0] for node_id, urls in files.items() if urls}
            return info
        info["files"] = files
        info["final_files"] = [url for urls in files.values() for url in urls]
        info["progress_num"] = task.progress
        return info

    def frame(self, task: Task) -> str:
        """The progress WebSocket's frame for the task's current state (serialised once per change)."""
        return self.tasks.frame(task, self._frame_payload)

    def _frame_payload(self, task: Task) -> dict[str, Any]:
        info = self.snapshot(task)
        if self.settings.stamp_snapshots:
            info[SERIALISED_STAMP_FIELD] = time.monotonic_ns()
        return {"comfy_task_info": info}

    # --- the API ---------------------------------------------------------------------------------------------
    def submit(self, body: object) -> dict[str, str]:
        """``POST prompt``: validate, queue a task, and return its ``prompt_id`` and ``prompt_token``."""
        if not isinstance(body, Mapping):
            raise BusinessError(CODE_INVALID_PARAMETER, "the request body must be a JSON object")
        workflow_id = body.get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise BusinessError(CODE_INVALID_PARAMETER, "workflow_id is required and must be a non-empty string")
        workflow = self.workflows.get(workflow_id)
        if workflow is None:
            raise BusinessError(CODE_WORKFLOW_NOT_FOUND, f"workflow_id {workflow_id!r} not found")
        prompt = body.get("prompt")
        problems = workflow.spec.problems(prompt)
        if isinstance(prompt, Mapping):
            problems += image_problems(workflow.spec, prompt, self.objects.has_upload)
        if problems:
            raise prompt_refusal(f"prompt does not fit workflow {workflow_id}", problems)
        inputs = merge_prompt(workflow.spec, prompt if isinstance(prompt, Mapping) else None)
        faults = self.faults.for_workflow(workflow_id)
        task = self.queue_task(
            workflow_id,
            plan_render(workflow, inputs, self.objects.upload_size),
            unreadable_images=unreadable_images(workflow.spec, inputs, self.objects.is_unreadable_upload),
            deny=faults.deny_tasks,
            flags=frozenset({TUTORIAL_SHAPES}) if faults.tutorial_shapes else frozenset(),
        )
        token = self.tokens.mint(
            tenant_id=EMULATOR_TENANT_ID,
            task_id=task.task_id,
            expires_at=int(self.clock.now() + self.settings.token_ttl),
        )
        return {"prompt_id": task.task_id, "prompt_token": token}

    def task_info(self, body: object) -> dict[str, list[dict[str, Any]]]:
        """``POST get_task_info``: the known tasks among ``comfy_task_ids`` (unknown ids are left out)."""
        if not isinstance(body, Mapping):
            raise BusinessError(CODE_INVALID_PARAMETER, "the request body must be a JSON object")
        task_ids = body.get("comfy_task_ids")
        if not isinstance(task_ids, list):
            raise BusinessError(
                CODE_INVALID_PARAMETER, f"comfy_task_ids must be a list of task ids, got {type_name(task_ids)}"
            )
        for index, task_id in enumerate(task_ids):
            if not isinstance(task_id, str):
                raise BusinessError(
                    CODE_INVALID_PARAMETER, f"comfy_task_ids[{index}] must be a string, got {type_name(task_id)}"
                )
        expire_period = body.get("url_expire_period", None)
        if expire_period is None:
            expire_period = DEFAULT_URL_EXPIRE_PERIOD
        elif not _is_int(expire_period) or expire_period <= 0:
            raise BusinessError(
                CODE_INVALID_PARAMETER, f"url_expire_period must be a positive number of seconds, got {expire_period!r}"
            )
        process = parse_process_command(body.get("image_post_process_cmd"))
        self.stats.task_info_requests += 1
        self.stats.task_ids_requested += len(task_ids)
        found: list[dict[str, Any]] = []
        for task_id in dict.fromkeys(task_ids):
            task = self.tasks.get(task_id)
            if task is not None:
                found.append(self.snapshot(task, expire_period=expire_period, process=process))
        return {"comfy_task_info": found}

    def cancel(self, body: object) -> dict[str, Any]:
        """``POST cancel``: a queued or running task becomes status 4; an ended one is left as it is."""
        if not isinstance(body, Mapping):
            raise BusinessError(CODE_INVALID_PARAMETER, "the request body must be a JSON object")
        task_id = body.get(CANCEL_BODY_FIELD)
        if not isinstance(task_id, str) or not task_id:
            raise BusinessError(CODE_INVALID_PARAMETER, f"{CANCEL_BODY_FIELD} is required and must be a task id")
        task = self.tasks.get(task_id)
        if task is None:
            raise BusinessError(CODE_TASK_NOT_FOUND, f"{CANCEL_BODY_FIELD} {task_id!r} not found")
        self.cancel_task(task)
        return {}

    def upload(self, data: bytes, *, filename: str | None, content_type: str | None) -> dict[str, str]:
        """``POST upload/image``: store the bytes and return the new ``image_id``."""
        if not data:
            raise BusinessError(CODE_INVALID_PARAMETER, "source_file is empty")
        upload = self.objects.add_upload(data, filename=filename, content_type=content_type, now=self.clock.now())
        self.stats.uploads += 1
        return {"image_id": upload.image_id}

    def task_for_token(self, token: str) -> Task:
        """The task a prompt token is for; ``TokenError`` if the token is bad, expired or for no known task."""
        claims = self.tokens.verify(token, now=self.clock.now())
        task = self.tasks.get(claims.task_id)
        if task is None:
            raise TokenError("token is for an unknown task")
        return task
