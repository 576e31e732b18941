"""The error tree: every exception a caller of this SDK can see.

```
GenStudioError
├── ConfigurationError            bad client settings (no API key, a malformed URL)
├── EventLoopError                an async client used on another event loop than the one that first used it
├── InvalidInputError             bad arguments, caught before any request
│   └── PromptValidationError     a prompt that does not fit the workflow (lists every problem)
├── APIConnectionError            the request did not get an HTTP answer
│   └── APITimeoutError
├── APIStatusError                an HTTP answer with a 4xx/5xx status
│   ├── BadRequestError (400)  AuthenticationError (401)  PermissionDeniedError (403)
│   ├── NotFoundError (404)    RateLimitError (429)       InternalServerError (5xx)
├── APIError                      HTTP 200 but the envelope's ``code`` is not 0
│   └── InvalidResponseError      an answer the SDK cannot use (not the promised shape, an HTML page...)
│       └── ResponseTooLargeError an answer or a download over its size cap (``limit`` names it)
├── TaskError                     the task ended without success (carries the last ``TaskInfo``)
│   ├── TaskFailedError (status 4)  TaskCancelledError (4, after we cancelled)  TaskPermissionError (5)
└── TaskTimeoutError              ``wait(timeout=)`` ran out
```

Messages never hold a whole API key or prompt token: the request loop redacts them before an error is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import TaskInfo

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "EventLoopError",
    "GenStudioError",
    "InternalServerError",
    "InvalidInputError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "PromptProblem",
    "PromptValidationError",
    "RateLimitError",
    "ResponseTooLargeError",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskPermissionError",
    "TaskTimeoutError",
]


class GenStudioError(Exception):
    """The base of every error this SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle by state: subclasses take keyword-only arguments that Exception's default reduce cannot replay
        # (a process pool or multiprocessing queue sends a worker's error back this way).
        return (_rebuild, (type(self), self.args, dict(vars(self))))


def _rebuild(cls: type[GenStudioError], args: tuple[Any, ...], state: dict[str, Any]) -> GenStudioError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigurationError(GenStudioError, ValueError):
    """The client cannot be built as asked: no API key, a URL that is not http(s), and so on."""


class EventLoopError(GenStudioError, RuntimeError):
    """An async client was used on an event loop other than the one that first used it.

    Its connections belong to that loop (each ``asyncio.run()`` starts a new one), so the SDK refuses rather than
    let httpx fail with ``Event loop is closed``. Use one client per event loop, created inside it, or the sync
    twin (``GenStudio``, ``GPUGeek``), which runs its own loop. A sync client called from its own helper thread
    (from an async callback it runs there) raises it too.
    """


class InvalidInputError(GenStudioError, ValueError):
    """An argument was rejected before any request was sent."""


@dataclass(frozen=True)
class PromptProblem:
    """One thing wrong with a prompt: where it is, what is wrong, and what would be allowed."""

    node_id: str
    input: str | None
    problem: str
    allowed: str | None = None
    title: str | None = None

    def __str__(self) -> str:
        where = f"node {self.node_id!r}"
        if self.title:
            where += f" ({self.title})"
        if self.input is not None:
            where += f" input {self.input!r}"
        text = f"{where}: {self.problem}"
        if self.allowed:
            text += f" (allowed: {self.allowed})"
        return text


class PromptValidationError(InvalidInputError):
    """A prompt does not fit its workflow. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: Sequence[PromptProblem] | str) -> None:
        if isinstance(problems, str):
            self.problems: list[PromptProblem] = []
            super().__init__(problems)
            return
        self.problems = list(problems)
        count = len(self.problems)
        lines = [f"the prompt has {count} problem{'s' if count != 1 else ''}:"]
        lines += [f"  - {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))


class APIConnectionError(GenStudioError):
    """The request never got an HTTP answer: DNS, refused connection, reset, TLS, protocol error.

    ``request_sent`` is ``False`` only when the request certainly never left (no connection could be made): a
    submit that failed that way created no task. When it is ``True`` the server may have acted on it.
    """

    def __init__(
        self, message: str = "connection error", *, request_id: str | None = None, request_sent: bool = True
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """The request timed out (connect, write, read or pool)."""

    def __init__(self, message: str = "request timed out", *, request_sent: bool = True) -> None:
        super().__init__(message, request_sent=request_sent)


class _ServerReported(GenStudioError):
    """Shared fields of an error the server reported: its ``code``, ``msg`` and ``traceid``."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        traceid: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.traceid = traceid
        self.body = body

    def __str__(self) -> str:
        text = self.message
        if self.code is not None:
            text += f" (code={self.code})"
        if self.traceid:
            text += f" [traceid={self.traceid}]"
        return text


class APIStatusError(_ServerReported):
    """The server answered with a 4xx or 5xx HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: int | None = None,
        traceid: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, traceid=traceid, body=body)
        self.status_code = status_code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {super().__str__()}"


class BadRequestError(APIStatusError):
    """HTTP 400."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""


class NotFoundError(APIStatusError):
    """HTTP 404."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests. ``retry_after`` holds the server's hint in seconds, if it gave one."""


class InternalServerError(APIStatusError):
    """HTTP 5xx."""


class APIError(_ServerReported):
    """HTTP 200 with an envelope whose ``code`` is not 0: a business error, never retried."""

    code: int

    def __init__(self, message: str, *, code: int, traceid: str | None = None, body: Any = None) -> None:
        super().__init__(message, code=code, traceid=traceid, body=body)


# Code reported in an InvalidResponseError: the answer is not the envelope or shape the service promises.
INVALID_RESPONSE_CODE = -1


class InvalidResponseError(APIError):
    """An answer the SDK cannot use: not the envelope or shape the service promises, a result URL that does not
    parse, an HTML error page where an image was expected. Its ``code`` is ``INVALID_RESPONSE_CODE`` (-1)."""

    def __init__(self, message: str, *, traceid: str | None = None, body: Any = None) -> None:
        super().__init__(message, code=INVALID_RESPONSE_CODE, traceid=traceid, body=body)


class ResponseTooLargeError(InvalidResponseError):
    """An API answer or a downloaded file grew past its cap, or a result named more files than a download takes.
    ``limit`` is the cap (in bytes; for a result's files, a number of files); ``what`` names the answer or file;
    the message names the setting that raises the cap."""

    def __init__(self, message: str, *, limit: int, what: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.what = what


class TaskError(GenStudioError):
    """A task ended without success. ``info`` is its last ``TaskInfo``."""

    def __init__(self, message: str, info: TaskInfo) -> None:
        super().__init__(message)
        self.info = info

    @property
    def prompt_id(self) -> str:
        return self.info.prompt_id


class TaskFailedError(TaskError):
    """Status 4: the task failed. ``info.error_message`` holds the server's ``errMsg``."""


class TaskCancelledError(TaskError):
    """Status 4 for a task this client cancelled."""


class TaskPermissionError(TaskError):
    """Status 5: permission denied."""


class TaskTimeoutError(GenStudioError, TimeoutError):
    """``wait(timeout=)`` ran out before the task reached a terminal status.

    The task goes on on the service, unless ``cancel_on_timeout`` asked for it to be cancelled: ``cancelled`` says
    whether that cancel was made (``False`` when not asked, or when the service refused it; the message says).
    """

    def __init__(
        self,
        message: str,
        *,
        prompt_id: str,
        timeout: float,
        last_info: TaskInfo | None,
        cancelled: bool = False,
    ) -> None:
        super().__init__(message)
        self.prompt_id = prompt_id
        self.timeout = timeout
        self.last_info = last_info
        self.cancelled = cancelled
