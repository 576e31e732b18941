"""Benchmark 5: per-request overhead of the SDK vs raw httpx for the same call (goal ≤ 1.2×).

    python benchmarks/bench_request_overhead.py [--rounds 40] [--calls 50] [--stub-sniffio]

The same ``get_task_info`` call, sequentially, against the same emulator (its own process, faithful wire: no
stamps): ``await client.get_task(prompt_id)`` vs ``await raw.post(url, json={"comfy_task_ids": [prompt_id]},
headers={"Authorization": ...})`` then ``.json()`` on a plain ``httpx.AsyncClient``. Two tasks are asked about:
a queued one (the smallest answer and the least server work, so the strictest ratio) and a succeeded one (signed
result URLs in the answer). Per target, ``--rounds`` rounds of ``--calls`` calls per client, the order flipping
every round (ABBA) so that drift cancels, after a warm-up; every call is timed with ``perf_counter_ns``.
Reported: mean and p50 per call and the SDK/raw ratio; the goal is judged on the worse of the two targets.

The SDK-only cost is then measured with the network and the server taken out: both clients get an
``httpx.MockTransport`` that answers with the bytes the emulator sent for the same call. The difference per call
is what the SDK adds on top of httpx (building the request, the envelope, validating ``TaskInfo``); a cProfile of
the SDK side shows where it goes.

``--stub-sniffio`` puts a stub ``sniffio`` in ``sys.modules`` first (as installing sniffio would): httpcore then
stops re-running a failed ``import sniffio`` several times per request (see ``probe_http_hotspots.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks._support import (
    API_KEY,
    T2I,
    EmulatorProcess,
    Figure,
    Report,
    base_parser,
    judged,
    mean,
    own_times,
    package_of,
    parse_args,
    percentile,
    run_benchmark,
    stub_sniffio,
)
from genstudio_async import AsyncGenStudio, TaskInfo, TaskStatus
from genstudio_async._services import genstudio as GS
from genstudio_async._services.genstudio import parse_task_info

Call = Callable[[], Awaitable[Any]]


async def timed(call: Call, count: int) -> list[float]:
    """Run ``call`` ``count`` times in a row; the duration of each, in µs."""
    durations = []
    for _ in range(count):
        started = time.perf_counter_ns()
        await call()
        durations.append((time.perf_counter_ns() - started) / 1000)
    return durations


async def compare(sdk: Call, raw: Call, rounds: int, calls: int, warmup: int) -> tuple[list[float], list[float]]:
    """Interleaved rounds (ABBA) of both calls; every duration of each."""
    await timed(sdk, warmup)
    await timed(raw, warmup)
    sdk_times: list[float] = []
    raw_times: list[float] = []
    for round_number in range(rounds):
        if round_number % 2 == 0:
            sdk_times += await timed(sdk, calls)
            raw_times += await timed(raw, calls)
        else:
            raw_times += await timed(raw, calls)
            sdk_times += await timed(sdk, calls)
    return sdk_times, raw_times


async def prepare_tasks(emulator: EmulatorProcess, client: AsyncGenStudio) -> dict[str, str]:
    """A succeeded task and a queued one (the emulator is left paused)."""
    done = await client.submit(T2I)
    await asyncio.wait_for(client.wait(done), 30)
    await emulator.pause()
    queued = await client.submit(T2I)
    assert (await client.get_task(queued)).status is TaskStatus.QUEUED
    return {"queued": queued.prompt_id, "succeeded": done.prompt_id}


def sdk_profile_lines(profiler: cProfile.Profile, calls: int, top: int = 8) -> str:
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    for path, line, name, own in own_times(profiler):
        by_package[package_of(path, stdlib_modules=False)] += own
        short = path.split("site-packages/", 1)[-1].split("/work/main/", 1)[-1].rsplit("/lib/python3.11/", 1)[-1]
        by_function[f"{short}:{line}({name})"] += own
    total = sum(by_package.values())
    return (
        "cProfile of the SDK over MockTransport, own time per call (inflated by the profiler; read the shares): "
        + ", ".join(f"{package} {own / calls * 1e6:.0f} µs ({own / total:.0%})" for package, own in
                    by_package.most_common(6))
        + ". Top functions: "
        + "; ".join(f"`{name}` {own / calls * 1e6:.1f} µs" for name, own in by_function.most_common(top))
        + "."
    )


async def run(args: argparse.Namespace, report: Report) -> None:
    url_path = GS.TASK_INFO_PATH
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        EmulatorProcess(workers=1, steps=3, step_seconds=0.01, stamp_snapshots=False) as emulator,
        AsyncGenStudio(api_key=API_KEY, base_url=emulator.base_url) as client,
        httpx.AsyncClient() as raw,
    ):
        targets = await prepare_tasks(emulator, client)
        bodies: dict[str, bytes] = {}
        for target, prompt_id in targets.items():

            async def sdk_call(prompt_id: str = prompt_id) -> TaskInfo:
                return await client.get_task(prompt_id)

            async def raw_call(prompt_id: str = prompt_id) -> Any:
                response = await raw.post(emulator.base_url + url_path, json={"comfy_task_ids": [prompt_id]},
                                          headers=headers)
                return response.json()

            sdk_times, raw_times = await compare(sdk_call, raw_call, args.rounds, args.calls, args.warmup)
            mean_ratio = mean(sdk_times) / mean(raw_times)
            p50_ratio = percentile(sdk_times, 0.5) / percentile(raw_times, 0.5)
            report.note(
                f"{target} task, {len(sdk_times)} calls each: SDK mean {mean(sdk_times):.0f} µs, p50 "
                f"{percentile(sdk_times, 0.5):.0f} µs, p99 {percentile(sdk_times, 0.99):.0f} µs; raw httpx mean "
                f"{mean(raw_times):.0f} µs, p50 {percentile(raw_times, 0.5):.0f} µs, p99 "
                f"{percentile(raw_times, 0.99):.0f} µs. Ratio SDK/raw: mean {mean_ratio:.3f}×, p50 "
                f"{p50_ratio:.3f}×; the SDK adds {mean(sdk_times) - mean(raw_times):.0f} µs per call."
            )
            report.add(judged(f"{target}: SDK/raw, mean per call", mean_ratio, "×", "<=", 1.2))
            report.add(judged(f"{target}: SDK/raw, p50 per call", p50_ratio, "×", "<=", 1.2))
            response = await raw.post(emulator.base_url + url_path, json={"comfy_task_ids": [prompt_id]},
                                      headers=headers)
            bodies[target] = response.content
    await sdk_only(args, report, targets, bodies)


async def sdk_only(args: argparse.Namespace, report: Report, targets: dict[str, str], bodies: dict[str, bytes]) -> None:
    """Both clients again, over a MockTransport that answers with the emulator's bytes: the SDK's own cost."""
    base_url = "http://emulator.invalid"

    for target, prompt_id in targets.items():
        body = bodies[target]

        def answer(request: httpx.Request, body: bytes = body) -> httpx.Response:
            return httpx.Response(200, content=body, headers={"content-type": "application/json"})

        transport = httpx.MockTransport(answer)
        async with (
            httpx.AsyncClient(transport=transport) as mocked_for_sdk,
            httpx.AsyncClient(transport=transport) as mocked_raw,
            AsyncGenStudio(api_key=API_KEY, base_url=base_url, http_client=mocked_for_sdk) as client,
        ):

            async def sdk_call(prompt_id: str = prompt_id) -> TaskInfo:
                return await client.get_task(prompt_id)

            async def raw_call(prompt_id: str = prompt_id) -> Any:
                response = await mocked_raw.post(base_url + GS.TASK_INFO_PATH, json={"comfy_task_ids": [prompt_id]},
                                                 headers={"Authorization": f"Bearer {API_KEY}"})
                return response.json()

            sdk_times, raw_times = await compare(sdk_call, raw_call, args.rounds, args.calls, args.warmup)
            item: dict[str, Any] = (await raw_call())["data"]["comfy_task_info"][0]

            async def validate_only(item: dict[str, Any] = item) -> TaskInfo:
                return parse_task_info(item)

            validate = await timed(validate_only, args.rounds * args.calls)
            report.note(
                f"Network and server taken out ({target}, MockTransport with the emulator's {len(body)}-byte "
                f"answer): SDK mean {mean(sdk_times):.0f} µs, p50 {percentile(sdk_times, 0.5):.0f} µs; raw httpx "
                f"mean {mean(raw_times):.0f} µs, p50 {percentile(raw_times, 0.5):.0f} µs. The SDK's own cost: "
                f"{mean(sdk_times) - mean(raw_times):.0f} µs per call (p50 "
                f"{percentile(sdk_times, 0.5) - percentile(raw_times, 0.5):.0f} µs), of which "
                f"reading the task entry (`parse_task_info`) {percentile(validate, 0.5):.1f} µs."
            )
            if target == "succeeded":
                report.add(Figure("SDK-only cost per call (no network)", mean(sdk_times) - mean(raw_times), "µs"))
                profiler = cProfile.Profile()
                profiler.enable()
                await timed(sdk_call, args.calls * 5)
                profiler.disable()
                report.note(sdk_profile_lines(profiler, args.calls * 5))


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds per target (default %(default)s)")
    parser.add_argument("--calls", type=int, default=50, help="calls per client per round (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls per client first (default %(default)s)")
    parser.add_argument("--stub-sniffio", action="store_true", help="simulate an installed sniffio (see above)")
    args = parse_args(parser, rounds=2, calls=100, warmup=20)
    report = Report(5, "Per-request overhead: client.get_task vs raw httpx, same call")
    if args.stub_sniffio:
        stub_sniffio()
        report.note("Run with a stub `sniffio` module installed (--stub-sniffio).")
    return run_benchmark(run, args, report)


if __name__ == "__main__":
    sys.exit(main())
