"""Benchmark 6 (``scale``): N = 100 / 1,000 / 3,000 / 10,000 tasks streamed at once from one process, by the SDK
and by bare clients, under the default ``ulimit -n 1024`` and under a raised limit, in one run.

    python benchmarks/bench_scale.py [--tasks 100 1000 3000 10000] [--limits 1024 65536] [--clients ...] [--repeats 4]
    python benchmarks/run.py --only scale          # the same, written to RESULTS.md with --write

Each cell (client × N × open-file limit) is one job done by four kinds of client:

- ``sdk``: ``AsyncGenStudio`` with its defaults (WebSocket first): ``submit``, then ``async for event in
  client.stream(sub)`` to the terminal event;
- ``bare-httpx``: a plain ``httpx.AsyncClient`` submit, then one ``websockets`` connection per task with its token,
  ``json.loads`` per frame, the end at the terminal status; no retries, no fallback;
- ``bare-aiohttp``: the same with one ``aiohttp.ClientSession`` (``post`` and ``ws_connect``);
- ``sdk-aiohttp``: the SDK given ``http_client=AioHttpClient()`` (the ``[aiohttp]`` extra).

The N tasks start at once (``asyncio.gather``): each submits, then streams. The SDK bounds its own requests in
flight; the bare clients get the same bound (100 submits in flight, the SDK's pool size), without which httpx's
pool does quadratic work (``probe_http_hotspots.py``). Every cell runs in a fresh client process (this script
with ``--worker``, its soft ``RLIMIT_NOFILE`` set to the cell's limit before it opens anything) against a fresh
emulator in another process (``EmulatorProcess``: ``--stamp-snapshots``, one worker per task, so nothing queues
on the emulator's side, and the emulator's own open-file limit as high as the hard limit allows). At large N the
progress steps are longer (``--frames-per-second``): a task then outlasts the submits of the others, so the N
streams are open at once (what the ``ulimit -n 1024`` cells are about), and the emulator is not what limits the
frame rate. A cell has a deadline; a task not finished by then counts as not completed, and every error a task
met is counted by kind.

Per cell: completed/N; wall time; client CPU (``getrusage``, from the first submit to the last task's end) per
task and per event; the client's peak RSS; event-loop lag p99 and max (a monitor coroutine sleeping
``--lag-interval`` s and recording how much longer it slept); GC pauses (``gc.callbacks``); and the notice delay:
``time.monotonic_ns()`` when the client sees the terminal event minus the ``_emulator_changed_ns`` stamped in
that snapshot (the emulator's clock of the task's last change; CLOCK_MONOTONIC is system-wide). For the emulator:
its CPU over the cell (mean and busiest second, as a share of one core), and frames sent per second, so a
reader can see whether it was the ceiling.

Then, at ``--probe-tasks`` (1,000) under the raised limit, ``--repeats`` (4) more pairs of cells (SDK and bare
httpx + websockets, SDK + ``AioHttpClient`` and bare aiohttp, one after the other, in alternating order): the CPU
ratios are judged on the median of those pairs (the curve's own pair, where the order is fixed, is shown beside
them), each pair's figures in the notes (one cell's CPU per task moves by +-15 % on a shared VM). Then the SDK
alone at ``--probe-tasks`` under the raised limit: once on uvloop (``uvloop.new_event_loop``, the way a user runs
their own loop on it; the SDK does not change the event loop policy), and once under cProfile (own time by package
and by SDK module, cumulative time of ``submit`` and of the stream, the top functions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._support import (
    API_KEY,
    STAMP_FIELD,
    T2I,
    EmulatorProcess,
    Report,
    base_parser,
    cpu_seconds,
    judged,
    parse_args,
    peak_rss_mib,
    percentile,
    profile_summary,
    run_benchmark,
)

HERE = Path(__file__).resolve()
CLIENTS = {
    "sdk": "SDK",
    "bare-httpx": "bare httpx + websockets",
    "bare-aiohttp": "bare aiohttp",
    "sdk-aiohttp": "SDK + AioHttpClient",
}
TERMINAL = frozenset({3, 4, 5})
SUCCEEDED = 3
#: Submits in flight at once for the bare clients: the SDK's own bound (its pool size).
BARE_SUBMITS_IN_FLIGHT = 100
#: How long a bare client waits for one WebSocket handshake.
BARE_OPEN_TIMEOUT = 30.0
MB_PER_MIB = 1024 * 1024 / 1e6


# --- the client process (one cell) -----------------------------------------------------------------------------


@dataclass
class TaskOutcome:
    """What one task of a cell saw."""

    events: int = 0
    source: str | None = None  # where the terminal event came from (SDK: "websocket" or "poll")
    status: int | None = None
    notice_ms: float | None = None
    error: str | None = None
    error_where: str | None = None  # the innermost frames of the error's traceback


@dataclass
class CellResult:
    """What one client process measured, sent back to the orchestrator as JSON."""

    client: str
    tasks: int
    file_limit: int
    loop: str
    completed: int = 0
    events: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mib: float = 0.0
    rss_after_imports_mib: float = 0.0
    lag_p99_ms: float = math.nan
    lag_max_ms: float = math.nan
    gc_pauses: int = 0
    gc_max_ms: float = 0.0
    gc_total_ms: float = 0.0
    notice_p50_ms: float = math.nan
    notice_max_ms: float = math.nan
    errors: dict[str, int] = field(default_factory=dict)
    #: Where each kind of error was raised (the first one met): its innermost frames, file:line.
    error_where: dict[str, str] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    deadline_hit: bool = False
    profile: list[str] = field(default_factory=list)


class LagMonitor:
    """Sleeps ``interval`` s over and over and records how much longer than asked each sleep took (ms)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.lags_ms: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval)
            self.lags_ms.append(max(loop.time() - asked - self.interval, 0.0) * 1000)


class GcPauses:
    """Every garbage collection's duration (ms), from ``gc.callbacks``, while installed."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)

    @contextlib.contextmanager
    def installed(self) -> Iterator[GcPauses]:
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)


def error_kind(error: BaseException) -> str:
    """A short, stable name for what went wrong (no token, no URL): the class and the OS errno if any."""
    errno = getattr(error, "errno", None)
    cause = error.__cause__ or error.__context__
    if errno is None and cause is not None:
        errno = getattr(cause, "errno", None)
    return f"{type(error).__name__}" + (f" (errno {errno})" if errno else "")


def raised_where(error: BaseException, frames: int = 8) -> str:
    """The innermost ``frames`` frames of ``error``'s traceback (the import machinery's left out), as
    ``folder/module.py:line(function)``, innermost first."""
    summary = [frame for frame in traceback.extract_tb(error.__traceback__)
               if "importlib._bootstrap" not in frame.filename][-frames:]
    return " < ".join(f"{'/'.join(Path(frame.filename).parts[-2:])}:{frame.lineno}({frame.name})"
                      for frame in reversed(summary))


#: One task's job for a kind of client: submit, follow to the end, fill in the outcome.
Job = Callable[[TaskOutcome], Awaitable[None]]


def seen_terminal(outcome: TaskOutcome, status: int, info: dict[str, Any]) -> None:
    """Record a terminal snapshot: its status and how long after the emulator's change the client saw it."""
    now = time.monotonic_ns()
    outcome.status = status
    stamp = info.get(STAMP_FIELD)
    if isinstance(stamp, int):
        outcome.notice_ms = (now - stamp) / 1e6


@contextlib.asynccontextmanager
async def sdk_job(base_url: str, aiohttp_transport: bool) -> AsyncIterator[Job]:
    from genstudio_async import AioHttpClient, AsyncGenStudio

    async with contextlib.AsyncExitStack() as stack:
        http_client = await stack.enter_async_context(AioHttpClient()) if aiohttp_transport else None
        client = await stack.enter_async_context(
            AsyncGenStudio(api_key=API_KEY, base_url=base_url, http_client=http_client)
        )

        async def job(outcome: TaskOutcome) -> None:
            submission = await client.submit(T2I)
            async for event in client.stream(submission):
                outcome.events += 1
                if event.status in TERMINAL:
                    outcome.source = event.source
                    seen_terminal(outcome, int(event.status), event.model_extra or {})

        yield job


@contextlib.asynccontextmanager
async def bare_httpx_job(base_url: str) -> AsyncIterator[Job]:
    import httpx
    from websockets.asyncio.client import connect

    from benchmarks._support import bare_submit, progress_url

    # httpx's default pool (100 connections, 20 kept alive), as the SDK's. Keeping all 100 alive triples the
    # CPU per submit: httpcore checks every pooled connection (is_idle, getpeername) for each request.
    slots = asyncio.Semaphore(BARE_SUBMITS_IN_FLIGHT)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60,
                                 trust_env=False) as api:

        async def job(outcome: TaskOutcome) -> None:
            async with slots:
                task = await bare_submit(api)
            url = progress_url(base_url, task["prompt_token"])
            async with connect(url, proxy=None, compression=None, open_timeout=BARE_OPEN_TIMEOUT) as ws:
                async for frame in ws:
                    info: dict[str, Any] = json.loads(frame)["comfy_task_info"]
                    outcome.events += 1
                    if info["status"] in TERMINAL:
                        seen_terminal(outcome, info["status"], info)
                        return

        yield job


@contextlib.asynccontextmanager
async def bare_aiohttp_job(base_url: str) -> AsyncIterator[Job]:
    import aiohttp

    from benchmarks._support import progress_url
    from genstudio_async._services import genstudio as GS

    # No connection limit in the pool: each WebSocket holds one of its connections. The submits are bounded apart.
    connector = aiohttp.TCPConnector(limit=0)
    slots = asyncio.Semaphore(BARE_SUBMITS_IN_FLIGHT)
    # A submit or a handshake: bounded per connect and per read (a total would also bound each socket's life).
    timeout = aiohttp.ClientTimeout(total=None, connect=BARE_OPEN_TIMEOUT, sock_read=BARE_OPEN_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"Authorization": f"Bearer {API_KEY}"}) as session:

        async def job(outcome: TaskOutcome) -> None:
            async with slots, session.post(base_url + GS.SUBMIT_PATH, json={"workflow_id": T2I}) as response:
                task: dict[str, str] = (await response.json())["data"]
            url = progress_url(base_url, task["prompt_token"])
            async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_receive=None)) as ws:
                async for message in ws:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    info: dict[str, Any] = json.loads(message.data)["comfy_task_info"]
                    outcome.events += 1
                    if info["status"] in TERMINAL:
                        seen_terminal(outcome, info["status"], info)
                        return

        yield job


def client_jobs(kind: str, base_url: str) -> contextlib.AbstractAsyncContextManager[Job]:
    if kind == "sdk":
        return sdk_job(base_url, aiohttp_transport=False)
    if kind == "sdk-aiohttp":
        return sdk_job(base_url, aiohttp_transport=True)
    if kind == "bare-httpx":
        return bare_httpx_job(base_url)
    if kind == "bare-aiohttp":
        return bare_aiohttp_job(base_url)
    raise ValueError(f"unknown client {kind!r}")


async def run_cell(args: argparse.Namespace) -> CellResult:
    """The client side of one cell: N tasks at once, to the end or the deadline."""
    result = CellResult(client=args.worker, tasks=args.tasks, file_limit=args.nofile, loop=args.loop,
                        rss_after_imports_mib=peak_rss_mib())
    outcomes = [TaskOutcome() for _ in range(args.tasks)]
    monitor = LagMonitor(args.lag_interval)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    async with client_jobs(args.worker, args.base_url) as job:

        async def one(outcome: TaskOutcome) -> None:
            try:
                await job(outcome)
            except Exception as exc:  # noqa: BLE001 - a benchmark counts what each task met
                outcome.error, outcome.error_where = error_kind(exc), raised_where(exc)

        lag_task = asyncio.create_task(monitor.run())
        with GcPauses().installed() as gc_pauses:
            cpu_started, wall_started = cpu_seconds(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            runners = [asyncio.create_task(one(outcome)) for outcome in outcomes]
            try:
                _, pending = await asyncio.wait(runners, timeout=args.deadline)
            finally:
                for runner in runners:
                    runner.cancel()
                await asyncio.gather(*runners, return_exceptions=True)
            if profiler is not None:
                profiler.disable()
            result.cpu_s = cpu_seconds() - cpu_started
            result.wall_s = time.perf_counter() - wall_started
        lag_task.cancel()
        await asyncio.gather(lag_task, return_exceptions=True)
    result.deadline_hit = bool(pending)
    result.peak_rss_mib = peak_rss_mib()
    errors: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    for outcome in outcomes:
        result.events += outcome.events
        if outcome.status == SUCCEEDED:
            result.completed += 1
            if outcome.source is not None:
                sources[outcome.source] += 1
        elif outcome.error is not None:
            errors[outcome.error] += 1
            result.error_where.setdefault(outcome.error, outcome.error_where or "")
        elif outcome.status is not None:
            errors[f"status {outcome.status}"] += 1
        else:
            errors["not finished by the deadline"] += 1
    result.errors, result.sources = dict(errors), dict(sources)
    notices = [outcome.notice_ms for outcome in outcomes if outcome.notice_ms is not None]
    result.notice_p50_ms, result.notice_max_ms = percentile(notices, 0.5), max(notices, default=math.nan)
    result.lag_p99_ms, result.lag_max_ms = percentile(monitor.lags_ms, 0.99), max(monitor.lags_ms, default=math.nan)
    pauses = gc_pauses.pauses_ms
    result.gc_pauses, result.gc_max_ms, result.gc_total_ms = len(pauses), max(pauses, default=0.0), sum(pauses)
    if profiler is not None:
        result.profile = profile_summary(profiler, max(result.events, 1), by_sdk_module=True,
                                         entry_points={"submit": ("_client.py", "submit"),
                                                       "stream": ("_stream.py", "events")})
    return result


def worker_main(args: argparse.Namespace) -> int:
    """``--worker``: run one cell in this process and write its ``CellResult`` as JSON to ``--json``."""
    if args.loop == "uvloop":
        uvloop = importlib.import_module("uvloop")  # the [benchmark] extra; not needed to type-check

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(run_cell(args))
    else:
        result = asyncio.run(run_cell(args))
    args.json.write_text(json.dumps(asdict(result)), encoding="utf-8")
    return 0


# --- the orchestrator --------------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One measured cell: the client's figures and the emulator's."""

    client: CellResult
    emulator_cpu_s: float
    emulator_busiest_second: float  # the highest CPU share of one core over any 1 s window
    frames: int
    frames_peak_per_s: float
    sockets_opened: int
    task_info_requests: int
    emulator_peak_rss_mib: float

    @property
    def label(self) -> str:
        return CLIENTS[self.client.client] + (" on uvloop" if self.client.loop == "uvloop" else "")


async def sample_emulator(emulator: EmulatorProcess, samples: list[tuple[float, float, int]]) -> None:
    """Every 0.5 s: (wall, the emulator's CPU seconds, frames sent so far)."""
    while True:
        stats = await emulator.stats()
        samples.append((time.perf_counter(), emulator.cpu_seconds(), int(stats["ws_frames_sent"])))
        await asyncio.sleep(0.5)


def busiest(samples: list[tuple[float, float, int]], index: int, window: float = 1.0) -> float:
    """The highest rate of ``samples[i][index]`` per second over any ``window``-second stretch."""
    best = 0.0
    start = 0
    for end in range(len(samples)):
        while samples[end][0] - samples[start][0] > window and start < end:
            start += 1
        span = samples[end][0] - samples[start][0]
        if span >= window / 2:
            best = max(best, (samples[end][index] - samples[start][index]) / span)
    return best


async def measure_cell(args: argparse.Namespace, client: str, tasks: int, file_limit: int, *, loop: str = "asyncio",
                       profile: bool = False) -> Cell | None:
    """Start an emulator, run one client process against it, and read both sides' figures."""
    deadline = args.deadline_base + args.deadline_per_task * tasks
    client_cpus, emulator_cpus = cpu_split(args.pin)
    async with EmulatorProcess(workers=tasks, steps=args.steps, step_seconds=step_seconds(args, tasks),
                               stamp_snapshots=True, open_files=args.emulator_open_files) as emulator:
        if emulator_cpus:
            os.sched_setaffinity(emulator.pid, emulator_cpus)
        await emulator.timing(queue_notify_interval=args.queue_notify_interval)
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / "cell.json"
            command = [sys.executable, str(HERE), "--worker", client, "--tasks", str(tasks), "--nofile",
                       str(file_limit), "--base-url", emulator.base_url, "--deadline", str(deadline), "--loop", loop,
                       "--lag-interval", str(args.lag_interval), "--json", str(out),
                       *(["--profile"] if profile else [])]
            samples: list[tuple[float, float, int]] = []
            sampler = asyncio.create_task(sample_emulator(emulator, samples))
            cpu_before = emulator.cpu_seconds()
            # Pinned in the child before it starts Python (a client that died at once would be gone for a later pin).
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=(lambda: os.sched_setaffinity(0, client_cpus)) if client_cpus else None,
            )
            try:
                returncode = await asyncio.wait_for(process.wait(), deadline + 60)
            except TimeoutError:
                process.kill()
                await process.wait()
                returncode = None
            finally:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
            emulator_cpu = emulator.cpu_seconds() - cpu_before
            stats = await emulator.stats()
            emulator_rss = emulator.peak_rss_mib()
            if returncode != 0 or not out.exists():
                print(f"  !! {client} N={tasks} limit {file_limit}: the client process failed ({returncode})")
                return None
            result = CellResult(**json.loads(out.read_text(encoding="utf-8")))
    return Cell(
        client=result, emulator_cpu_s=emulator_cpu, emulator_busiest_second=busiest(samples, 1),
        frames=int(stats["ws_frames_sent"]), frames_peak_per_s=busiest(samples, 2),
        sockets_opened=int(stats["ws_connections_opened"]), task_info_requests=int(stats["task_info_requests"]),
        emulator_peak_rss_mib=emulator_rss,
    )


def cpu_split(pin: bool) -> tuple[set[int], set[int]]:
    """With ``--pin`` and two CPUs or more: the client process's CPUs and the emulator's, apart (the emulator on
    the last one). Sharing both cores, the two moved between them and met each other on one, and a cell's CPU per
    task moved by +-15 % from one cell to the next; ``(set(), set())`` leaves both to the scheduler."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return set(), set()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(), set()
    return set(cpus[:-1]), {cpus[-1]}


def step_seconds(args: argparse.Namespace, tasks: int) -> float:
    """Seconds per progress step for ``tasks`` tasks: ``--step-seconds``, or longer so that all of them running
    at once push at most ``--frames-per-second`` progress frames (and a task outlasts the submits of the rest)."""
    return float(max(args.step_seconds, tasks / args.frames_per_second))


def show(cell: Cell) -> str:
    c = cell.client
    errors = ", ".join(f"{kind} ×{count}" for kind, count in sorted(c.errors.items())) or "none"
    return (f"  {cell.label:<26} N={c.tasks:<6} limit {c.file_limit:<6} {c.completed}/{c.tasks} in {c.wall_s:.1f} s; "
            f"{per_task_ms(c):.2f} ms CPU/task, {per_event_us(c):.0f} µs/event, RSS {c.peak_rss_mib:.0f} MiB, lag p99 "
            f"{c.lag_p99_ms:.0f}/max {c.lag_max_ms:.0f} ms, notice p50 {c.notice_p50_ms:.0f}/max "
            f"{c.notice_max_ms:.0f} ms; emulator {cell.emulator_cpu_s / max(c.wall_s, 1e-9):.0%} CPU (busiest s "
            f"{cell.emulator_busiest_second:.0%}), {cell.frames / max(c.wall_s, 1e-9):.0f} frames/s (peak "
            f"{cell.frames_peak_per_s:.0f}); GC {c.gc_pauses} runs, {c.gc_total_ms:.0f} ms; errors: {errors}")


def per_task_ms(result: CellResult) -> float:
    return result.cpu_s / result.tasks * 1000


def per_event_us(result: CellResult) -> float:
    return result.cpu_s / result.events * 1e6 if result.events else math.nan


def curve_table(cells: list[Cell]) -> list[str]:
    """The curve: one row per cell, Markdown."""
    rows = [
        "| client | N | ulimit -n | completed | wall s | CPU ms/task | µs/event | peak RSS MB | loop lag p99 / max ms "
        "| notice p50 / max ms | GC max ms | errors met | emulator CPU mean / busiest s | emulator frames/s mean / "
        "peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        c = cell.client
        errors = "; ".join(f"{kind} ×{count}" for kind, count in sorted(c.errors.items())) or "none"
        if c.sources.get("poll"):
            errors += f" (ended by polling: {c.sources['poll']})"
        rows.append(
            f"| {cell.label} | {c.tasks:,} | {c.file_limit:,} | {c.completed:,}/{c.tasks:,} | {c.wall_s:.1f} | "
            f"{per_task_ms(c):.2f} | {per_event_us(c):.0f} | {c.peak_rss_mib * MB_PER_MIB:.0f} | "
            f"{c.lag_p99_ms:.0f} / {c.lag_max_ms:.0f} | {c.notice_p50_ms:.0f} / {c.notice_max_ms:.0f} | "
            f"{c.gc_max_ms:.0f} | {errors} | {cell.emulator_cpu_s / max(c.wall_s, 1e-9):.0%} / "
            f"{cell.emulator_busiest_second:.0%} | {cell.frames / max(c.wall_s, 1e-9):,.0f} / "
            f"{cell.frames_peak_per_s:,.0f} |"
        )
    return rows


def find(cells: list[Cell], client: str, tasks: int, file_limit: int, loop: str = "asyncio") -> CellResult | None:
    for cell in cells:
        c = cell.client
        if (c.client, c.tasks, c.file_limit, c.loop) == (client, tasks, file_limit, loop):
            return c
    return None


def median_ratio(report: Report, what: str, cells: list[Cell], repeats: list[Cell], client: str, baseline: str,
                 tasks: int, file_limit: int) -> float:
    """``client``'s CPU per task over ``baseline``'s: the median over the repeats' pairs (each pair run one after
    the other, who goes first alternating from pair to pair), or the curve's own pair when there are no repeats.
    Every pair's figures go into a note, the curve's too."""
    curve = (find(cells, client, tasks, file_limit), find(cells, baseline, tasks, file_limit))
    ours = [cell.client for cell in repeats if cell.client.client == client]
    theirs = [cell.client for cell in repeats if cell.client.client == baseline]
    pairs = [(a, b) for a, b in zip(ours, theirs, strict=False) if a.completed and b.completed]
    shown = [f"{per_task_ms(a):.2f}/{per_task_ms(b):.2f} ms = {per_task_ms(a) / per_task_ms(b):.2f}×"
             f" ({'ours' if index % 2 else 'theirs'} first)" for index, (a, b) in enumerate(pairs)]
    ratios = [per_task_ms(a) / per_task_ms(b) for a, b in pairs]
    text = f"CPU per task, {what}, N={tasks:,}, limit {file_limit}: "
    if curve[0] is not None and curve[1] is not None and curve[1].completed:
        text += f"the curve's cells {per_task_ms(curve[0]):.2f}/{per_task_ms(curve[1]):.2f} ms = " \
                f"{per_task_ms(curve[0]) / per_task_ms(curve[1]):.2f}× (not judged: who runs first is fixed there)"
        if not ratios:
            ratios = [per_task_ms(curve[0]) / per_task_ms(curve[1])]
    if shown:
        text += "; the repeats, pair by pair: " + ", ".join(shown) + f"; median {statistics.median(ratios):.2f}×" \
                f" (min {min(ratios):.2f}, max {max(ratios):.2f}; geometric mean " \
                f"{statistics.geometric_mean(ratios):.2f}×)"
    report.note(text + ".")
    return float(statistics.median(ratios))


def judge(report: Report, cells: list[Cell], args: argparse.Namespace, low: int, high: int,
          repeats: list[Cell]) -> None:
    """The figures issue 12's "Done when" names, each judged against its goal."""
    big = max(args.tasks)
    sdk_big = find(cells, "sdk", big, low)
    if sdk_big is not None:
        report.add(judged(f"N={big:,}, ulimit {low}: SDK tasks completed", sdk_big.completed, f"of {big}", ">=", big))
        report.add(judged(f"N={big:,}, ulimit {low}: SDK peak RSS", sdk_big.peak_rss_mib * MB_PER_MIB, "MB", "<",
                          300))
        report.add(judged(f"N={big:,}, ulimit {low}: tasks that met an error", sum(sdk_big.errors.values()), "", "==",
                          0))
    n = args.probe_tasks
    sdk, bare = find(cells, "sdk", n, high), find(cells, "bare-httpx", n, high)
    if sdk is not None and bare is not None and bare.completed:
        ratio = median_ratio(report, "SDK / bare httpx + websockets", cells, repeats, "sdk", "bare-httpx", n, high)
        report.add(judged(f"N={n:,}: SDK CPU per task / bare httpx + websockets (median of pairs)", ratio, "×", "<=",
                          1.05))
        report.add(judged(f"N={n:,}: SDK notice delay p50 / bare httpx + websockets",
                          sdk.notice_p50_ms / bare.notice_p50_ms, "×", "<=", 2))
    if sdk is not None:
        report.add(judged(f"N={n:,}: SDK event-loop lag p99", sdk.lag_p99_ms, "ms", "<", 100))
    fast, bare_aiohttp = find(cells, "sdk-aiohttp", n, high), find(cells, "bare-aiohttp", n, high)
    if fast is not None and bare_aiohttp is not None and bare_aiohttp.completed:
        ratio = median_ratio(report, "SDK + AioHttpClient / bare aiohttp", cells, repeats, "sdk-aiohttp",
                             "bare-aiohttp", n, high)
        report.add(judged(f"N={n:,}: SDK + AioHttpClient CPU per task / bare aiohttp (median of pairs)", ratio, "×",
                          "<=", 1.3))
    uv = find(cells, "sdk", n, high, "uvloop")
    if sdk is not None and uv is not None:
        report.add(judged(f"N={n:,}: SDK CPU per task on uvloop / on asyncio", per_task_ms(uv) / per_task_ms(sdk),
                          "×", "<", 1.0))


async def run(args: argparse.Namespace, report: Report) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limits = sorted({min(limit, hard) if hard != resource.RLIM_INFINITY else limit for limit in args.limits})
    low, high = limits[0], limits[-1]
    cells: list[Cell] = []
    for file_limit in limits:
        for tasks in args.tasks:
            for client in args.clients:
                cell = await measure_cell(args, client, tasks, file_limit)
                if cell is not None:
                    print(show(cell), flush=True)
                    cells.append(cell)
    # The CPU ratios at --probe-tasks move by +-15 % from one cell to the next on a shared VM (httpcore's pool
    # bookkeeping alone varies with how requests happen to overlap), and the first cell of a pair tends to cost
    # more than the second: each pair of clients runs --repeats more times, one after the other, who goes first
    # alternating, and the ratios are judged on the median of those pairs.
    repeats: list[Cell] = []
    pairs = [(a, b) for a, b in (("sdk", "bare-httpx"), ("sdk-aiohttp", "bare-aiohttp"))
             if a in args.clients and b in args.clients]
    for repeat in range(args.repeats if args.probe_tasks in args.tasks else 0):
        for a, b in pairs:
            for client in ((a, b) if repeat % 2 else (b, a)):
                cell = await measure_cell(args, client, args.probe_tasks, high)
                if cell is not None:
                    print(show(cell) + f" (repeat {repeat + 1})", flush=True)
                    repeats.append(cell)
    probes: list[Cell] = []
    if not args.no_uvloop:
        cell = await measure_cell(args, "sdk", args.probe_tasks, high, loop="uvloop")
        if cell is not None:
            print(show(cell), flush=True)
            probes.append(cell)
    profiled = None
    if not args.no_profile:
        profiled = await measure_cell(args, "sdk", args.probe_tasks, high, profile=True)
    judge(report, cells + probes, args, low, high, repeats)
    client_cpus, emulator_cpus = cpu_split(args.pin)
    report.note(
        f"Emulator: one worker per task, {args.steps} steps per task of "
        + ", ".join(f"{step_seconds(args, n):g} s (N={n:,})" for n in args.tasks)
        + f" (at least {args.step_seconds:g} s, and N / {args.frames_per_second:g}: N running tasks push at most "
        f"that many progress frames a second, and a task outlasts the submits of the rest), snapshots stamped; "
        f"queue-only changes pushed every {args.queue_notify_interval:g} s (a running task's snapshot shows the "
        f"queue's size: at the default 0.05 s each submit round re-sent every running task's snapshot, 40-50 frames "
        f"a task at N=10,000 instead of 12, a count that differed by client and held the emulator at 100% of a "
        f"core); "
        f"a fresh emulator and a fresh client process per cell"
        + (f" (the client process on CPUs {sorted(client_cpus)}, the emulator on CPUs {sorted(emulator_cpus)}; the "
           f"benchmark's own process unpinned)" if client_cpus else " (not pinned to CPUs)")
        + f"; open-file limits {', '.join(map(str, limits))} "
        f"(hard limit {hard}); the emulator's own limit {args.emulator_open_files} (or the hard limit). Deadline per "
        f"cell: {args.deadline_base:g} s + {args.deadline_per_task * 1000:g} ms per task. Loop lag sampled every "
        f"{args.lag_interval * 1000:g} ms. CPU per task counts the submit and the stream; µs per event divides the "
        f"same CPU by the events yielded (SDK) or frames parsed (bare)."
    )
    report.tables.append(["### The curve", "", *curve_table(cells + probes)])
    for cell in cells + probes:
        c = cell.client
        report.note(
            f"{cell.label}, N={c.tasks:,}, limit {c.file_limit}: {c.events:,} events; emulator: {cell.frames:,} "
            f"frames, {cell.sockets_opened:,} sockets opened, {cell.task_info_requests:,} get_task_info calls, "
            f"{cell.emulator_cpu_s:.1f} s CPU, peak RSS {cell.emulator_peak_rss_mib:.0f} MiB; client: RSS after "
            f"imports {c.rss_after_imports_mib:.0f} MiB, {c.gc_pauses} GC runs ({c.gc_total_ms:.0f} ms in all)"
            + (f"; sources of the terminal event {c.sources}" if c.sources else "")
            + "".join(f"; {kind} raised at {where}" for kind, where in sorted(c.error_where.items()))
            + ("; DEADLINE HIT" if c.deadline_hit else "") + "."
        )
    if profiled is not None:
        c = profiled.client
        report.note(f"cProfile of the SDK at N={c.tasks:,} (limit {c.file_limit}; {c.completed} completed, "
                    f"{c.events:,} events, {c.cpu_s:.1f} s CPU under the profiler):")
        for line in c.profile:
            report.note(line)


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 3000, 10000], help="the Ns of the curve")
    parser.add_argument("--limits", type=int, nargs="+", default=[1024, 65536],
                        help="client soft open-file limits (capped at the hard limit) (default %(default)s)")
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    parser.add_argument("--steps", type=int, default=10, help="progress steps per task (default %(default)s)")
    parser.add_argument("--step-seconds", type=float, default=0.2, help="seconds per step, at least (default "
                        "%(default)s)")
    parser.add_argument("--frames-per-second", type=float, default=2000.0, help="longer steps at large N, so that "
                        "N tasks push at most this many progress frames a second (default %(default)s)")
    parser.add_argument("--probe-tasks", type=int, default=1000, help="N of the uvloop and profile runs and of the "
                        "judged ratios (default %(default)s)")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="run the client process and the emulator on CPUs of their own (default: on)")
    parser.add_argument("--repeats", type=int, default=4, help="more pairs of cells at --probe-tasks for the judged "
                        "CPU ratios (default %(default)s)")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop run")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled run")
    parser.add_argument("--deadline-base", type=float, default=60.0, help="deadline per cell: this many s ...")
    parser.add_argument("--deadline-per-task", type=float, default=0.03, help="... plus this many s per task")
    parser.add_argument("--lag-interval", type=float, default=0.01, help="loop-lag monitor's sleep (s)")
    parser.add_argument("--queue-notify-interval", type=float, default=3600.0,
                        help="how often the emulator pushes queue-only changes (default %(default)s s: never, in a "
                        "cell; each would re-send every running task's snapshot, 10,000 frames at once)")
    parser.add_argument("--emulator-open-files", type=int, default=65536, help="the emulator's open-file limit")
    # the client process of one cell
    parser.add_argument("--worker", choices=list(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--nofile", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=120.0, help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parse_args(parser, tasks=[100, 300], probe_tasks=300, deadline_base=30.0)
    if args.worker:
        args.tasks = args.tasks[0]
        return worker_main(args)
    return run_benchmark(run, args, Report(6, "Scale: N tasks streamed at once, SDK vs bare clients, two ulimits"))


if __name__ == "__main__":
    if "--worker" in sys.argv:  # the cell's open-file limit, before the cell opens anything
        limit = int(sys.argv[sys.argv.index("--nofile") + 1])
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard) if hard != resource.RLIM_INFINITY else limit,
                                                    hard))
    sys.exit(main())
