"""How many progress WebSockets can one emulator serve? Opens N plain ``websockets`` clients to N tasks.

    python benchmarks/emulator_ws_capacity.py --clients 1000

The emulator runs in its own process (``python -m genstudio_async.emulator --port 0``) so its peak memory can be
read apart from the clients'. The script pauses the emulator's workers, submits N tasks, connects one socket per
task (all N open at once, every task queued), then resumes the workers and waits until every client has seen its
task's terminal frame and the server's close. It reports the times, the frames (client count and server count)
and the emulator's peak RSS, then stops the emulator with SIGINT. Traffic stays on 127.0.0.1; the run is bounded
by ``--timeout``. Exit status 0 only if every client reached a terminal frame and a normal close.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from websockets.asyncio.client import connect

from benchmarks._support import EmulatorProcess, bare_submit, script_parser


@dataclass
class ClientOutcome:
    """What one WebSocket client saw."""

    frames: int
    last_status: int | None
    close_code: int | None


async def watch(url: str, connected: asyncio.Event, counter: list[int], total: int) -> ClientOutcome:
    frames, last_status = 0, None
    async with connect(url, proxy=None, open_timeout=60, max_queue=None) as ws:
        counter[0] += 1
        if counter[0] == total:
            connected.set()
        async for message in ws:
            frames += 1
            info: dict[str, Any] = json.loads(message)["comfy_task_info"]
            last_status = info["status"]
    return ClientOutcome(frames=frames, last_status=last_status, close_code=ws.close_code)


async def run(args: argparse.Namespace) -> int:
    async with EmulatorProcess(workers=args.workers, steps=args.steps, step_seconds=args.step_seconds,
                               stamp_snapshots=False, open_files=2 * args.clients + 256) as emulator:
        print(f"emulator: {emulator.base_url} (pid {emulator.pid}), open-file limit {emulator.file_limit}")
        async with httpx.AsyncClient(base_url=emulator.base_url, headers=emulator.headers, trust_env=False,
                                     timeout=30) as api:
            await emulator.pause()
            started = time.perf_counter()
            semaphore = asyncio.Semaphore(64)

            async def submit() -> dict[str, str]:
                async with semaphore:
                    return await bare_submit(api)

            tasks = await asyncio.gather(*(submit() for _ in range(args.clients)))
            submitted = time.perf_counter()
            print(f"submitted {len(tasks)} tasks in {submitted - started:.2f} s")

            connected = asyncio.Event()
            counter = [0]
            clients = [
                asyncio.create_task(watch(emulator.progress_url(task["prompt_token"]), connected, counter,
                                          args.clients))
                for task in tasks
            ]
            await asyncio.wait_for(connected.wait(), args.timeout)
            all_open = time.perf_counter()
            stats = await emulator.stats()
            print(f"{counter[0]} sockets open in {all_open - submitted:.2f} s "
                  f"(server counts {stats['ws_connections_open']} open)")
            cpu_before = emulator.cpu_seconds()
            await emulator.resume()
            outcomes = await asyncio.wait_for(asyncio.gather(*clients), args.timeout)
            finished = time.perf_counter()
            stats = await emulator.stats()
            peak = emulator.peak_rss_mib()
            cpu = emulator.cpu_seconds() - cpu_before
    exit_code = emulator.returncode

    terminal = sum(1 for outcome in outcomes if outcome.last_status in (3, 4, 5))
    normal_close = sum(1 for outcome in outcomes if outcome.close_code == 1000)
    frames = sum(outcome.frames for outcome in outcomes)
    print(f"all {len(outcomes)} clients done {finished - all_open:.2f} s after resume "
          f"({args.workers} workers, {args.steps} steps of {args.step_seconds} s)")
    print(f"terminal frames seen: {terminal}/{len(outcomes)}; normal closes (1000): {normal_close}/{len(outcomes)}")
    print(f"frames received by clients: {frames} ({frames / len(outcomes):.1f} per client); "
          f"server ws_frames_sent: {stats['ws_frames_sent']}")
    print(f"emulator: peak RSS {peak:.1f} MiB, CPU {cpu:.2f} s during the run, exit code {exit_code}")
    ok = terminal == normal_close == len(outcomes) == args.clients and exit_code == 0
    return 0 if ok else 1


def main() -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--clients", type=int, default=1000, help="WebSockets (and tasks), default %(default)s")
    parser.add_argument("--workers", type=int, default=100, help="emulator workers, default %(default)s")
    parser.add_argument("--steps", type=int, default=5, help="progress steps per task, default %(default)s")
    parser.add_argument("--step-seconds", type=float, default=0.02, help="seconds per step, default %(default)s")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on each phase, default %(default)s s")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
