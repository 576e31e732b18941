"""The SDK's logging, in one place: its logger, ``GENSTUDIO_LOG``, and the filter that masks secrets.

Every module logs through ``log`` (``genstudio_async``). Nothing reaches a handler unless the application
configures logging, or ``GENSTUDIO_LOG=debug|info|warning|error`` is set (read once, when the first client is
built), or the CLI's ``--debug`` asks for it (``enable_stderr``). Loggers the SDK does not write itself
(websockets logs the handshake line with the token in it; uvicorn, in the emulator, its access log) get a
``RedactingFilter`` first.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, Final

from ._redact import Redactor, redact_shapes
from ._text import printable

ENV_LOG: Final = "GENSTUDIO_LOG"

log = logging.getLogger("genstudio_async")

LEVELS: Final = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
FORMAT: Final = "%(asctime)s %(name)s %(levelname)s %(message)s"

_configured_from_env = False


class PrintableFormatter(logging.Formatter):
    """Log lines as a terminal should show them: a message that quotes a server (a frame, an ``errMsg``, a
    traceid) has its control characters and line breaks escaped (``printable``); a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return printable(super().formatException(ei), newlines=True)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler ``enable_stderr`` adds (told apart from the application's own)."""


def enable_stderr(level: int) -> None:
    """Send the SDK's log to stderr at ``level``, escaped for the terminal: one handler however often this is
    called (``GENSTUDIO_LOG`` and the CLI's ``--debug`` share it)."""
    if not any(isinstance(handler, _StderrHandler) for handler in log.handlers):
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(PrintableFormatter(FORMAT))
        log.addHandler(handler)
    log.setLevel(level)


def configure_from_env() -> None:
    """Honour ``GENSTUDIO_LOG`` (once per process). A value that names no level is said, not ignored."""
    global _configured_from_env
    if _configured_from_env:
        return
    _configured_from_env = True
    value = os.environ.get(ENV_LOG, "")
    if not value.strip():
        return
    level = LEVELS.get(value.strip().upper())
    if level is None:
        warnings.warn(
            f"{ENV_LOG}={value!r} is not a log level: use one of "
            f"{', '.join(name.lower() for name in LEVELS)}; the SDK's log stays off",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    enable_stderr(level)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secret-shaped text (JWTs, bearer values, ``authorization=``) in each record.

    For loggers the SDK does not write itself: websockets logs the handshake line ``GET …?authorization=<token>``
    at DEBUG, and uvicorn (in the emulator) logs the same path in its access log.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or redact_shapes

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redactor(record.getMessage()), None
        return True


def redact_logger(logger: logging.Logger, redactor: Redactor | None = None) -> logging.Logger:
    """``logger`` with a ``RedactingFilter`` on it (added once; a later ``redactor`` replaces the first)."""
    for existing in logger.filters:
        if isinstance(existing, RedactingFilter):
            if redactor is not None:
                existing.redactor = redactor
            return logger
    logger.addFilter(RedactingFilter(redactor))
    return logger
