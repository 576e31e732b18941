"""GPUGeek's wire (``comfyapi.gpugeek.com``): HTTP only, one task per status request, whole workflows.

Everything here is what ``../shared/docs/gpugeek-api.txt`` documents, and how this SDK reads its contradictions:

- envelope ``{"code": 0, "message": "success", "traceid": "…", "data": …}`` (``message``, not ``msg``);
- ``POST /api/v1/prompt {"workflow_id": <int>, "task_type": 1, "prompt": <the WHOLE API-format workflow>}`` →
  ``{"prompt_id"}``, a string in the sample and an integer in the table: both are read, kept as a ``str``;
- ``GET /api/v1/task/{prompt_id}``: one task per call; no batch endpoint, no WebSocket, no token;
- task fields ``prompt_id, workflow_id, env_id, status, queue_duration (ms), run_duration (ms),
  result_url {node_id: [url]}, error_msg, queue_size, current_position, origin_price,
  created_at "YYYY-MM-DD HH:MM:SS"``; ``result_url`` values may be a list or a bare string;
- statuses 1 queued, 2 running, 3 succeeded, 4 failed, **5 cancelled**;
- ``POST /api/v1/task/cancel {"task_id": <int>}``;
- upload: ``GET /api/v1/file/upload/pre-signed-url?file_name=NAME`` → ``{signed_url, expired_at}`` (the doc's
  sample says POST, ``fileName`` and ``signedUrl``: either answer field is accepted), then ``PUT`` the bytes to
  ``signed_url`` with ``Content-Type: application/octet-stream`` and no API key, then
  ``POST /api/v1/file/upload/commit {"oss_url": <the URL without its query>}`` → ``{oss_url}``: the value for a
  ``LoadImage`` input.

The service gives no percent: ``progress`` is 0 until the task succeeds, then 100. ``created_at`` carries no
zone; the service runs in China, so it is read as China Standard Time (UTC+8).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from .._exceptions import InvalidInputError, InvalidResponseError, NotFoundError
from .._logs import log
from .._prompt import copy_workflow, workflow_shape_problems
from .._redact import Redactor
from .._status import TaskStatus
from ._base import Environment, Service, TaskQuery, wire_fields

if TYPE_CHECKING:  # imported where used (pydantic), so that reading this module's names stays light
    from ..types import Submission, TaskInfo

DEFAULT_BASE_URL: Final = "https://comfyapi.gpugeek.com"
ENVIRONMENT: Final = Environment(api_key="GPUGEEK_API_KEY", base_url="GPUGEEK_BASE_URL")

SUBMIT_PATH: Final = "/api/v1/prompt"
TASK_PATH: Final = "/api/v1/task/{prompt_id}"
CANCEL_PATH: Final = "/api/v1/task/cancel"
PRESIGN_PATH: Final = "/api/v1/file/upload/pre-signed-url"
COMMIT_PATH: Final = "/api/v1/file/upload/commit"
TASK_TYPE: Final = 1  # "任务类型: 目前仅支持1"
UPLOAD_CONTENT_TYPE: Final = "application/octet-stream"

# A URL the service hands back (pre-signed, committed) longer than this is not one.
MAX_URL_CHARS: Final = 8192

# How many status GETs one get_tasks call keeps in flight (there is no batch endpoint).
STATUS_FAN_OUT: Final = 8

STATUSES: Final[Mapping[int, TaskStatus]] = {
    1: TaskStatus.QUEUED,
    2: TaskStatus.RUNNING,
    3: TaskStatus.SUCCEEDED,
    4: TaskStatus.FAILED,
    5: TaskStatus.CANCELLED,
}

# "created_at": "2026-01-19 14:46:54", no zone given: read as China Standard Time.
CREATED_AT_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
CREATED_AT_ZONE: Final = timezone(timedelta(hours=8), "CST")

_FIELDS: Final = {
    "prompt_id": "prompt_id",
    "status": "status",
    "current_position": "queue_position",
    "queue_size": "queue_size",
    "error_msg": "error_message",
    "result_url": "files",
    "queue_duration": "queue_duration",
    "run_duration": "run_duration",
    "origin_price": "price",
    "created_at": "created_at",
    "workflow_id": "workflow_id",
}


def status_of(value: Any) -> TaskStatus:
    return TaskStatus.from_wire(value, STATUSES)


def _milliseconds(value: Any) -> timedelta | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 10**13:
        return None
    return timedelta(milliseconds=value)


def _created_at(value: Any) -> datetime | None:
    """The doc's ``"YYYY-MM-DD HH:MM:SS"`` (read as UTC+8), or any ISO 8601 time (its own zone kept; UTC+8 when
    it names none); ``None`` for anything else."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip()
    try:
        moment = datetime.strptime(text, CREATED_AT_FORMAT)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CREATED_AT_ZONE)


def _price(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        price = float(value)
    except ValueError:
        return None
    return price if price == price and abs(price) != float("inf") else None


def _identifier(value: Any) -> str | None:
    """An id the service sends as a string or an integer, as a ``str``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value).strip()
    return text or None


# A result_url that is no object of node ids gets this node id (the files are kept, under a name of our own).
RESULT_NODE: Final = "result"


def _urls(value: Any, unread: list[Any]) -> list[str]:
    """The URLs in one ``result_url`` value: a string, a list of strings, or objects with a ``url``."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Mapping) and isinstance(value.get("url"), str):
        return [value["url"]]
    if isinstance(value, list):
        return [url for item in value for url in _urls(item, unread)]
    if value is not None:
        unread.append(value)
    return []


def result_files(value: Any) -> tuple[dict[str, list[str]], list[Any]]:
    """``result_url`` as ``{node_id: [url]}``, whatever its shape (an object of node ids, the doc's; a bare list or
    string; items that are objects with a ``url``), and what could not be read (kept, not silently dropped)."""
    unread: list[Any] = []
    if isinstance(value, Mapping):
        files = {str(node_id): _urls(urls, unread) for node_id, urls in value.items()}
    else:
        urls = _urls(value, unread)
        files = {RESULT_NODE: urls} if urls else {}
    return files, unread


def parse_task_info(raw: Any, redact: Redactor | None = None) -> TaskInfo:
    """A ``GET /api/v1/task/{id}`` answer as a ``TaskInfo``; ``InvalidResponseError`` when it names no task."""
    prompt_id = _identifier(raw.get("prompt_id")) if isinstance(raw, Mapping) else None
    if prompt_id is None:
        raise InvalidResponseError("the task answer has no prompt_id")
    assert isinstance(raw, Mapping)
    fields = wire_fields(raw, _FIELDS, redact)
    status = status_of(raw.get("status"))
    files, unread = result_files(raw.get("result_url"))
    if unread:
        log.debug("task %s: a result_url part that names no URL was kept in result_url_unread", prompt_id)
        fields["result_url_unread"] = redact.excerpt(unread) if redact is not None else unread
    fields.update(
        prompt_id=prompt_id,
        status=status,
        files=files,
        progress=100 if status is TaskStatus.SUCCEEDED else 0,
        queue_duration=_milliseconds(raw.get("queue_duration")),
        run_duration=_milliseconds(raw.get("run_duration")),
        price=_price(raw.get("origin_price")),
        created_at=_created_at(raw.get("created_at")),
        workflow_id=_identifier(raw.get("workflow_id")),
    )
    from ..types import TaskInfo

    try:
        return TaskInfo.model_validate(fields)
    except ValueError:  # pydantic's ValidationError
        raise InvalidResponseError(f"the answer for task {prompt_id!r} cannot be read") from None


def object_url(signed_url: str) -> str:
    """A pre-signed URL without its query (the signature): the object's own address, as ``commit`` wants it.

    Nothing is decoded: the path stays exactly as the service spelled it.
    """
    parts = urlsplit(signed_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# The longest object name the pre-signed upload is asked for (a file name: 255 bytes).
UPLOAD_MAX_NAME_BYTES: Final = 255


def upload_name(name: str, content: bytes) -> str:
    """The object name an upload asks for: a digest of the bytes, then the file's own name made safe.

    Two different images both called ``image.png`` must not land on one object; the same bytes land on the same
    one (an upload repeated is harmless). The name is cleaned as a downloaded file's is (no separators, controls
    or dots that hide it) and cut to fit ``UPLOAD_MAX_NAME_BYTES`` with the digest, keeping its extension.
    """
    from .._files import safe_name

    prefix = f"{hashlib.sha256(content).hexdigest()[:16]}-"
    stem, dot, extension = safe_name(name, "image.png").rpartition(".")
    if not dot or len(extension) > 16:
        stem, extension = f"{stem}{dot}{extension}", ""
    tail = f".{extension}" if extension else ""
    room = UPLOAD_MAX_NAME_BYTES - len(prefix) - len(tail.encode())
    return prefix + stem.encode()[:room].decode("utf-8", "ignore") + tail


class GPUGeek(Service):
    """GPUGeek: whole-workflow prompts, no push stream, one task per status request."""

    name = "GPUGeek"
    client_name = "AsyncGPUGeek"
    default_base_url = DEFAULT_BASE_URL
    environment = ENVIRONMENT
    message_fields = ("message", "msg")
    status_batch_size = 1
    workflow_id_hint = "an integer such as 763311996779461"
    whole_workflow = True
    push_stream = False
    reports_percent = False
    failure_may_be_cancel = False

    @classmethod
    def task_id(cls, prompt_id: str) -> str:
        return _path_segment(prompt_id)

    @classmethod
    def workflow_id(cls, workflow_id: object) -> int:
        number: object = workflow_id
        if isinstance(workflow_id, str) and workflow_id.strip().isdigit() and workflow_id.strip().isascii():
            number = int(workflow_id.strip())
        if isinstance(number, int) and not isinstance(number, bool) and number > 0:
            return number
        raise InvalidInputError(
            f"a GPUGeek workflow_id is a positive integer (or a string of digits), got {workflow_id!r}"
        )

    @classmethod
    def prompt_problems(cls, prompt: Mapping[Any, Any]) -> list[Any]:
        return workflow_shape_problems(prompt)

    @classmethod
    def copy_prompt(cls, prompt: Mapping[Any, Any]) -> dict[str, Any]:
        return copy_workflow(prompt)

    @classmethod
    def spec_view(cls, prompt: Mapping[Any, Any]) -> Mapping[Any, Any]:
        return {
            node_id: {"inputs": node["inputs"]}
            for node_id, node in prompt.items()
            if isinstance(node, Mapping) and isinstance(node.get("inputs"), Mapping)
        }

    async def submit(self, workflow_id: str | int, prompt: dict[str, Any] | None) -> Submission:
        if prompt is None:
            raise InvalidInputError(
                "GPUGeek runs the workflow it is sent: pass the whole API-format workflow as the prompt "
                "(ApiWorkflow.load('workflow_api.json').builder()...build())"
            )
        body = {"workflow_id": workflow_id, "task_type": TASK_TYPE, "prompt": prompt}
        data = await self.http.call("POST", SUBMIT_PATH, json=body, idempotent=False)
        prompt_id = _identifier(data.get("prompt_id")) if isinstance(data, Mapping) else None
        if prompt_id is None or not prompt_id.isascii() or not prompt_id.isdigit():
            raise InvalidResponseError("submit answered without a prompt_id of digits")
        from ..types import Submission

        try:
            return Submission(prompt_id=prompt_id)
        except ValueError:  # pydantic's ValidationError: an id too long to name anything
            raise InvalidResponseError(f"submit answered with a prompt_id of {len(prompt_id)} digits") from None

    async def get_tasks(self, prompt_ids: Sequence[str], query: TaskQuery) -> list[TaskInfo]:
        self.refuse_query(query)
        if len(prompt_ids) == 1:
            found = await self._get_task(prompt_ids[0])
            return [found] if found is not None else []
        import asyncio  # here, not at the top: the CLI's --help must not import asyncio

        from .._gather import gather

        limit = asyncio.Semaphore(STATUS_FAN_OUT)

        async def one(prompt_id: str) -> TaskInfo | None:
            async with limit:
                return await self._get_task(prompt_id)

        answers = await gather(*(one(prompt_id) for prompt_id in prompt_ids))  # one fails: the others stop
        return [info for info in answers if info is not None]

    async def _get_task(self, prompt_id: str) -> TaskInfo | None:
        path = TASK_PATH.format(prompt_id=_path_segment(prompt_id))
        try:
            data = await self.http.call("GET", path, idempotent=True)
        except NotFoundError:
            return None  # the service does not know it: left out, as on a service with a batch endpoint
        info = parse_task_info(data, self.redact)
        if info.prompt_id != prompt_id:
            raise InvalidResponseError(f"asked for task {prompt_id!r}, the service answered for {info.prompt_id!r}")
        return info

    async def cancel(self, prompt_id: str) -> None:
        await self.http.call("POST", CANCEL_PATH, json={"task_id": _task_number(prompt_id)}, idempotent=True)

    async def upload(self, name: str, content: bytes, content_type: str) -> str:
        answer = await self.http.call(
            "GET", PRESIGN_PATH, params={"file_name": upload_name(name, content)}, idempotent=True
        )
        from .._files import check_result_url

        signed_url = None
        if isinstance(answer, Mapping):
            signed_url = answer.get("signed_url") or answer.get("signedUrl")
        if not isinstance(signed_url, str) or len(signed_url) > MAX_URL_CHARS:
            raise InvalidResponseError("the pre-signed upload answer holds no signed_url")
        check_result_url(signed_url, "the pre-signed upload URL")  # http(s), a host, parseable: else ours
        await self.http.storage_put(signed_url, content, content_type=UPLOAD_CONTENT_TYPE)
        committed = await self.http.call(
            "POST", COMMIT_PATH, json={"oss_url": object_url(signed_url)}, idempotent=True
        )
        oss_url = committed.get("oss_url") if isinstance(committed, Mapping) else None
        if not isinstance(oss_url, str) or not oss_url or len(oss_url) > MAX_URL_CHARS:
            raise InvalidResponseError("the upload commit answered without an oss_url")
        check_result_url(oss_url, "the committed upload URL")  # it goes into prompts: a URL, nothing else
        return oss_url


def _path_segment(prompt_id: str) -> str:
    """``prompt_id`` safe to put in the task path: ids are digits; anything else is refused, not escaped."""
    if not prompt_id.isascii() or not prompt_id.isdigit():
        raise InvalidInputError(f"a GPUGeek prompt_id is a string of digits, got {prompt_id!r}")
    return prompt_id


def _task_number(prompt_id: str) -> int:
    """The cancel endpoint's ``task_id``: the prompt_id as an integer, as its table says."""
    return int(_path_segment(prompt_id))
