"""``genstudio batch``: a JSON-lines file of jobs, at bounded concurrency, resumable after Ctrl-C or a crash.

Each job is submitted, followed and downloaded by one of ``--concurrency`` workers (``_batch.WorkerPool``, the
pool ``run_many`` runs on, with this command's own per-job logic: ``run_many`` cancels what it started when left
early, a batch leaves its tasks running for the rerun). The journal
(see ``journal``) gets each task's prompt_id and prompt_token the moment ``submit`` returns, so a rerun:

- skips the jobs whose files were downloaded (and are still there);
- resumes the jobs that have a task (waits on it by id, then downloads), instead of submitting them again;
- submits the others; ``--retry-failed`` also submits again the jobs whose task failed, and those whose submit
  got no answer in an earlier run (see below).

A submit the service refused (an HTTP 4xx, a 503, a business error, a request that never left: it certainly made
no task) leaves its job "never submitted": a rerun submits it as a new job. A submit that got no usable answer (a
timeout, a lost connection, another 5xx, an HTTP 200 whose body is cut or lacks the task's id or token) may have
made a task: the job is "submit unanswered", the journal says so, and a rerun leaves it alone unless
``--retry-failed`` (a second submit may be a second, billed task).

A job about to be submitted whose output folder already holds something (the files of an earlier version: it
changed since its journaled task, in its workflow, prompt or an image; or ``--retry-failed``) first has all of it
moved aside, to ``<folder>.previous-<n>`` beside it (nothing is deleted; a symlink in the folder's place is renamed,
never followed), so the folder holds only the current result; the summary and the job's ``outcome`` event
(``moved_aside``) say where.

``--events`` writes what happens as JSON lines on stdout (``events``): each submit, progress change, download and
exactly one ``outcome`` per job of the file, whatever became of it.

Ctrl-C (or SIGTERM) stops cleanly: nothing new is submitted, the answers of submits already sent are awaited and
journaled, the tasks on the service are left running (not cancelled: the rerun picks them up), the journal is
closed intact, and the exit code is 130 (143). A second Ctrl-C stops without waiting for those answers.

A submit is journaled as "submitting" (fsync'ed) before it is sent, so even a batch killed (``kill -9``, a crash)
while a submit was in flight leaves a rerun that holds that job as "submit unanswered" rather than submitting it a
second time: the service may have created that task, and nothing local knows its id (``--retry-failed`` submits it
again, once the service's task list was checked).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
import stat
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._batch import WorkerPool
from .._exceptions import (
    AuthenticationError,
    GenStudioError,
    NotFoundError,
    PermissionDeniedError,
    TaskError,
    TaskTimeoutError,
)
from ..types import Submission
from . import defaults as CD
from .client import endpoint_of, make_client
from .console import Console
from .display import BatchProgress
from .errors import CLIError, ExitCode, describe_error
from .events import DONE_BEFORE as DONE_BEFORE_EVENT
from .events import (
    DOWNLOAD_FAILED,
    INTERRUPTED,
    NEVER_SUBMITTED,
    SUBMIT_UNANSWERED,
    SUCCEEDED,
    cancelled_on_timeout,
    events_of,
    status_word,
    submit_outcome,
)
from .events import FAILED as FAILED_EVENT
from .jobs import Job, load_jobs
from .journal import Journal, JournalContents, JournalWriteError
from .prompt import load_spec
from .run import own_folder
from .services import Profile, profile_of

if TYPE_CHECKING:
    from ..workflow import WorkflowSpec
    from .services import Client

T = TypeVar("T")
log = logging.getLogger("genstudio_async")

DONE, DONE_BEFORE, FAILED, SUBMITTED, NOT_SUBMITTED = "done", "done before", "failed", "submitted", "not submitted"
UNANSWERED = "submit unanswered"  # no answer to the submit: the task may exist, nothing knows its id
REFUSED = "never submitted"  # the service refused the submit: it made no task (a rerun submits it again)


@dataclass
class Outcome:
    """Where one job stands, for the summary."""

    job: Job
    state: str = NOT_SUBMITTED
    prompt_id: str | None = None
    paths: list[str] = field(default_factory=list)
    error: str | None = None
    moved_aside: str | None = None  # where the files of an earlier version of the job went
    reported: bool = False  # its ``outcome`` event was written
    journaled_unanswered: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "job": self.job.name,
            "line": self.job.line,
            "state": self.state.replace(" ", "_"),
            "prompt_id": self.prompt_id,
            "paths": self.paths,
            "error": self.error,
            "moved_aside": self.moved_aside,
        }

    def files_or_error(self) -> str:
        """The summary's last column."""
        text = self.error or ", ".join(self.paths)
        if self.moved_aside:
            text += f" (earlier files moved to {self.moved_aside})"
        return text


class Batch:
    """One run of a jobs file against its journal."""

    def __init__(
        self,
        args: argparse.Namespace,
        console: Console,
        jobs: list[Job],
        journal: Journal,
        contents: JournalContents,
        downloaded: set[str],
    ) -> None:
        """``downloaded``: the jobs whose files the journal lists and which are all still there (skipped)."""
        self.args = args
        self.console = console
        self.journal = journal
        self.contents = contents
        self.output = Path(args.out)
        self.cwd = Path(os.getcwd())
        self.profile = profile_of(args)
        self.events = events_of(args)
        self.outcomes = {job.name: Outcome(job) for job in jobs}
        self._folders = {job.folder for job in jobs}
        self.to_run: list[Job] = []
        self.held: list[Job] = []  # an earlier submit got no answer: not submitted again unless --retry-failed
        for job in jobs:
            history = contents.history(job.name, *job.aliases)
            outcome = self.outcomes[job.name]
            if job.name in downloaded:
                outcome.state, outcome.paths = DONE_BEFORE, [_shown(path) for path in history.paths or []]
                outcome.prompt_id = history.submission.prompt_id if history.submission else None
            elif (
                history.unanswered
                and not args.retry_failed
                and history.made_for(job.workflow_id, job.fingerprint, self.profile.name)
            ):
                outcome.state, outcome.journaled_unanswered = UNANSWERED, True
                outcome.error = (
                    f"an earlier run's submit got no answer ({history.error}): the service may have created the "
                    "task; see the service's task list, then --retry-failed submits it again"
                )
                self.held.append(job)
            else:
                self.to_run.append(job)
        self.display = BatchProgress(
            console, len(jobs), done_before=len(jobs) - len(self.to_run) - len(self.held), profile=self.profile
        )
        self._pool: WorkerPool[Job] | None = None
        self._kept: set[asyncio.Future[Any]] = set()
        self._submitting: dict[asyncio.Future[Any], Outcome] = {}
        self._stop_signal: signal.Signals | None = None
        self._fatal: BaseException | None = None
        self._client: Client | None = None

    # --- the plan ----------------------------------------------------------------------------------------
    def resumable(self, job: Job) -> Submission | None:
        """The task to resume for ``job``, or ``None`` to submit it."""
        history = self.contents.history(job.name, *job.aliases)
        if history.submission is None or (history.task_failed and self.args.retry_failed):
            return None
        if not history.made_for(job.workflow_id, job.fingerprint, self.profile.name):
            return None  # the job was edited since (or ran on the other service): not what it asks for now
        return history.submission

    def plan_line(self) -> str:
        resume = sum(1 for job in self.to_run if self.resumable(job) is not None)
        before = len(self.outcomes) - len(self.to_run) - len(self.held)
        private = "mode 0600: it holds prompt tokens" if self.profile.progress_socket else "mode 0600"
        held = f", {len(self.held)} held (an earlier submit got no answer)" if self.held else ""
        return (
            f"batch: {len(self.outcomes)} jobs from {self.args.jobs}: {before} already downloaded, {resume} to resume, "
            f"{len(self.to_run) - resume} to submit{held}; journal {self.journal.path} ({private})"
        )

    def report_settled(self) -> None:
        """The ``outcome`` events of the jobs this run does nothing for (done before, held)."""
        for outcome in self.outcomes.values():
            if outcome.state == DONE_BEFORE:
                self._report(outcome, DONE_BEFORE_EVENT)
            elif outcome.state == UNANSWERED:
                self._report(outcome, SUBMIT_UNANSWERED)

    def _report(self, outcome: Outcome, status: str, *, cancelled: bool = False) -> None:
        """The job's one ``outcome`` event."""
        if outcome.reported:
            return
        outcome.reported = True
        self.events.outcome(
            status,
            prompt_id=outcome.prompt_id,
            job=outcome.job.name,
            paths=outcome.paths,
            error=outcome.error,
            cancelled=cancelled,
            moved_aside=outcome.moved_aside,
        )

    # --- running -----------------------------------------------------------------------------------------
    async def run(self) -> None:
        if not self.to_run:
            return
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self._on_signal, signum)
                handled.append(signum)
        try:
            async with make_client(self.args, self.console) as client:
                self._client = client
                with self.display:
                    count = min(self.args.concurrency, len(self.to_run))
                    self._pool = WorkerPool(self.to_run, self._run_job, size=count, name="genstudio-batch")
                    try:
                        await self._pool.join()
                    finally:
                        await self._pool.aclose()
                    await self._finish_kept()
                    await self._journal_unanswered()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: signal.Signals) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
            in_flight = len(self._submitting)
            waiting = f"; waiting for {in_flight} submit answer(s) to journal them" if in_flight else ""
            self.display.say(
                f"stopping: no new submits, running tasks are left on the service for a rerun{waiting} "
                "(Ctrl-C again to stop at once)"
            )
            self._stop()
        else:
            self._abandon(self._kept)

    def _stop(self) -> None:
        """No job starts any more; the workers other than the caller are cancelled."""
        if self._pool is not None:
            self._pool.stop()

    async def _finish_kept(self) -> None:
        """Wait for the submits and records that outlive a cancelled worker (bounded; a second Ctrl-C cuts it)."""
        if not self._kept:
            return
        kept = set(self._kept)  # each finished one leaves self._kept: keep them all here to collect their outcome
        _done, late = await asyncio.wait(kept, timeout=CD.CLI_STOP_GRACE_SECONDS)
        self._abandon(late)
        await asyncio.gather(*kept, return_exceptions=True)

    async def _journal_unanswered(self) -> None:
        """Journal the submits left unanswered by the stop (a second Ctrl-C), so a rerun holds those jobs."""
        for outcome in self.outcomes.values():
            if outcome.state == UNANSWERED and not outcome.journaled_unanswered:
                await self._record_unanswered(outcome.job, outcome)

    async def _record_unanswered(self, job: Job, outcome: Outcome) -> None:
        outcome.journaled_unanswered = True
        await self.journal.unanswered(
            job.name,
            job.workflow_id,
            fingerprint=job.fingerprint,
            service=self.profile.name,
            error=outcome.error or "stopped before the service answered",
        )

    def _abandon(self, futures: set[asyncio.Future[Any]]) -> None:
        """Stop waiting for ``futures``; a submit among them may have created a task that nothing records."""
        for future in list(futures):
            outcome = self._submitting.get(future)
            if outcome is not None and not future.done() and outcome.prompt_id is None:
                outcome.state = UNANSWERED  # (an answered one is being journaled: the write goes on, aclose waits)
                outcome.error = outcome.error or "stopped before the service answered the submit"
            future.cancel()

    async def _run_job(self, job: Job) -> None:
        """One worker's turn with ``job`` (the pool's ``handle``); once the batch is stopping, none starts."""
        if self._stop_signal is not None or self._fatal is not None:
            self._stop()  # stopped before the pool existed (a Ctrl-C while connecting): it stops now
            return
        try:
            await self._process(job)
        except Exception as error:  # noqa: BLE001 - a broken journal or a bug: stop the batch, report it once
            if self._fatal is None:
                self._fatal = error
            self._stop()

    def _keep(self, work: Coroutine[Any, Any, T], *, submitting: Outcome | None = None) -> asyncio.Future[T]:
        """``work``, run to its end even if the worker awaiting it is cancelled (Ctrl-C): await it through
        ``asyncio.shield``. The batch waits for it before it stops (``_finish_kept``)."""
        future = asyncio.ensure_future(work)
        self._kept.add(future)
        future.add_done_callback(self._kept.discard)
        future.add_done_callback(_retrieve)  # a worker cancelled meanwhile never reads its outcome
        if submitting is not None:
            self._submitting[future] = submitting
            future.add_done_callback(lambda done: self._submitting.pop(done, None))
        return future

    async def _process(self, job: Job) -> None:
        assert self._client is not None
        client = self._client
        outcome = self.outcomes[job.name]
        submission = self.resumable(job)
        resumed = submission is not None
        endpoint = endpoint_of(self.args)  # where submit and wait go (a download goes to the storage host)
        downloading = False
        try:
            if submission is None:
                try:
                    outcome.moved_aside = await asyncio.to_thread(self._move_aside, job)
                except OSError as exc:
                    outcome.state = REFUSED
                    outcome.error = (
                        f"not submitted: cannot move the earlier files in {self.output / job.folder} aside: "
                        f"{exc.strerror or exc}"
                    )
                    self.display.failed_job(job.name, outcome.error)
                    self._report(outcome, NEVER_SUBMITTED)
                    return
                if outcome.moved_aside is not None:
                    self.display.say(f"{job.name}: earlier files moved to {outcome.moved_aside}")
                self.display.started(job.name, "submitting")
                submission = await asyncio.shield(self._keep(self._submit(client, job, outcome), submitting=outcome))
                self.display.submitted(job.name, submission.prompt_id)
                self.events.submitted(submission, job.workflow_id, job=job.name)
            else:
                self.display.started(job.name, f"resuming {submission.prompt_id}")
                outcome.state, outcome.prompt_id = SUBMITTED, submission.prompt_id
                self.events.learn(submission)
                self.events.following(submission.prompt_id, job=job.name)
            result = await client.wait(
                submission,
                timeout=self.args.timeout,
                on_progress=functools.partial(self._on_progress, job.name),
                cancel_on_timeout=self.args.cancel_on_timeout,
            )
            self.display.downloading(job.name)
            endpoint = None  # a connection error from here on is the storage host's, not the service's
            downloading = True
            paths = await client.download(result, self._download_folder(job))
            self.events.downloaded(submission.prompt_id, paths, job=job.name)
            await asyncio.shield(self._keep(self._record_download(job, outcome, submission, paths)))
            self._report(outcome, SUCCEEDED)
        except GenStudioError as error:
            if isinstance(error, AuthenticationError | PermissionDeniedError):
                self._fatal = error  # the key is refused: every other job would fail the same way
                self._stop()
            # A task cancelled on its timeout is over, as a failed one is: --retry-failed submits it again.
            cancelled = isinstance(error, TaskTimeoutError) and error.cancelled
            task_failed = isinstance(error, TaskError) or (resumed and isinstance(error, NotFoundError)) or cancelled
            if outcome.prompt_id is None:  # the submit failed: the service refused it, or may have made the task
                await asyncio.shield(self._keep(self._submit_failed(job, outcome)))
                return
            message = describe_error(error, endpoint)
            if resumed and isinstance(error, NotFoundError):
                message += " (the task in the journal is unknown to the service: --retry-failed submits it again)"
            await asyncio.shield(self._keep(self._record_failure(job, outcome, message, task_failed=task_failed)))
            if downloading:
                self._report(outcome, DOWNLOAD_FAILED)
            else:
                self._report(outcome, status_word(error), cancelled=cancelled_on_timeout(error))

    def _download_folder(self, job: Job) -> Path:
        """The job's output folder, refused if it is a symlink or leads outside the output folder (planted there
        since an earlier run: a resumed job is not moved aside first); the download would follow it."""
        return own_folder(self.output / job.folder, self.output)

    def _on_progress(self, job: str, info: Any) -> None:
        self.display.update(job, info)
        self.events.progress(info, job=job)

    def _move_aside(self, job: Job) -> str | None:
        """Move what the job's output folder holds (an earlier version's files) to ``<folder>.previous-<n>``
        beside it, before the job is submitted again; ``None`` when there is nothing there. Nothing is deleted
        and no symlink is followed: a symlink in the folder's place is itself moved (renamed, in the output
        folder). Raises ``OSError``."""
        folder = self.output / job.folder
        try:
            found = folder.lstat()
        except FileNotFoundError:
            return None
        is_directory = stat.S_ISDIR(found.st_mode)
        if is_directory:
            with os.scandir(folder) as entries:
                if next(entries, None) is None:
                    return None  # empty: nothing of an earlier version to keep
        for number in range(1, CD.CLI_BATCH_MAX_PREVIOUS + 1):
            name = f"{job.folder}{CD.CLI_BATCH_PREVIOUS_SUFFIX}{number}"
            if name in self._folders:
                continue  # another job's folder: never taken
            target = self.output / name
            if is_directory:
                try:
                    os.mkdir(target)  # claims the name (exclusive); the rename then replaces this empty folder
                except FileExistsError:
                    continue
                try:
                    os.rename(folder, target)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.rmdir(target)
                    raise
            else:
                if os.path.lexists(target):
                    continue
                os.rename(folder, target)  # a symlink or a file: renamed itself, never followed
            log.debug("moved the earlier files of job %s aside to %s", job.name, target)
            return str(target)
        raise OSError(f"{CD.CLI_BATCH_MAX_PREVIOUS} earlier versions are there already: clear some")

    async def _submit_failed(self, job: Job, outcome: Outcome) -> None:
        """A submit that failed: "never submitted" (the service made no task: a rerun submits it again), or
        "submit unanswered" (it may have: journaled, so a rerun does not submit it again unasked)."""
        if outcome.state == UNANSWERED:
            outcome.error = (
                f"{outcome.error} (no usable answer came to the submit: the service may have created the task anyway; "
                "a rerun leaves this job alone, --retry-failed submits it again)"
            )
            await self._record_unanswered(job, outcome)
            self.display.failed_job(job.name, outcome.error)
            self._report(outcome, SUBMIT_UNANSWERED)
        else:
            outcome.state = REFUSED  # (journaled as refused by _submit)
            self.display.failed_job(job.name, f"{outcome.error} (never submitted: the service made no task)")
            self._report(outcome, NEVER_SUBMITTED)

    async def _submit(self, client: Client, job: Job, outcome: Outcome) -> Submission:
        # On disk before the request leaves: if this process dies before the answer is journaled (kill -9, a
        # crash), the rerun holds the job as "submit unanswered" instead of submitting it a second time.
        await self.journal.submitting(job.name, job.workflow_id, fingerprint=job.fingerprint, service=self.profile.name)
        try:
            submission = await client.submit(job.workflow_id, job.prompt)
        except GenStudioError as error:
            # Recorded here too: after a Ctrl-C no worker awaits this any more, and the summary must say it.
            outcome.error = describe_error(error, endpoint_of(self.args))
            outcome.state = UNANSWERED if submit_outcome(error) == SUBMIT_UNANSWERED else REFUSED
            if outcome.state == REFUSED:  # no task: the rerun may submit it again (here: a stop cancels the worker)
                await self.journal.refused(job.name, outcome.error)
            raise
        outcome.prompt_id = submission.prompt_id  # known from here on, whatever happens to the journal write
        try:
            await self.journal.submitted(  # before anything else happens
                job.name, job.workflow_id, submission, fingerprint=job.fingerprint, service=self.profile.name
            )
        except JournalWriteError as exc:
            outcome.state = SUBMITTED
            outcome.error = (
                f"{exc.message}. Task {submission.prompt_id} "
                f"of job {job.name} was created but is not journaled: a rerun would submit it again "
                f"('genstudio watch {submission.prompt_id}', 'genstudio cancel {submission.prompt_id}')"
            )
            raise CLIError(outcome.error, ExitCode.FAILED) from None
        outcome.state = SUBMITTED
        return submission

    async def _record_download(self, job: Job, outcome: Outcome, submission: Submission, paths: list[Path]) -> None:
        absolute = [str(self.cwd / path) for path in paths]  # the journal outlives a change of directory
        await self.journal.append("downloaded", job.name, prompt_id=submission.prompt_id, paths=absolute)
        outcome.state, outcome.paths, outcome.error = DONE, [str(path) for path in paths], None
        self.display.succeeded(job.name, paths)

    async def _record_failure(self, job: Job, outcome: Outcome, message: str, *, task_failed: bool) -> None:
        if outcome.prompt_id is not None:
            await self.journal.append(
                "failed", job.name, prompt_id=outcome.prompt_id, error=message, task_failed=task_failed
            )
        outcome.state, outcome.error = FAILED, message
        self.display.failed_job(job.name, message)

    # --- the end -----------------------------------------------------------------------------------------
    def report_the_rest(self) -> None:
        """The ``outcome`` event of every job that has none yet: not started, or stopped midway."""
        for outcome in self.outcomes.values():
            if outcome.state == UNANSWERED:
                self._report(outcome, SUBMIT_UNANSWERED)
            elif outcome.state == SUBMITTED and self._stop_signal is not None:
                outcome.error = outcome.error or "interrupted: the task goes on on the service (a rerun resumes it)"
                self._report(outcome, INTERRUPTED)
            elif outcome.state == SUBMITTED:
                outcome.error = outcome.error or "the batch stopped: the task goes on on the service"
                self._report(outcome, FAILED_EVENT)
            elif outcome.state == REFUSED:
                self._report(outcome, NEVER_SUBMITTED)
            elif outcome.state == NOT_SUBMITTED:
                why = "interrupted" if self._stop_signal is not None else "the batch stopped"
                if self._fatal is not None:
                    why += f" ({describe_error(self._fatal)})"
                outcome.error = outcome.error or f"not submitted: {why} before this job"
                self._report(outcome, NEVER_SUBMITTED)

    def summary(self) -> None:
        self.report_the_rest()
        outcomes = list(self.outcomes.values())
        counts = {
            state: sum(1 for o in outcomes if o.state == state) for state in (DONE, DONE_BEFORE, FAILED, REFUSED)
        }
        unfinished = [o for o in outcomes if o.state in (SUBMITTED, NOT_SUBMITTED, UNANSWERED)]
        if self.events.enabled:
            pass  # stdout holds the events; each job's outcome was one of them
        elif self.args.json:
            self.console.json(
                {
                    "jobs": [outcome.document() for outcome in outcomes],
                    "done": counts[DONE] + counts[DONE_BEFORE],
                    "done_before": counts[DONE_BEFORE],
                    "failed": counts[FAILED],
                    "never_submitted": counts[REFUSED],
                    "not_finished": len(unfinished),
                    "journal": str(self.journal.path),
                }
            )
        else:
            rows = [[o.job.name, o.state, o.prompt_id or "", o.files_or_error()] for o in outcomes]
            self.console.line("")
            self.console.table(["job", "state", "prompt_id", "files / error"], rows, title="summary")
            text = f"{len(outcomes)} jobs: {counts[DONE] + counts[DONE_BEFORE]} done"
            if counts[DONE_BEFORE]:
                text += f" ({counts[DONE_BEFORE]} before this run)"
            text += f", {counts[FAILED]} failed"
            if counts[REFUSED]:
                text += f", {counts[REFUSED]} never submitted"
            if unfinished:
                text += f", {len(unfinished)} not finished"
            self.console.line(text)
        unanswered = [o.job.name for o in unfinished if o.state == UNANSWERED]
        if unanswered:
            self.console.warn(
                f"no answer came to the submit of {', '.join(unanswered)}: the service may have created those "
                "tasks, whose ids nothing knows; a rerun leaves those jobs alone (check the service's task list), "
                "--retry-failed submits them again"
            )
        if counts[REFUSED]:
            self.console.note(
                f"{counts[REFUSED]} job(s) never submitted (the service made no task for them); a rerun submits "
                "them again"
            )
        if self._stop_signal is not None:
            running = sum(1 for o in unfinished if o.state == SUBMITTED)
            waiting = sum(1 for o in unfinished if o.state == NOT_SUBMITTED)
            if running:
                self.console.note(
                    f"interrupted: {running} task(s) left running on the service (not cancelled) are in the "
                    f"journal {self.journal.path}; run the same command again to resume them"
                )
            else:  # nothing to resume: say so, not "0 task(s) left running … rerun to resume"
                rest = f"; run the same command again to submit the {waiting} job(s) not submitted" if waiting else ""
                self.console.note(f"interrupted: no task of this batch is left running on the service{rest}")
        elif counts[FAILED]:
            self.console.note(
                f"{counts[FAILED]} job(s) failed; a rerun resumes their tasks as they are, "
                "--retry-failed submits the failed ones again"
            )

    def exit_code(self) -> int:
        if self._stop_signal is not None:
            return ExitCode.TERMINATED if self._stop_signal == signal.SIGTERM else ExitCode.INTERRUPTED
        if self._fatal is not None:
            raise self._fatal
        if any(o.state != DONE and o.state != DONE_BEFORE for o in self.outcomes.values()):
            return ExitCode.FAILED
        return ExitCode.OK


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _shown(path: str) -> str:
    """A journaled (absolute) path as the user would write it: relative when under the current directory."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def specs_of(given: list[str], profile: Profile) -> Callable[[str], WorkflowSpec | None]:
    """The spec each GenStudio job's prompt is checked against, from ``--spec [WORKFLOW_ID=]SPEC.json``
    (repeatable): a workflow's own, else the one given without an id, else the built-in spec of the docs' example
    workflows. GPUGeek has no spec: its workflow itself names the nodes and types the values."""
    if profile.whole_workflow:
        if given:
            raise CLIError(
                "--spec is a GenStudio parameter spec ('入参范围'); on GPUGeek each job's whole workflow (built-in, "
                "'workflow_json' or 'prompt') names the nodes and types the values, and is checked already",
                ExitCode.USAGE,
            )
        return lambda workflow_id: None
    from ..workflows import builtin_spec

    by_workflow: dict[str, WorkflowSpec | None] = {}
    default: WorkflowSpec | None = None
    for text in given:
        workflow_id, equals, source = text.partition("=")
        if not equals or not workflow_id.strip() or os.sep in workflow_id or Path(text).exists():
            default = load_spec(text)
        else:
            by_workflow[workflow_id.strip()] = load_spec(source)

    def spec_of(workflow_id: str) -> WorkflowSpec | None:
        if workflow_id in by_workflow:
            return by_workflow[workflow_id]
        return default if default is not None else builtin_spec(workflow_id)

    return spec_of


def open_batch(args: argparse.Namespace) -> tuple[list[Job], Journal, JournalContents, set[str]]:
    """The file work before the batch starts (in a thread): read and check the jobs file, open (and lock) the
    journal, and see which jobs' files are already downloaded."""
    jobs_path = Path(args.jobs)
    profile = profile_of(args)
    jobs = load_jobs(jobs_path, profile, spec_of=specs_of(args.spec, profile))
    journal_path = Path(args.journal) if args.journal else jobs_path.with_name(jobs_path.name + CD.CLI_JOURNAL_SUFFIX)
    if journal_path.resolve() == jobs_path.resolve():
        raise CLIError("the journal cannot be the jobs file itself", ExitCode.USAGE)
    journal = Journal(journal_path)
    contents = journal.open()
    downloaded = set()
    for job in jobs:
        history = contents.history(job.name, *job.aliases)
        if history.made_for(job.workflow_id, job.fingerprint, profile.name) and history.files_present():
            downloaded.add(job.name)
    return jobs, journal, contents, downloaded


async def batch_command(args: argparse.Namespace, console: Console) -> int:
    jobs, journal, contents, downloaded = await asyncio.to_thread(open_batch, args)
    journal_path = journal.path
    try:
        if contents.damaged_lines:
            console.note(
                f"the journal {journal_path} has {contents.damaged_lines} damaged line(s), skipped "
                "(a write cut short by a crash)"
            )
        changed = [
            job.name
            for job in jobs
            if ((history := contents.history(job.name, *job.aliases)).submission is not None or history.unanswered)
            and not history.made_for(job.workflow_id, job.fingerprint, profile_of(args).name)
        ]
        if changed:
            console.note(
                f"{len(changed)} job(s) changed since their task was submitted (workflow, prompt or service): "
                f"{', '.join(changed[:10])}{' …' if len(changed) > 10 else ''}; they are submitted again"
            )
        batch = Batch(args, console, jobs, journal, contents, downloaded)
        console.line(batch.plan_line())
        batch.report_settled()
        await batch.run()
    finally:
        await journal.aclose()
    batch.summary()
    return batch.exit_code()
