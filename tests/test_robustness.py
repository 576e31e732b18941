"""Failure paths a user would otherwise hit as a hang, a leak, a raw exception or a leaked secret."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
import respx

from genstudio_async import (
    APIError,
    AsyncGenStudio,
    GenStudioError,
    InvalidInputError,
    LocalImage,
    TaskInfo,
    TaskStatus,
)
from genstudio_async._files import ImageUploader
from genstudio_async._poller import TaskPoller
from genstudio_async._stream import _same_state
from genstudio_async.emulator import Emulator, Faults

from .support import eventually

T2I = "wf-c73diz7kadp6ffgn"


async def test_the_prompt_token_never_reaches_any_log_line(
    genstudio_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, websockets' own included
    async with genstudio_emulator.client() as client:
        sub = await client.submit(T2I)
        await client.wait(sub)
    lines = [record.getMessage() for record in caplog.records]
    assert any("GET " in line for line in lines)  # websockets logs the client's handshake line ...
    assert any("WebSocket" in line for line in lines if "authorization=" in line)  # ... uvicorn the server's
    assert sub.prompt_token is not None
    assert not any(sub.prompt_token in line for line in lines)  # ... and neither holds the token whole


async def test_an_unparseable_number_from_the_service_is_not_a_raw_error(api: respx.MockRouter) -> None:
    api.post("/api/maas/comfy_task_api/get_task_info").respond(
        content=b'{"code": 0, "data": {"comfy_task_info": [{"comfy_task_id": "cft-1", "progress_num": 1e999}]}}',
        headers={"content-type": "application/json"},
    )
    async with AsyncGenStudio("sk-robustness-key-123456", base_url="https://genstudio.test") as client:
        info = await client.get_task("cft-1")
    assert info.progress == 0


async def test_a_poller_that_dies_fails_its_waiters_instead_of_hanging() -> None:
    async def fetch(ids: Sequence[str]) -> list[TaskInfo]:
        raise RuntimeError("bug in a fetch")

    poller = TaskPoller(fetch, interval=0.01)
    with pytest.raises(GenStudioError, match="polling stopped"):
        async with poller.watch("cft-1") as waiter:
            await asyncio.wait_for(waiter.next(), timeout=5)
    await poller.aclose()


async def test_closing_the_client_fails_polling_waiters_instead_of_hanging(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    client = genstudio_emulator.client(use_websocket=False, poll_interval=0.01)
    sub = await client.submit(T2I)
    waiting = asyncio.create_task(client.wait(sub))
    await eventually(lambda: sub.prompt_id in client._poller.polling, what="polling mode")
    await client.aclose()
    with pytest.raises(GenStudioError, match="closed"):
        await asyncio.wait_for(waiting, timeout=5)


async def test_one_refused_id_does_not_fail_the_other_waiters_of_its_chunk() -> None:
    async def fetch(ids: Sequence[str]) -> list[TaskInfo]:
        if "cft-foreign" in ids:
            raise APIError("task not owned by this account", code=40301)
        return [TaskInfo(prompt_id=prompt_id, status=TaskStatus.SUCCEEDED) for prompt_id in ids]

    poller = TaskPoller(fetch, interval=0.01)

    async def watch(prompt_id: str) -> TaskInfo:
        async with poller.watch(prompt_id) as waiter:
            return await waiter.next()

    good, bad = await asyncio.gather(watch("cft-mine"), watch("cft-foreign"), return_exceptions=True)
    await poller.aclose()
    assert isinstance(good, TaskInfo) and good.status is TaskStatus.SUCCEEDED
    assert isinstance(bad, APIError)


async def test_leaving_run_many_while_submits_are_in_flight_cancels_those_tasks_too(
    genstudio_emulator: Emulator,
) -> None:
    genstudio_emulator.pause()
    genstudio_emulator.set_faults(Faults(delay=0.3, endpoints=frozenset({"submit"})))
    async with genstudio_emulator.client() as client:
        batch = client.run_many([(T2I, None)] * 3, concurrency=3)
        first = asyncio.create_task(anext(batch))
        await asyncio.sleep(0.05)  # the three submits are on the wire, none answered yet
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await batch.aclose()
    assert genstudio_emulator.stats.submits == 3
    statuses = [genstudio_emulator.task_info(task_id)["status"] for task_id in genstudio_emulator.task_ids()]  # type: ignore[index]
    assert statuses == [4, 4, 4]  # nothing left running (and billing) unseen


async def test_a_proxy_websockets_cannot_use_falls_back_to_polling(
    genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ws_proxy", "socks5h://127.0.0.1:9")  # read by websockets only; needs python-socks
    async with genstudio_emulator.client(poll_interval=0.02) as client:
        events = [event async for event in client.stream(await client.submit(T2I))]
    assert events[-1].status is TaskStatus.SUCCEEDED
    assert {event.source for event in events} == {"poll"}


def test_a_proxy_httpx_cannot_use_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from genstudio_async import ConfigurationError

    monkeypatch.setenv("all_proxy", "socks5h://127.0.0.1:9")  # httpx needs socksio for this
    with pytest.raises(ConfigurationError, match="socks"):
        AsyncGenStudio("sk-robustness-key-123456")


async def test_cancelling_one_submit_does_not_cancel_another_sharing_its_upload() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    uploads: list[bytes] = []

    async def slow_upload(content: object, name: str | None) -> str:
        assert isinstance(content, bytes)
        uploads.append(content)
        started.set()
        await release.wait()
        return f"te-1/ac-1/sui-{len(uploads)}.png"

    uploader = ImageUploader(slow_upload)
    image = LocalImage(b"\x89PNG same bytes")
    first = asyncio.create_task(uploader.image_id(image))
    await started.wait()
    second = asyncio.create_task(uploader.image_id(image))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0.01)
    release.set()
    assert await second == "te-1/ac-1/sui-2.png"  # the survivor uploaded the bytes itself
    assert first.cancelled()


def test_signatures_refreshed_on_every_answer_are_not_a_change_of_state() -> None:
    def info(signature: str) -> TaskInfo:
        url = f"https://bucket.test/te%2Fcft-1%2Fa.png?Expires=1&Signature={signature}"
        return TaskInfo(prompt_id="cft-1", status=TaskStatus.RUNNING, progress=40, files={"9": [url]})

    assert _same_state(info("AAA%2B"), info("BBB%3D"))


async def test_an_injected_clients_own_auth_never_reaches_the_storage_host(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    async with (
        httpx.AsyncClient(auth=("user", genstudio_emulator.api_key)) as http_client,
        genstudio_emulator.client(http_client=http_client) as client,
    ):
        paths = await client.download(await client.run(T2I), tmp_path)
    assert paths
    assert genstudio_emulator.stats.storage_requests_with_authorization == 0


async def test_a_timeout_error_raised_by_on_progress_is_the_callers_own(genstudio_emulator: Emulator) -> None:
    def on_progress(event: object) -> None:
        raise TimeoutError("my own deadline")

    async with genstudio_emulator.client() as client:
        with pytest.raises(TimeoutError, match="my own deadline") as caught:
            await client.run(T2I, on_progress=on_progress)
    assert type(caught.value) is TimeoutError


async def test_a_nonsense_retry_after_is_ignored_not_crashed_on(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]
) -> None:
    api.post("/api/maas/comfy_task_api/get_task_info").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "nan"}),
            httpx.Response(200, json={"code": 0, "data": {"comfy_task_info": [{"comfy_task_id": "cft-1"}]}}),
        ]
    )
    info = await client.get_task("cft-1")
    assert info.prompt_id == "cft-1" and len(sleeps) == 1 and 0 <= sleeps[0] < 10


async def test_an_unreadable_upload_is_invalid_input(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    closed = io.BytesIO(b"\x89PNG")
    closed.close()
    with pytest.raises(InvalidInputError, match="cannot read"):
        await client.upload_image(closed)
    assert api.calls.call_count == 0


async def test_a_download_that_cannot_write_locally_is_not_a_connection_error(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    blocked = tmp_path / "out"
    blocked.mkdir()
    (blocked / "9").write_text("a file where the node folder should be")
    async with genstudio_emulator.client() as client:
        result = await client.run(T2I)
        with pytest.raises(GenStudioError, match="cannot write") as caught:
            await client.download(result, blocked)
    assert type(caught.value) is GenStudioError


def test_absurdly_nested_frames_are_skipped() -> None:
    from genstudio_async._redact import Redactor
    from genstudio_async._services.genstudio import GenStudioSocket

    socket = GenStudioSocket("wss://genstudio.test/api/maas/comfy_task_ws_api/get_task_progress", Redactor())
    assert socket.parse_frame("[" * 100_000 + "]" * 100_000, "cft-1") is None


async def test_a_status_no_integer_can_hold_is_unknown_not_a_raw_error(
    api: respx.MockRouter, client: AsyncGenStudio
) -> None:
    api.post("/api/maas/comfy_task_api/get_task_info").respond(
        content=b'{"code": 0, "data": {"comfy_task_info": [{"comfy_task_id": "cft-1", "status": 1e400}]}}',
        headers={"content-type": "application/json"},
    )
    info = await client.get_task("cft-1")
    assert info.status is TaskStatus.UNKNOWN and not info.is_terminal


@pytest.mark.parametrize("prompt_id", ["cft-1\ngenstudio: all tasks succeeded", "cft 1", "cft-\x1b[2J", "x" * 300])
async def test_a_prompt_id_that_could_forge_a_line_or_path_is_refused(
    api: respx.MockRouter, client: AsyncGenStudio, prompt_id: str
) -> None:
    from genstudio_async import InvalidResponseError

    api.post("/api/maas/comfy_task_api/prompt").respond(
        json={"code": 0, "data": {"prompt_id": prompt_id, "prompt_token": "tok-1"}}
    )
    with pytest.raises(InvalidResponseError, match="prompt_id"):
        await client.submit("wf-1")
