"""The emulator's behaviour, apart from HTTP: submit, get_task_info, cancel, upload, and token checks.

``EmulatorService`` owns the state (tasks, objects, workflows, faults, stats, clock) and answers requests
given as parsed bodies; the web layers (``_api``, ``_progress``, ``_storage``) only translate to and from HTTP.
A request the service refuses raises ``BusinessError``, which becomes ``{"code": != 0, "msg": …}`` with HTTP 200.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._constants import (
    CANCEL_BODY_FIELD,
    DEFAULT_URL_EXPIRE_PERIOD,
    EMULATOR_OSS_ACCESS_KEY_ID,
    EMULATOR_OSS_BUCKET,
    EMULATOR_SIGNATURE_PLUS_SEARCH,
    EMULATOR_TENANT_ID,
    EMULATOR_TOKEN_ISSUER,
)
from ._clock import EmulatorClock
from ._faults import FaultController, Faults
from ._jwt import TokenError, TokenSigner
from ._objects import ObjectStore
from ._signing import UrlSigner
from ._state import Task, TaskStore
from ._stats import EmulatorStats
from ._wire import (
    CODE_INVALID_PARAMETER,
    CODE_INVALID_PROMPT,
    CODE_TASK_NOT_FOUND,
    CODE_WORKFLOW_NOT_FOUND,
)
from ._workflows import WorkflowRegistry, image_problems, merge_prompt, plan_render, unreadable_images

#: Formats ``image_post_process_cmd.format`` may name (those of OSS's format conversion).
IMAGE_FORMATS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff", "heic", "avif"})


class BusinessError(Exception):
    """A refused request: ``code`` (not 0), a ``msg`` naming the field or id, and optional ``data``."""

    def __init__(self, code: int, msg: str, data: Any = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.data = data


@dataclass(frozen=True)
class ServiceSettings:
    """What the service needs to know about timing and limits."""

    api_key: str
    workers: int
    steps: int
    step_seconds: float
    token_ttl: float
    retention: float
    queue_notify_interval: float
    max_upload_bytes: int
    stamp_snapshots: bool = False


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


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


class EmulatorService:
    """The state of one emulator and the operations of its API."""

    def __init__(self, settings: ServiceSettings, *, faults: Faults | None = None) -> None:
        self.settings = settings
        self.clock = EmulatorClock()
        self.stats = EmulatorStats()
        self.faults = FaultController(faults)
        self.workflows = WorkflowRegistry()
        self.objects = ObjectStore(retention_seconds=settings.retention)
        self.tasks = TaskStore(
            clock=self.clock,
            objects=self.objects,
            workers=settings.workers,
            steps=settings.steps,
            step_seconds=settings.step_seconds,
            queue_notify_interval=settings.queue_notify_interval,
            stamp_snapshots=settings.stamp_snapshots,
        )
        self.tokens = TokenSigner(secrets.token_bytes(32), issuer=EMULATOR_TOKEN_ISSUER)
        self._url_secret = secrets.token_bytes(32)
        self.signer: UrlSigner | None = None

    def set_storage_origin(self, origin: str) -> None:
        """Where result URLs point (known once the storage port is bound)."""
        self.signer = UrlSigner(
            self._url_secret,
            access_key_id=EMULATOR_OSS_ACCESS_KEY_ID,
            bucket=EMULATOR_OSS_BUCKET,
            storage_origin=origin,
            plus_search=EMULATOR_SIGNATURE_PLUS_SEARCH,
        )
        self.tasks.signer = self.signer

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
            message = f"prompt does not fit workflow {workflow_id}: " + "; ".join(str(p) for p in problems)
            data = {"problems": [dataclasses.asdict(problem) for problem in problems]}
            raise BusinessError(CODE_INVALID_PROMPT, message, data)
        inputs = merge_prompt(workflow.spec, prompt if isinstance(prompt, Mapping) else None)
        plan = plan_render(workflow, inputs, self.objects.upload_size)
        faults = self.faults.for_workflow(workflow_id)
        fail_message = faults.fail_tasks
        unreadable = unreadable_images(workflow.spec, inputs, self.objects.is_unreadable_upload)
        if fail_message is None and unreadable:  # ComfyUI's LoadImage (PIL) cannot open it: the run fails
            fail_message = f"LoadImage: cannot identify image file {unreadable[0]!r}"
        task = self.tasks.create(
            workflow_id=workflow_id, plan=plan, fail_message=fail_message, deny=faults.deny_tasks,
            tutorial_shapes=faults.tutorial_shapes,
        )
        token = self.tokens.mint(
            tenant_id=EMULATOR_TENANT_ID,
            task_id=task.task_id,
            expires_at=int(self.clock.now() + self.settings.token_ttl),
        )
        self.stats.submits += 1
        return {"prompt_id": task.task_id, "prompt_token": token}

    def task_info(self, body: object) -> dict[str, list[dict[str, Any]]]:
        """``POST get_task_info``: the known tasks among ``comfy_task_ids`` (unknown ids are left out)."""
        if not isinstance(body, Mapping):
            raise BusinessError(CODE_INVALID_PARAMETER, "the request body must be a JSON object")
        task_ids = body.get("comfy_task_ids")
        if not isinstance(task_ids, list):
            raise BusinessError(
                CODE_INVALID_PARAMETER, f"comfy_task_ids must be a list of task ids, got {_type_name(task_ids)}"
            )
        for index, task_id in enumerate(task_ids):
            if not isinstance(task_id, str):
                raise BusinessError(
                    CODE_INVALID_PARAMETER, f"comfy_task_ids[{index}] must be a string, got {_type_name(task_id)}"
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
                found.append(self.tasks.info(task, expire_period=expire_period, process=process))
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
        self.tasks.cancel(task)
        self.stats.cancels += 1
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
