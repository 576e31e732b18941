"""The progress WebSocket, seen by a plain ``websockets`` client: snapshots, closes, refusals, efficiency."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import Emulator, Faults
from genstudio_async.emulator import _defaults as ED
from genstudio_async.emulator import _state as state_module
from genstudio_async.emulator._jwt import TokenSigner
from genstudio_async.emulator._wire import dumps as wire_dumps
from tests.support import eventually

from .support import Submit


async def read_all(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every frame until the server closes, parsed."""
    return [json.loads(frame) async for frame in ws]


async def test_snapshot_at_once_then_every_change_then_close_1000(emu: Emulator, submit: Submit) -> None:
    emu.set_timing(steps=4, step_seconds=0.02)
    emu.pause()
    task = await submit()
    assert urlsplit(emu.progress_url(task["prompt_token"])).port == urlsplit(emu.base_url).port
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        first = json.loads(await ws.recv())
        assert first == {"comfy_task_info": {
            "comfy_task_id": task["prompt_id"], "status": 1, "queue_size": 1, "current_position": 1,
            "errMsg": "", "files": "None", "progress_num": 0,
        }}
        emu.resume()
        frames = [first, *await read_all(ws)]
        assert ws.close_code == 1000
    infos = [frame["comfy_task_info"] for frame in frames]
    assert [info["status"] for info in infos] == sorted(info["status"] for info in infos)
    progress = [info["progress_num"] for info in infos]
    assert progress == sorted(progress) and progress[-1] == 100
    assert {0, 25, 50, 75, 100} <= set(progress)
    last = infos[-1]
    assert last["status"] == 3 and last["final_files"] == last["files"]["9"]
    assert all(set(info) >= {"comfy_task_id", "status", "queue_size", "current_position", "errMsg", "files"}
               for info in infos)
    assert emu.stats.ws_connections_opened == 1 and emu.stats.ws_connections_open == 0


async def test_frames_escape_ampersands_and_a_finished_task_gets_one_frame(emu: Emulator, submit: Submit) -> None:
    task = await submit()
    await emu.wait_status(task["prompt_id"], 3)
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        raw = await ws.recv()
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
    assert isinstance(raw, str) and "\\u0026Signature=" in raw and "&" not in raw
    assert json.loads(raw)["comfy_task_info"]["status"] == 3
    assert ws.close_code == 1000


async def test_a_socket_opened_long_after_the_end_gets_live_urls(emu: Emulator, submit: Submit,
                                                                  storage: httpx.AsyncClient) -> None:
    task = await submit()
    await emu.wait_status(task["prompt_id"], 3)
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        early = json.loads(await ws.recv())["comfy_task_info"]["final_files"][0]
    emu.advance_clock(3600)
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        late = json.loads(await ws.recv())["comfy_task_info"]["final_files"][0]
    assert (await storage.get(early)).status_code == 403
    assert (await storage.get(late)).status_code == 200


async def test_queue_positions_are_pushed_as_the_queue_moves(emu: Emulator, submit: Submit,
                                                             api: httpx.AsyncClient) -> None:
    emu.pause()
    tasks = [await submit() for _ in range(3)]
    async with connect(emu.progress_url(tasks[2]["prompt_token"]), proxy=None) as ws:
        assert json.loads(await ws.recv())["comfy_task_info"]["current_position"] == 3
        await api.post(GS.CANCEL_PATH, json={GS.CANCEL_BODY_FIELD: tasks[0]["prompt_id"]})
        moved = json.loads(await ws.recv())["comfy_task_info"]
        assert (moved["status"], moved["current_position"], moved["queue_size"]) == (1, 2, 2)
        emu.resume()
        rest = [frame["comfy_task_info"] for frame in await read_all(ws)]
    assert rest[-1]["status"] == 3
    assert [info["current_position"] for info in rest if info["status"] == 1] in ([], [1])


async def test_a_cancelled_task_is_pushed_as_status_4_and_closed(emu: Emulator, submit: Submit,
                                                                 api: httpx.AsyncClient) -> None:
    emu.pause()
    task = await submit()
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        await ws.recv()
        await api.post(GS.CANCEL_PATH, json={GS.CANCEL_BODY_FIELD: task["prompt_id"]})
        frames = await read_all(ws)
    assert frames[-1]["comfy_task_info"]["status"] == 4 and ws.close_code == 1000


async def refused_status(url: str) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, proxy=None):
            pass  # pragma: no cover - the handshake is refused
    return caught.value.response.status_code, bytes(caught.value.response.body or b"")


async def test_bad_tokens_are_refused_at_the_handshake_with_401(emu: Emulator, submit: Submit) -> None:
    task = await submit()
    forged = TokenSigner(b"not-the-emulators-secret", issuer="infini").mint(
        tenant_id=ED.EMULATOR_TENANT_ID, task_id=task["prompt_id"], expires_at=4_000_000_000
    )
    unknown_task = emu.service.tokens.mint(tenant_id="te-x", task_id="cft-unknown0000000", expires_at=4_000_000_000)
    header, claims, signature = task["prompt_token"].split(".")
    for token in (forged, "malformed", f"{header}.{claims}.{signature[::-1]}", unknown_task, ""):
        status, body = await refused_status(emu.progress_url(token))
        assert status == 401, token
        envelope = json.loads(body)
        assert envelope["code"] == 401 and envelope["traceid"]
        assert "token" in envelope["msg"] or GS.PROGRESS_WS_TOKEN_PARAM in envelope["msg"]
    status, _ = await refused_status(f"{emu.ws_url}{GS.PROGRESS_WS_PATH}")
    assert status == 401
    assert emu.stats.ws_handshakes_refused == 6 and emu.stats.ws_connections_opened == 0


async def test_a_token_expires_after_24_hours(emu: Emulator, submit: Submit) -> None:
    task = await submit()
    await emu.wait_status(task["prompt_id"], 3)
    emu.advance_clock(24 * 3600 + 1)
    status, body = await refused_status(emu.progress_url(task["prompt_token"]))
    assert status == 401 and b"expired" in body


@pytest.mark.genstudio_emulator(token_ttl=-1)
async def test_token_lifetime_is_configurable(emu: Emulator, submit: Submit) -> None:
    task = await submit()
    status, body = await refused_status(emu.progress_url(task["prompt_token"]))
    assert status == 401 and b"expired" in body


async def test_a_failed_task_is_pushed_with_its_errmsg(emu: Emulator, submit: Submit) -> None:
    emu.set_faults(Faults(fail_tasks="CUDA out of memory"))
    task = await submit()
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        frames = await read_all(ws)
    last = frames[-1]["comfy_task_info"]
    assert (last["status"], last["errMsg"], last["files"], last["final_files"]) == (4, "CUDA out of memory", {}, [])


async def test_a_client_that_leaves_is_forgotten(emu: Emulator, submit: Submit) -> None:
    emu.pause()
    task = await submit()
    async with connect(emu.progress_url(task["prompt_token"]), proxy=None) as ws:
        await ws.recv()
        assert emu.stats.ws_connections_open == 1
    await eventually(lambda: emu.stats.ws_connections_open == 0)
    assert not emu.service.tasks.get(task["prompt_id"]).watchers  # type: ignore[union-attr]


async def test_a_snapshot_is_serialised_once_per_change_not_once_per_socket(
    emu: Emulator, submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    serialised: list[str] = []
    def counting_dumps(value: Any) -> str:
        text = wire_dumps(value)
        serialised.append(text)
        return text

    monkeypatch.setattr(state_module, "dumps", counting_dumps)
    emu.set_timing(steps=5, step_seconds=0.02)
    emu.pause()
    task = await submit()
    sockets = [await connect(emu.progress_url(task["prompt_token"]), proxy=None) for _ in range(20)]
    try:
        for ws in sockets:
            await ws.recv()
        emu.resume()
        received = await asyncio.gather(*(read_all(ws) for ws in sockets))
    finally:
        for ws in sockets:
            await ws.close()
    distinct_frames = len(set(serialised))
    assert all(len(frames) >= 5 for frames in received)
    assert len(serialised) <= distinct_frames + 1  # not 20 times over
    assert emu.stats.ws_frames_sent == sum(len(frames) + 1 for frames in received)


async def test_queue_moves_are_coalesced_for_many_waiting_sockets(emu: Emulator, submit: Submit) -> None:
    emu.pause()
    tasks = [await submit() for _ in range(30)]
    sockets = [await connect(emu.progress_url(task["prompt_token"]), proxy=None) for task in tasks]
    try:
        for ws in sockets:
            await ws.recv()
        before = emu.stats.ws_frames_sent
        store = emu.service.tasks
        for task in tasks[:10]:  # ten queue changes in one go
            store.cancel(store.get(task["prompt_id"]))  # type: ignore[arg-type]
        updates = [json.loads(await ws.recv())["comfy_task_info"] for ws in sockets[10:]]
        await asyncio.sleep(4 * ED.EMULATOR_QUEUE_NOTIFY_INTERVAL)
        # one frame for each cancelled task (its status 4) and one for each waiting task: not ten each
        assert emu.stats.ws_frames_sent - before == 30
        assert [info["current_position"] for info in updates] == list(range(1, 21))
        assert all(info["queue_size"] == 20 for info in updates)
    finally:
        for ws in sockets:
            await ws.close()


async def test_queue_changes_are_pushed_as_often_as_the_admin_route_says(
    emu: Emulator, submit: Submit, api: httpx.AsyncClient
) -> None:
    # A benchmark with 10,000 running tasks turns queue-only pushes down: each would re-send every task's snapshot.
    emu.pause()
    ahead, behind = await submit(), await submit()
    prefix = ED.EMULATOR_ADMIN_PATH_PREFIX
    for refused in (0, -1, "soon", True, None):
        answer = (await api.post(f"{prefix}/timing", json={"queue_notify_interval": refused})).json()
        assert (answer["code"] != 0) == (refused is not None), refused
    timing = (await api.post(f"{prefix}/timing", json={"queue_notify_interval": 3600})).json()["data"]
    assert timing["queue_notify_interval"] == 3600
    async with connect(emu.progress_url(behind["prompt_token"]), proxy=None) as ws:
        first = json.loads(await ws.recv())["comfy_task_info"]
        assert first["current_position"] == 2
        await api.post(GS.CANCEL_PATH, json={"comfy_task_id": ahead["prompt_id"]})  # behind is now first in line
        await asyncio.sleep(0.2)  # four of the default rounds (0.05 s): the old emulator pushed position 1 here
        emu.resume()
        frames = [first, *(info["comfy_task_info"] for info in await read_all(ws))]
    # No push for the queue's change alone; the next frame is the task's own change (it starts), which shows the
    # queue as it is then.
    assert [frame["status"] for frame in frames[:2]] == [1, 2]
    assert frames[-1]["status"] == 3
