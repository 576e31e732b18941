"""Probe (evidence for RESULTS.md, not one of the five benchmarks): the client CPU that N concurrent
``client.submit`` calls cost, and what two one-line remedies in the SDK would save.

    python benchmarks/probe_http_hotspots.py [--tasks 300] [--repeats 3]

Both hot spots are in httpcore 1.0.x, under the SDK's ``httpx.AsyncClient``:

* ``httpcore._synchronization.current_async_library`` does ``import sniffio`` on every lock, event and semaphore
  it creates (several per request). anyio >= 4.11 no longer installs sniffio, and Python does not cache a failed
  import, so each call searches ``sys.path`` again (encode/httpcore discussion #1102, PR #1103). Remedy: depend on
  ``sniffio``. Simulated here by putting a stub ``sniffio`` module in ``sys.modules``.
* ``AsyncConnectionPool._assign_requests_to_connections`` walks every queued request against every connection on
  each enqueue and release (encode/httpcore PR #1035): with N requests queued behind the pool's 100 connections the
  cost per request grows with N. Remedy: the SDK bounds its own in-flight API calls with an ``asyncio.Semaphore``
  of the pool size, so requests wait in O(1) instead of inside httpcore. Simulated here by a semaphore of 100
  around each ``submit``.

Each variant runs ``--repeats`` times, each time in a fresh interpreter (the sniffio stub cannot be undone),
against one emulator process that is paused, so every submit only queues a task. Reported: client CPU per submit
(the least of the repeats: other load on the machine only ever adds) and wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
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
    parse_args,
    run_benchmark,
    stub_sniffio,
)
from genstudio_async import AsyncGenStudio

VARIANTS = {
    "as shipped": (False, False),
    "bounded to the pool size (100)": (False, True),
    "with sniffio importable": (True, False),
    "both remedies": (True, True),
}


async def submit_many(base_url: str, tasks: int, bounded: bool) -> dict[str, float]:
    async with AsyncGenStudio(api_key=API_KEY, base_url=base_url, timeout=300) as client:
        slots = asyncio.Semaphore(100)

        async def submit() -> None:
            if bounded:
                async with slots:
                    await client.submit(T2I)
            else:
                await client.submit(T2I)

        cpu_before, wall_before = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(submit() for _ in range(tasks)))
        return {"cpu": cpu_seconds() - cpu_before, "wall": time.perf_counter() - wall_before}


def child(args: argparse.Namespace) -> int:
    sniffio, bounded = VARIANTS[args.variant]
    if sniffio:
        stub_sniffio()
    result = asyncio.run(submit_many(args.base_url, args.tasks, bounded))
    print(json.dumps(result))
    return 0


async def run(args: argparse.Namespace, report: Report) -> None:
    results: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    async with EmulatorProcess(workers=2, stamp_snapshots=False) as emulator:
        await emulator.pause()
        # Each variant --repeats times, the order reversed every other pass; other load only ever adds CPU, so
        # the least of the repeats is the figure.
        for repeat in range(args.repeats):
            for variant in list(VARIANTS)[:: 1 if repeat % 2 == 0 else -1]:
                command = [sys.executable, __file__, "--child", "--variant", variant, "--base-url",
                           emulator.base_url, "--tasks", str(args.tasks)]
                done = await asyncio.to_thread(subprocess.run, command, check=True, capture_output=True, text=True,
                                               timeout=600)
                results[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for variant, runs in results.items():
        best = min(runs, key=lambda result: result["cpu"])
        report.note(
            f"{args.tasks} concurrent submits, {variant}: client CPU {best['cpu'] / args.tasks * 1000:.2f} ms per "
            f"submit (least of {len(runs)}: " + ", ".join(f"{r['cpu'] / args.tasks * 1000:.2f}" for r in runs)
            + f" ms), wall {best['wall']:.2f} s."
        )


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=300, help="concurrent submits per variant (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant (default %(default)s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parse_args(parser, tasks=100, repeats=1)
    if args.child:
        return child(args)
    return run_benchmark(run, args, Report(0, "Probe: client CPU of many concurrent submits (httpcore hot spots)"))


if __name__ == "__main__":
    sys.exit(main())
