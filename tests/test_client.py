"""``AsyncGenStudio``: each endpoint's request and parsed answer, input checks, and construction."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import math
import threading
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from genstudio_async import (
    APIError,
    APIStatusError,
    AsyncGenStudio,
    AsyncGPUGeek,
    ConfigurationError,
    EventLoopError,
    GenStudioError,
    ImagePostProcess,
    InvalidInputError,
    NotFoundError,
    PromptValidationError,
    Submission,
    TaskInfo,
    TaskStatus,
)
from genstudio_async import _constants as C
from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import Emulator

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ0YXNrX2lkIjoiY2Z0LTEiLCJleHAiOjE3Mjg2OTk5NjN9.c2lnbmF0dXJl"
WS_PATH = "/api/maas/comfy_task_ws_api/get_task_progress"


def envelope(data: Any) -> dict[str, Any]:
    return {"code": 0, "msg": "Success", "data": data}


def wire_task(prompt_id: str, status: int = 2, **fields: Any) -> dict[str, Any]:
    return {
        "comfy_task_id": prompt_id,
        "status": status,
        "queue_size": 0,
        "current_position": 0,
        "errMsg": "",
        "files": "None",
        "final_files": [],
        "progress_num": 10,
        **fields,
    }


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


# --- submit ------------------------------------------------------------------------------------------------


async def test_submit_sends_workflow_and_prompt_and_returns_a_submission(
    api: respx.MockRouter, client: AsyncGenStudio, api_key: str
) -> None:
    route = api.post(GS.SUBMIT_PATH).respond(
        200, json=envelope({"prompt_id": "cft-c73egpxvlvg76yjd", "prompt_token": TOKEN})
    )

    # Node ids may be ints on the caller's side; the wire always has strings.
    prompt: dict[Any, Any] = {
        "6": {"inputs": {"text": "a red fox"}},
        3: {"inputs": {"seed": 423710630168223, "cfg": 7.5}},
    }
    submission = await client.submit("wf-c73diz7kadp6ffgn", prompt)

    assert submission == Submission(prompt_id="cft-c73egpxvlvg76yjd", prompt_token=TOKEN)
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url == "https://genstudio.test/api/maas/comfy_task_api/prompt"
    assert request.headers["Authorization"] == f"Bearer {api_key}"
    assert request.headers["Content-Type"] == "application/json"
    assert sent_json(route) == {
        "workflow_id": "wf-c73diz7kadp6ffgn",
        "prompt": {"6": {"inputs": {"text": "a red fox"}}, "3": {"inputs": {"seed": 423710630168223, "cfg": 7.5}}},
    }


async def test_submit_without_prompt_omits_it(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    route = api.post(GS.SUBMIT_PATH).respond(200, json=envelope({"prompt_id": "cft-1", "prompt_token": TOKEN}))
    await client.submit("wf-1")
    assert sent_json(route) == {"workflow_id": "wf-1"}


async def test_submit_answer_without_a_token_is_api_error(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    api.post(GS.SUBMIT_PATH).respond(200, json=envelope({"prompt_id": "cft-1"}))
    with pytest.raises(APIError, match="prompt_token"):
        await client.submit("wf-1")


async def test_submit_keeps_chinese_text_intact(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    route = api.post(GS.SUBMIT_PATH).respond(200, json=envelope({"prompt_id": "cft-1", "prompt_token": TOKEN}))
    await client.submit("wf-1", {"4": {"inputs": {"ckpt_name": "majicMIX realistic 麦橘写实_v7.safetensors"}}})
    assert sent_json(route)["prompt"]["4"]["inputs"]["ckpt_name"] == "majicMIX realistic 麦橘写实_v7.safetensors"


# --- get_tasks / get_task ----------------------------------------------------------------------------------


async def test_get_tasks_asks_for_many_ids_in_one_request_and_keeps_the_asked_order(
    api: respx.MockRouter, client: AsyncGenStudio, api_key: str
) -> None:
    route = api.post(GS.TASK_INFO_PATH).respond(
        200,
        json=envelope({"comfy_task_info": [wire_task("cft-a", 1), wire_task("cft-c", 3), wire_task("cft-b", 2)]}),
    )

    infos = await client.get_tasks(
        ["cft-b", Submission(prompt_id="cft-a", prompt_token=TOKEN), "cft-unknown", "cft-c"],
        url_expire_period=1000,
        image_post_process=ImagePostProcess(format="jpg", quality=80),
    )

    assert route.call_count == 1
    assert [info.prompt_id for info in infos] == ["cft-b", "cft-a", "cft-c"]  # unknown id left out
    assert [info.status for info in infos] == [TaskStatus.RUNNING, TaskStatus.QUEUED, TaskStatus.SUCCEEDED]
    assert all(isinstance(info, TaskInfo) for info in infos)
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {api_key}"
    assert sent_json(route) == {
        "comfy_task_ids": ["cft-b", "cft-a", "cft-unknown", "cft-c"],
        "url_expire_period": 1000,
        "image_post_process_cmd": {"format": "jpg", "quality": {"q": 80}},
    }


async def test_get_tasks_sends_only_the_ids_by_default(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    route = api.post(GS.TASK_INFO_PATH).respond(200, json=envelope({"comfy_task_info": []}))
    assert await client.get_tasks(["cft-1", "cft-1", "cft-2"]) == []
    assert sent_json(route) == {"comfy_task_ids": ["cft-1", "cft-2"]}


async def test_get_tasks_passes_a_post_process_dict_through(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    route = api.post(GS.TASK_INFO_PATH).respond(200, json=envelope({"comfy_task_info": []}))
    await client.get_tasks("cft-1", image_post_process={"format": "webp", "quality": {"Q": 90}})
    assert sent_json(route)["image_post_process_cmd"] == {"format": "webp", "quality": {"Q": 90}}


@pytest.mark.parametrize("period", [0, -1, True, 1.5, "600"])
async def test_get_tasks_rejects_a_bad_url_expire_period_before_any_request(
    api: respx.MockRouter, client: AsyncGenStudio, period: Any
) -> None:
    with pytest.raises(InvalidInputError, match="url_expire_period"):
        await client.get_tasks(["cft-1"], url_expire_period=period)
    assert api.calls.call_count == 0


@pytest.mark.parametrize("ids", [[], [""], ["   "], [None]])
async def test_get_tasks_rejects_missing_ids_before_any_request(
    api: respx.MockRouter, client: AsyncGenStudio, ids: list[Any]
) -> None:
    with pytest.raises(InvalidInputError):
        await client.get_tasks(ids)
    assert api.calls.call_count == 0


async def test_get_task_returns_one_parsed_task(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    route = api.post(GS.TASK_INFO_PATH).respond(
        200,
        json=envelope({"comfy_task_info": [wire_task("cft-1", 4, errMsg="CUDA out of memory", progress_num=55)]}),
    )
    info = await client.get_task(Submission(prompt_id="cft-1", prompt_token=TOKEN), url_expire_period=60)
    assert info.status is TaskStatus.FAILED and info.is_terminal
    assert info.error_message == "CUDA out of memory"
    assert info.progress == 55
    assert info.files == {}
    assert sent_json(route) == {"comfy_task_ids": ["cft-1"], "url_expire_period": 60}


async def test_get_task_parses_the_guides_raw_answer_with_signed_urls_untouched(
    api: respx.MockRouter, client: AsyncGenStudio, guide_success: dict[str, str]
) -> None:
    assert "\\u0026" in guide_success["raw"]  # the raw text really carries the JSON escape
    api.post(GS.TASK_INFO_PATH).respond(
        200, content=guide_success["raw"].encode(), headers={"Content-Type": "application/json"}
    )
    info = await client.get_task("cft-c73e5ci6dwb5wfhl", url_expire_period=1000)
    assert info.status is TaskStatus.SUCCEEDED and info.progress == 100
    assert info.files == {"9": [guide_success["file_url"]]}
    assert info.final_files == [guide_success["final_url"]]
    assert "?Expires=1726654989&OSSAccessKeyId=" in info.files["9"][0]
    assert info.files["9"][0].endswith("Signature=28hPa004ivIW4WX%2BpueVTvQcLXw%3D")


async def test_get_task_of_an_unknown_id_is_not_found(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    api.post(GS.TASK_INFO_PATH).respond(200, json=envelope({"comfy_task_info": []}))
    with pytest.raises(NotFoundError, match="cft-nope") as caught:
        await client.get_task("cft-nope")
    assert caught.value.status_code == 404


async def test_get_task_accepts_a_single_object_as_the_websocket_sends_it(
    api: respx.MockRouter, client: AsyncGenStudio
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(200, json=envelope({"comfy_task_info": wire_task("cft-1", 2)}))
    assert (await client.get_task("cft-1")).status is TaskStatus.RUNNING


# --- cancel -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [Submission(prompt_id="cft-9", prompt_token=TOKEN), "cft-9"])
async def test_cancel_sends_the_id_in_the_named_field(
    api: respx.MockRouter, client: AsyncGenStudio, api_key: str, task: Submission | str
) -> None:
    route = api.post(GS.CANCEL_PATH).respond(200, json={"code": 0, "msg": "Success"})
    await client.cancel(task)
    assert route.call_count == 1
    assert sent_json(route) == {GS.CANCEL_BODY_FIELD: "cft-9"}
    assert GS.CANCEL_BODY_FIELD == "comfy_task_id"
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {api_key}"
    assert client.was_cancelled("cft-9")


async def test_cancel_refused_with_a_business_error_is_not_remembered_as_cancelled(
    api: respx.MockRouter, client: AsyncGenStudio
) -> None:
    api.post(GS.CANCEL_PATH).respond(200, json={"code": 30001, "msg": "task already finished"})
    with pytest.raises(APIError, match="already finished"):
        await client.cancel("cft-9")
    assert not client.was_cancelled("cft-9")


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_cancel_refused_with_an_http_error_is_not_remembered_as_cancelled(
    api: respx.MockRouter, client: AsyncGenStudio, status: int
) -> None:
    # The service answered "no": if the task later ends with status 4 on its own, wait() must report a failure
    # (TaskFailedError with the server's errMsg), not a cancellation this client never achieved.
    api.post(GS.CANCEL_PATH).respond(status, json={"code": status, "msg": "no such task"})
    with pytest.raises(APIStatusError, match="no such task"):
        await client.cancel("cft-9")
    assert not client.was_cancelled("cft-9"), (
        f"BUG in _client.py cancel(): a cancel refused with HTTP {status} still marks the task as cancelled "
        "(it only un-marks on APIError, and APIStatusError is not an APIError)"
    )


@pytest.mark.parametrize("task", ["", "   ", None, 42])
async def test_cancel_rejects_a_missing_task_before_any_request(
    api: respx.MockRouter, client: AsyncGenStudio, task: Any
) -> None:
    with pytest.raises(InvalidInputError):
        await client.cancel(task)
    assert api.calls.call_count == 0


# --- upload_image ------------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n fake image bytes \x00\x01\x02"


def uploaded_part(route: respx.Route) -> bytes:
    request = route.calls.last.request
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    return request.content


async def test_upload_image_from_a_path(
    api: respx.MockRouter, client: AsyncGenStudio, api_key: str, tmp_path: Path
) -> None:
    image_id = "te-b905754427352261/ac-c66h4ddlwutmbinv/sui-c73eqoorz56qaq7q.png"
    route = api.post(GS.UPLOAD_PATH).respond(200, json=envelope({"image_id": image_id}))
    source = tmp_path / "spiderman-in-red-suit.png"
    source.write_bytes(PNG)

    assert await client.upload_image(source) == image_id
    assert await client.upload_image(str(source)) == image_id

    body = uploaded_part(route)
    assert b'Content-Disposition: form-data; name="source_file"; filename="spiderman-in-red-suit.png"' in body
    assert b"Content-Type: image/png" in body
    assert PNG in body
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {api_key}"


async def test_upload_image_from_bytes(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    route = api.post(GS.UPLOAD_PATH).respond(200, json=envelope({"image_id": "img-1"}))
    assert await client.upload_image(PNG, filename="mask.jpg") == "img-1"
    body = uploaded_part(route)
    assert b'name="source_file"; filename="mask.jpg"' in body
    assert b"Content-Type: image/jpeg" in body
    assert PNG in body

    assert await client.upload_image(bytearray(PNG)) == "img-1"
    assert f'filename="{C.DEFAULT_UPLOAD_FILENAME}"'.encode() in uploaded_part(route)


async def test_upload_image_from_a_binary_file_object(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    route = api.post(GS.UPLOAD_PATH).respond(200, json=envelope({"image_id": "img-2"}))
    source = tmp_path / "fox.webp"
    source.write_bytes(PNG)
    with source.open("rb") as handle:
        assert await client.upload_image(handle) == "img-2"
    body = uploaded_part(route)
    assert b'name="source_file"; filename="fox.webp"' in body
    assert PNG in body

    assert await client.upload_image(io.BytesIO(PNG), filename="from-memory.png") == "img-2"
    assert b'filename="from-memory.png"' in uploaded_part(route)


async def test_upload_image_accepts_a_flat_answer_without_code(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    api.post(GS.UPLOAD_PATH).respond(200, json={"image_id": "flat/sui-1.png"})
    assert await client.upload_image(PNG) == "flat/sui-1.png"


async def test_upload_image_answer_without_image_id_is_api_error(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    api.post(GS.UPLOAD_PATH).respond(200, json=envelope({"url": "https://oss.test/x.png"}))
    with pytest.raises(APIError, match="image_id"):
        await client.upload_image(PNG)


async def test_upload_image_of_a_missing_path_fails_before_any_request(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    api.post(GS.UPLOAD_PATH).respond(200, json=envelope({"image_id": "never"}))
    missing = tmp_path / "no-such-image.png"
    with pytest.raises(InvalidInputError, match="no such file") as caught:
        await client.upload_image(missing)
    assert "no-such-image.png" in str(caught.value)
    assert api.calls.call_count == 0


async def test_upload_image_of_a_text_mode_file_fails_before_any_request(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    api.post(GS.UPLOAD_PATH).respond(200, json=envelope({"image_id": "never"}))
    source = tmp_path / "notes.txt"
    source.write_text("not an image")
    with source.open("r") as handle, pytest.raises(InvalidInputError, match="binary mode"):
        await client.upload_image(handle)  # type: ignore[arg-type]  # exactly the mistake being caught
    with pytest.raises(InvalidInputError, match="binary mode"):
        await client.upload_image(io.StringIO("text"))  # type: ignore[arg-type]
    assert api.calls.call_count == 0


@pytest.mark.parametrize("source", ["directory", "empty-bytes", "empty-file", "number"])
async def test_upload_image_other_bad_sources_fail_before_any_request(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path, source: str
) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    sources: dict[str, Any] = {"directory": tmp_path, "empty-bytes": b"", "empty-file": empty, "number": 42}
    with pytest.raises(InvalidInputError, match="upload_image"):
        await client.upload_image(sources[source])
    assert api.calls.call_count == 0


# --- bad input fails before any request ------------------------------------------------------------------------


@pytest.mark.parametrize("workflow_id", ["", "   ", None, 42])
async def test_submit_rejects_an_empty_workflow_id(
    api: respx.MockRouter, client: AsyncGenStudio, workflow_id: Any
) -> None:
    with pytest.raises(InvalidInputError, match="workflow_id"):
        await client.submit(workflow_id, {"6": {"inputs": {"text": "fox"}}})
    assert api.calls.call_count == 0


@pytest.mark.parametrize("prompt", [["6", {"inputs": {}}], '{"6": {"inputs": {"text": "fox"}}}', 42])
async def test_submit_rejects_a_prompt_that_is_not_a_mapping(
    api: respx.MockRouter, client: AsyncGenStudio, prompt: Any
) -> None:
    with pytest.raises(PromptValidationError, match="mapping"):
        await client.submit("wf-1", prompt)
    assert api.calls.call_count == 0


@pytest.mark.parametrize("node", [{"text": "a red fox"}, {"inputs": "text=fox"}, "a red fox", None])
async def test_submit_rejects_a_node_without_inputs(api: respx.MockRouter, client: AsyncGenStudio, node: Any) -> None:
    with pytest.raises(PromptValidationError) as caught:
        await client.submit("wf-1", {"6": node})
    assert "'inputs'" in str(caught.value) and "node '6'" in str(caught.value)
    assert api.calls.call_count == 0


async def test_submit_rejects_the_exported_api_format_workflow(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    exported = {
        "3": {"inputs": {"seed": 1, "model": ["4", 0]}, "class_type": "KSampler", "_meta": {"title": "KSampler"}},
        "4": {"inputs": {"ckpt_name": "x.safetensors"}, "class_type": "CheckpointLoaderSimple"},
    }
    with pytest.raises(PromptValidationError) as caught:
        await client.submit("wf-1", exported)
    text = str(caught.value)
    assert "class_type" in text
    assert "API-format" in text and "send only the inputs to change" in text
    assert {problem.node_id for problem in caught.value.problems} == {"3", "4"}
    assert api.calls.call_count == 0


async def test_submit_rejects_a_parameter_spec_entry(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    spec_copied = {
        "3": {"inputs": {"steps": {"type": "INT", "current": 20, "spec": {"default": 20, "min": 1, "max": 10000}}}}
    }
    with pytest.raises(PromptValidationError) as caught:
        await client.submit("wf-1", spec_copied)
    text = str(caught.value)
    assert "入参范围" in text
    assert "'steps'" in text and "20" in text  # names the input and suggests its current value
    assert api.calls.call_count == 0


@pytest.mark.parametrize("value", [math.nan, math.inf, {1, 2}, object(), b"bytes"])
async def test_submit_rejects_a_value_that_cannot_be_sent_as_json(
    api: respx.MockRouter, client: AsyncGenStudio, value: Any
) -> None:
    with pytest.raises(PromptValidationError) as caught:
        await client.submit("wf-1", {"3": {"inputs": {"cfg": value}}})
    assert "'cfg'" in str(caught.value) and "JSON" in str(caught.value)
    assert api.calls.call_count == 0


async def test_submit_rejects_an_input_name_that_is_not_a_string(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    prompt: dict[str, Any] = {"3": {"inputs": {("seed",): 1, "": 2}}}
    with pytest.raises(PromptValidationError, match="input names must be non-empty strings") as caught:
        await client.submit("wf-1", prompt)
    assert len(caught.value.problems) == 2
    assert api.calls.call_count == 0


async def test_prompt_validation_lists_every_problem_at_once(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    prompt = {
        "3": {"inputs": {"seed": {"type": "INT", "current": 1, "spec": {}}}},
        "4": {"ckpt_name": "x.safetensors"},
        "5": {"inputs": {"width": 512}, "class_type": "EmptyLatentImage"},
        "6": {"inputs": {"text": "fine"}},
        "7": {"inputs": {"cfg": math.nan}},
    }
    with pytest.raises(PromptValidationError) as caught:
        await client.submit("wf-1", prompt)
    error = caught.value
    assert [problem.node_id for problem in error.problems] == ["3", "4", "5", "7"]
    text = str(error)
    assert text.startswith("the prompt has 4 problems:")
    for node_id in ("'3'", "'4'", "'5'", "'7'"):
        assert f"node {node_id}" in text
    assert "node '6'" not in text
    assert isinstance(error, InvalidInputError) and isinstance(error, ValueError)
    assert api.calls.call_count == 0


# --- construction -------------------------------------------------------------------------------------------


def test_missing_api_key_names_the_environment_variable() -> None:
    with pytest.raises(ConfigurationError, match="GENSTUDIO_API_KEY"):
        AsyncGenStudio()
    with pytest.raises(ConfigurationError, match="GENSTUDIO_API_KEY"):
        AsyncGenStudio("   ")


async def test_environment_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENSTUDIO_API_KEY", "sk-from-env-0123456789")
    monkeypatch.setenv("GENSTUDIO_BASE_URL", "https://env.genstudio.test/")
    monkeypatch.setenv("GENSTUDIO_WS_URL", "wss://ws.env.genstudio.test")
    with respx.mock(base_url="https://env.genstudio.test", assert_all_called=True) as env_api:
        route = env_api.post(GS.CANCEL_PATH).respond(200, json={"code": 0})
        async with AsyncGenStudio() as client:
            assert client.base_url == "https://env.genstudio.test"
            assert client.ws_url == "wss://ws.env.genstudio.test" + WS_PATH
            await client.cancel("cft-1")
    assert route.calls.last.request.headers["Authorization"] == "Bearer sk-from-env-0123456789"


async def test_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch, api: respx.MockRouter) -> None:
    monkeypatch.setenv("GENSTUDIO_API_KEY", "sk-from-env-0123456789")
    monkeypatch.setenv("GENSTUDIO_BASE_URL", "https://env.genstudio.test")
    monkeypatch.setenv("GENSTUDIO_WS_URL", "wss://ws.env.genstudio.test")
    route = api.post(GS.CANCEL_PATH).respond(200, json={"code": 0})
    async with AsyncGenStudio(
        "sk-explicit-0123456789", base_url="https://genstudio.test", ws_url="ws://127.0.0.1:9"
    ) as client:
        assert client.ws_url == "ws://127.0.0.1:9" + WS_PATH
        await client.cancel("cft-1")
    assert route.calls.last.request.headers["Authorization"] == "Bearer sk-explicit-0123456789"


async def test_default_service_urls() -> None:
    async with AsyncGenStudio("sk-x") as client:
        assert client.base_url == "https://cloud.infini-ai.com"
        assert client.ws_url == "wss://cloud.infini-ai.com/api/maas/comfy_task_ws_api/get_task_progress"


@pytest.mark.parametrize(
    ("base_url", "ws_url", "expected"),
    [
        ("https://genstudio.test", None, "wss://genstudio.test" + WS_PATH),
        ("http://127.0.0.1:8188", None, "ws://127.0.0.1:8188" + WS_PATH),
        ("https://proxy.test/genstudio/", None, "wss://proxy.test/genstudio" + WS_PATH),
        ("https://genstudio.test", "wss://stream.test" + WS_PATH, "wss://stream.test" + WS_PATH),
        ("https://genstudio.test", "ws://localhost:8765/", "ws://localhost:8765" + WS_PATH),
    ],
)
async def test_ws_url_derivation(base_url: str, ws_url: str | None, expected: str) -> None:
    async with AsyncGenStudio("sk-x", base_url=base_url, ws_url=ws_url) as client:
        assert client.ws_url == expected


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": -1.0}, "poll_interval"),
        ({"stream_idle_timeout": 0}, "stream_idle_timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -5.0}, "timeout"),
        ({"base_url": "ftp://genstudio.test"}, "base_url"),
        ({"base_url": "genstudio.test"}, "base_url"),
        ({"ws_url": "https://genstudio.test"}, "ws_url"),
    ],
)
def test_bad_settings_are_configuration_errors(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        AsyncGenStudio("sk-x", **options)


@pytest.mark.parametrize("setting", ["poll_interval", "stream_idle_timeout", "timeout"])
async def test_nan_settings_are_configuration_errors(setting: str) -> None:
    # NaN slips through a "<= 0" check (every comparison with NaN is False) and would make the poller and the
    # idle watchdog misbehave deep inside asyncio instead of failing at construction.
    raised: ConfigurationError | None = None
    try:
        options: dict[str, Any] = {setting: math.nan}
        client = AsyncGenStudio("sk-x", **options)
    except ConfigurationError as error:
        raised = error
    else:
        await client.aclose()
    assert raised is not None, f"BUG in _client.py __init__: {setting}=nan is accepted instead of a ConfigurationError"
    assert setting in str(raised)


async def test_an_injected_http_client_is_used_and_left_open(api: respx.MockRouter) -> None:
    route = api.post(GS.CANCEL_PATH).respond(200, json={"code": 0})
    async with httpx.AsyncClient(headers={"X-Injected-By": "caller"}) as http_client:
        client = AsyncGenStudio("sk-x", base_url="https://genstudio.test", http_client=http_client)
        await client.cancel("cft-1")
        await client.aclose()
        assert route.calls.last.request.headers["X-Injected-By"] == "caller"
        assert not http_client.is_closed
        # Still usable by its owner.
        await AsyncGenStudio("sk-x", base_url="https://genstudio.test", http_client=http_client).cancel("cft-2")
        assert route.call_count == 2
    assert http_client.is_closed


async def test_a_client_made_http_client_is_closed_by_aclose() -> None:
    client = AsyncGenStudio("sk-x", base_url="https://genstudio.test")
    own_http_client = client._http_client  # the only handle on it: the client made it itself
    assert not own_http_client.is_closed
    await client.aclose()
    assert own_http_client.is_closed
    await client.aclose()  # twice is fine
    assert own_http_client.is_closed


async def test_async_with_closes_on_exit_even_after_an_error(api: respx.MockRouter) -> None:
    api.post(GS.SUBMIT_PATH).respond(200, json=envelope({"prompt_id": "cft-1", "prompt_token": TOKEN}))
    with pytest.raises(RuntimeError, match="caller's own"):
        async with AsyncGenStudio("sk-x", base_url="https://genstudio.test") as client:
            assert (await client.submit("wf-1")).prompt_id == "cft-1"
            raise RuntimeError("caller's own error")
    assert client._http_client.is_closed


async def test_client_settings_are_visible(make_client: Callable[..., AsyncGenStudio]) -> None:
    client = make_client(poll_interval=2.5, stream_idle_timeout=12, max_retries=5, use_websocket=False)
    assert (client.poll_interval, client.stream_idle_timeout, client.max_retries, client.use_websocket) == (
        2.5,
        12.0,
        5,
        False,
    )


async def test_a_closed_client_says_so_instead_of_leaking_an_httpx_error(api: respx.MockRouter) -> None:
    client = AsyncGenStudio("sk-test-closed-client-key", base_url="https://genstudio.test")
    await client.aclose()
    with pytest.raises(GenStudioError, match="closed"):
        await client.get_task("cft-1")
    assert api.calls.call_count == 0


async def test_get_tasks_rejects_a_non_iterable_before_any_request(
    api: respx.MockRouter, client: AsyncGenStudio
) -> None:
    with pytest.raises(InvalidInputError, match="prompt_ids"):
        await client.get_tasks(123)  # type: ignore[arg-type]
    assert api.calls.call_count == 0


# --- one event loop per client ---------------------------------------------------------------------------------------
#
# Each asyncio.run() starts a new loop; a client's pooled connections belong to the loop that first used it. Real
# sockets (the emulator) show what a user meets: without the check, httpx's own "RuntimeError: Event loop is closed".


async def in_other_loops(client: Any, *uses: Callable[[Any], Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run each use of ``client`` with asyncio.run() in turn (a new loop each), in a thread, as a script would;
    each outcome is its result or the exception it raised."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    outcomes: list[Any] = []

    def script() -> None:
        for use in uses:
            try:
                outcomes.append(asyncio.run(use(client)))
            except Exception as error:  # noqa: BLE001 - the outcome the test looks at
                outcomes.append(error.with_traceback(None))  # its frames would keep the client's sockets alive
        loop.call_soon_threadsafe(finished.set)

    # A thread of its own, joined: a pool's worker would hold the client's sockets alive past the test.
    thread = threading.Thread(target=script, name="user-script")
    thread.start()
    async with asyncio.timeout(30):  # a failure bound only
        await finished.wait()
    thread.join()
    return outcomes


def collect_leftover_sockets() -> None:
    """Collect the sockets of a loop that ended with the client still open (the misuse itself leaves them), once the
    test has dropped the client: here, their ResourceWarnings expected, rather than in some later test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.mark.genstudio_emulator(steps=2, step_seconds=0.01)
async def test_a_client_used_on_a_second_event_loop_says_what_to_do(genstudio_emulator: Emulator) -> None:
    client = AsyncGenStudio(genstudio_emulator.api_key, base_url=genstudio_emulator.base_url)
    run = lambda client: client.run("wf-c73diz7kadp6ffgn")  # noqa: E731
    outcomes = await in_other_loops(client, run, run, lambda client: client.aclose())
    first, second, closing = outcomes
    assert first.status is TaskStatus.SUCCEEDED  # the loop that used it first keeps it
    assert isinstance(second, EventLoopError) and isinstance(second, GenStudioError)  # not "Event loop is closed"
    message = str(second)
    assert "first used on another event loop" in message and "one client per event loop" in message
    assert "async with AsyncGenStudio() as client" in message and "with GenStudio() as client" in message
    assert isinstance(closing, EventLoopError)  # aclose too: what it would close belongs to the first loop
    assert genstudio_emulator.stats.submits == 1  # the second run sent nothing
    del client, outcomes, first, second, closing
    collect_leftover_sockets()


@pytest.mark.genstudio_emulator(steps=2, step_seconds=0.01)
async def test_a_stream_on_a_second_event_loop_is_refused_before_its_socket_opens(
    genstudio_emulator: Emulator,
) -> None:
    client = AsyncGenStudio(genstudio_emulator.api_key, base_url=genstudio_emulator.base_url)

    async def follow(client: AsyncGenStudio, sub: Submission) -> list[TaskStatus]:
        return [event.status async for event in client.stream(sub)]

    [sub] = await in_other_loops(client, lambda client: client.submit("wf-c73diz7kadp6ffgn"))
    [refused] = await in_other_loops(client, lambda client: follow(client, sub))
    assert isinstance(refused, EventLoopError)
    assert genstudio_emulator.stats.ws_connections_opened == 0
    del client, refused
    collect_leftover_sockets()


@pytest.mark.genstudio_emulator(service="gpugeek", steps=2, step_seconds=0.01)
async def test_the_gpugeek_client_names_its_own_sync_twin(genstudio_emulator: Emulator) -> None:
    client = genstudio_emulator.client()
    assert isinstance(client, AsyncGPUGeek)
    ask = lambda client: client.get_tasks(["1"])  # noqa: E731
    _, refused = await in_other_loops(client, ask, ask)
    assert isinstance(refused, EventLoopError)
    assert "AsyncGPUGeek" in str(refused) and "with GPUGeek() as client" in str(refused)
    del client, refused
    collect_leftover_sockets()


def test_checking_the_loop_costs_nothing_outside_one_and_binds_to_the_first(api: respx.MockRouter) -> None:
    client = AsyncGenStudio("sk-test-loop-check-key", base_url="https://genstudio.test")
    client.stream("cft-1")  # made outside any loop: nothing to check yet, nothing bound
    api.post(GS.TASK_INFO_PATH).respond(json=envelope({"comfy_task_info": [wire_task("cft-1")]}))

    async def twice() -> list[str]:
        return [(await client.get_task("cft-1")).prompt_id for _ in range(2)]

    assert asyncio.run(twice()) == ["cft-1", "cft-1"]
    asyncio.run(AsyncGenStudio("sk-test-loop-check-key", base_url="https://genstudio.test").aclose())  # unused
    with pytest.raises(EventLoopError):
        asyncio.run(client.aclose())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HTTPS_PROXY", "ftp://user:hunter2@proxy.invalid"),  # a scheme httpx cannot proxy through: ValueError
        ("HTTP_PROXY", "http://user:hunter2@proxy.invalid:port"),  # not a URL: httpx.InvalidURL
    ],
)
def test_a_proxy_environment_httpx_cannot_read_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="cannot build the HTTP client") as caught:
        AsyncGenStudio("sk-client-test-key-123456")
    assert "hunter2" not in str(caught.value)  # the proxy's password is not repeated
