"""Benchmark 3: polling mode (``use_websocket=False``): get_task_info requests per poll interval for N = 10, 100
and 1,000 waiting tasks (goal ⌈N/50⌉: one request per 50 ids); and GPUGeek, which has no batch endpoint: GETs per
interval for N = 30 and 300 waiting tasks (goal: about one per task, spread over the interval).

    python benchmarks/bench_polling.py [--sizes 10 100 1000] [--intervals 4] [--poll-interval 1.0]

The emulator (its own process) is paused, so every task stays queued and no waiter ever finishes. For each N: a
fresh ``AsyncGenStudio(use_websocket=False)`` submits N tasks and starts ``client.wait(sub)`` for each; once the
waiters have settled (the first full round asked for all N ids), the script finds the moment of a poll round by
watching the emulator's counters, waits half an interval (so that the window holds whole rounds only), resets the
counters, lets ``--intervals`` intervals pass and reads ``task_info_requests`` and ``task_ids_requested`` from
``GET /_emulator/stats``. Then it cancels the waiters (which must leave the poller) and closes the client.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._support import (
    API_KEY,
    T2I,
    EmulatorProcess,
    Report,
    base_parser,
    cpu_seconds,
    judged,
    parse_args,
    run_benchmark,
)
from genstudio_async import ApiWorkflow, AsyncGenStudio, AsyncGPUGeek, Submission
from genstudio_async import _constants as C
from genstudio_async._services import genstudio as GS

GPUGEEK_T2I = 763311996779461  # the doc's workflow id, the built-in text-to-image export

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workflows"


async def wait_for_stat(emulator: EmulatorProcess, name: str, minimum: int, timeout: float) -> int:
    """Poll the emulator's counters (every 10 ms) until ``name`` reaches ``minimum``; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = int((await emulator.stats())[name])
        if value >= minimum:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} stayed at {value} (< {minimum}) for {timeout} s")
        await asyncio.sleep(0.01)


async def measure(args: argparse.Namespace, emulator: EmulatorProcess, tasks: int) -> tuple[float, float, float]:
    """Requests per interval, ids per interval and client CPU per interval (s) with ``tasks`` waiters."""
    interval = args.poll_interval
    async with AsyncGenStudio(api_key=API_KEY, base_url=emulator.base_url, use_websocket=False,
                              poll_interval=interval, timeout=60) as client:
        slots = asyncio.Semaphore(100)

        async def submit() -> Submission:
            async with slots:
                return await client.submit(T2I)

        submissions = await asyncio.gather(*(submit() for _ in range(tasks)))
        await emulator.reset_stats()
        waiters = [asyncio.create_task(client.wait(sub)) for sub in submissions]
        try:
            # Settled: one full round has asked for every id.
            await wait_for_stat(emulator, "task_ids_requested", tasks, 10 * interval + 10)
            # Find a round's start: the request counter moves. Then sit half an interval after it.
            seen = int((await emulator.stats())["task_info_requests"])
            await wait_for_stat(emulator, "task_info_requests", seen + 1, 3 * interval + 10)
            await asyncio.sleep(interval / 2)
            await emulator.reset_stats()
            started, cpu_before = time.perf_counter(), cpu_seconds()
            await asyncio.sleep(args.intervals * interval)
            stats = await emulator.stats()
            window, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
            if any(waiter.done() for waiter in waiters):
                raise RuntimeError("a waiter ended while every task was queued")
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        polling_left = len(client._poller.polling)  # the waiters must have left the shared poller
    requests, ids = int(stats["task_info_requests"]), int(stats["task_ids_requested"])
    rounds = window / interval
    print(f"  N={tasks}: {requests} requests, {ids} ids in {window:.2f} s ({rounds:.2f} intervals); "
          f"{polling_left} ids still polled after cancelling")
    if polling_left:
        raise RuntimeError(f"{polling_left} prompt_ids stayed registered with the poller after their waiters left")
    return requests / args.intervals, ids / args.intervals, cpu / args.intervals


async def measure_unbatched(args: argparse.Namespace, emulator: EmulatorProcess, tasks: int) -> tuple[float, float]:
    """GPUGeek (one task per status request): GETs per interval with ``tasks`` waiters, and client CPU (s)."""
    interval = args.poll_interval
    prompt = ApiWorkflow.load(EXAMPLES / "t2i_workflow_api.json").builder().build()
    async with AsyncGPUGeek(api_key=API_KEY, base_url=emulator.base_url, poll_interval=interval,
                            timeout=60) as client:
        submissions = [await client.submit(GPUGEEK_T2I, prompt) for _ in range(tasks)]
        await emulator.reset_stats()
        waiters = [asyncio.create_task(client.wait(sub)) for sub in submissions]
        try:
            await wait_for_stat(emulator, "task_info_requests", tasks, 10 * interval + 10)  # one full round
            await emulator.reset_stats()
            rounds_before, started, cpu_before = client._poller.rounds, time.perf_counter(), cpu_seconds()
            await asyncio.sleep(args.intervals * interval)
            stats = await emulator.stats()
            window, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
            rounds = client._poller.rounds - rounds_before
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
    requests = int(stats["task_info_requests"])
    print(f"  GPUGeek N={tasks}: {requests} GETs in {window:.2f} s "
          f"({window / interval:.2f} intervals, {rounds} rounds)")
    return requests / (window / interval), cpu / args.intervals


async def run(args: argparse.Namespace, report: Report) -> None:
    async with EmulatorProcess(workers=2, stamp_snapshots=False, service="gpugeek") as emulator:
        await emulator.pause()
        for tasks in args.gpugeek_sizes:
            per_interval, cpu = await measure_unbatched(args, emulator, tasks)
            report.add(judged(f"GPUGeek N={tasks}: GETs per interval", per_interval, "", "<=", tasks * 1.1))
            report.note(
                f"GPUGeek N={tasks} (no batch endpoint): {per_interval:.1f} GET /api/v1/task requests per "
                f"{args.poll_interval:g} s interval (goal: about one per task, {tasks}; never a burst: a round's "
                f"requests start spread over the interval, at most {C.POLL_MAX_IN_FLIGHT} in flight); client CPU "
                f"{cpu * 1000:.1f} ms per interval."
            )
    async with EmulatorProcess(workers=2, stamp_snapshots=False) as emulator:
        await emulator.pause()
        for tasks in args.sizes:
            per_interval, ids_per_interval, cpu = await measure(args, emulator, tasks)
            goal = math.ceil(tasks / GS.STATUS_BATCH_SIZE)
            report.add(judged(f"N={tasks}: requests per interval", per_interval, "", "==", goal))
            report.note(
                f"N={tasks}: {per_interval:g} get_task_info requests per {args.poll_interval:g} s interval "
                f"(goal ⌈{tasks}/{GS.STATUS_BATCH_SIZE}⌉ = {goal}) asking for {ids_per_interval:g} ids "
                f"({ids_per_interval / max(per_interval, 1):.0f} per request: each waiting task once per interval), "
                f"over {args.intervals} intervals; client CPU {cpu * 1000:.1f} ms per interval."
            )


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="N values (default 10 100 1000)")
    parser.add_argument("--gpugeek-sizes", type=int, nargs="+", default=[30, 300],
                        help="GPUGeek N values (default 30 300)")
    parser.add_argument("--intervals", type=int, default=4, help="poll intervals measured per N (default %(default)s)")
    parser.add_argument("--poll-interval", type=float, default=C.DEFAULT_POLL_INTERVAL,
                        help="the client's poll_interval, seconds (default: the SDK's, %(default)s)")
    args = parse_args(parser, intervals=2, poll_interval=0.5)
    return run_benchmark(run, args, Report(3, "Polling mode: get_task_info requests per poll interval"))


if __name__ == "__main__":
    sys.exit(main())
