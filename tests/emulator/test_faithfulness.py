"""Where the emulator must not be kinder than the service: what works here must work there."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from genstudio_async import TaskStatus
from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import Emulator, Faults

T2I, I2I = "wf-c73diz7kadp6ffgn", "wf-c73epllu4i3bxvzr"


def api(emu: Emulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=emu.base_url, headers={"Authorization": f"Bearer {emu.api_key}"})


async def submit(http: httpx.AsyncClient, body: dict[str, object]) -> dict[str, object]:
    answer = (await http.post(GS.SUBMIT_PATH, json=body)).json()
    assert isinstance(answer, dict)
    return answer


async def test_ws_linger_keeps_the_socket_open_after_the_terminal_frame(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.set_faults(Faults(ws_linger=True))
    async with api(genstudio_emulator) as http:
        data = (await submit(http, {"workflow_id": T2I}))["data"]
        assert isinstance(data, dict)
        await genstudio_emulator.wait_status(str(data["prompt_id"]), 3)
        async with connect(genstudio_emulator.progress_url(str(data["prompt_token"]))) as socket:
            frame = json.loads(await socket.recv())
            assert frame["comfy_task_info"]["status"] == 3
            with pytest.raises(TimeoutError):  # a client that waits for the server to close would hang here
                await asyncio.wait_for(socket.recv(), timeout=0.2)
            assert socket.state is websockets.protocol.State.OPEN


async def test_ws_skip_initial_sends_nothing_for_a_finished_task(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.set_faults(Faults(ws_skip_initial=True))
    async with api(genstudio_emulator) as http:
        data = (await submit(http, {"workflow_id": T2I}))["data"]
        assert isinstance(data, dict)
        await genstudio_emulator.wait_status(str(data["prompt_id"]), 3)
        async with connect(genstudio_emulator.progress_url(str(data["prompt_token"]))) as socket:
            frames = [frame async for frame in socket]
    assert frames == []


@pytest.mark.parametrize(
    "faults", [Faults(ws_linger=True), Faults(ws_skip_initial=True), Faults(tutorial_shapes=True)]
)
async def test_the_sdk_finishes_whatever_the_service_chooses_to_do(
    genstudio_emulator: Emulator, faults: Faults
) -> None:
    genstudio_emulator.set_faults(faults)
    async with genstudio_emulator.client(stream_idle_timeout=0.2, poll_interval=0.05) as client:
        sub = await client.submit(T2I)
        events = [event async for event in client.stream(sub)]
        result = await client.wait(sub)
    assert events[-1].status is TaskStatus.SUCCEEDED and result.outputs


async def test_tutorial_shapes_match_the_tutorials_examples(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.set_faults(Faults(tutorial_shapes=True))
    genstudio_emulator.pause()
    async with api(genstudio_emulator) as http:
        data = (await submit(http, {"workflow_id": T2I}))["data"]
        assert isinstance(data, dict)
        task_id = str(data["prompt_id"])
        queued = genstudio_emulator.task_info(task_id)
        assert queued is not None and queued["files"] == "None" and "progress_num" not in queued
        genstudio_emulator.resume()
        done = await genstudio_emulator.wait_status(task_id, 3)
    assert isinstance(done["files"]["9"], str)  # a bare URL, not a list


async def test_an_upload_that_is_not_an_image_fails_the_task_that_uses_it(genstudio_emulator: Emulator) -> None:
    async with genstudio_emulator.client() as client:
        image_id = await client.upload_image(b"hello, not an image", filename="notes.txt")
        from genstudio_async import TaskFailedError

        with pytest.raises(TaskFailedError, match="cannot identify image file"):
            await client.run(I2I, {"10": {"inputs": {"image": image_id}}})


async def test_bodies_the_service_would_refuse_are_refused(genstudio_emulator: Emulator) -> None:
    async with api(genstudio_emulator) as http:
        nan = await http.post(GS.SUBMIT_PATH, content=b'{"workflow_id": "wf-c73diz7kadp6ffgn", "x": NaN}')
        deep = await http.post(GS.SUBMIT_PATH, content=b"[" * 100_000 + b"]" * 100_000)
        huge = await http.post(GS.SUBMIT_PATH, content=b'{"workflow_id": "' + b"x" * (5 * 1024 * 1024) + b'"}')
        slash = await http.post(GS.SUBMIT_PATH + "/", json={"workflow_id": T2I})
    assert (nan.status_code, deep.status_code, huge.status_code) == (400, 400, 413)
    assert slash.status_code == 404  # no silent redirect to a route the service does not have


async def test_seeds_above_comfyuis_maximum_are_refused(genstudio_emulator: Emulator) -> None:
    async with api(genstudio_emulator) as http:
        at_max = await submit(http, {"workflow_id": T2I, "prompt": {"3": {"inputs": {"seed": 2**64 - 1}}}})
        above = await submit(http, {"workflow_id": T2I, "prompt": {"3": {"inputs": {"seed": 2**64}}}})
    assert at_max["code"] == 0
    assert above["code"] != 0 and "seed" in str(above["msg"])


async def test_a_prompt_with_a_lone_surrogate_still_renders(genstudio_emulator: Emulator) -> None:
    async with api(genstudio_emulator) as http:
        body = b'{"workflow_id": "wf-c73diz7kadp6ffgn", "prompt": {"6": {"inputs": {"text": "a\\ud800b"}}}}'
        data = (await http.post(GS.SUBMIT_PATH, content=body)).json()["data"]
        done = await genstudio_emulator.wait_status(data["prompt_id"], 3)
    async with httpx.AsyncClient() as storage:  # no credential for the storage host
        image = await storage.get(done["files"]["9"][0])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


async def test_finished_tasks_release_their_memory_after_retention() -> None:
    async with Emulator(retention=60) as emu, emu.client() as client:
        first = await client.run(T2I, {"6": {"inputs": {"text": "x" * 100_000}}})
        task = emu.service.tasks.get(first.prompt_id)
        assert task is not None and task.plan.text
        emu.advance_clock(120)
        await client.run(T2I)  # each submit sweeps what is past retention
        info = await client.get_task(first.prompt_id)  # the record stays: it answers as before
    assert info.status is TaskStatus.SUCCEEDED
    assert task.plan.text == ""


async def test_the_emulators_key_is_never_logged_whole(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        Emulator(api_key="sk-emulator-secret-0123456789") as emu,
        httpx.AsyncClient(base_url=emu.base_url) as http,
    ):
        await http.post(GS.TASK_INFO_PATH, headers={"Authorization": emu.api_key}, json={"comfy_task_ids": []})
        await http.post(f"{GS.TASK_INFO_PATH}?api_key={emu.api_key}", json={"comfy_task_ids": []})
    server_lines = [record.getMessage() for record in caplog.records if record.name.startswith("uvicorn")]
    assert any("api_key=" in line for line in server_lines)  # the request was logged ...
    assert not any("sk-emulator-secret-0123456789" in line for line in server_lines)  # ... without the key
