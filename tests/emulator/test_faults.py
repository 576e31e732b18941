"""Each injected fault, asserted as a client notices it (plain ``websockets`` and ``httpx`` clients)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.protocol import State

from genstudio_async import InternalServerError
from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import Emulator, Faults
from genstudio_async.emulator import _progress as progress_module
from genstudio_async.emulator._abort import abort_connection

from .support import T2I, TUTORIAL, Submit, task_info


async def test_ws_refuse_status_refuses_the_handshake_with_that_status(emu: Emulator, submit: Submit) -> None:
    task = await submit()
    for status in (503, 403):
        emu.set_faults(ws_refuse_status=status)
        with pytest.raises(InvalidStatus) as caught:
            async with connect(emu.progress_url(task["prompt_token"]), proxy=None):
                pass  # pragma: no cover
        assert caught.value.response.status_code == status
    assert emu.stats.ws_handshakes_refused == 2


async def test_ws_drop_after_cuts_the_connection_without_a_close_frame(emu: Emulator, submit: Submit) -> None:
    emu.set_timing(steps=6, step_seconds=0.02)
    emu.set_faults(ws_drop_after=2)
    task = await submit()
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        frames = [await ws.recv(), await ws.recv()]
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.recv()
    assert caught.value.rcvd is None  # no close frame came
    assert ws.close_code == 1006
    assert all("comfy_task_info" in json.loads(frame) for frame in frames)
    assert emu.stats.ws_connections_dropped == 1
    await emu.wait_status(task["prompt_id"], 3)  # the task itself goes on


async def test_the_drop_also_works_when_send_is_wrapped(
    emu: Emulator, submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback way to the transport: the server's connections, matched by the client's address."""
    used_fallback: list[bool] = []

    def abort_through_a_wrapper(send: Any, scope: Any, connections: Any) -> bool:
        async def wrapped_send(message: Any) -> None:  # no __self__: the first way cannot apply
            await send(message)  # pragma: no cover

        used_fallback.append(True)
        return abort_connection(wrapped_send, scope, connections)

    monkeypatch.setattr(progress_module, "abort_connection", abort_through_a_wrapper)
    emu.set_faults(ws_drop_after=0)
    emu.pause()
    task = await submit()
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
    assert ws.close_code == 1006 and used_fallback == [True]


async def test_ws_silent_accepts_and_never_speaks(emu: Emulator, submit: Submit) -> None:
    emu.set_faults(ws_silent=True)
    task = await submit()
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        await emu.wait_status(task["prompt_id"], 3)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), timeout=0.2)
        assert ws.state is State.OPEN
        assert emu.stats.ws_connections_open == 1 and emu.stats.ws_frames_sent == 0


async def test_ws_close_after_closes_normally_before_the_end(emu: Emulator, submit: Submit) -> None:
    emu.set_faults(ws_close_after=1)
    emu.pause()
    task = await submit()
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        frames = [json.loads(frame) async for frame in ws]
    assert ws.close_code == 1000
    assert [frame["comfy_task_info"]["status"] for frame in frames] == [1]  # closed, the task still queued


async def test_ws_junk_interleaves_frames_a_client_must_skip(emu: Emulator, submit: Submit) -> None:
    emu.set_faults(ws_junk=True)
    task = await submit()
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        frames = [frame async for frame in ws]
    assert isinstance(frames[0], str)
    junk, snapshots = frames[0::2], frames[1::2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(junk[0])
    assert "comfy_task_info" not in json.loads(junk[1])
    assert all("comfy_task_info" in json.loads(frame) for frame in snapshots)
    assert json.loads(snapshots[-1])["comfy_task_info"]["status"] == 3


async def statuses(api: httpx.AsyncClient, count: int) -> list[int]:
    return [(await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": []})).status_code for _ in range(count)]


async def test_http_error_rate_hits_at_about_that_rate_and_repeats_with_the_seed(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    emu.set_faults(http_error_rate=0.5, http_error_status=503, seed=11)
    first = await statuses(api, 40)
    emu.set_faults(http_error_rate=0.5, http_error_status=503, seed=11)
    assert await statuses(api, 40) == first  # the same draws again
    assert set(first) == {200, 503} and 10 <= first.count(503) <= 30
    response = await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": []})
    while response.status_code != 503:
        response = await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": []})
    envelope = response.json()
    assert envelope["code"] == 503 and envelope["traceid"]
    assert emu.stats.http_errors_injected == first.count(503) * 2 + 1


async def test_http_errors_only_on_the_chosen_endpoints(emu: Emulator, api: httpx.AsyncClient) -> None:
    emu.set_faults(http_error_rate=1.0, endpoints={"submit"})
    assert (await api.post(GS.SUBMIT_PATH, json={"workflow_id": T2I})).status_code == 500
    assert await statuses(api, 3) == [200, 200, 200]
    assert emu.stats.submits == 0


async def test_http_error_html_answers_an_nginx_page_not_an_envelope(emu: Emulator, api: httpx.AsyncClient) -> None:
    emu.set_faults(http_error_rate=1.0, http_error_status=502, http_error_html=True, endpoints={"submit"})
    response = await api.post(GS.SUBMIT_PATH, json={"workflow_id": T2I})
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert "<title>502 Bad Gateway</title>" in response.text and "nginx" in response.text
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert emu.stats.http_errors_injected == 1 and emu.stats.submits == 0
    async with emu.client(max_retries=0) as client:  # the SDK turns the page into one of its own errors
        with pytest.raises(InternalServerError) as caught:
            await client.submit(T2I)
    assert caught.value.status_code == 502


async def test_rate_limit_answers_429_with_retry_after(emu: Emulator, api: httpx.AsyncClient) -> None:
    emu.set_faults(rate_limit=0.5, rate_limit_burst=2)
    codes = await statuses(api, 3)
    assert codes == [200, 200, 429]
    response = await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": []})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) in (1, 2)
    assert response.json()["code"] == 429
    assert emu.stats.rate_limited == 2


async def test_delay_slows_answers_down_enough_to_time_a_client_out(emu: Emulator, api: httpx.AsyncClient) -> None:
    emu.set_faults(delay=0.5, endpoints={"task_info"})
    with pytest.raises(httpx.ReadTimeout):
        await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": []}, timeout=0.1)
    assert (await api.post(GS.SUBMIT_PATH, json={"workflow_id": T2I}, timeout=0.4)).status_code == 200


async def test_fail_tasks_ends_tasks_with_status_4_and_the_errmsg(emu: Emulator, submit: Submit,
                                                                  api: httpx.AsyncClient) -> None:
    emu.set_faults(fail_tasks="CUDA out of memory")
    task_id = (await submit())["prompt_id"]
    await emu.wait_status(task_id, 4)
    info = (await task_info(api, task_id))[0]
    assert (info["status"], info["errMsg"], info["files"], info["final_files"]) == (4, "CUDA out of memory", {}, [])
    assert 0 < info["progress_num"] < 100


async def test_deny_tasks_answers_status_5(emu: Emulator, submit: Submit, api: httpx.AsyncClient) -> None:
    emu.set_faults(deny_tasks=True)
    task_id = (await submit())["prompt_id"]
    info = (await task_info(api, task_id))[0]
    assert (info["status"], info["queue_size"], info["current_position"]) == (5, 0, 0)


async def test_workflow_faults_replace_emulator_wide_ones_for_that_workflow(
    emu: Emulator, submit: Submit, api: httpx.AsyncClient
) -> None:
    emu.set_faults(fail_tasks="everywhere")
    emu.set_workflow_faults(T2I, deny_tasks=True)
    emu.set_workflow_faults(TUTORIAL, Faults())
    denied, clean = (await submit(T2I))["prompt_id"], (await submit(TUTORIAL))["prompt_id"]
    assert (await task_info(api, denied))[0]["status"] == 5
    await emu.wait_status(clean, 3)
    emu.set_workflow_faults(TUTORIAL)  # back to the emulator-wide faults
    failing = (await submit(TUTORIAL))["prompt_id"]
    assert (await emu.wait_status(failing, 4))["errMsg"] == "everywhere"
    emu.clear_faults()
    assert emu.faults == Faults()
    assert (await emu.wait_status((await submit(T2I))["prompt_id"], 3))["status"] == 3


async def test_workflow_faults_cover_that_workflows_submits_and_sockets(emu: Emulator, submit: Submit,
                                                                        api: httpx.AsyncClient) -> None:
    emu.set_workflow_faults(T2I, http_error_rate=1.0, http_error_status=502)
    assert (await api.post(GS.SUBMIT_PATH, json={"workflow_id": T2I})).status_code == 502
    tutorial = await submit(TUTORIAL)
    emu.set_workflow_faults(TUTORIAL, ws_refuse_status=503)
    with pytest.raises(InvalidStatus) as caught:
        async with connect(emu.progress_url(tutorial["prompt_token"]), proxy=None):
            pass  # pragma: no cover
    assert caught.value.response.status_code == 503


def test_set_faults_states_the_whole_set() -> None:
    emulator = Emulator()
    emulator.set_faults(ws_junk=True, delay=0.1)
    assert emulator.faults == Faults(ws_junk=True, delay=0.1)
    emulator.set_faults(Faults(ws_silent=True), seed=3)
    assert emulator.faults == Faults(ws_silent=True, seed=3)
    emulator.set_faults()
    assert emulator.faults == Faults()
