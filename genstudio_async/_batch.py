"""``run_many``: many jobs at bounded concurrency, each outcome yielded as it finishes.

One job's failure never stops the batch: it becomes a ``JobOutcome`` with ``error`` set. Jobs are pulled from
the iterable lazily, so a generator of a million jobs costs memory for ``concurrency`` of them only. Leaving the
loop early (break, cancel, ``aclose``) stops the workers, and every task already submitted but not finished is
cancelled on the service, so nothing keeps running (and billing) unseen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

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

    async def worker() -> None:
        for index, raw_job in pending:
            await outcomes.put(await run_one(index, raw_job))

    async def supervise(workers: list[asyncio.Task[None]]) -> None:
        try:
            await asyncio.gather(*workers)
        finally:
            await outcomes.put(None)

    workers = [asyncio.create_task(worker(), name=f"genstudio-run-many-{n}") for n in range(concurrency)]
    supervisor = asyncio.create_task(supervise(workers), name="genstudio-run-many")
    try:
        while (outcome := await outcomes.get()) is not None:
            yield outcome
        await supervisor  # re-raises a worker's unexpected error, if any
    finally:
        for task in (*workers, supervisor):
            task.cancel()
        await asyncio.gather(*workers, supervisor, return_exceptions=True)
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
