"""Benchmark 2: 1,000 tasks streamed at once from one process: all complete; the client's peak RSS (goal < 150 MB)
and CPU per event (goal < 100 µs).

    python benchmarks/bench_many_tasks.py [--tasks 1000] [--steps 10] [--step-seconds 0.2] [--profile]

This script is the client process: the emulator runs as a child process (its memory and CPU are not in
``RUSAGE_SELF``), and nothing here imports the emulator's server stack. The emulator has one worker per task, so
every task runs at the same time. Three phases, each timed, with the client's CPU read from ``getrusage``:

1. submit: the emulator is paused; ``client.submit`` for every task (``asyncio.gather``), at most
   ``--submit-concurrency`` (100, the SDK's connection-pool size) in flight: with all 1,000 at once, httpcore's
   pool spends ~30 ms of CPU per request (see ``probe_http_hotspots.py``).
2. open: ``client.stream(sub)`` for every task, all at once; the phase ends when every stream has yielded its
   first event (the queued snapshot), i.e. all sockets are open.
3. run: the emulator resumes; the phase ends when every stream has yielded its terminal event.

CPU per event = client CPU time / events yielded by the streams. The headline counts phases 2 and 3 (what
streaming costs: handshakes, frames, parsing, closing); the notes split it by phase and also give it with the
submits and for the whole process. Peak RSS is ``ru_maxrss`` read after the SDK run; the baselines come from fresh
interpreters (bare Python, ``import genstudio_async``) and from this script right after its imports.

Then the same three phases run again with a bare client (httpx for the submits, one plain ``websockets``
connection per task, ``json.loads`` per frame): the floor any Python client pays on this machine. ``--profile``
also runs cProfile over the SDK's phases 2 and 3 and reports where the time goes, by package.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from websockets.asyncio.client import connect

from benchmarks._support import (
    API_KEY,
    T2I,
    EmulatorProcess,
    Report,
    bare_submit,
    base_parser,
    cpu_seconds,
    judged,
    parse_args,
    peak_rss_mib,
    profile_summary,
    raise_file_limit,
    run_benchmark,
)
from genstudio_async import AsyncGenStudio, Submission

IMPORTED_RSS_MIB = peak_rss_mib()  # this script, after its imports, before any work
MB_PER_MIB = 1024 * 1024 / 1e6
TERMINAL = frozenset({3, 4, 5})


def baseline_rss_mib(code: str) -> float:
    """Peak RSS (MiB) of a fresh interpreter that runs ``code``.

    Read from ``VmHWM``, which ``exec`` resets: a child's ``ru_maxrss`` would still count the parent's pages it
    shared between ``fork`` and ``exec``.
    """
    probe = (f"{code}\nfrom pathlib import Path\nprint(next(line.split()[1] for line in "
             f"Path('/proc/self/status').read_text().splitlines() if line.startswith('VmHWM:')))")
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60)
    return int(output.stdout.split()[-1]) / 1024


@dataclass
class Tally:
    """What the streams of one run saw, all together."""

    tasks: int
    events: int = 0
    opened: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    terminal: Counter[int] = field(default_factory=Counter)
    all_open: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, status: int, source: str, first: bool) -> None:
        self.events += 1
        self.sources[source] += 1
        if first:
            self.opened += 1
            if self.opened == self.tasks:
                self.all_open.set()
        if status in TERMINAL:
            self.terminal[status] += 1


@dataclass
class Phases:
    """CPU (s) and wall (s) at each phase boundary, and events yielded before the run phase."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    events_open: int = 0

    def mark(self) -> None:
        self.cpu.append(cpu_seconds())
        self.wall.append(time.perf_counter())

    def cpu_of(self, phase: int) -> float:
        return self.cpu[phase + 1] - self.cpu[phase]

    def wall_of(self, phase: int) -> float:
        return self.wall[phase + 1] - self.wall[phase]


Submit = Callable[[], Awaitable[dict[str, str]]]
Follow = Callable[[dict[str, str], Tally], Coroutine[Any, Any, None]]


async def run_phases(
    args: argparse.Namespace, emulator: EmulatorProcess, submit: Submit, follow: Follow, label: str,
    profiler: cProfile.Profile | None = None,
) -> tuple[Tally, Phases]:
    """Submit (bounded), open every stream, resume, follow to the end; mark the CPU and wall at each step."""
    await emulator.pause()
    phases = Phases()
    phases.mark()
    slots = asyncio.Semaphore(args.submit_concurrency or args.tasks)

    async def bounded_submit() -> dict[str, str]:
        async with slots:
            return await submit()

    tasks = await asyncio.wait_for(asyncio.gather(*(bounded_submit() for _ in range(args.tasks))), args.timeout)
    phases.mark()
    if profiler is not None:
        profiler.enable()
    tally = Tally(args.tasks)
    followers = [asyncio.create_task(follow(task, tally)) for task in tasks]
    try:
        await asyncio.wait_for(tally.all_open.wait(), args.timeout)
        phases.mark()
        phases.events_open = tally.events
        await emulator.resume()
        await asyncio.wait_for(asyncio.gather(*followers), args.timeout)
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    phases.mark()
    if profiler is not None:
        profiler.disable()
    print(f"  {label}: submit {phases.wall_of(0):.1f} s, open {phases.wall_of(1):.1f} s, run {phases.wall_of(2):.1f} s;"
          f" {tally.events} events; CPU {phases.cpu_of(0):.2f} + {phases.cpu_of(1):.2f} + {phases.cpu_of(2):.2f} s")
    return tally, phases


async def sdk_run(
    args: argparse.Namespace, emulator: EmulatorProcess, profiler: cProfile.Profile | None
) -> tuple[Tally, Phases]:
    async with AsyncGenStudio(api_key=API_KEY, base_url=emulator.base_url, timeout=120) as client:

        async def submit() -> dict[str, str]:
            return (await client.submit(T2I)).model_dump()

        async def follow(task: dict[str, str], tally: Tally) -> None:
            first = True
            async for event in client.stream(Submission(**task)):
                tally.saw(int(event.status), event.source, first)
                first = False

        return await run_phases(args, emulator, submit, follow, "SDK", profiler)


async def raw_run(args: argparse.Namespace, emulator: EmulatorProcess) -> tuple[Tally, Phases]:
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=emulator.headers, timeout=120) as api:

        async def submit() -> dict[str, str]:
            return await bare_submit(api)

        async def follow(task: dict[str, str], tally: Tally) -> None:
            url = emulator.progress_url(task["prompt_token"])
            first = True
            async with connect(url, proxy=None, compression=None, open_timeout=60) as ws:
                async for frame in ws:
                    info: dict[str, Any] = json.loads(frame)["comfy_task_info"]
                    tally.saw(info["status"], "websocket", first)
                    first = False

        return await run_phases(args, emulator, submit, follow, "bare")


async def run(args: argparse.Namespace, report: Report) -> None:
    raise_file_limit(2 * args.tasks + 512)
    profiler = cProfile.Profile() if args.profile else None
    async with EmulatorProcess(workers=args.tasks, steps=args.steps, step_seconds=args.step_seconds,
                               stamp_snapshots=False) as emulator:
        sdk, phases = await sdk_run(args, emulator, None)
        peak = peak_rss_mib()
        stats = await emulator.stats()
        await emulator.reset_stats()
        raw, raw_phases = await raw_run(args, emulator)
        if profiler is not None:
            await sdk_run(args, emulator, profiler)
        emulator_peak = emulator.peak_rss_mib()

    succeeded = sdk.terminal[3]
    streaming_cpu = phases.cpu_of(1) + phases.cpu_of(2)
    per_event = streaming_cpu / sdk.events * 1e6
    report.add(judged("tasks completed", succeeded, f"of {args.tasks}", ">=", args.tasks))
    report.add(judged("client peak RSS", peak * MB_PER_MIB, "MB", "<", 150))
    report.add(judged("client CPU per event (streaming)", per_event, "µs", "<", 100))
    whole = phases.cpu[-1]  # since interpreter start, imports included, up to the end of the SDK run
    report.add(judged("client CPU per event (whole process)", whole / sdk.events * 1e6, "µs", "<", 100))
    report.note(
        f"{args.tasks} tasks, {args.steps} steps of {args.step_seconds:g} s, {args.tasks} emulator workers: "
        f"{succeeded} SUCCEEDED, {sdk.events} events yielded ({sdk.events / args.tasks:.1f} per task; sources "
        f"{dict(sdk.sources)}); the emulator opened {stats['ws_connections_opened']} sockets, sent "
        f"{stats['ws_frames_sent']} frames and answered {stats['task_info_requests']} get_task_info calls."
    )
    run_events = sdk.events - phases.events_open
    report.note(
        f"SDK client CPU by phase: submit {phases.cpu_of(0):.2f} s ({phases.cpu_of(0) / args.tasks * 1e3:.2f} ms per "
        f"submit, {args.submit_concurrency or 'all'} in flight), open {phases.cpu_of(1):.2f} s "
        f"({phases.cpu_of(1) / args.tasks * 1e6:.0f} µs per stream opened), run {phases.cpu_of(2):.2f} s "
        f"({phases.cpu_of(2) / run_events * 1e6:.0f} µs per event over {run_events} events). Per event: "
        f"{per_event:.0f} µs open + run, {(phases.cpu[-1] - phases.cpu[0]) / sdk.events * 1e6:.0f} µs with the "
        f"submits, {whole / sdk.events * 1e6:.0f} µs for the whole process (interpreter start and imports included)."
        f" Wall: submit {phases.wall_of(0):.1f} s, open {phases.wall_of(1):.1f} s, run {phases.wall_of(2):.1f} s."
    )
    raw_run_events = raw.events - raw_phases.events_open
    raw_per_event = (raw_phases.cpu_of(1) + raw_phases.cpu_of(2)) / raw.events * 1e6
    report.note(
        f"Bare client, same phases and emulator ({raw.terminal[3]} SUCCEEDED, {raw.events} frames): submit "
        f"{raw_phases.cpu_of(0) / args.tasks * 1e3:.2f} ms per submit, open "
        f"{raw_phases.cpu_of(1) / args.tasks * 1e6:.0f} µs per socket, run "
        f"{raw_phases.cpu_of(2) / max(raw_run_events, 1) * 1e6:.0f} µs per frame; {raw_per_event:.0f} µs per event "
        f"open + run. The SDK costs {per_event / raw_per_event:.2f}× the bare floor."
    )
    python_rss = baseline_rss_mib("pass")
    sdk_rss = baseline_rss_mib("import genstudio_async")
    report.note(
        f"Peak RSS {peak:.1f} MiB ({peak * MB_PER_MIB:.1f} MB). Baselines: bare Python {python_rss:.1f} MiB, "
        f"`import genstudio_async` {sdk_rss:.1f} MiB, this script after its imports {IMPORTED_RSS_MIB:.1f} MiB; so "
        f"{args.tasks} live streams cost {peak - IMPORTED_RSS_MIB:.1f} MiB "
        f"({(peak - IMPORTED_RSS_MIB) * 1024 / args.tasks:.0f} KiB per task). The emulator's own peak RSS: "
        f"{emulator_peak:.1f} MiB."
    )
    if profiler is not None:
        for line in profile_summary(profiler, sdk.events):
            report.note(line)


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=1000, help="tasks streamed at once (default %(default)s)")
    parser.add_argument("--steps", type=int, default=10, help="progress steps per task (default %(default)s)")
    parser.add_argument("--step-seconds", type=float, default=0.2, help="seconds per step (default %(default)s)")
    parser.add_argument(
        "--submit-concurrency", type=int, default=100,
        help="submits in flight at once; 0 = all at once (slow: see probe_http_hotspots.py) (default %(default)s)",
    )
    parser.add_argument("--profile", action="store_true", help="also profile a third run of the SDK's phases 2-3")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on each phase, seconds")
    args = parse_args(parser, tasks=200)
    return run_benchmark(run, args, Report(2, f"{args.tasks} tasks streamed at once from one process"))


if __name__ == "__main__":
    sys.exit(main())
