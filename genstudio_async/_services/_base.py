"""What a hosted ComfyUI API must tell the engine: its wire, and what it can do.

The engine (request loop, poller, stream, downloads, batches, the CLI) is service-neutral; everything one
service's wire is lives in one module of this package, a subclass of :class:`Service`:

- where it is: base URL and the environment variables of its key, base URL (and WebSocket URL);
- its envelope: which field holds the error text (``msg`` or ``message``);
- its endpoints, request bodies and how its answers become ``Submission`` and ``TaskInfo``;
- its status numbers (a 5 means "permission denied" on one service and "cancelled" on the other);
- what it can do: a push stream of progress (``progress_socket``), and how many tasks one status request may
  ask for (``status_batch_size``: 50 ids in one call, or one request per task);
- the shape its ``prompt`` must have (input overrides only, or the whole API-format workflow) and how a local
  image is uploaded.

A change to one service's wire touches its module and nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from .._exceptions import InvalidInputError, PromptValidationError
from .._redact import Redactor

if TYPE_CHECKING:  # the models are imported where they are used: the CLI's --help reads this package without them
    from .._http import HTTPCore
    from ..types import ImagePostProcess, ProgressEvent, Submission, TaskInfo
    from ..workflow import WorkflowSpec


def is_plain_id(text: str) -> bool:
    """Whether ``text`` holds no whitespace and no control (non-printable) character: an id fit for a folder name,
    a journal line, a terminal line.

    ``str.isprintable`` in C instead of a Python test per character (once per request and per stream): every
    whitespace character but the ASCII space is non-printable, so only the space needs looking for apart
    (``tests/test_services_base.py`` checks this over all of Unicode).
    """
    return text.isprintable() and " " not in text


@cache
def _task_info_fields() -> frozenset[str]:
    """``TaskInfo``'s field names, read once: ``TaskInfo.model_fields`` is a descriptor that calls a function on
    every access (pydantic >= 2.11), and a frame with extra fields asked it once per field."""
    from ..types import TaskInfo

    return frozenset(TaskInfo.model_fields)


def wire_fields(raw: Mapping[str, Any], names: Mapping[str, str], redact: Redactor | None) -> dict[str, Any]:
    """A wire task object's fields under ``TaskInfo``'s names (``names``: wire name → ours).

    Fields the SDK has no name for are kept under their own (``model_extra``), unless theirs is one of our own
    fields. A server may echo a secret anywhere: the free text (``error_message``) and every extra field, its name
    included, are masked with ``redact``.
    """
    own = _task_info_fields()
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        name = names.get(key)
        if name is not None:
            fields[name] = value
        elif key not in own:
            if redact is not None:
                key = redact.name(key)  # a server may echo a secret as a field's name too
            fields[key] = redact.excerpt(value) if redact is not None and not isinstance(value, int | float) else value
    message = fields.get("error_message")
    if redact is not None and isinstance(message, str) and message:
        fields["error_message"] = redact(message)
    return fields


@dataclass(frozen=True)
class Environment:
    """The environment variables a service's client reads when an argument is not given."""

    api_key: str
    base_url: str
    ws_url: str | None = None


@dataclass(frozen=True)
class TaskQuery:
    """Options of a status request that only some services honour."""

    url_expire_period: int | None = None
    image_post_process: ImagePostProcess | Mapping[str, Any] | None = None

    @property
    def is_default(self) -> bool:
        return self.url_expire_period is None and self.image_post_process is None


class ProgressSocket(ABC):
    """A service's push stream of progress: the URL a task's socket opens, and what its frames mean."""

    ws_url: str
    """The endpoint, without a token (the proxy settings are read for it)."""

    @abstractmethod
    def url(self, prompt_token: str) -> str:
        """The WebSocket URL for the task whose token this is (the token is a credential: never log it)."""

    @abstractmethod
    def parse_frame(self, frame: str | bytes, prompt_id: str) -> ProgressEvent | None:
        """The snapshot in one text frame, or ``None`` for a frame that is not a snapshot of ``prompt_id``."""


class Service(ABC):
    """One hosted ComfyUI API, bound to a client's request loop."""

    name: ClassVar[str]
    """The service's name in messages (``"GenStudio"``)."""
    client_name: ClassVar[str]
    """The async client class built on it, for messages that say what to create (``"AsyncGenStudio"``)."""
    default_base_url: ClassVar[str]
    environment: ClassVar[Environment]
    message_fields: ClassVar[tuple[str, ...]]
    """Envelope fields that may hold the error text, the service's own first."""
    status_batch_size: ClassVar[int]
    """How many task ids one status request may carry; 1: the service answers one task per request."""
    workflow_id_hint: ClassVar[str]
    """What a workflow id looks like, for error messages."""
    whole_workflow: ClassVar[bool]
    """Its prompt is the whole API-format workflow (it runs what it is sent), not input overrides."""
    push_stream: ClassVar[bool]
    """It pushes progress over a socket (``progress_socket``); else progress is polled."""
    reports_percent: ClassVar[bool]
    """Its ``progress`` is a percent; else 0 until the task succeeds, then 100."""
    failure_may_be_cancel: ClassVar[bool]
    """Its failure status also means "cancelled by the user" (only the canceller can tell the two apart)."""

    def __init__(self, http: HTTPCore, redact: Redactor) -> None:
        self.http = http
        self.redact = redact

    # --- prompts -----------------------------------------------------------------------------------------
    # The prompt rules need no client: class methods, so a command can check a jobs file before it makes one.
    @classmethod
    def task_id(cls, prompt_id: str) -> str:
        """``prompt_id`` checked to be one this service can have; ``InvalidInputError`` otherwise (before any
        request: a poll for an id that cannot exist would wait for ever)."""
        if not is_plain_id(prompt_id) or len(prompt_id) > 256:
            raise InvalidInputError(f"{prompt_id!r} cannot be a {cls.name} prompt_id")
        return prompt_id

    @classmethod
    @abstractmethod
    def workflow_id(cls, workflow_id: object) -> str | int:
        """The wire value of a workflow id; ``InvalidInputError`` for one this service cannot have."""

    @classmethod
    @abstractmethod
    def prompt_problems(cls, prompt: Mapping[Any, Any]) -> list[Any]:
        """Every way ``prompt`` departs from the shape this service takes (``PromptProblem`` list)."""

    @classmethod
    @abstractmethod
    def copy_prompt(cls, prompt: Mapping[Any, Any]) -> dict[str, Any]:
        """A copy of a well-shaped ``prompt`` that the caller's later changes cannot reach, with string node ids."""

    @classmethod
    def check_prompt(cls, prompt: Mapping[Any, Any] | None, spec: WorkflowSpec | None) -> dict[str, Any] | None:
        """``prompt`` checked once (its shape, then against ``spec`` when given) and copied; raises
        ``PromptValidationError`` listing every problem."""
        if prompt is None:
            return None
        problems = cls.prompt_problems(prompt)
        if spec is not None and isinstance(prompt, Mapping):
            problems += spec.input_problems(cls.spec_view(prompt), problems)
        if problems:
            raise PromptValidationError(problems)
        return cls.copy_prompt(prompt)

    @classmethod
    def spec_view(cls, prompt: Mapping[Any, Any]) -> Mapping[Any, Any]:
        """The part of ``prompt`` a parameter spec ("入参范围") checks: ``{node_id: {"inputs": {...}}}``."""
        return prompt

    # --- requests ----------------------------------------------------------------------------------------
    @abstractmethod
    async def submit(self, workflow_id: str | int, prompt: dict[str, Any] | None) -> Submission:
        """Queue a task; never sent twice when the server may have taken it (the request loop's rule)."""

    @abstractmethod
    async def get_tasks(self, prompt_ids: Sequence[str], query: TaskQuery) -> list[TaskInfo]:
        """The known tasks among ``prompt_ids``, in the order asked; unknown ids are left out."""

    @abstractmethod
    async def cancel(self, prompt_id: str) -> None:
        """Ask the service to cancel a task."""

    @abstractmethod
    async def upload(self, name: str, content: bytes, content_type: str) -> str:
        """Upload an image; the value an image input of a prompt takes (an image id or a URL)."""

    def progress_socket(self, ws_url: str | None) -> ProgressSocket | None:
        """The push stream of progress, if the service has one (``ws_url``: where, when it has)."""
        return None

    def refuse_query(self, query: TaskQuery) -> None:
        """Raise ``InvalidInputError`` for status options this service does not have."""
        if not query.is_default:
            raise InvalidInputError(
                f"{self.name} has no url_expire_period or image_post_process: its status request takes only an id"
            )
