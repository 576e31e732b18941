"""Many jobs at bounded concurrency: ``WorkerPool``, and ``run_many`` on it.

``WorkerPool`` is the one mechanism: a fixed number of asyncio tasks sharing one iterator, each taking the next
item as soon as it is free. ``run_many`` (the client's) and the ``genstudio batch`` command both run on it, each
with its own per-job logic.

``run_many``: each outcome yielded as it finishes. One job's failure never stops the batch: it becomes a
``JobOutcome`` with ``error`` set. Jobs are pulled from the iterable lazily, so a generator of a million jobs
costs memory for ``concurrency`` of them only. Leaving the loop early (break, cancel, ``aclose``) stops the
workers, and every task already submitted but not finished is cancelled on the service, so nothing keeps
running (and billing) unseen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from . import _constants as C
from ._exceptions import InvalidInputError
from .types import JobOutcome, Submission, TaskResult

log = logging.getLogger("genstudio_async")

WorkflowId = str | int
"""A workflow's id: GenStudio's are strings (``wf-…``), GPUGeek's integers (a string of digits works too)."""
Job = tuple[WorkflowId, Mapping[str, Any] | None]
Submit = Callable[[WorkflowId, Mapping[str, Any] | None], Awaitable[Submission]]
Wait = Callable[[int, Submission], Awaitable[TaskResult]]
Cancel = Callable[[Submission], Awaitable[None]]

Item = TypeVar("Item")


class WorkerPool(Generic[Item]):
    """``size`` asyncio tasks sharing one iterator of items: each worker takes the next item, awaits
    ``handle(item)``, and takes another, until none is left or the pool is stopped.

    Items are pulled lazily, one per free worker. An error raised by ``handle`` ends its worker and is raised
    by ``join``; ``handle`` decides what a failure of one item means (an outcome, a journal record, the end).
    """

    def __init__(
        self, items: Iterable[Item], handle: Callable[[Item], Awaitable[None]], *, size: int, name: str
    ) -> None:
        """Start ``size`` workers at once (named ``name-0``, ``name-1``…); they need a running event loop."""
        self._pending: Iterator[Item] = iter(items)
        self._handle = handle
        self._stopped = False
        self.workers = [asyncio.create_task(self._work(), name=f"{name}-{n}") for n in range(size)]

    async def _work(self) -> None:
        if self._stopped:
            return
        for item in self._pending:
            await self._handle(item)
            if self._stopped:
                return

    def stop(self) -> None:
        """No worker takes another item, and every worker but the caller is cancelled (the caller's ``handle``
        returns as it likes, and its worker then ends)."""
        self._stopped = True
        current = asyncio.current_task()
        for worker in self.workers:
            if worker is not current:
                worker.cancel()

    async def join(self) -> None:
        """Wait until every worker has ended (done, or cancelled by ``stop``); the moment one fails, raise its
        error (the others go on: ``aclose`` ends them)."""
        if not self.workers:
            return
        done, _ = await asyncio.wait(self.workers, return_when=asyncio.FIRST_EXCEPTION)
        for worker in self.workers:
            error = worker.exception() if worker in done and not worker.cancelled() else None
            if error is not None:
                raise error

    async def aclose(self) -> None:
        """Cancel every worker and wait for each to end (their errors are dropped: ``join`` raises them)."""
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)


def _is_workflow_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _as_job(job: Any) -> Job:
    if _is_workflow_id(job):
        return (job, None)
    if isinstance(job, tuple | list) and len(job) == 2 and _is_workflow_id(job[0]):
        return (job[0], job[1])
    raise InvalidInputError(f"a job must be a (workflow_id, prompt) pair, got {job!r}")


async def run_many(
    jobs: Iterable[Job],
    *,
    submit: Submit,
    wait: Wait,
    cancel: Cancel,
    concurrency: int = C.DEFAULT_RUN_MANY_CONCURRENCY,
) -> AsyncGenerator[JobOutcome, None]:
    """Run ``jobs`` with at most ``concurrency`` in flight; yield each ``JobOutcome`` as it finishes."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError(f"concurrency must be a positive int, got {concurrency!r}")
    pending: Iterator[tuple[int, Any]] = enumerate(jobs)
    outcomes: asyncio.Queue[JobOutcome | None] = asyncio.Queue()
    in_flight: dict[int, Submission] = {}
    submitting: set[asyncio.Future[Submission]] = set()

    async def run_one(index: int, raw_job: Any) -> JobOutcome:
        try:
            job = _as_job(raw_job)
        except InvalidInputError as error:
            return JobOutcome(index=index, job=raw_job, error=error)
        # Shielded: a submit cancelled mid-flight may still create the task; the batch's exit waits for its
        # answer and cancels what it created, instead of leaving a task nobody knows about.
        sending = asyncio.ensure_future(submit(*job))
        submitting.add(sending)
        try:
            submission = await asyncio.shield(sending)
        except Exception as error:  # noqa: BLE001 - one job's failure is its outcome, never the batch's end
            submitting.discard(sending)
            return JobOutcome(index=index, job=job, error=error)
        submitting.discard(sending)
        # Until ``wait`` returns, the task is in flight: leaving the batch early cancels it on the service.
        in_flight[index] = submission
        try:
            result = await wait(index, submission)
        except Exception as error:  # noqa: BLE001 - as above
            in_flight.pop(index, None)
            return JobOutcome(index=index, job=job, error=error)
        in_flight.pop(index, None)
        return JobOutcome(index=index, job=job, result=result)

    async def run_and_report(job: tuple[int, Any]) -> None:
        await outcomes.put(await run_one(*job))

    async def supervise(pool: WorkerPool[tuple[int, Any]]) -> None:
        try:
            await pool.join()
        finally:
            await outcomes.put(None)

    pool = WorkerPool(pending, run_and_report, size=concurrency, name="genstudio-run-many")
    supervisor = asyncio.create_task(supervise(pool), name="genstudio-run-many")
    try:
        while (outcome := await outcomes.get()) is not None:
            yield outcome
        await supervisor  # re-raises a worker's unexpected error, if any
    finally:
        supervisor.cancel()
        await pool.aclose()
        await asyncio.gather(supervisor, return_exceptions=True)
        late = await asyncio.gather(*submitting, return_exceptions=True)
        unfinished = [*in_flight.values(), *(sub for sub in late if isinstance(sub, Submission))]
        await _cancel_unfinished(unfinished, cancel)


async def _cancel_unfinished(submissions: list[Submission], cancel: Cancel) -> None:
    """Best effort: cancel on the service what this batch submitted and will no longer wait for."""
    if not submissions:
        return
    log.debug("run_many left early: cancelling %d unfinished tasks", len(submissions))
    results = await asyncio.gather(*(cancel(sub) for sub in submissions), return_exceptions=True)
    for submission, outcome in zip(submissions, results, strict=True):
        if isinstance(outcome, BaseException):
            log.debug("could not cancel %s: %s", submission.prompt_id, outcome)
