"""A worker pool: K asyncio workers share one client and take jobs from an ``asyncio.Queue``.

Each worker submits its job, streams the task's progress with ``client.stream(...)`` (``async with`` closes
the socket as soon as the worker stops listening) and downloads the result. The pool shuts down cleanly:

- when the queue is drained, each worker takes a stop marker and returns; the ``TaskGroup`` waits for all;
- on Ctrl-C (or when ``main()`` is cancelled), the ``TaskGroup`` cancels every worker, each one cancels the
  task it had in flight on the service, and nothing is left running, here or there.

::

    python examples/worker.py [N_JOBS] [--workers K] [-o OUTPUT_DIR]

Job ``i`` saves to ``OUTPUT_DIR/job-<i>/<node id>/`` (default ``worker-output/``). With no
``GENSTUDIO_API_KEY`` it runs against the built-in emulator; see ``_support.py`` for the other set-ups.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The examples share a little set-up code in examples/_support.py: make it importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._support import TEXT_TO_IMAGE, Workflow, add_workflow_arguments, describe, load_workflow, open_client
from genstudio_async import AsyncGenStudio, GenStudioError, ProgressEvent, Submission, TaskStatus

SUBJECTS = ["a red fox in fresh snow", "a lighthouse at dusk", "a bowl of ramen", "a sailing ship in a storm"]


@dataclass(frozen=True)
class Job:
    number: int
    workflow_id: str
    prompt: dict[str, Any]


STOP = None  # what a worker takes from the queue to know there is no more work


async def run_job(client: AsyncGenStudio, name: str, job: Job, output: Path) -> None:
    """Submit, follow and download one job. A failure is reported; it ends this job, not the worker."""
    in_flight: Submission | None = None  # submitted and not finished: what to cancel if we are stopped
    try:
        in_flight = submission = await client.submit(job.workflow_id, job.prompt)
        print(f"[{name}] job {job.number}: submitted {submission.prompt_id}", flush=True)
        last: ProgressEvent | None = None
        async with client.stream(submission) as events:  # the terminal event is always the last one
            async for last in events:
                print(f"[{name}] job {job.number}: {describe(last)}", flush=True)
        in_flight = None
        if last is None or last.status is not TaskStatus.SUCCEEDED:
            return  # failed or denied: the last line printed says why
        for path in await client.download(last, output / f"job-{job.number}"):
            print(f"[{name}] job {job.number}: saved {path}", flush=True)
    except GenStudioError as error:
        print(f"[{name}] job {job.number}: error: {error}", flush=True)
    except asyncio.CancelledError:
        # Stopped mid-job (Ctrl-C): do not leave the task running, and billing, on the service.
        if in_flight is not None:
            try:
                await client.cancel(in_flight)
                print(f"[{name}] job {job.number}: cancelled {in_flight.prompt_id}", flush=True)
            except GenStudioError as error:
                print(f"[{name}] job {job.number}: could not cancel: {error}", flush=True)
        raise


async def worker(name: str, client: AsyncGenStudio, queue: asyncio.Queue[Job | None], output: Path) -> None:
    while (job := await queue.get()) is not STOP:
        await run_job(client, name, job, output)
    print(f"[{name}] no more jobs", flush=True)


def make_jobs(workflow: Workflow, count: int) -> list[Job]:
    base = workflow.builder().negative("ugly, deformed, blurry")
    jobs = []
    for number in range(count):
        prompt = base.positive(SUBJECTS[number % len(SUBJECTS)]).randomize_seeds().build()
        workflow.spec.validate(prompt)  # submit(spec=...) would too; checking here rejects a bad job before queueing
        jobs.append(Job(number, workflow.workflow_id, prompt))
    return jobs


async def main(args: argparse.Namespace) -> None:
    workflow = load_workflow(args, TEXT_TO_IMAGE)
    queue: asyncio.Queue[Job | None] = asyncio.Queue()
    for job in make_jobs(workflow, args.jobs):
        queue.put_nowait(job)
    for _ in range(args.workers):
        queue.put_nowait(STOP)  # one per worker, after every job: each worker stops once the queue is drained

    # One client (one connection pool, one poller) for every worker. A TaskGroup never leaks a task: it waits
    # for every worker, and if one fails or main() is cancelled (Ctrl-C), it cancels the others and waits for
    # them to finish cancelling, before the client closes.
    async with open_client() as client, asyncio.TaskGroup() as workers:
        for n in range(1, args.workers + 1):
            workers.create_task(worker(f"worker-{n}", client, queue, args.output), name=f"worker-{n}")
    print(f"all {args.jobs} jobs handled by {args.workers} workers")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", nargs="?", type=int, default=6, help="how many jobs to queue (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=3, help="workers sharing the client (default: %(default)s)")
    parser.add_argument("-o", "--output", type=Path, default=Path("worker-output"))
    add_workflow_arguments(parser, TEXT_TO_IMAGE)
    return parser.parse_args()


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:  # asyncio.run cancelled main(): every worker has stopped and cancelled its task
        print("interrupted: workers stopped, unfinished tasks cancelled", file=sys.stderr)
        sys.exit(130)
    except GenStudioError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
