"""``genstudio watch``: follow tasks that already exist, then save their files.

Each ``ID`` is a prompt_id, or a file holding a saved ``Submission`` (``{"prompt_id": …, "prompt_token": …}``:
``Submission.model_dump_json()``, or one ``submitted`` line of a batch journal); with a token, GenStudio's
progress comes over its WebSocket, else it is polled. Their state is asked first (GenStudio: one request), so an
id the service does not know is reported at once; the others are followed together, with ``run``'s live display
(one row each), and their files saved like ``run``'s: ``--out DIR`` for one task, ``DIR/<prompt_id>/`` for
several, by default ``genstudio-output/<prompt_id>/`` (the id made a safe folder name: ``run.task_folder``).

Ctrl-C stops watching and leaves every task running on the service (exit 130, saying so). ``--timeout`` bounds
the whole follow, the first question about the tasks included (a service that never answers is a timeout, not a
wait of minutes); with ``--cancel-on-timeout`` a task not done in time is cancelled on the service (a cancel that
gets no answer within ``CLI_CANCEL_ON_TIMEOUT_SECONDS`` is given up, and the message says so). A folder the
command makes for a task (``genstudio-output/<prompt_id>``, ``--out``'s ``<prompt_id>``) that is a symlink or
leads outside the folder it is in is refused, never written through. The exit code
is the worst of the tasks' (``errors.exit_code_for``); ``--json`` prints a list of ``run --json``'s objects,
``--events`` JSON lines as it goes.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import GenStudioError, NotFoundError, TaskTimeoutError
from .._redact import redact_shapes
from ..types import Submission, TaskResult
from . import defaults as CD
from .client import endpoint_of, make_client
from .console import Console
from .display import TaskProgress
from .errors import CLIError, ExitCode, describe_error, exit_code_for
from .events import (
    DOWNLOAD_FAILED,
    FAILED,
    INTERRUPTED,
    NOT_FOUND,
    SUCCEEDED,
    TIMEOUT,
    EventLog,
    cancelled_on_timeout,
    events_of,
    status_word,
)
from .prompt import read_json_object
from .run import on_progress_of, own_folder, result_document, task_folder
from .services import profile_of

if TYPE_CHECKING:
    from .services import Client


@dataclass
class Watched:
    """One task being watched, and how it ended."""

    submission: Submission
    directory: Path
    within: Path | None = None  # the folder ``directory`` was made in (``None``: the user named ``directory``)
    status: str | None = None  # one of events.OUTCOMES once it ended
    saving: bool = False  # the task succeeded, its files are being saved
    result: TaskResult | None = None
    paths: list[Path] = field(default_factory=list)
    error: GenStudioError | None = None
    message: str | None = None

    @property
    def prompt_id(self) -> str:
        return self.submission.prompt_id

    @property
    def shown(self) -> str:
        """Its id as printed: a prompt token pasted where an id belongs is masked, as ``status`` masks it."""
        return redact_shapes(self.prompt_id)

    def document(self) -> dict[str, Any]:
        """Its ``--json`` object: ``run --json``'s."""
        document = result_document(self.shown, self.result, self.paths, self.error)
        document["status"] = self.status
        if self.message is not None:
            document["error"] = self.message
        return document


def submission_of(text: str) -> Submission:
    """The task an ``ID`` argument names: a prompt_id, or the ``Submission`` saved in the file of that name.

    ``CLIError`` (exit 2) for a file that holds no Submission (or is far too big to be one), a name that looks
    like a file and is not one (``…/…``, ``….json``), and an id no service could have (a space, a control
    character). The file may come from anywhere: nothing of it is shown but its name, never its token.
    """
    path = Path(text)
    if path.is_file():
        size = path.stat().st_size
        if size > CD.CLI_SUBMISSION_FILE_MAX_BYTES:
            raise CLIError(
                f"the saved task {text!r} is {size} bytes: a Submission is a small JSON object (at most "
                f"{CD.CLI_SUBMISSION_FILE_MAX_BYTES} bytes here)",
                ExitCode.USAGE,
            )
        data = read_json_object(text, "the saved task", '{"prompt_id": …, "prompt_token": …} (a Submission)')
        prompt_id, token = data.get("prompt_id"), data.get("prompt_token")
        if isinstance(prompt_id, int) and not isinstance(prompt_id, bool):
            prompt_id = str(prompt_id)  # GPUGeek's ids are integers in some answers
        if not isinstance(prompt_id, str) or not (token is None or isinstance(token, str)):
            raise CLIError(
                f"the saved task {text!r} must hold a 'prompt_id' (a string) and may hold a 'prompt_token'",
                ExitCode.USAGE,
            )
        return _submission(prompt_id.strip(), token or None, f"the saved task {text!r}")
    if "/" in text or text.endswith(".json"):
        raise CLIError(f"no such file: {text!r} (a task is a prompt_id, or a file holding one)", ExitCode.USAGE)
    return _submission(text.strip(), None, repr(text))


def _submission(prompt_id: str, token: str | None, what: str) -> Submission:
    try:
        return Submission(prompt_id=prompt_id, prompt_token=token)
    except ValueError:  # pydantic's ValidationError: the id holds a space or a control character, or is empty
        raise CLIError(
            f"{what} is not a prompt_id: it is empty or holds spaces or control characters", ExitCode.USAGE
        ) from None


def prepare(args: argparse.Namespace) -> None:
    """The local work, before the event loop starts: read the saved tasks, and refuse an ``--out`` that cannot
    be a directory or two tasks that would share a folder."""
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CLIError(f"--out {args.out!r} exists and is not a directory", ExitCode.USAGE)
    found: dict[str, Submission] = {}
    for text in args.tasks:
        submission = submission_of(text)
        known = found.get(submission.prompt_id)
        if known is None or known.prompt_token is None:  # the same task twice: keep the one with a token
            found[submission.prompt_id] = submission
    submissions = list(found.values())
    args.prompt_tokens = [s.prompt_token for s in submissions if s.prompt_token]  # secrets, for the error line
    for submission in submissions:
        events_of(args).learn(submission)
    folders: dict[str, str] = {}
    watched = []
    for submission in submissions:
        folder = task_folder(submission.prompt_id)
        if folder in folders and len(submissions) > 1:
            raise CLIError(
                f"tasks {folders[folder]!r} and {submission.prompt_id!r} would share the folder {folder!r}",
                ExitCode.USAGE,
            )
        folders[folder] = submission.prompt_id
        if len(submissions) == 1 and args.out is not None:
            watched.append(Watched(submission, Path(args.out)))  # as run --out: the task's own folder
        else:
            within = Path(args.out or CD.CLI_RUN_OUTPUT_DIR)
            watched.append(Watched(submission, within / folder, within))
    args.watched = watched


class Watch:
    """One ``genstudio watch``: its tasks, followed together."""

    def __init__(self, args: argparse.Namespace, console: Console, watched: list[Watched]) -> None:
        self.args = args
        self.console = console
        self.watched = watched
        self.profile = profile_of(args)
        self.events: EventLog = events_of(args)
        self._deadline: float | None = None  # the event loop's time at which --timeout ends the follow

    async def run(self) -> None:
        timeout: float | None = self.args.timeout
        loop = asyncio.get_running_loop()
        self._deadline = None if timeout is None else loop.time() + timeout
        async with make_client(self.args, self.console) as client:
            await self._learn_tokens(client)
            try:
                async with asyncio.timeout_at(self._deadline) as bound:
                    infos = await client.get_tasks([item.prompt_id for item in self.watched])
            except GenStudioError as error:  # no task followed: each still gets its outcome, then the error line
                message = describe_error(error, endpoint_of(self.args))
                for item in self.watched:
                    self._end(item, FAILED, error=error, message=message)
                if self.args.json:
                    self.console.json([item.document() for item in self.watched])
                raise
            except TimeoutError:
                if not bound.expired():
                    raise
                await asyncio.gather(*(self._timed_out(client, item) for item in self.watched))
                return
            known = {info.prompt_id: info for info in infos}
            for item in self.watched:
                if item.prompt_id not in known:
                    message = f"the service does not know task {item.shown}"
                    self._end(item, NOT_FOUND, message=message, error=NotFoundError(message, status_code=404))
                else:
                    self.events.following(item.prompt_id)
            following = [item for item in self.watched if item.status is None]
            if not following:
                return
            with TaskProgress(self.console, [item.shown for item in following], self.profile) as progress:
                for item in following:
                    info = known[item.prompt_id]
                    progress.update(info, item.shown)
                    self.events.progress(info)
                async with asyncio.TaskGroup() as group:
                    for item in following:
                        group.create_task(self._follow(client, item, progress))

    async def _learn_tokens(self, client: Client) -> None:
        """Teach the client the saved tasks' tokens before it reads a word from the service: an ``errMsg`` that
        echoes one is masked in the SDK's own messages and log too, not only where this command prints it.
        (``stream`` learns the token; the stream, never iterated, opens nothing and is closed at once.)"""
        for item in self.watched:
            if item.submission.prompt_token:
                self.console.redact.add(item.submission.prompt_token)
                async with client.stream(item.submission):
                    pass

    def _left(self) -> float | None:
        """The seconds ``--timeout`` leaves (a tiny positive time once it is past: ``wait`` then times out, and
        cancels with ``--cancel-on-timeout``)."""
        if self._deadline is None:
            return None
        return max(self._deadline - asyncio.get_running_loop().time(), CD.CLI_TIMEOUT_FLOOR_SECONDS)

    async def _timed_out(self, client: Client, item: Watched) -> None:
        """``--timeout`` passed before the service said anything of the tasks: each one times out (and, with
        ``--cancel-on-timeout``, is cancelled if the service answers that in time)."""
        message = f"task {item.shown} did not finish within {self.args.timeout} s (the service did not answer)"
        cancelled = False
        if self.args.cancel_on_timeout:
            try:
                async with asyncio.timeout(CD.CLI_CANCEL_ON_TIMEOUT_SECONDS):
                    await client.cancel(item.submission)
            except (GenStudioError, TimeoutError) as error:
                detail = describe_error(error) if isinstance(error, GenStudioError) else "no answer"
                message += f"; cancelling it failed, it may go on: {detail}"
            else:
                cancelled = True
                message += "; it was cancelled on the service"
        timed_out = TaskTimeoutError(
            message, prompt_id=item.prompt_id, timeout=self.args.timeout, last_info=None, cancelled=cancelled
        )
        self._end(item, TIMEOUT, error=timed_out, message=describe_error(timed_out, endpoint_of(self.args)))

    async def _follow(self, client: Client, item: Watched, progress: TaskProgress) -> None:
        """Wait for one task, then save its files; every way it ends is recorded on ``item``."""
        left = self._left()
        try:
            item.result = await client.wait(
                item.submission,
                timeout=left,
                on_progress=on_progress_of(progress, self.events, row=item.shown),
                cancel_on_timeout=self.args.cancel_on_timeout,
            )
        except GenStudioError as error:
            if isinstance(error, TaskTimeoutError) and left is not None:  # say the --timeout given, not what was left
                error = TaskTimeoutError(
                    str(error).replace(f"within {left} s", f"within {self.args.timeout} s", 1),
                    prompt_id=error.prompt_id, timeout=self.args.timeout, last_info=error.last_info,
                    cancelled=error.cancelled,
                )
            status = NOT_FOUND if isinstance(error, NotFoundError) else status_word(error)
            self._end(item, status, error=error, message=describe_error(error, endpoint_of(self.args)))
            return
        if self.args.no_download:
            self._end(item, SUCCEEDED)
            return
        item.saving = True
        try:
            directory = item.directory if item.within is None else own_folder(item.directory, item.within)
            item.paths = await client.download(item.result, directory)
        except GenStudioError as error:
            message = f"task {item.shown} succeeded but its files were not saved: {describe_error(error)}"
            self._end(item, DOWNLOAD_FAILED, error=error, message=message)
            return
        self.events.downloaded(item.prompt_id, item.paths)
        self._end(item, SUCCEEDED)

    def _end(
        self, item: Watched, status: str, *, error: GenStudioError | None = None, message: str | None = None
    ) -> None:
        item.status, item.error, item.message = status, error, message
        self.events.outcome(
            status, prompt_id=item.prompt_id, paths=item.paths, error=message, cancelled=cancelled_on_timeout(error)
        )

    def interrupted(self) -> None:
        """Ctrl-C: the tasks not yet ended go on on the service; say so (and how to come back to them). A task
        whose files were being saved has succeeded: said so, and how to save them."""
        saving = [item for item in self.watched if item.status is None and item.saving]
        running = [item for item in self.watched if item.status is None and not item.saving]
        for item in saving:
            item.status = INTERRUPTED
            self.events.outcome(
                INTERRUPTED, prompt_id=item.prompt_id,
                error="interrupted while saving its files: the task succeeded; its files may be incomplete",
            )
        if saving:
            ids = " ".join(item.shown for item in saving)
            self.console.note(
                f"interrupted while saving the files of {len(saving)} task(s) that succeeded: {ids} "
                f"(some files may be missing: 'genstudio watch {ids}' saves them while the service keeps them)"
            )
        for item in running:
            item.status = INTERRUPTED
            self.events.outcome(
                INTERRUPTED, prompt_id=item.prompt_id, error="interrupted: the task goes on on the service"
            )
        if running:
            ids = " ".join(item.shown for item in running)
            self.console.note(
                f"interrupted: {len(running)} task(s) go on on the service: {ids} "
                f"('genstudio watch {ids}' to follow them again, 'genstudio cancel {ids}' to stop them)"
            )

    def report(self) -> int:
        """What became of each task, on stdout (or as ``--json``); the worst exit code among them."""
        code = ExitCode.OK
        several = len(self.watched) > 1
        for item in self.watched:
            for path in item.paths:
                self.console.line(f"saved {path}")
            if item.status == SUCCEEDED and not item.paths and several:
                self.console.line(f"{item.shown}: succeeded")
            if item.message is not None:
                if item.error is None or item.status == NOT_FOUND:  # an unknown id: exit 1, as for 'status'
                    code = max(code, ExitCode.FAILED)
                else:
                    code = max(code, exit_code_for(item.error))
                named = item.message if item.shown in item.message else f"{item.shown}: {item.message}"
                self.console.error(named)
        if self.args.json:
            self.console.json([item.document() for item in self.watched])
        return int(code)


async def watch_command(args: argparse.Namespace, console: Console) -> int:
    if not hasattr(args, "watched"):
        prepare(args)
    watch = Watch(args, console, args.watched)
    try:
        await watch.run()
    except asyncio.CancelledError:
        watch.interrupted()
        raise
    return watch.report()
