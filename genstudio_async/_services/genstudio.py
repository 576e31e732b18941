"""GenStudio's wire (``cloud.infini-ai.com``): HTTP endpoints, a progress WebSocket, many tasks per status call.

Everything here is what ``../shared/docs/genstudio-api-guide.txt`` documents:

- envelope ``{"code": 0, "msg": "Success", "data": …}``; ``code != 0`` is a business error even with HTTP 200;
- ``POST …/prompt {"workflow_id", "prompt"}`` → ``{prompt_id, prompt_token}``; ``prompt`` holds the input
  overrides only, ``{node_id: {"inputs": {…}}}``;
- ``POST …/get_task_info {"comfy_task_ids": [...], "url_expire_period"?, "image_post_process_cmd"?}`` →
  ``{"comfy_task_info": [...]}``, many ids in one call;
- ``POST …/cancel`` (the docs do not name the body field: see ``CANCEL_BODY_FIELD``);
- ``POST …/upload/image``, multipart field ``source_file`` → ``image_id`` (inside ``data`` or flat);
- ``wss://…/get_task_progress?authorization=<prompt_token>``: each text frame a full ``{"comfy_task_info": {…}}``;
- statuses 1 queued, 2 running, 3 succeeded, 4 failed *or cancelled*, 5 permission denied;
- task fields ``comfy_task_id, status, queue_size, current_position, errMsg, progress_num, files, final_files``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

from .._exceptions import ConfigurationError, InvalidInputError, InvalidResponseError
from .._prompt import copy_overrides, prompt_shape_problems
from .._redact import Redactor
from .._status import TaskStatus
from ._base import Environment, ProgressSocket, Service, TaskQuery, _task_info_fields, wire_fields

if TYPE_CHECKING:  # imported where used (pydantic), so that reading this module's names stays light
    from ..types import ImagePostProcess, ProgressEvent, Submission, TaskInfo

log = logging.getLogger("genstudio_async")

DEFAULT_BASE_URL: Final = "https://cloud.infini-ai.com"
ENV_API_KEY: Final = "GENSTUDIO_API_KEY"
ENV_BASE_URL: Final = "GENSTUDIO_BASE_URL"
ENV_WS_URL: Final = "GENSTUDIO_WS_URL"
ENVIRONMENT: Final = Environment(api_key=ENV_API_KEY, base_url=ENV_BASE_URL, ws_url=ENV_WS_URL)

SUBMIT_PATH: Final = "/api/maas/comfy_task_api/prompt"
TASK_INFO_PATH: Final = "/api/maas/comfy_task_api/get_task_info"
CANCEL_PATH: Final = "/api/maas/comfy_task_api/cancel"
UPLOAD_PATH: Final = "/api/maas/comfy_task_api/upload/image"
PROGRESS_WS_PATH: Final = "/api/maas/comfy_task_ws_api/get_task_progress"
PROGRESS_WS_TOKEN_PARAM: Final = "authorization"

# The service's documentation does not name the body field of the cancel endpoint. This SDK sends
# ``{"comfy_task_id": "<prompt_id>"}``, the name the service uses for a task everywhere else. If the service
# turns out to want another shape, this is the single line to change (the README says so too).
CANCEL_BODY_FIELD: Final = "comfy_task_id"

UPLOAD_FIELD: Final = "source_file"
# How many ids one get_task_info call asks for (the shared poller's chunk).
STATUS_BATCH_SIZE: Final = 50

# The wire's status numbers. 4 is "failed, or cancelled by the user": a client that cancelled a task itself
# reports its 4 as a cancellation (TaskCancelledError).
STATUSES: Final[Mapping[int, TaskStatus]] = {
    1: TaskStatus.QUEUED,
    2: TaskStatus.RUNNING,
    3: TaskStatus.SUCCEEDED,
    4: TaskStatus.FAILED,
    5: TaskStatus.PERMISSION_DENIED,
}

# Wire names → TaskInfo's names (the rest of a task entry is kept as it is, in ``model_extra``).
_FIELDS: Final = {
    "comfy_task_id": "prompt_id",
    "status": "status",
    "progress_num": "progress",
    "current_position": "queue_position",
    "queue_size": "queue_size",
    "errMsg": "error_message",
    "files": "files",
    "final_files": "final_files",
}


def status_of(value: Any) -> TaskStatus:
    """The status for a wire value; anything unrecognised is ``UNKNOWN`` (never terminal), never an error."""
    return TaskStatus.from_wire(value, STATUSES)


def task_fields(raw: Mapping[str, Any], redact: Redactor | None = None) -> dict[str, Any]:
    """A wire task entry as ``TaskInfo`` keyword values (unknown wire fields kept under their own names)."""
    fields = wire_fields(raw, _FIELDS, redact)
    fields["status"] = status_of(raw.get("status"))
    return fields


def parse_task_info(raw: Any, redact: Redactor | None = None) -> TaskInfo:
    """One entry of ``comfy_task_info`` as a ``TaskInfo``; ``InvalidResponseError`` when it names no task."""
    from ..types import TaskInfo

    if not isinstance(raw, Mapping) or raw.get("comfy_task_id") in (None, ""):
        raise InvalidResponseError("get_task_info answered with a task entry that has no comfy_task_id")
    try:
        return TaskInfo.model_validate(task_fields(raw, redact))
    except ValueError:  # pydantic's ValidationError
        raise InvalidResponseError("get_task_info answered with a task entry that cannot be read") from None


def parse_task_infos(data: Any, asked: Sequence[str], redact: Redactor | None = None) -> list[TaskInfo]:
    """The tasks of a ``get_task_info`` answer that were asked for, in the order asked."""
    items = data.get("comfy_task_info") if isinstance(data, Mapping) else None
    if items is None:
        items = []
    if isinstance(items, Mapping):  # the WebSocket's single-object shape, met on HTTP too
        items = [items]
    if not isinstance(items, list):
        raise InvalidResponseError("get_task_info answered without a comfy_task_info list")
    by_id = {info.prompt_id: info for info in (parse_task_info(item, redact) for item in items)}
    return [by_id[prompt_id] for prompt_id in asked if prompt_id in by_id]


def post_process_command(value: ImagePostProcess | Mapping[str, Any]) -> dict[str, Any]:
    """``image_post_process_cmd`` for ``value``."""
    from ..types import ImagePostProcess

    if isinstance(value, ImagePostProcess):
        return value.to_wire()
    if isinstance(value, Mapping):
        return dict(value)
    raise InvalidInputError(f"image_post_process must be an ImagePostProcess or a dict, got {type(value).__name__}")


def progress_ws_url(ws_url: str | None, base_url: str) -> str:
    """The full progress-stream endpoint: from ``ws_url`` (the path is appended when missing) or ``base_url``."""
    if ws_url is None:
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + PROGRESS_WS_PATH, "", ""))
    try:
        parts = urlsplit(ws_url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigurationError(f"ws_url is not a valid URL ({exc}): {ws_url!r}") from None
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigurationError(f"ws_url must be a ws:// or wss:// URL, got {ws_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(PROGRESS_WS_PATH):
        path += PROGRESS_WS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class GenStudioSocket(ProgressSocket):
    """``get_task_progress``: a socket per task, opened with its ``prompt_token``; frames are full snapshots."""

    def __init__(self, ws_url: str, redact: Redactor) -> None:
        from ..types import ProgressEvent, _normalise_files, _normalise_url_list, plain_event

        self.ws_url = ws_url
        self._redact = redact
        self._event = ProgressEvent
        self._plain_parts = (_normalise_files, _normalise_url_list, plain_event)
        # True until a plain build (``_plain_event``) differs from pydantic's: then every frame is validated.
        self._plain = True
        self._plain_checked = False
        self._shapes: dict[tuple[str, ...], tuple[frozenset[str], tuple[str, ...]]] = {}

    def url(self, prompt_token: str) -> str:
        return f"{self.ws_url}?{PROGRESS_WS_TOKEN_PARAM}={quote(prompt_token, safe='')}"

    def parse_frame(self, frame: str | bytes, prompt_id: str) -> ProgressEvent | None:
        try:
            message = json.loads(frame)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: absurd nesting
            log.debug("stream %s: skipped a frame that is not JSON (%d bytes)", prompt_id, len(frame))
            return None
        raw = message.get("comfy_task_info") if isinstance(message, dict) else None
        if not isinstance(raw, dict):
            log.debug("stream %s: skipped a frame without comfy_task_info", prompt_id)
            return None
        if self._plain:
            plain = self._plain_event(raw, prompt_id)
            if plain is not None:
                if self._plain_checked:
                    return plain
                return self._check_plain(plain, raw, prompt_id)
        return self._validated(raw, prompt_id)

    def _validated(self, raw: Mapping[str, Any], prompt_id: str) -> ProgressEvent | None:
        fields = task_fields(raw, self._redact)
        fields.setdefault("prompt_id", prompt_id)
        fields["source"] = "websocket"
        try:
            event = self._event.model_validate(fields)
        except ValueError:  # pydantic's ValidationError
            log.debug("stream %s: skipped a malformed snapshot", prompt_id)
            return None
        if event.prompt_id != prompt_id:
            log.debug("stream %s: skipped a snapshot of another task", prompt_id)
            return None
        return event

    def _plain_event(self, raw: dict[str, Any], prompt_id: str) -> ProgressEvent | None:
        """What ``_validated`` makes of a snapshot whose values all have the types the docs give them, built without
        pydantic's pass (``plain_event``); ``None`` for any other snapshot, which ``_validated`` reads.

        The same rules, read the fast way: the status from ``STATUSES``, free text and every extra field redacted,
        ``files`` and ``final_files`` normalised by the validators' own functions; a missing field is its default.
        A count that is not a plain ``int`` in range (a float, a string, 101, a bool), an id that is not this
        task's, an error message that is not a string, a status that is not a number: the whole snapshot goes
        through pydantic. Which fields were given, and which are extra, is worked out once per shape of frame
        (its keys, in order: a server sends the same few over and over).
        """
        get = raw.get
        redact = self._redact
        status = get("status")
        progress = get("progress_num", 0)
        position = get("current_position", 0)
        size = get("queue_size", 0)
        if (
            type(status) is not int
            or type(progress) is not int
            or type(position) is not int
            or type(size) is not int
            or not 0 <= progress <= 100
            or not -_EXACT_INT <= position <= _EXACT_INT  # int(float(n)), the count validator, is n
            or not -_EXACT_INT <= size <= _EXACT_INT
        ):
            return None
        task_id = get("comfy_task_id", prompt_id)
        if task_id != prompt_id or type(task_id) is not str:
            return None
        message = get("errMsg")
        if message is not None:
            if type(message) is not str:
                return None
            message = (redact(message) or None) if message else None
        shape = self._shape(raw)
        if shape is None:
            return None
        fields_set, extra_keys = shape
        extra: dict[str, Any] = {}
        for key in extra_keys:
            if redact.name(key) != key:  # a secret in a field's name: ``wire_fields`` masks it, pydantic reads that
                return None
            value = raw[key]
            extra[key] = value if isinstance(value, _NUMBERS) else redact.excerpt(value)
        files = get("files")
        final_files = get("final_files")
        normalise_files, normalise_urls, plain_event = self._plain_parts
        values = {
            "prompt_id": prompt_id,
            "status": STATUSES.get(status, TaskStatus.UNKNOWN),
            "progress": progress,
            "queue_position": position,
            "queue_size": size,
            "error_message": message,
            # Empty (or absent: ``None``) on most frames, which the normalisers would make ``{}`` and ``[]`` of too.
            "files": normalise_files(files) if files else {},
            "final_files": normalise_urls(final_files) if final_files else [],
            "source": "websocket",
        }
        return plain_event(values, set(fields_set), extra)

    def _shape(self, raw: dict[str, Any]) -> tuple[frozenset[str], tuple[str, ...]] | None:
        """The names a frame with ``raw``'s keys gives (extra ones included: pydantic's ``model_fields_set``) and
        its extra keys, in order; ``None`` for a frame of too many keys to remember."""
        if len(raw) > _PLAIN_MAX_KEYS:
            return None
        keys = tuple(raw)
        shape = self._shapes.get(keys)
        if shape is None:
            own = _task_info_fields()
            # ``source`` too: ``_validated`` sets it over whatever the wire said.
            extra_keys = tuple(key for key in keys if key not in _FIELDS and key not in own and key != "source")
            given = {"prompt_id", "status", "source", *(_FIELDS[key] for key in keys if key in _FIELDS), *extra_keys}
            shape = (frozenset(given), extra_keys)
            # Remembered for the client's life: never a hostile server's megabyte-long keys.
            if len(self._shapes) < _PLAIN_MAX_SHAPES and sum(map(len, keys)) <= _PLAIN_MAX_SHAPE_CHARS:
                self._shapes[keys] = shape
        return shape

    def _check_plain(self, plain: ProgressEvent, raw: Mapping[str, Any], prompt_id: str) -> ProgressEvent | None:
        """The first plain event, held against pydantic's: alike, the plain way is trusted from then on."""
        from ..types import same_model

        validated = self._validated(raw, prompt_id)
        if validated is not None and same_model(plain, validated):
            self._plain_checked = True
        else:
            log.debug("stream %s: a plain snapshot differs from pydantic's; validating every frame", prompt_id)
            self._plain = False
        return validated


# The largest magnitude below which every int survives ``int(float(n))`` (the count validator) unchanged.
_EXACT_INT: Final = 2**53
# A frame read the plain way has at most this many keys; at most this many shapes of frame are remembered.
_PLAIN_MAX_KEYS: Final = 32
_PLAIN_MAX_SHAPES: Final = 16
# A shape is remembered only if its keys are at most this many characters in all (the documented ones: ~90).
_PLAIN_MAX_SHAPE_CHARS: Final = 1024
_NUMBERS: Final = (int, float)


class GenStudio(Service):
    """GenStudio: overrides-only prompts, a progress WebSocket, 50 ids per status request."""

    name = "GenStudio"
    client_name = "AsyncGenStudio"
    default_base_url = DEFAULT_BASE_URL
    environment = ENVIRONMENT
    message_fields = ("msg", "message")
    status_batch_size = STATUS_BATCH_SIZE
    workflow_id_hint = "a string such as 'wf-c73diz7kadp6ffgn'"
    whole_workflow = False
    push_stream = True
    reports_percent = True
    failure_may_be_cancel = True

    @classmethod
    def workflow_id(cls, workflow_id: object) -> str:
        if not isinstance(workflow_id, str) or not workflow_id.strip():
            raise InvalidInputError(f"workflow_id must be a non-empty string, got {workflow_id!r}")
        return workflow_id.strip()

    @classmethod
    def prompt_problems(cls, prompt: Mapping[Any, Any]) -> list[Any]:
        return prompt_shape_problems(prompt)

    @classmethod
    def copy_prompt(cls, prompt: Mapping[Any, Any]) -> dict[str, Any]:
        return copy_overrides(prompt)

    async def submit(self, workflow_id: str | int, prompt: dict[str, Any] | None) -> Submission:
        body: dict[str, Any] = {"workflow_id": workflow_id}
        if prompt is not None:
            body["prompt"] = prompt
        from ..types import Submission

        data = await self.http.call("POST", SUBMIT_PATH, json=body, idempotent=False)
        try:
            submission = Submission.model_validate(data)
        except ValueError:  # pydantic's ValidationError (not quoted: it would show the token)
            raise InvalidResponseError("submit answered without a usable prompt_id and prompt_token") from None
        if submission.prompt_token is None:
            raise InvalidResponseError("submit answered without a prompt_token")
        self.redact.add(submission.prompt_token)
        return submission

    async def get_tasks(self, prompt_ids: Sequence[str], query: TaskQuery) -> list[TaskInfo]:
        body: dict[str, Any] = {"comfy_task_ids": list(prompt_ids)}
        if query.url_expire_period is not None:
            period = query.url_expire_period
            if isinstance(period, bool) or not isinstance(period, int) or period < 1:
                raise InvalidInputError(f"url_expire_period must be a positive int of seconds, got {period!r}")
            body["url_expire_period"] = period
        if query.image_post_process is not None:
            body["image_post_process_cmd"] = post_process_command(query.image_post_process)
        data = await self.http.call("POST", TASK_INFO_PATH, json=body, idempotent=True)
        return parse_task_infos(data, prompt_ids, self.redact)

    async def cancel(self, prompt_id: str) -> None:
        await self.http.call("POST", CANCEL_PATH, json={CANCEL_BODY_FIELD: prompt_id}, idempotent=True)

    async def upload(self, name: str, content: bytes, content_type: str) -> str:
        data = await self.http.call(
            "POST",
            UPLOAD_PATH,
            files={UPLOAD_FIELD: (name, content, content_type)},
            idempotent=False,
            timeout=self.http.upload_timeout,
        )
        image_id = data.get("image_id") if isinstance(data, Mapping) else None
        if not isinstance(image_id, str) or not image_id:
            raise InvalidResponseError("upload answered without an image_id")
        return image_id

    def progress_socket(self, ws_url: str | None) -> ProgressSocket | None:
        assert ws_url is not None
        return GenStudioSocket(ws_url, self.redact)
