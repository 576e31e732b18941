"""Fault injection: what can go wrong on purpose, for the whole emulator or for one workflow.

``Faults`` is a frozen dataclass; each field is one fault, off by default::

    emu.set_faults(Faults(http_error_rate=0.3, seed=7))            # every endpoint, deterministic draws
    emu.set_workflow_faults("wf-mine", Faults(fail_tasks="CUDA out of memory"))

The same names work on the command line (``--fault NAME=VALUE``, or ``--fault WORKFLOW_ID:NAME=VALUE``) and
over HTTP (``POST /_emulator/faults``), see ``Faults.from_assignments`` and ``Faults.from_mapping``.

A workflow's faults, when set, replace the emulator-wide ones for that workflow's submits, tasks and
progress sockets. Status requests, ``cancel`` and uploads are not tied to one workflow and always use the
emulator-wide faults.

Both services take the same ``Faults``; each refuses the ones that mean nothing to it (GPUGeek has no WebSocket,
no permission denial and no tutorial; GenStudio no pre-signed upload), see ``FaultController(check=...)``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Endpoint names used by ``Faults.endpoints`` and the per-endpoint request counters, of either service:
#: GenStudio's ``submit``, ``task_info``, ``cancel``, ``upload``; GPUGeek's ``submit``, ``task``, ``cancel``,
#: ``presign``, ``commit``, ``upload_put`` (the PUT to the object store); and ``storage`` (result downloads).
ENDPOINTS = frozenset({"submit", "task_info", "cancel", "upload", "task", "presign", "commit", "upload_put", "storage"})
#: Endpoints of the storage origin: HTTP faults reach them only when ``endpoints`` names them.
STORAGE_ENDPOINTS = frozenset({"upload_put", "storage"})
#: The values ``presign_field`` may take: the one field a pre-signed upload answer then carries.
PRESIGN_FIELDS = ("signed_url", "signedUrl")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class FaultError(ValueError):
    """A fault name or value that the emulator does not understand."""


@dataclass(frozen=True)
class Faults:
    """Faults to inject. Every field defaults to "off"; combine them freely.

    Progress WebSocket (the counts ``N`` are of task snapshots sent, junk frames not counted):

    - ``ws_refuse_status``: refuse the handshake with this HTTP status (e.g. 503 or 403).
    - ``ws_drop_after``: after ``N`` snapshots, cut the TCP connection with no close frame (client sees 1006).
    - ``ws_silent``: accept the connection and never send anything.
    - ``ws_close_after``: after ``N`` snapshots, close normally (1000) although the task is not finished.
    - ``ws_junk``: send a junk frame (non-JSON text, or JSON without ``comfy_task_info``) before each snapshot.
    - ``ws_linger``: after the terminal snapshot, keep the socket open until the client closes it (the docs
      say the server *may* close after a terminal status; this is the case where it does not).
    - ``ws_skip_initial``: send nothing on connect, only on the task's next change (the docs do not promise a
      snapshot on connect; a socket opened after the task ended then gets no frame at all).

    HTTP (scoped to ``endpoints``; empty means every API endpoint of the service, not the storage origin's
    ``storage`` and ``upload_put``, which are reached only when named):

    - ``http_error_rate``: probability (0..1) that a request is answered ``http_error_status`` instead.
    - ``http_error_status``: the 5xx status of those answers (default 500).
    - ``http_error_html``: those answers are the HTML page of an nginx in front of the service
      (``Content-Type: text/html``), not an envelope.
    - ``rate_limit``: requests per second allowed by a token bucket of ``rate_limit_burst`` tokens; over it,
      429 with ``Retry-After``.
    - ``delay``: seconds to wait before answering.
    - ``seed``: seeds the random draws of ``http_error_rate``, so a test sees the same sequence every run.

    Tasks (decided when the task is submitted):

    - ``fail_tasks``: tasks fail half way with status 4 and this ``errMsg``.
    - ``deny_tasks``: tasks end at once with status 5 (permission denied).
    - ``tutorial_shapes``: snapshots shaped like the tutorial's examples rather than the API guide's: a queued
      task has no ``progress_num``; a succeeded one has ``files`` as ``{node_id: "url"}`` (one bare URL per
      node) and neither ``final_files`` nor ``progress_num``.

    GPUGeek uploads:

    - ``presign_field``: a pre-signed upload answer carries only this field, ``signed_url`` (the doc's table)
      or ``signedUrl`` (the doc's sample), instead of both.
    """

    ws_refuse_status: int | None = None
    ws_drop_after: int | None = None
    ws_silent: bool = False
    ws_close_after: int | None = None
    ws_junk: bool = False
    ws_linger: bool = False
    ws_skip_initial: bool = False
    http_error_rate: float = 0.0
    http_error_status: int = 500
    http_error_html: bool = False
    endpoints: frozenset[str] = field(default_factory=frozenset)
    rate_limit: float | None = None
    rate_limit_burst: int = 1
    delay: float = 0.0
    seed: int = 0
    fail_tasks: str | None = None
    deny_tasks: bool = False
    tutorial_shapes: bool = False
    presign_field: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.endpoints, frozenset):
            object.__setattr__(self, "endpoints", frozenset(self.endpoints))
        if self.ws_refuse_status is not None and not 400 <= self.ws_refuse_status <= 599:
            raise FaultError(f"ws_refuse_status must be an HTTP error status (400-599), got {self.ws_refuse_status}")
        for name in ("ws_drop_after", "ws_close_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise FaultError(f"{name} must be 0 or more, got {value}")
        if not 0.0 <= self.http_error_rate <= 1.0:
            raise FaultError(f"http_error_rate must be between 0 and 1, got {self.http_error_rate}")
        if not 500 <= self.http_error_status <= 599:
            raise FaultError(f"http_error_status must be a 5xx status, got {self.http_error_status}")
        unknown = set(self.endpoints) - ENDPOINTS
        if unknown:
            raise FaultError(f"endpoints: unknown {sorted(unknown)}; known: {sorted(ENDPOINTS)}")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise FaultError(f"rate_limit must be above 0 requests per second, got {self.rate_limit}")
        if self.rate_limit_burst < 1:
            raise FaultError(f"rate_limit_burst must be 1 or more, got {self.rate_limit_burst}")
        if self.delay < 0 or not math.isfinite(self.delay):
            raise FaultError(f"delay must be 0 or more seconds, got {self.delay}")
        if self.presign_field is not None and self.presign_field not in PRESIGN_FIELDS:
            raise FaultError(f"presign_field must be one of {', '.join(PRESIGN_FIELDS)}, got {self.presign_field!r}")

    def applies_to(self, endpoint: str) -> bool:
        """Whether the HTTP faults cover ``endpoint``."""
        if self.endpoints:
            return endpoint in self.endpoints
        return endpoint not in STORAGE_ENDPOINTS

    def changed(self) -> list[str]:
        """The names of the faults that are on (that differ from their default)."""
        default = Faults()
        return [name for name in self.names() if getattr(self, name) != getattr(default, name)]

    def as_dict(self) -> dict[str, Any]:
        """The faults as JSON-ready values (``endpoints`` as a sorted list)."""
        values = dataclasses.asdict(self)
        values["endpoints"] = sorted(self.endpoints)
        return values

    @classmethod
    def names(cls) -> list[str]:
        """Every fault name."""
        return [item.name for item in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> Faults:
        """Faults from ``{name: value}``; values may be JSON values or strings as on the command line."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise FaultError(f"unknown fault {', '.join(unknown)}; known: {', '.join(cls.names())}")
        return cls(**{name: _coerce(name, value) for name, value in values.items()})

    @classmethod
    def from_assignments(cls, assignments: Iterable[str]) -> tuple[Faults, dict[str, Faults]]:
        """Parse ``NAME=VALUE`` and ``WORKFLOW_ID:NAME=VALUE`` strings into emulator-wide and per-workflow faults."""
        wide: dict[str, str] = {}
        per_workflow: dict[str, dict[str, str]] = {}
        for assignment in assignments:
            target, sep, value = assignment.partition("=")
            if not sep:
                raise FaultError(f"a fault is NAME=VALUE or WORKFLOW_ID:NAME=VALUE, got {assignment!r}")
            workflow_id, colon, name = target.rpartition(":")
            name = name.strip()
            if colon:
                per_workflow.setdefault(workflow_id.strip(), {})[name] = value
            else:
                wide[name] = value
        return cls.from_mapping(wide), {wf: cls.from_mapping(v) for wf, v in per_workflow.items()}


_FIELD_KINDS: dict[str, str] = {
    "ws_refuse_status": "int?",
    "ws_drop_after": "int?",
    "ws_silent": "bool",
    "ws_close_after": "int?",
    "ws_junk": "bool",
    "ws_linger": "bool",
    "ws_skip_initial": "bool",
    "http_error_rate": "float",
    "http_error_status": "int",
    "http_error_html": "bool",
    "endpoints": "set",
    "rate_limit": "float?",
    "rate_limit_burst": "int",
    "delay": "float",
    "seed": "int",
    "fail_tasks": "str?",
    "deny_tasks": "bool",
    "tutorial_shapes": "bool",
    "presign_field": "str?",
}


def _coerce(name: str, value: object) -> Any:
    kind = _FIELD_KINDS[name]
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))):
        return None
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise ValueError("expected true or false")
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError("expected an integer")
            return int(value)
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError("expected a number")
            return float(value)
        if kind == "str":
            return str(value)
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(str(part) for part in value)
        raise ValueError("expected a list or a comma-separated string")
    except ValueError as exc:
        raise FaultError(f"fault {name}: {exc}, got {value!r}") from None


class TokenBucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up; one request takes one token."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = time.monotonic()

    def take(self) -> float | None:
        """Take a token: ``None`` if one was there, else the seconds until one will be."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self._rate


@dataclass
class _Scope:
    """Faults in force for one scope, with the random generator and bucket they own."""

    faults: Faults
    rng: random.Random
    bucket: TokenBucket | None


def _scope(faults: Faults) -> _Scope:
    bucket = TokenBucket(faults.rate_limit, faults.rate_limit_burst) if faults.rate_limit else None
    return _Scope(faults=faults, rng=random.Random(faults.seed), bucket=bucket)


@dataclass(frozen=True)
class HttpFault:
    """What to do to one HTTP request: wait ``delay`` s, then answer ``status`` (if set) instead of serving it,
    as an HTML page when ``html``."""

    delay: float = 0.0
    status: int | None = None
    retry_after: int | None = None
    html: bool = False


def _accept(faults: Faults) -> None:
    """The default ``check``: every fault is understood."""


class FaultController:
    """The faults in force, emulator-wide and per workflow, and the per-request draws made from them.

    ``check`` sees every ``Faults`` before it is put in force and raises ``FaultError`` for one the service does
    not understand, so a fault that could never fire is refused rather than silently ignored.
    """

    def __init__(self, faults: Faults | None = None, *, check: Callable[[Faults], None] = _accept) -> None:
        self._check = check
        check(faults or Faults())
        self._wide = _scope(faults or Faults())
        self._per_workflow: dict[str, _Scope] = {}

    @property
    def faults(self) -> Faults:
        """The emulator-wide faults."""
        return self._wide.faults

    def workflow_faults(self) -> dict[str, Faults]:
        """The per-workflow faults, by workflow id."""
        return {workflow_id: scope.faults for workflow_id, scope in self._per_workflow.items()}

    def set(self, faults: Faults) -> None:
        """Replace the emulator-wide faults (the random sequence and the bucket start afresh)."""
        self._check(faults)
        self._wide = _scope(faults)

    def set_for_workflow(self, workflow_id: str, faults: Faults | None) -> None:
        """Replace one workflow's faults; ``None`` makes it use the emulator-wide ones again."""
        if faults is None:
            self._per_workflow.pop(workflow_id, None)
        else:
            self._check(faults)
            self._per_workflow[workflow_id] = _scope(faults)

    def clear(self) -> None:
        """Turn every fault off."""
        self._wide = _scope(Faults())
        self._per_workflow.clear()

    def for_workflow(self, workflow_id: str | None) -> Faults:
        """The faults in force for ``workflow_id`` (the emulator-wide ones when it has none)."""
        return self._scope_for(workflow_id).faults

    def draw_http_fault(self, endpoint: str, workflow_id: str | None = None) -> HttpFault:
        """Decide the fate of one request to ``endpoint``: delay, rate limit, then the 5xx draw."""
        scope = self._scope_for(workflow_id)
        faults = scope.faults
        if not faults.applies_to(endpoint):
            return HttpFault()
        if scope.bucket is not None:
            wait = scope.bucket.take()
            if wait is not None:
                return HttpFault(delay=faults.delay, status=429, retry_after=max(1, math.ceil(wait)))
        if faults.http_error_rate > 0 and scope.rng.random() < faults.http_error_rate:
            return HttpFault(delay=faults.delay, status=faults.http_error_status, html=faults.http_error_html)
        return HttpFault(delay=faults.delay)

    def _scope_for(self, workflow_id: str | None) -> _Scope:
        if workflow_id is not None and workflow_id in self._per_workflow:
            return self._per_workflow[workflow_id]
        return self._wide
