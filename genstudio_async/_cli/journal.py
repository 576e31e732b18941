"""The batch journal: an append-only JSON-lines file that lets a rerun pick up where a batch stopped.

Each line is one event of one job::

    {"v": 1, "event": "submitted",  "job": "fox", "workflow_id": "wf-…", "prompt_id": "cft-…", "prompt_token": "…",
     "service": "genstudio"}
    {"v": 1, "event": "downloaded", "job": "fox", "prompt_id": "cft-…", "paths": ["/abs/out/fox/9/x.png"]}
    {"v": 1, "event": "failed",     "job": "fox", "prompt_id": "cft-…", "error": "…", "task_failed": true}
    {"v": 1, "event": "unanswered", "job": "fox", "workflow_id": "wf-…", "fingerprint": "…", "service": "genstudio",
     "error": "…"}
    {"v": 1, "event": "submitting", "job": "fox", "workflow_id": "wf-…", "fingerprint": "…", "service": "genstudio"}
    {"v": 1, "event": "refused",    "job": "fox", "error": "…"}

A ``submitting`` line is written (and fsync'ed) just before a submit is sent, and its answer follows it: a
``submitted`` line (the task), an ``unanswered`` one, or a ``refused`` one (the service certainly made no task:
the job stands as if never submitted). A ``submitting`` line with none of those after it means the batch died
(``kill -9``, a crash, a power cut) while the submit was in flight: the job is held as "submit unanswered", as
after an ``unanswered`` line. Journals written before these two records existed read as they always did.

An ``unanswered`` line says a submit of the job got no answer (a timeout, a lost connection, a 5xx, a second
Ctrl-C): the service may have created a task nothing knows the id of. A rerun does not submit that version of the
job again unless told to (``--retry-failed``): a second submit may be a second, billed task.

A ``submitted`` line is written (and fsync'ed) the moment ``submit`` returns, before the task is followed, so a
batch stopped by Ctrl-C or a crash is resumed from its tasks' ids instead of submitting them again. A GPUGeek
task has no prompt token (``null``); ``service`` says which service has the task (a record without one, written
before it was recorded, is GenStudio's), so a rerun against the other service submits the job there instead of
asking it about a task it cannot know. Writes go
through one file descriptor opened ``O_APPEND``, one ``write`` per line under a lock, then ``fsync``, all in a
worker thread (never on the event loop). The file is created with mode 0600: it holds prompt tokens, which open
a task's progress stream for 24 hours. An exclusive ``flock`` keeps a second batch off the same journal.

Reading tolerates damage: a line cut short by a crash (the last one, without its newline) and any line that is
not a JSON object are skipped and counted. Before appending, a missing final newline is added, so a torn line is
never glued to the next record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..emulator._defaults import DEFAULT_SERVICE
from ..types import Submission
from . import defaults as CD
from .errors import CLIError, ExitCode

try:
    import fcntl
except ImportError:  # not POSIX: no lock, the rest works
    fcntl = None  # type: ignore[assignment]

JOURNAL_VERSION = 1


class JournalWriteError(CLIError):
    """A record could not be written (and fsync'ed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.FAILED)


@dataclass
class JobHistory:
    """What the journal says about one job: its latest task, and whether that task's files were saved."""

    submission: Submission | None = None
    workflow_id: str | int | None = None
    fingerprint: str | None = None  # of the job the latest task was submitted for (None: an older journal)
    service: str = DEFAULT_SERVICE  # which service has the latest task (older journals: GenStudio, the only one)
    paths: list[str] | None = None  # the files of the latest task, once downloaded
    task_failed: bool = False  # the latest task ended failed or denied (``--retry-failed`` submits it again)
    error: str | None = None
    unanswered: bool = False  # the latest submit got no answer: a task may exist that nothing knows the id of

    def made_for(self, workflow_id: str | int, fingerprint: str, service: str = DEFAULT_SERVICE) -> bool:
        """True when the latest task was submitted for this version of the job (not before it was edited), to
        ``service``."""
        if self.service != service:
            return False
        if self.fingerprint is not None:
            return self.fingerprint == fingerprint
        return self.workflow_id is None or self.workflow_id == workflow_id

    def files_present(self) -> bool:
        """True when the latest task's files were downloaded and are all still there."""
        return self.paths is not None and all(Path(path).is_file() for path in self.paths)


@dataclass
class JournalContents:
    """Every job's history, and how many lines could not be read."""

    jobs: dict[str, JobHistory] = field(default_factory=dict)
    damaged_lines: int = 0

    def history(self, job: str, *aliases: str) -> JobHistory:
        """The history of ``job``, else of the first of its former names the journal knows."""
        for name in (job, *aliases):
            if name in self.jobs:
                return self.jobs[name]
        return JobHistory()


def parse_journal(data: bytes) -> JournalContents:
    """The journal's records, in order; damaged lines (a torn last line, junk) are skipped and counted."""
    contents = JournalContents()
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            contents.damaged_lines += 1
            continue
        if not isinstance(record, dict) or not isinstance(record.get("job"), str):
            contents.damaged_lines += 1
            continue
        _apply(contents.jobs.setdefault(record["job"], JobHistory()), record)
    return contents


# What a rerun says of a job whose ``submitting`` record has no answer after it.
DIED_SUBMITTING = "the batch stopped (killed, or it crashed) while this job's submit was in flight"


def _apply(history: JobHistory, record: dict[str, Any]) -> None:
    event = record.get("event")
    prompt_id = record.get("prompt_id")
    if event == "refused":  # the submit that a "submitting" line announced made no task
        if history.unanswered and history.submission is None:
            history.unanswered, history.error = False, None
        return
    if event in ("unanswered", "submitting"):
        fingerprint, workflow_id, service = record.get("fingerprint"), record.get("workflow_id"), record.get("service")
        history.submission, history.paths, history.task_failed = None, None, False
        history.unanswered = True
        history.error = str(record.get("error") or "") if event == "unanswered" else DIED_SUBMITTING
        history.fingerprint = fingerprint if isinstance(fingerprint, str) else None
        history.workflow_id = workflow_id if isinstance(workflow_id, str | int) else None
        history.service = service if isinstance(service, str) else DEFAULT_SERVICE
        return
    if event == "submitted":
        token = record.get("prompt_token")
        service = record.get("service", DEFAULT_SERVICE)
        if isinstance(prompt_id, str) and prompt_id and (token is None or (isinstance(token, str) and token)):
            history.submission = Submission(prompt_id=prompt_id, prompt_token=token)  # GPUGeek's: no token
            workflow_id = record.get("workflow_id")
            history.workflow_id = workflow_id if isinstance(workflow_id, str | int) else None
            fingerprint = record.get("fingerprint")
            history.fingerprint = fingerprint if isinstance(fingerprint, str) else None
            history.service = service if isinstance(service, str) else ""
            history.paths, history.task_failed, history.error = None, False, None
            history.unanswered = False
        return
    if history.submission is None or prompt_id != history.submission.prompt_id:
        return  # about a task this job has since replaced
    if event == "downloaded" and isinstance(record.get("paths"), list):
        history.paths = [str(path) for path in record["paths"]]
        history.task_failed, history.error = False, None
    elif event == "failed":
        history.task_failed = bool(record.get("task_failed"))
        history.error = str(record.get("error") or "")


class Journal:
    """An open journal: read once when opened, then appended to. Use ``open()`` and ``close()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._torn = False  # a write failed part way: the file may end in the middle of a line
        self._writing: set[asyncio.Future[None]] = set()
        self.contents = JournalContents()

    def open(self) -> JournalContents:
        """Open (creating it with mode 0600), lock, read, and make sure the file ends with a newline."""
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, CD.CLI_JOURNAL_MODE)
        except OSError as exc:
            raise CLIError(f"cannot open the journal {self.path}: {exc.strerror or exc}", ExitCode.USAGE) from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise CLIError(
                        f"another genstudio batch is using the journal {self.path}", ExitCode.USAGE
                    ) from None
            if hasattr(os, "fchmod"):
                with contextlib.suppress(OSError):
                    os.fchmod(fd, CD.CLI_JOURNAL_MODE)  # an older journal made with looser permissions
            data = _read_all(fd)
            if data and not data.endswith(b"\n"):
                _write_all(fd, b"\n")  # end the torn line, so the next record starts on a line of its own
                os.fsync(fd)
            if created:
                _fsync_directory(self.path.parent)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.contents = parse_journal(data)
        return self.contents

    async def aclose(self) -> None:
        """Close, once every record being written is on disk (a cancelled caller does not stop its write)."""
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)  # also releases the lock
                self._fd = None

    async def append(self, event: str, job: str, **fields: Any) -> None:
        """Write one record and ``fsync`` it, in a worker thread. Once this returns, the record is on disk.

        The write goes on if the caller is cancelled meanwhile; ``aclose`` waits for it.
        """
        record = {"v": JOURNAL_VERSION, "event": event, "job": job, **fields, "time": _now()}
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        writing = asyncio.ensure_future(asyncio.to_thread(self._append_line, line))
        self._writing.add(writing)
        writing.add_done_callback(self._writing.discard)
        try:
            await asyncio.shield(writing)
        except OSError as exc:  # disk full, quota, I/O error: one clear line, not an "internal error"
            raise JournalWriteError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None

    async def submitted(
        self, job: str, workflow_id: str | int, submission: Submission, *, fingerprint: str, service: str
    ) -> None:
        await self.append(
            "submitted",
            job,
            workflow_id=workflow_id,
            fingerprint=fingerprint,
            prompt_id=submission.prompt_id,
            prompt_token=submission.prompt_token,
            service=service,
        )

    async def submitting(self, job: str, workflow_id: str | int, *, fingerprint: str, service: str) -> None:
        """Before a submit is sent: until its answer is journaled, a rerun holds the job (it may have a task)."""
        await self.append("submitting", job, workflow_id=workflow_id, fingerprint=fingerprint, service=service)

    async def refused(self, job: str, error: str) -> None:
        """The submit announced by ``submitting`` made no task: the job may be submitted again."""
        await self.append("refused", job, error=error)

    async def unanswered(
        self, job: str, workflow_id: str | int, *, fingerprint: str, service: str, error: str
    ) -> None:
        await self.append(
            "unanswered", job, workflow_id=workflow_id, fingerprint=fingerprint, service=service, error=error
        )

    def _append_line(self, line: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise RuntimeError("the journal is closed")
            if self._torn:
                line = b"\n" + line  # end the fragment of the failed write: never glue a record to it
            self._torn = True
            _write_all(self._fd, line)
            os.fsync(self._fd)
            self._torn = False


def _read_all(fd: int) -> bytes:
    """The whole file (appends go to its end whatever the read position: the descriptor is ``O_APPEND``)."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable too (best effort: not every system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds")
