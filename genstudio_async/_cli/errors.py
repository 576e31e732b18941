"""Exit codes, and how an error becomes one line on stderr.

The codes are part of the command's interface (``genstudio --help`` lists them), so scripts can tell "the
task failed" from "the flags were wrong" from "the service could not be reached".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import urlsplit, urlunsplit

from .._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    AuthenticationError,
    ConfigurationError,
    GenStudioError,
    InvalidInputError,
    PromptValidationError,
    TaskError,
    TaskTimeoutError,
)


class ExitCode(IntEnum):
    """What ``genstudio`` returns to the shell."""

    OK = 0
    FAILED = 1  # a task or job failed, was cancelled, denied or timed out; an unknown task; cancel: already ended
    USAGE = 2  # bad flags or input: a prompt that does not fit, a missing file, no API key
    API = 3  # the service refused a request (auth, HTTP error, business error) or could not be reached
    INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM gives 143
    TERMINATED = 143


EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    a task or job failed, was cancelled or denied, or timed out (it goes on: see 'genstudio watch');
       'status' was asked about an unknown task; 'cancel' found a task already ended; the emulator could
       not start
  2    usage or invalid input: bad flags, a prompt that does not fit its spec (every problem is listed and
       nothing is sent), a missing file, no API key
  3    the service refused a request (authentication, HTTP or business error) or could not be reached
  130  interrupted by Ctrl-C (143: a batch stopped by SIGTERM); a batch's journal is intact, a rerun resumes it
"""


class CLIError(Exception):
    """An error the command reports as it is: one message, one exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


KEY_FROM_FLAG = "--api-key"


@dataclass(frozen=True)
class Endpoint:
    """Where a command's requests go, for its error messages: the base URL, and where its API key came from
    (``--api-key``, or the service's variable: ``GENSTUDIO_API_KEY``, ``GPUGEEK_API_KEY``). ``make_client``
    records it."""

    base_url: str
    key_source: str

    @property
    def shown_url(self) -> str:
        """The base URL without any user:password, query or fragment (only where the requests went)."""
        parts = urlsplit(self.base_url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))

    @property
    def key_hint(self) -> str:
        """Where to look when the key is refused."""
        return "the key given with --api-key" if self.key_source == KEY_FROM_FLAG else self.key_source


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code that an error stands for."""
    if isinstance(error, CLIError):
        return error.code
    if isinstance(error, TaskError | TaskTimeoutError):
        return ExitCode.FAILED
    if isinstance(error, ConfigurationError | InvalidInputError):
        return ExitCode.USAGE
    if isinstance(error, APIStatusError | APIError | APIConnectionError):
        return ExitCode.API
    if isinstance(error, GenStudioError):
        return ExitCode.FAILED  # e.g. a download that could not be written
    return ExitCode.FAILED


def describe_error(error: BaseException, endpoint: Endpoint | None = None) -> str:
    """The error as the user should read it: one line, or a header and one line per problem of a prompt.

    ``endpoint``: where the request that failed was sent (leave it out for a download, which goes to the
    storage host of a signed URL): a connection error names its base URL, a refused key where it came from.
    """
    if isinstance(error, PromptValidationError) and error.problems:
        count = len(error.problems)
        lines = [f"the prompt has {count} problem{'s' if count != 1 else ''}; nothing was sent:"]
        lines += [f"  - {problem}" for problem in error.problems]
        return "\n".join(lines)
    if isinstance(error, CLIError):
        return error.message
    if isinstance(error, TaskTimeoutError):
        if error.cancelled:  # --cancel-on-timeout: the SDK's message says it was cancelled on the service
            return one_line(str(error))
        return f"{one_line(str(error))} (the task goes on: 'genstudio watch {error.prompt_id}')"
    text = one_line(str(error)) or type(error).__name__
    if isinstance(error, APIConnectionError):
        where = f"{endpoint.shown_url}: " if endpoint else ""
        return f"cannot reach the service: {where}{text}"
    if isinstance(error, AuthenticationError):
        return f"{text} (check {endpoint.key_hint if endpoint else 'the API key'})"
    return text


def one_line(text: str) -> str:
    """``text`` with its line breaks folded into spaces."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
