"""Benchmark 4: from a task's completion to the caller knowing it: ``client.stream`` over the WebSocket vs the
service tutorial's 5-second polling loop (goal: ours ≥ 100× sooner).

    python benchmarks/bench_completion_delay.py [--tasks 8] [--steps 7] [--step-seconds 0.1]

The tutorial's ``generate_image_by_prompt`` (docs/genstudio-python-tutorial.txt) submits with ``queue_prompt``,
then loops: ``get_task_info([prompt_id])``; status 3 → done, 4 → error, otherwise ``time.sleep(5)``. It is
reproduced below as written, synchronous, with ``httpx.post`` in place of ``requests.post`` (same headers and
bodies, a new connection per call as ``requests.post`` makes), each call in its own thread so that ``--tasks`` of
them run at once.

Each tutorial thread reports its submission to the asyncio side, which streams the *same* task with the SDK
(``async for event in client.stream(Submission(...))``). The emulator (its own process, ``--stamp-snapshots``,
one worker) stamps every snapshot with ``_emulator_changed_ns``, ``time.monotonic_ns()`` when the task's state
last changed; the terminal snapshot's stamp is the completion time, and both observers read the same one. Delay =
``time.monotonic_ns()`` when the caller knows (the SDK yields the terminal event; the tutorial's loop breaks) −
that stamp. With one worker the tasks finish one after another, ``--steps × --step-seconds`` (0.7 s) apart, so
their completions fall at different points of the tutorial's 5-second cycle rather than all at the same one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks._support import (
    API_KEY,
    STAMP_FIELD,
    TUTORIAL_WORKFLOW,
    EmulatorProcess,
    Figure,
    Report,
    base_parser,
    judged,
    mean,
    parse_args,
    percentile,
    run_benchmark,
)
from genstudio_async import AsyncGenStudio, Submission
from genstudio_async._services import genstudio as GS

# --- the tutorial, as written (requests → httpx) ------------------------------------------------------------


class Tutorial:
    """``queue_prompt``, ``get_task_info`` and the loop of ``generate_image_by_prompt``, against ``server``."""

    def __init__(self, server: str) -> None:
        self.server = server  # the tutorial's f"https://{SERVER_ADDRESS}"

    def queue_prompt(self, workflow_id: str, prompt: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.server}{GS.SUBMIT_PATH}"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
        payload = {"workflow_id": workflow_id, "prompt": prompt}
        response = httpx.post(url, headers=headers, json=payload, trust_env=False)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def get_task_info(self, prompt_ids: list[str], url_expire_period: int = 3600) -> dict[str, Any]:
        url = f"{self.server}{GS.TASK_INFO_PATH}"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
        payload = {"comfy_task_ids": prompt_ids, "url_expire_period": url_expire_period}
        response = httpx.post(url, headers=headers, json=payload, trust_env=False)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def generate(
        self, workflow_id: str, on_submitted: Callable[[dict[str, Any]], None], poll_seconds: float = 5
    ) -> tuple[dict[str, Any], int, int]:
        """The loop of ``generate_image_by_prompt``, up to the moment it knows; returns (info, known_ns, polls)."""
        response = self.queue_prompt(workflow_id, None)
        prompt_id = response["data"]["prompt_id"]
        on_submitted(response["data"])
        polls = 0
        while True:
            task_info = self.get_task_info([prompt_id])
            polls += 1
            if task_info["code"] != 0:
                raise RuntimeError(f"获取任务信息失败: {task_info['msg']}")
            comfy_task_info: dict[str, Any] = task_info["data"]["comfy_task_info"][0]
            status = comfy_task_info["status"]
            if status == 3:  # 已完成
                break
            if status == 4:  # 失败
                raise RuntimeError(f"任务失败: {comfy_task_info['errMsg']}")
            time.sleep(poll_seconds)  # 等待 5 秒后再次检查
        return comfy_task_info, time.monotonic_ns(), polls


# --- the comparison ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One task, seen by both: when it completed and when each caller knew."""

    prompt_id: str
    completed_ns: int
    sdk_known_ns: int
    tutorial_known_ns: int
    tutorial_polls: int

    @property
    def sdk_ms(self) -> float:
        return (self.sdk_known_ns - self.completed_ns) / 1e6

    @property
    def tutorial_ms(self) -> float:
        return (self.tutorial_known_ns - self.completed_ns) / 1e6


async def sdk_watch(client: AsyncGenStudio, data: dict[str, Any]) -> tuple[int, int]:
    """Stream the task; return (terminal stamp, monotonic_ns when the terminal event was yielded)."""
    async for event in client.stream(Submission(prompt_id=data["prompt_id"], prompt_token=data["prompt_token"])):
        if event.is_terminal:
            known = time.monotonic_ns()
            stamp = (event.model_extra or {}).get(STAMP_FIELD)
            if not isinstance(stamp, int) or event.status != 3:
                raise RuntimeError(f"terminal event without a stamp or not succeeded: {event!r}")
            return stamp, known
    raise RuntimeError("the stream ended without a terminal event")


async def run(args: argparse.Namespace, report: Report) -> None:
    async with EmulatorProcess(workers=1, steps=args.steps, step_seconds=args.step_seconds) as emulator:
        tutorial = Tutorial(emulator.base_url)
        loop = asyncio.get_running_loop()
        async with AsyncGenStudio(api_key=API_KEY, base_url=emulator.base_url) as client:
            watchers: dict[str, asyncio.Task[tuple[int, int]]] = {}
            lock = threading.Lock()

            def on_submitted(data: dict[str, Any]) -> None:  # in a tutorial thread
                def start() -> None:
                    watchers[data["prompt_id"]] = asyncio.create_task(sdk_watch(client, data))

                with lock:
                    loop.call_soon_threadsafe(start)

            def one() -> tuple[dict[str, Any], int, int]:
                return tutorial.generate(TUTORIAL_WORKFLOW, on_submitted, args.poll_seconds)

            with ThreadPoolExecutor(max_workers=args.tasks) as pool:
                futures = [loop.run_in_executor(pool, one) for _ in range(args.tasks)]
                tutorial_results = await asyncio.wait_for(asyncio.gather(*futures), args.timeout)
            outcomes = []
            for info, known_ns, polls in tutorial_results:
                stamp, sdk_known = await asyncio.wait_for(watchers[info["comfy_task_id"]], args.timeout)
                if info[STAMP_FIELD] != stamp:
                    raise RuntimeError("the two observers saw different completion stamps")
                outcomes.append(Outcome(info["comfy_task_id"], stamp, sdk_known, known_ns, polls))

    outcomes.sort(key=lambda outcome: outcome.completed_ns)
    ours = [outcome.sdk_ms for outcome in outcomes]
    theirs = [outcome.tutorial_ms for outcome in outcomes]
    ratio_of_means = mean(theirs) / mean(ours)
    report.add(Figure("ours (stream): mean completion → known", mean(ours), "ms"))
    report.add(Figure("tutorial loop: mean completion → known", mean(theirs), "ms"))
    report.add(judged("ours sooner by (ratio of means)", ratio_of_means, "×", ">=", 100))
    report.add(judged("ours sooner by (worst task)", min(t / o for o, t in zip(ours, theirs, strict=True)), "×",
                      ">=", 100))
    report.note(
        f"{len(outcomes)} tasks of the tutorial's workflow ({TUTORIAL_WORKFLOW}), one emulator worker, "
        f"{args.steps} steps of {args.step_seconds:g} s; the tutorial polls every {args.poll_seconds:g} s."
    )
    report.note(
        f"Ours (WebSocket stream): mean {mean(ours):.2f} ms, p50 {percentile(ours, 0.5):.2f} ms, max "
        f"{max(ours):.2f} ms. Tutorial loop: mean {mean(theirs):.0f} ms, p50 {percentile(theirs, 0.5):.0f} ms, "
        f"min {min(theirs):.0f} ms, max {max(theirs):.0f} ms ({sum(o.tutorial_polls for o in outcomes)} "
        f"get_task_info calls). Ratio of means {ratio_of_means:.0f}×, of medians "
        f"{percentile(theirs, 0.5) / percentile(ours, 0.5):.0f}×."
    )
    report.note("Per task (completion order), ours / tutorial, ms: " + "; ".join(
        f"{o.sdk_ms:.2f} / {o.tutorial_ms:.0f}" for o in outcomes) + ".")
    report.note(
        f"A 5 s loop learns of a completion {args.poll_seconds / 2:g} s later on average (uniform over the cycle) "
        f"plus one request; the stream learns of it when the terminal frame arrives."
    )


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=8, help="tasks, each watched by both (default %(default)s)")
    parser.add_argument("--steps", type=int, default=7, help="progress steps per task (default %(default)s)")
    parser.add_argument("--step-seconds", type=float, default=0.1, help="seconds per step (default %(default)s)")
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="the tutorial's sleep (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on the whole comparison, seconds")
    args = parse_args(parser, tasks=3)
    report = Report(4, "Completion → caller knows: WebSocket stream vs the tutorial's 5 s polling loop")
    return run_benchmark(run, args, report)


if __name__ == "__main__":
    sys.exit(main())
