"""``stamp_snapshots``: the opt-in ``_emulator_changed_ns`` / ``_emulator_serialised_ns`` fields the latency
benchmarks read (off by default, so the wire stays the service's)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from genstudio_async.cli import build_parser
from genstudio_async.emulator import Emulator
from tests.support import eventually

from .support import Submit, task_info

STAMP = "_emulator_changed_ns"
SERIALISED = "_emulator_serialised_ns"


async def frames_of(emu: Emulator, token: str) -> list[tuple[dict[str, Any], int]]:
    """Every snapshot the progress socket pushes, with ``time.monotonic_ns()`` when it arrived."""
    received: list[tuple[dict[str, Any], int]] = []
    async with connect(emu.progress_url(token), proxy=None) as ws:
        async for frame in ws:
            received.append((json.loads(frame)["comfy_task_info"], time.monotonic_ns()))
    return received


async def test_the_wire_carries_no_stamp_by_default(emu: Emulator, submit: Submit, api: httpx.AsyncClient) -> None:
    task = await submit()
    frames = await frames_of(emu, task["prompt_token"])
    (info,) = await task_info(api, task["prompt_id"])
    assert frames and all(STAMP not in frame and SERIALISED not in frame for frame, _ in frames)
    assert STAMP not in info and SERIALISED not in info


@pytest.mark.genstudio_emulator(stamp_snapshots=True)
async def test_each_change_is_stamped_with_the_system_monotonic_clock(
    emu: Emulator, submit: Submit, api: httpx.AsyncClient
) -> None:
    emu.set_timing(steps=4, step_seconds=0.02)
    emu.pause()
    before = time.monotonic_ns()
    task = await submit()
    (queued,) = await task_info(api, task["prompt_id"])
    assert before <= queued[STAMP] <= time.monotonic_ns()
    emu.resume()
    frames = await frames_of(emu, task["prompt_token"])
    stamps = [frame[STAMP] for frame, _ in frames]
    assert all(isinstance(stamp, int) for stamp in stamps)
    # Each frame tells a change of state (queued, started, 25/50/75 %, done) and each change has its own stamp,
    # taken before the frame left the server.
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps) >= 5
    # Each frame also says when it was serialised: after the change, before it arrived.
    assert all(frame[STAMP] <= frame[SERIALISED] <= arrived for frame, arrived in frames)
    assert frames[-1][0]["status"] == 3
    # HTTP snapshots carry the same change stamp: the terminal one says when the task finished, however late it is
    # read. Only socket frames say when they were serialised.
    (done,) = await task_info(api, task["prompt_id"])
    assert done[STAMP] == stamps[-1] and SERIALISED not in done


@pytest.mark.genstudio_emulator(stamp_snapshots=True)
async def test_the_sdk_keeps_the_stamp_as_an_extra_field(emu: Emulator) -> None:
    async with emu.client() as client:
        submission = await client.submit("wf-c73diz7kadp6ffgn")
        events = [event async for event in client.stream(submission)]
    assert events[-1].is_terminal
    assert all(isinstance((event.model_extra or {}).get(STAMP), int) for event in events)
    assert all(isinstance((event.model_extra or {}).get(SERIALISED), int) for event in events)


def test_the_cli_flag_turns_it_on() -> None:
    assert build_parser().parse_args(["emulator", "--stamp-snapshots"]).stamp_snapshots is True
    assert build_parser().parse_args(["emulator"]).stamp_snapshots is False


@pytest.mark.genstudio_emulator(stamp_snapshots=True, queue_notify_interval=0.3)
async def test_a_queue_change_that_leaves_a_snapshot_as_it_was_sends_no_frame(emu: Emulator, submit: Submit) -> None:
    # A running task reports the queue's size. A task that joins the queue and leaves it again within one
    # notification round leaves that size as it was: its socket must not get the same snapshot again, freshly
    # stamped (the old code re-sent every running task's snapshot on every round: twice the frames at scale).
    from genstudio_async._services.genstudio import CANCEL_BODY_FIELD

    emu.set_timing(steps=2, step_seconds=0.3)
    running = await submit()
    received: list[dict[str, Any]] = []
    started = asyncio.Event()

    async def follow() -> None:
        async with connect(emu.progress_url(running["prompt_token"]), proxy=None) as ws:
            async for frame in ws:
                received.append(json.loads(frame)["comfy_task_info"])
                if received[-1]["status"] == 2:
                    started.set()

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(started.wait(), 10)
    emu.pause()  # the running task stays where it is; a new one stays queued
    passing = emu.service.submit({"workflow_id": "wf-c73diz7kadp6ffgn"})
    emu.service.cancel({CANCEL_BODY_FIELD: passing["prompt_id"]})  # the queue is as it was, within the round
    tasks = emu.service.tasks
    await eventually(lambda: tasks._broadcast_handle is None, what="the notification round")
    emu.resume()
    await asyncio.wait_for(follower, 10)
    shown = [{key: value for key, value in info.items() if key != SERIALISED} for info in received]
    assert all(before != after for before, after in itertools.pairwise(shown)), shown
    assert shown[-1]["status"] == 3
