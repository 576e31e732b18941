"""``AsyncGPUGeek``: the whole flow against the GPUGeek emulator, and every quirk of GPUGeek's wire.

Real sockets against ``Emulator(service="gpugeek")`` for behaviour (the ``gpugeek_emulator`` fixture); respx for
what the emulator does not send (an integer ``prompt_id`` from submit, a bare-string ``result_url``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import respx

from genstudio_async import (
    ApiWorkflow,
    AsyncGPUGeek,
    InvalidInputError,
    NotFoundError,
    PromptValidationError,
    Submission,
    TaskCancelledError,
    TaskFailedError,
    TaskResult,
    TaskStatus,
)
from genstudio_async._services import gpugeek as G
from genstudio_async.emulator import Emulator, Faults
from genstudio_async.emulator._gpugeek import GPUGeekService

from .support import PNG_SIGNATURE, eventually, tiny_png

T2I = 763311996779461
I2I = 763311996779525
EXPORTS = Path(__file__).resolve().parent.parent / "examples" / "workflows"
GPUGeekEmulator = Emulator[GPUGeekService]


def whole(name: str) -> ApiWorkflow:
    return ApiWorkflow.load(EXPORTS / f"{name}_workflow_api.json")


@pytest.fixture
async def client(gpugeek_emulator: GPUGeekEmulator) -> AsyncIterator[AsyncGPUGeek]:
    async with gpugeek_emulator.client(poll_interval=0.02) as gpugeek:
        yield gpugeek


# --- the whole flow --------------------------------------------------------------------------------------------


async def test_a_local_image_is_uploaded_once_then_run_and_downloaded(
    gpugeek_emulator: GPUGeekEmulator, client: AsyncGPUGeek, tmp_path: Path
) -> None:
    fox = tmp_path / "fox.png"
    fox.write_bytes(tiny_png(40, 30))
    prompt = whole("i2i").builder().set("LoadImage", image=fox).positive("a watercolour fox").build()
    first = await client.run(I2I, prompt, timeout=20)
    second = await client.run(str(I2I), prompt, timeout=20)  # a string of digits is an id too
    paths = await client.download(first, tmp_path / "out")
    assert first.status is TaskStatus.SUCCEEDED and second.status is TaskStatus.SUCCEEDED
    assert paths and all(path.read_bytes().startswith(PNG_SIGNATURE) for path in paths)
    stats = gpugeek_emulator.stats
    assert stats.commits == 1 and stats.requests["upload_put"] == 1  # the same bytes: uploaded once
    assert stats.storage_requests_with_authorization == 0  # the key never reached the object store
    assert stats.submits == 2


@pytest.mark.parametrize("field", ["signed_url", "signedUrl"])
async def test_the_upload_reads_either_name_the_doc_gives_the_signed_url(
    gpugeek_emulator: GPUGeekEmulator, client: AsyncGPUGeek, field: str
) -> None:
    gpugeek_emulator.set_faults(Faults(presign_field=field))
    url = await client.upload_image(tiny_png(8, 8), filename="fox.png")
    assert url.startswith(gpugeek_emulator.storage_url) and "?" not in url  # the committed URL, no signature
    assert url.endswith("-fox.png") and gpugeek_emulator.stats.commits == 1


async def test_get_task_reads_the_typed_fields_and_get_tasks_leaves_unknown_ids_out(
    gpugeek_emulator: GPUGeekEmulator, client: AsyncGPUGeek
) -> None:
    sub = await client.submit(T2I, whole("t2i").builder().build())
    assert sub.prompt_token is None and sub.prompt_id.isdigit()
    await client.wait(sub, timeout=20)
    info = await client.get_task(sub)
    assert info.status is TaskStatus.SUCCEEDED and info.progress == 100
    assert info.workflow_id == str(T2I) and info.price is not None and info.created_at is not None
    assert info.queue_duration is not None and info.run_duration is not None
    assert [task.prompt_id for task in await client.get_tasks([sub, "999999999999999"])] == [sub.prompt_id]
    with pytest.raises(NotFoundError):
        await client.get_task("999999999999999")
    with pytest.raises(InvalidInputError, match="url_expire_period"):
        await client.get_tasks([sub], url_expire_period=60)


async def test_status_5_is_a_cancellation_whoever_cancelled(
    gpugeek_emulator: GPUGeekEmulator, client: AsyncGPUGeek
) -> None:
    gpugeek_emulator.pause()
    sub = await client.submit(T2I, whole("t2i").builder().build())
    async with gpugeek_emulator.client() as someone_else:
        await someone_else.cancel(sub)  # this client did not cancel it: still a cancellation, not a failure
    with pytest.raises(TaskCancelledError) as caught:
        await client.wait(sub, timeout=20)
    assert caught.value.info.status is TaskStatus.CANCELLED


async def test_a_failed_task_says_why(gpugeek_emulator: GPUGeekEmulator, client: AsyncGPUGeek) -> None:
    gpugeek_emulator.set_faults(Faults(fail_tasks="CUDA out of memory"))
    with pytest.raises(TaskFailedError, match="CUDA out of memory"):
        await client.run(T2I, whole("t2i").builder().build(), timeout=20)


async def test_an_overrides_only_prompt_is_refused_with_nothing_sent(
    gpugeek_emulator: GPUGeekEmulator, client: AsyncGPUGeek
) -> None:
    with pytest.raises(PromptValidationError, match="whole ComfyUI API-format workflow"):
        await client.submit(T2I, {"6": {"inputs": {"text": "a red fox"}}})
    with pytest.raises(InvalidInputError, match="whole API-format workflow"):
        await client.submit(T2I)
    for bad in ("wf-c73diz7kadp6ffgn", 0, True):
        with pytest.raises(InvalidInputError, match="workflow_id"):
            await client.submit(bad, whole("t2i").builder().build())
    assert sum(gpugeek_emulator.stats.requests.values()) == 0


async def test_a_rate_limited_submit_is_sent_again_without_a_second_task(
    gpugeek_emulator: GPUGeekEmulator, client: AsyncGPUGeek, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genstudio_async import _http

    async def short_sleep(seconds: float) -> None:  # the emulator asks for 1 s; its bucket refills in 50 ms
        await asyncio.sleep(min(seconds, 0.1))

    monkeypatch.setattr(_http, "sleep", short_sleep)
    gpugeek_emulator.set_faults(Faults(rate_limit=20.0, rate_limit_burst=1, endpoints=frozenset({"submit"})))
    prompt = whole("t2i").builder().build()
    first = await client.submit(T2I, prompt)  # takes the bucket's one token
    second = await client.submit(T2I, prompt)  # 429 + Retry-After, then sent again: it certainly made no task
    assert gpugeek_emulator.stats.rate_limited >= 1
    assert gpugeek_emulator.task_ids() == [first.prompt_id, second.prompt_id]  # two submits, two tasks, no more


async def test_html_502_pages_on_polls_are_survived(gpugeek_emulator: GPUGeekEmulator, client: AsyncGPUGeek) -> None:
    gpugeek_emulator.set_faults(
        Faults(http_error_rate=0.5, http_error_status=502, http_error_html=True, endpoints=frozenset({"task"}), seed=3)
    )
    result = await client.run(T2I, whole("t2i").builder().build(), timeout=20)
    assert result.status is TaskStatus.SUCCEEDED
    assert gpugeek_emulator.stats.http_errors_injected > 0


@pytest.mark.gpugeek_emulator(workers=30)
async def test_thirty_polled_tasks_cost_about_one_request_per_task_per_interval(
    gpugeek_emulator: GPUGeekEmulator,
) -> None:
    prompt = whole("t2i").builder().build()
    async with gpugeek_emulator.client(poll_interval=0.05) as client:
        gpugeek_emulator.pause()
        subs = [await client.submit(T2I, prompt) for _ in range(30)]
        waits = [asyncio.create_task(client.wait(sub, timeout=30)) for sub in subs]
        await eventually(lambda: client._poller.rounds >= 6, what="six polling rounds", timeout=10)
        rounds, asked = client._poller.rounds, gpugeek_emulator.stats.requests["task"]
        gpugeek_emulator.resume()
        results = await asyncio.gather(*waits)
    assert all(result.status is TaskStatus.SUCCEEDED for result in results)
    # Each round asks each of the 30 tasks once (the round under way may be part done): no storm, no gaps.
    assert 30 * (rounds - 1) <= asked <= 30 * (rounds + 1)


# --- what only respx can send ------------------------------------------------------------------------------------

BASE = "https://gpugeek.test"


@pytest.fixture
def gpu_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


def _envelope(data: Any) -> dict[str, Any]:
    return {"code": 0, "message": "success", "traceid": "0" * 32, "data": data}


async def test_an_integer_prompt_id_and_a_bare_string_result_url_are_read(gpu_api: respx.MockRouter) -> None:
    submit = gpu_api.post(G.SUBMIT_PATH).respond(json=_envelope({"prompt_id": 763289064770885}))
    url = "https://oss.gpugeek.test/comfy/output/a.png?Expires=1\u0026Signature=x%2By"
    gpu_api.get(G.TASK_PATH.format(prompt_id="763289064770885")).respond(
        json=_envelope({"prompt_id": 763289064770885, "status": 3, "result_url": {"9": url}})
    )
    async with AsyncGPUGeek("sk-gpugeek-test-0123456789", base_url=BASE) as client:
        sub = await client.submit("763311996779461", whole("t2i").builder().build())
        result = await client.wait(sub, timeout=5)
    assert sub == Submission(prompt_id="763289064770885")
    assert result.outputs == [url]  # one URL, not its characters; never decoded
    body = json.loads(submit.calls.last.request.content)
    assert body["workflow_id"] == 763311996779461 and body["task_type"] == 1 and body["prompt"]["3"]["class_type"]


async def test_errors_carry_the_envelopes_message_and_traceid(gpu_api: respx.MockRouter) -> None:
    from genstudio_async import APIError

    gpu_api.post(G.SUBMIT_PATH).respond(
        json={"code": 40001, "message": "workflow 1 not found", "traceid": "66ba96cf011c8c18f04f0a2c4f56f979"}
    )
    async with AsyncGPUGeek("sk-gpugeek-test-0123456789", base_url=BASE) as client:
        with pytest.raises(APIError) as caught:
            await client.submit(1, whole("t2i").builder().build())
    assert caught.value.code == 40001 and caught.value.message == "workflow 1 not found"
    assert caught.value.traceid == "66ba96cf011c8c18f04f0a2c4f56f979"


async def test_the_upload_put_carries_no_key_and_the_commit_no_signature(gpu_api: respx.MockRouter) -> None:
    signed = "https://oss.gpugeek.test/comfy/input/x-fox.png?X-Amz-Signature=ab%2Bcd"
    gpu_api.get(G.PRESIGN_PATH).respond(json=_envelope({"signedUrl": signed, "expired_at": "2026-01-01T00:00:00Z"}))
    put = gpu_api.put(signed).respond(200)
    commit = gpu_api.post(G.COMMIT_PATH).respond(json=_envelope({"oss_url": "https://oss.gpugeek.test/comfy/input/x"}))
    async with AsyncGPUGeek("sk-gpugeek-test-0123456789", base_url=BASE) as client:
        assert await client.upload_image(b"\x89PNG...", filename="fox.png") == "https://oss.gpugeek.test/comfy/input/x"
    request = put.calls.last.request
    assert "authorization" not in request.headers and request.headers["content-type"] == "application/octet-stream"
    assert str(request.url) == signed  # as given: %2B never decoded
    assert json.loads(commit.calls.last.request.content) == {"oss_url": "https://oss.gpugeek.test/comfy/input/x-fox.png"}


def test_the_client_reads_its_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUGEEK_API_KEY", "sk-from-env-0123456789")
    monkeypatch.setenv("GPUGEEK_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("GENSTUDIO_API_KEY", "sk-not-this-one-0123456789")
    client = AsyncGPUGeek()
    assert client.base_url == "http://127.0.0.1:9" and "sk-fro" in repr(client)
    assert repr(client).startswith("AsyncGPUGeek(") and not hasattr(client, "ws_url")


# --- what a hostile review found ---------------------------------------------------------------------------------


async def test_an_id_gpugeek_cannot_have_is_refused_at_once_not_polled_for_ever(client: AsyncGPUGeek) -> None:
    for bad in ("comfy-1234", "76328906477088５"):
        with pytest.raises(InvalidInputError, match="digits"):
            await asyncio.wait_for(client.wait(bad, timeout=30), timeout=5)
        with pytest.raises(InvalidInputError):
            await client.cancel(bad)
    assert not client._poller.polling


async def test_a_task_this_client_cancelled_that_then_failed_is_a_failure(gpu_api: respx.MockRouter) -> None:
    # GenStudio reports a cancel as a failure, so a failure there after a cancel is a cancellation; GPUGeek has a
    # status of its own for a cancel: its 4 is a failure, whoever asked to cancel.
    gpu_api.post(G.CANCEL_PATH).respond(json=_envelope(None))
    gpu_api.get(G.TASK_PATH.format(prompt_id="42")).respond(
        json=_envelope({"prompt_id": 42, "status": 4, "error_msg": "CUDA out of memory"})
    )
    async with AsyncGPUGeek("sk-gpugeek-test-0123456789", base_url=BASE, poll_interval=0.01) as client:
        await client.cancel("42")
        with pytest.raises(TaskFailedError, match="CUDA out of memory"):
            await client.wait("42", timeout=5)


async def test_a_failed_status_request_leaves_none_of_its_siblings_running(gpu_api: respx.MockRouter) -> None:
    started: list[str] = []

    async def answer(request: Any, prompt_id: str) -> Any:
        import httpx

        started.append(prompt_id)
        if prompt_id == "1":
            return httpx.Response(200, json=_envelope({"prompt_id": 999, "status": 2}))  # another task's answer
        await asyncio.sleep(0.2)
        return httpx.Response(200, json=_envelope({"prompt_id": int(prompt_id), "status": 2}))

    gpu_api.get(path__regex=r"/api/v1/task/(?P<prompt_id>\d+)").mock(side_effect=answer)
    async with AsyncGPUGeek("sk-gpugeek-test-0123456789", base_url=BASE) as client:
        from genstudio_async import InvalidResponseError

        with pytest.raises(InvalidResponseError):
            await client.get_tasks([str(n) for n in range(1, 6)])
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    assert others == []  # the other GETs were cancelled with the failure, not left sending


async def test_a_prompt_id_too_long_to_name_anything_is_an_invalid_response(gpu_api: respx.MockRouter) -> None:
    from genstudio_async import InvalidResponseError

    gpu_api.post(G.SUBMIT_PATH).respond(json=_envelope({"prompt_id": "9" * 300}))
    async with AsyncGPUGeek("sk-gpugeek-test-0123456789", base_url=BASE) as client:
        with pytest.raises(InvalidResponseError, match="300 digits"):
            await client.submit(1, whole("t2i").builder().build())


@pytest.mark.parametrize(
    ("result_url", "files"),
    [
        (["http://a/x.png"], {"result": ["http://a/x.png"]}),
        ("http://a/x.png", {"result": ["http://a/x.png"]}),
        ({"9": [{"url": "http://a/x.png"}]}, {"9": ["http://a/x.png"]}),
        ({"9": "http://a/x.png", "10": None}, {"9": ["http://a/x.png"], "10": []}),
    ],
)
def test_every_shape_of_result_url_keeps_its_files(result_url: Any, files: dict[str, list[str]]) -> None:
    info = G.parse_task_info({"prompt_id": 1, "status": 3, "result_url": result_url})
    assert info.files == files
    assert TaskResult.from_info(info).outputs == [url for urls in files.values() for url in urls]


def test_a_result_url_part_that_names_no_url_is_kept_not_dropped() -> None:
    info = G.parse_task_info({"prompt_id": 1, "status": 3, "result_url": {"9": [{"href": "x"}, 7]}})
    assert info.files == {"9": []} and info.model_extra == {"result_url_unread": [{"href": "x"}, 7]}


@pytest.mark.parametrize(
    "created_at",
    ["2026-01-19T14:46:54Z", "2026-01-19T14:46:54+08:00", "2026-01-19 14:46:54.250", "2026-01-19T06:46:54+00:00"],
)
def test_created_at_reads_iso_times_too_keeping_their_zone(created_at: str) -> None:
    from datetime import UTC, datetime

    info = G.parse_task_info({"prompt_id": 1, "created_at": created_at})
    assert info.created_at is not None and info.created_at.tzinfo is not None
    expected = {"2026-01-19T14:46:54Z": datetime(2026, 1, 19, 14, 46, 54, tzinfo=UTC)}.get(
        created_at, datetime(2026, 1, 19, 6, 46, 54, tzinfo=UTC)
    )
    assert abs((info.created_at - expected).total_seconds()) < 1


@pytest.mark.parametrize(
    ("signed", "committed"),
    [
        ("http://", "https://oss.test/x.png"),
        ("http://[::1/x", "https://oss.test/x.png"),
        ("file:///etc/passwd", "https://oss.test/x.png"),
        ("https://oss.test/x.png?s=1", "javascript:alert(1)"),
        ("https://oss.test/x.png?s=1", "https://oss.test/" + "x" * 9000),
    ],
)
async def test_an_upload_answer_that_is_no_url_is_an_invalid_response(
    gpu_api: respx.MockRouter, signed: str, committed: str
) -> None:
    from genstudio_async import InvalidResponseError

    gpu_api.get(G.PRESIGN_PATH).respond(json=_envelope({"signed_url": signed}))
    gpu_api.route(method="PUT", host="oss.test").respond(200)
    gpu_api.post(G.COMMIT_PATH).respond(json=_envelope({"oss_url": committed}))
    async with AsyncGPUGeek("sk-gpugeek-test-0123456789", base_url=BASE) as client:
        with pytest.raises(InvalidResponseError):
            await client.upload_image(b"\x89PNG...", filename="fox.png")


async def test_a_legal_long_or_odd_file_name_uploads(
    gpugeek_emulator: GPUGeekEmulator, client: AsyncGPUGeek
) -> None:
    for name in ("a" * 246 + ".png", "fox\twith a tab.png", "狐狸" * 40 + ".png"):
        url = await client.upload_image(tiny_png(4, 4), filename=name)
        assert url.startswith(gpugeek_emulator.storage_url) and url.endswith(".png")
    assert G.upload_name("x" * 400 + ".png", b"1").endswith(".png") and len(G.upload_name("x" * 400, b"1")) <= 255

