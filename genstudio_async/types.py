"""Typed models of what the services send and what the SDK hands back.

The models speak Python; each service's module (``genstudio_async._services``) reads its own wire into them
(GenStudio's ``errMsg`` is ``error_message``, its ``current_position`` ``queue_position``, its ``progress_num``
``progress``; GPUGeek's ``error_msg``, ``result_url``, ``origin_price``...). What the wire's shapes have in common
is normalised here, once: ``files`` given as a string (``"None"``), a ``files`` value given as a bare string,
``final_files`` missing, an empty error message, counts that are not numbers. Unknown extra fields are kept
(``model_extra``), never rejected.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._redact import mask
from ._services._base import is_plain_id
from ._status import TaskStatus

__all__ = [
    "ImagePostProcess",
    "JobOutcome",
    "ProgressEvent",
    "Submission",
    "TaskInfo",
    "TaskResult",
    "TaskStatus",
]




class Submission(BaseModel):
    """What ``submit`` returns: the task's id and the token that opens its progress stream (``None`` on a service
    with no push stream, such as GPUGeek).

    Serialisable (``model_dump()`` / ``model_dump_json()``) and rebuildable from its two fields, so a worker can
    persist it and resume streaming elsewhere. Its ``repr`` shows only a short prefix of the token: the token is
    a credential (a JWT valid for 24 hours).
    """

    model_config = ConfigDict(frozen=True)

    prompt_id: str = Field(min_length=1, max_length=256)
    prompt_token: str | None = Field(default=None, min_length=1)

    @field_validator("prompt_id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        # An id names a folder, a journal line and a terminal line: a server's id with a line break, a control
        # character or a space in it is refused rather than carried anywhere.
        if not is_plain_id(value):
            raise ValueError("a prompt_id holds no spaces, line breaks or control characters")
        return value

    def __repr_args__(self) -> Any:
        yield "prompt_id", self.prompt_id
        yield "prompt_token", mask(self.prompt_token)

    @property
    def token_expires_at(self) -> datetime | None:
        """When the token's ``exp`` claim says it expires, read without verifying the signature.

        ``None`` when the token is not a JWT with a numeric ``exp``.
        """
        return token_expires_at(self.prompt_token) if self.prompt_token else None

    @property
    def token_expired(self) -> bool:
        """True when the token's ``exp`` has passed (a token without ``exp`` is taken as valid)."""
        expires_at = self.token_expires_at
        return expires_at is not None and expires_at <= datetime.now(tz=UTC)


def token_expires_at(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT, read without verifying its signature; ``None`` when there is none."""
    claims = _unverified_jwt_claims(token)
    exp = claims.get("exp") if claims else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    try:
        return datetime.fromtimestamp(exp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _unverified_jwt_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _normalise_files(value: Any) -> dict[str, list[str]]:
    """``files`` as ``{node_id: [url, ...]}`` whatever shape the wire used."""
    if not isinstance(value, Mapping):
        # The string "None", null, "" and any other non-mapping: no files yet.
        return {}
    files: dict[str, list[str]] = {}
    for node_id, urls in value.items():
        files[str(node_id)] = _normalise_url_list(urls)
    return files


def _normalise_url_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [] if value in ("", "None") else [value]
    if isinstance(value, list | tuple):
        return [url for url in value if isinstance(url, str) and url not in ("", "None")]
    return []


class TaskInfo(BaseModel):
    """One task's state as a service reports it (a status answer, or a frame of the progress stream).

    Each service's module reads its wire into these names (``_services``); what it sends that has no field here
    is kept in ``model_extra``.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    prompt_id: str
    status: TaskStatus = TaskStatus.UNKNOWN
    progress: int = 0
    queue_position: int = 0
    queue_size: int = 0
    error_message: str | None = None
    files: dict[str, list[str]] = Field(default_factory=dict)
    final_files: list[str] = Field(default_factory=list)
    # What only some services send (GPUGeek): None where the service sends nothing readable.
    queue_duration: timedelta | None = None
    """How long the task waited in the queue (GPUGeek's ``queue_duration``, milliseconds on the wire)."""
    run_duration: timedelta | None = None
    """How long the task ran (GPUGeek's ``run_duration``, milliseconds on the wire)."""
    price: float | None = None
    """What the task cost, in the service's currency (GPUGeek's ``origin_price``)."""
    created_at: datetime | None = None
    """When the task was created, zone-aware (GPUGeek sends local time without a zone: read as UTC+8)."""
    workflow_id: str | None = None
    """The workflow the task runs, as a string (GPUGeek sends an integer)."""

    @field_validator("status", mode="before")
    @classmethod
    def _parse_status(cls, value: Any) -> TaskStatus:
        return TaskStatus.parse(value)

    @field_validator("progress", "queue_position", "queue_size", mode="before")
    @classmethod
    def _parse_count(cls, value: Any) -> int:
        if value is None or isinstance(value, bool):
            return 0
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):  # "inf", 1e999: int() raises OverflowError
            return 0

    @field_validator("progress", mode="after")
    @classmethod
    def _clamp_progress(cls, value: int) -> int:
        return min(max(value, 0), 100)

    @field_validator("error_message", mode="before")
    @classmethod
    def _parse_error_message(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value)
        return text or None

    @field_validator("files", mode="before")
    @classmethod
    def _parse_files(cls, value: Any) -> dict[str, list[str]]:
        return _normalise_files(value)

    @field_validator("final_files", mode="before")
    @classmethod
    def _parse_final_files(cls, value: Any) -> list[str]:
        return _normalise_url_list(value)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


class ProgressEvent(TaskInfo):
    """A ``TaskInfo`` yielded by ``stream``, saying where it came from."""

    source: Literal["websocket", "poll"] = "poll"


_EVENT_FIELDS: tuple[str, ...] = tuple(ProgressEvent.model_fields)
# Every field's default, in field order; the two built by a factory are built afresh in ``plain_event``.
_EVENT_DEFAULTS: dict[str, Any] = {
    name: None if field.default_factory is not None else field.default
    for name, field in ProgressEvent.model_fields.items()
}
_new = object.__new__
_set = object.__setattr__


def plain_event(values: dict[str, Any], fields_set: set[str], extra: dict[str, Any]) -> ProgressEvent:
    """The ``ProgressEvent`` that ``ProgressEvent.model_validate`` makes of a snapshot whose values a service's
    module has already brought into their validated form (``values``: field name → value, only fields the wire
    gave; ``fields_set``: the names the input had, extra ones included; ``extra``: the extra fields, in order).

    Without pydantic's pass (its Python validators called from its core: ~5 µs, half the SDK's CPU per frame
    at a thousand streams). The attributes set are those pydantic's own ``model_construct`` sets; a service's
    module compares its first plain event with ``model_validate``'s (``same_model``) and validates every snapshot
    from then on if they differ.
    """
    data = _EVENT_DEFAULTS.copy()
    data.update(values)
    if "files" not in values:
        data["files"] = {}
    if "final_files" not in values:
        data["final_files"] = []
    event: ProgressEvent = _new(ProgressEvent)
    _set(event, "__dict__", data)
    _set(event, "__pydantic_fields_set__", fields_set)
    _set(event, "__pydantic_extra__", extra)
    _set(event, "__pydantic_private__", None)
    return event


def same_model(a: BaseModel, b: BaseModel) -> bool:
    """Whether ``a`` and ``b`` are alike in everything pydantic keeps: fields (and their order), the set of
    fields given, extra fields, private attributes."""
    return (
        type(a) is type(b)
        and [(name, type(value), value) for name, value in a.__dict__.items()]
        == [(name, type(value), value) for name, value in b.__dict__.items()]
        and a.model_fields_set == b.model_fields_set
        and a.model_extra == b.model_extra
        and a.__pydantic_private__ == b.__pydantic_private__
    )


class TaskResult(BaseModel):
    """A task that succeeded: where its files are."""

    model_config = ConfigDict(frozen=True)

    prompt_id: str
    status: TaskStatus = TaskStatus.SUCCEEDED
    files: dict[str, list[str]] = Field(default_factory=dict)
    final_files: list[str] = Field(default_factory=list)

    @classmethod
    def from_info(cls, info: TaskInfo) -> TaskResult:
        return cls(
            prompt_id=info.prompt_id,
            status=info.status,
            files={node_id: list(urls) for node_id, urls in info.files.items()},
            final_files=list(info.final_files),
        )

    @property
    def outputs(self) -> list[str]:
        """The URLs a caller most likely wants: ``final_files``, or every file when that is empty."""
        if self.final_files:
            return list(self.final_files)
        return [url for urls in self.files.values() for url in urls]


class ImagePostProcess(BaseModel):
    """``image_post_process_cmd`` of ``get_task_info``: OSS converts the result images when fetched.

    ``ImagePostProcess(format="jpg", quality=80)`` asks for JPEG at relative quality 80
    (``x-oss-process=image/format,jpg/quality,q_80``); ``absolute_quality`` is OSS's ``Q``.
    """

    model_config = ConfigDict(frozen=True)

    format: str | None = None
    quality: int | None = Field(default=None, ge=1, le=100)
    absolute_quality: int | None = Field(default=None, ge=1, le=100)

    def to_wire(self) -> dict[str, Any]:
        command: dict[str, Any] = {}
        if self.format:
            command["format"] = self.format
        quality: dict[str, int] = {}
        if self.quality is not None:
            quality["q"] = self.quality
        if self.absolute_quality is not None:
            quality["Q"] = self.absolute_quality
        if quality:
            command["quality"] = quality
        return command


@dataclass(frozen=True)
class JobOutcome:
    """One finished job of ``run_many``: its position in the input, the job, and a result or an error."""

    index: int
    job: tuple[str | int, Mapping[str, Any] | None]
    result: TaskResult | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
