"""``--events`` (alias ``--json-stream``): what ``run``, ``batch`` and ``watch`` do, as JSON lines on stdout.

One JSON object per line, nothing else on stdout (the human display is off; notes, warnings and errors stay on
stderr). Every object carries ``"schema": "genstudio.event/1"``, its ``type`` and its ``time`` (UTC, ISO 8601,
milliseconds, ``Z``: wall-clock time, comparable across processes and machines). The types:

- ``start``: the command began (``command``, ``service``, ``version``);
- ``submitted``: a task was created (``prompt_id``, ``job``, ``workflow_id``);
- ``following``: a task that already existed is followed (``watch``; a batch resuming a journaled task);
- ``progress``: a task's state changed (``status``, ``status_code``, ``progress``, ``queue_position``,
  ``queue_size``, ``source``): one line per change, never twice the same;
- ``downloaded``: a task's files were saved (``paths``);
- ``outcome``: how a job or task ended, exactly one per job or task the command got to (``status``: see
  ``OUTCOMES``; ``paths``, ``error``, ``cancelled``; a batch's ``moved_aside``);
- ``error``: the command's own error, the line it printed on stderr (``message``, ``exit_code``);
- ``end``: the command ended (``exit_code``), always the last line.

``prompt_id`` and ``job`` (a batch job's name; ``null`` elsewhere) are on every task's event. The JSON Schema of
these lines ships in the package (``event.schema.json`` beside this module, ``schema_path()``); the README
documents each type. Text from the service (an error message, an id) is escaped as ``--json`` escapes it
(``console.json_text``: C1 and bidi controls as ``\\uXXXX``), and every string goes through a redactor: neither
the API key nor a prompt token is ever in an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    ConfigurationError,
    EventLoopError,
    InvalidInputError,
    InvalidResponseError,
    TaskCancelledError,
    TaskPermissionError,
    TaskTimeoutError,
)
from .._redact import Redactor
from .._version import __version__
from ..types import Submission, TaskInfo
from . import defaults as CD
from .console import json_text

# How a job or task ended, as an ``outcome`` event (and ``run --json``/``watch --json``) says it.
SUCCEEDED = "succeeded"  # its files saved (or, with watch --no-download, the task succeeded)
FAILED = "failed"  # the task failed, or following it failed (the error says which)
CANCELLED = "cancelled"
PERMISSION_DENIED = "permission_denied"
TIMEOUT = "timeout"  # --timeout passed first; ``cancelled`` says whether --cancel-on-timeout cancelled it
DOWNLOAD_FAILED = "download_failed"  # the task succeeded, its files were not saved
NOT_FOUND = "not_found"  # watch: the service does not know the id
NEVER_SUBMITTED = "never_submitted"  # the service refused the submit (or it never left): no task was made
# No answer (or a 5xx, or an unreadable 200) to the submit: the service may have made the task.
SUBMIT_UNANSWERED = "submit_unanswered"
INTERRUPTED = "interrupted"  # Ctrl-C: the task (if any) goes on on the service
DONE_BEFORE = "done_before"  # batch: its files were saved by an earlier run
OUTCOMES = (
    SUCCEEDED, FAILED, CANCELLED, PERMISSION_DENIED, TIMEOUT, DOWNLOAD_FAILED, NOT_FOUND, NEVER_SUBMITTED,
    SUBMIT_UNANSWERED, INTERRUPTED, DONE_BEFORE,
)


def status_word(error: BaseException | None) -> str:
    """How a followed task ended, in one word of ``OUTCOMES``."""
    if error is None:
        return SUCCEEDED
    if isinstance(error, TaskTimeoutError):
        return TIMEOUT
    if isinstance(error, TaskCancelledError):
        return CANCELLED
    if isinstance(error, TaskPermissionError):
        return PERMISSION_DENIED
    return FAILED


def schema_path() -> Path:
    """The shipped JSON Schema of the event lines (a data file of this package)."""
    return Path(__file__).with_name(CD.CLI_EVENT_SCHEMA_FILE)


def utc_now() -> str:
    """Now, as every event's ``time``: ``2025-01-31T12:00:00.123Z``."""
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventLog:
    """The ``--events`` stream of one command; with no stream (no ``--events``) every method does nothing.

    ``redactor`` holds the command's secrets (the API key); ``learn`` adds a task's prompt token.
    """

    def __init__(self, stream: IO[str] | None, redactor: Redactor | None = None) -> None:
        self._stream = stream
        self._redact = redactor or Redactor()
        self._last_state: dict[tuple[str | None, str], tuple[object, ...]] = {}
        self.ended = False

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def learn(self, submission: Submission) -> None:
        """A task's token: masked wherever it might show up (it is never an event's business)."""
        self._redact.add(submission.prompt_token)

    def emit(self, kind: str, **fields: Any) -> None:
        """One event line, flushed at once (a reader sees each event as it happens)."""
        if self._stream is None or self.ended:
            return
        document = {"schema": CD.CLI_EVENT_SCHEMA, "type": kind, "time": utc_now(), **fields}
        self._stream.write(json_text(self._redacted(document), one_line=True) + "\n")
        self._stream.flush()

    def _redacted(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, dict):
            return {key: self._redacted(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._redacted(item) for item in value]
        return value

    # --- the event types ----------------------------------------------------------------------------------
    def start(self, command: str, service: str) -> None:
        self.emit("start", command=command, service=service, version=__version__)

    def submitted(self, submission: Submission, workflow_id: str | int, *, job: str | None = None) -> None:
        self.learn(submission)
        self.emit("submitted", prompt_id=submission.prompt_id, job=job, workflow_id=workflow_id)

    def following(self, prompt_id: str, *, job: str | None = None) -> None:
        self.emit("following", prompt_id=prompt_id, job=job)

    def progress(self, info: TaskInfo, *, job: str | None = None) -> None:
        """A snapshot of a task, emitted only when what an event shows of it changed."""
        if self._stream is None:
            return
        state = (info.status, info.progress, info.queue_position, info.queue_size)
        key = (job, info.prompt_id)
        if self._last_state.get(key) == state:
            return
        self._last_state[key] = state
        self.emit(
            "progress",
            prompt_id=info.prompt_id,
            job=job,
            status=info.status.name.lower(),
            status_code=int(info.status),
            progress=info.progress,
            queue_position=info.queue_position,
            queue_size=info.queue_size,
            source=getattr(info, "source", "poll"),
        )

    def downloaded(self, prompt_id: str, paths: Sequence[Path | str], *, job: str | None = None) -> None:
        self.emit("downloaded", prompt_id=prompt_id, job=job, paths=[str(path) for path in paths])

    def outcome(
        self,
        status: str,
        *,
        prompt_id: str | None,
        job: str | None = None,
        paths: Sequence[Path | str] = (),
        error: str | None = None,
        cancelled: bool = False,
        **extra: Any,
    ) -> None:
        """How a job or task ended (``status``: one of ``OUTCOMES``); ``cancelled``: this command cancelled its
        task on the service (``--cancel-on-timeout``)."""
        assert status in OUTCOMES, status
        self.emit(
            "outcome",
            prompt_id=prompt_id,
            job=job,
            status=status,
            paths=[str(path) for path in paths],
            error=error,
            cancelled=cancelled,
            **extra,
        )

    def error(self, message: str, exit_code: int) -> None:
        self.emit("error", message=message, exit_code=exit_code)

    def end(self, exit_code: int) -> None:
        self.emit("end", exit_code=exit_code)
        self.ended = True


def events_of(args: Any) -> EventLog:
    """The command's event stream (``cli`` opens it; a command run without one gets one that does nothing)."""
    events = getattr(args, "event_log", None)
    return events if isinstance(events, EventLog) else EventLog(None)


def submit_outcome(error: BaseException) -> str:
    """What a failed submit means for its job: ``never_submitted`` only when an answer proves the service made
    no task (it refused: an HTTP 4xx, a 429, a 503, a business error in a well-formed envelope), or nothing was
    sent (the request never left; the prompt or an image was refused before it); else ``submit_unanswered``: the
    service may have made it (no answer came, a 5xx other than 503, an HTTP 200 whose body the SDK cannot read or
    that lacks the prompt_id or token: a task was taken, only its name got lost). The SDK never sends such a
    submit twice, and neither does a rerun unasked."""
    if isinstance(error, APIConnectionError):
        return SUBMIT_UNANSWERED if error.request_sent else NEVER_SUBMITTED
    if isinstance(error, APIStatusError):
        return SUBMIT_UNANSWERED if error.status_code >= 500 and error.status_code != 503 else NEVER_SUBMITTED
    if isinstance(error, InvalidResponseError):  # an answer the SDK cannot read: it proves nothing
        return SUBMIT_UNANSWERED
    if isinstance(error, APIError | InvalidInputError | ConfigurationError | EventLoopError):
        return NEVER_SUBMITTED  # refused by the service, or before anything was sent
    return SUBMIT_UNANSWERED  # anything else: not proof that no task was made


def cancelled_on_timeout(error: BaseException | None) -> bool:
    """True when ``error`` is a timeout whose task was cancelled on the service (``--cancel-on-timeout``)."""
    return isinstance(error, TaskTimeoutError) and error.cancelled
