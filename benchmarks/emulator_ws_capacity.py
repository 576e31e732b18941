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
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from genstudio_async import _constants as C

API_KEY = "sk-benchmark"


@dataclass
class ClientOutcome:
    """What one WebSocket client saw."""

    frames: int
    last_status: int | None
    close_code: int | None


def raise_file_limit(needed: int) -> int:
    """Raise this process's (and so the emulator child's) open-file soft limit toward ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, needed))
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MiB; 0 where /proc is missing."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return 0.0
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far; 0 where /proc is missing."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return 0.0
    fields = stat.read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / 100


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
    limit = raise_file_limit(2 * args.clients + 256)
    command = [
        sys.executable, "-m", "genstudio_async.emulator", "--host", "127.0.0.1", "--port", "0",
        "--api-key", API_KEY, "--workers", str(args.workers), "--steps", str(args.steps),
        "--step-seconds", str(args.step_seconds),
    ]
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    assert process.stdout is not None
    first_line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
    base_url = first_line.removeprefix("GenStudio emulator listening on ")
    print(f"emulator: {base_url} (pid {process.pid}), open-file limit {limit}")
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, trust_env=False, timeout=30) as api:
            await api.post(f"{C.EMULATOR_ADMIN_PATH_PREFIX}/pause")
            started = time.perf_counter()
            semaphore = asyncio.Semaphore(64)

            async def submit() -> dict[str, str]:
                async with semaphore:
                    response = await api.post(C.SUBMIT_PATH, json={"workflow_id": "wf-c73diz7kadp6ffgn"})
                    data: dict[str, str] = response.json()["data"]
                    return data

            tasks = await asyncio.gather(*(submit() for _ in range(args.clients)))
            submitted = time.perf_counter()
            print(f"submitted {len(tasks)} tasks in {submitted - started:.2f} s")

            connected = asyncio.Event()
            counter = [0]
            ws_base = "ws" + base_url.removeprefix("http")
            clients = [
                asyncio.create_task(watch(
                    f"{ws_base}{C.PROGRESS_WS_PATH}?{C.PROGRESS_WS_TOKEN_PARAM}={task['prompt_token']}",
                    connected, counter, args.clients,
                ))
                for task in tasks
            ]
            await asyncio.wait_for(connected.wait(), args.timeout)
            all_open = time.perf_counter()
            stats = (await api.get(f"{C.EMULATOR_ADMIN_PATH_PREFIX}/stats")).json()["data"]
            print(f"{counter[0]} sockets open in {all_open - submitted:.2f} s "
                  f"(server counts {stats['ws_connections_open']} open)")
            cpu_before = cpu_seconds(process.pid)
            await api.post(f"{C.EMULATOR_ADMIN_PATH_PREFIX}/resume")
            outcomes = await asyncio.wait_for(asyncio.gather(*clients), args.timeout)
            finished = time.perf_counter()
            stats = (await api.get(f"{C.EMULATOR_ADMIN_PATH_PREFIX}/stats")).json()["data"]
            peak = peak_rss_mib(process.pid)
            cpu = cpu_seconds(process.pid) - cpu_before
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        exit_code = await asyncio.wait_for(process.wait(), 30)

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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000, help="WebSockets (and tasks), default %(default)s")
    parser.add_argument("--workers", type=int, default=100, help="emulator workers, default %(default)s")
    parser.add_argument("--steps", type=int, default=5, help="progress steps per task, default %(default)s")
    parser.add_argument("--step-seconds", type=float, default=0.02, help="seconds per step, default %(default)s")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on each phase, default %(default)s s")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
