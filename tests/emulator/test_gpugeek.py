"""The GPUGeek emulator as a client sees it (plain httpx, no SDK): envelopes, the upload flow, tasks, cancel,
ids, refusals, faults, and the object store that never takes the API key."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from genstudio_async._services import gpugeek as G
from genstudio_async.emulator import (
    ENDPOINTS,
    GPUGEEK_BUILTIN_WORKFLOW_IDS,
    Emulator,
    EmulatorError,
    FaultError,
    Faults,
    GPUGeekStatus,
)
from genstudio_async.emulator._defaults import GPUGEEK_PRESIGN_TTL_SECONDS
from genstudio_async.emulator._gpugeek import GPUGeekService
from genstudio_async.emulator._gpugeek_workflows import builtin_gpugeek_workflows
from genstudio_async.emulator._png import render_image
from genstudio_async.workflow import ApiWorkflow
from tests.support import decode_png, eventually

from .support import bearer_client

T2I = 763311996779461
I2I = 763311996779525
EXPORTS = Path(__file__).resolve().parents[2] / "examples" / "workflows"
TRACEID = re.compile(r"^[0-9a-f]{32}$")
PROMPT_ID = re.compile(r"^[1-9][0-9]{14}$")

GPUGeekEmulator = Emulator[GPUGeekService]


def export(name: str) -> dict[str, Any]:
    """A fresh copy of a built-in export: ``t2i`` or ``i2i``."""
    return builtin_gpugeek_workflows()[{"t2i": T2I, "i2i": I2I}[name]]


def test_the_builtin_workflows_are_the_docs_exports() -> None:
    for name, workflow_id in (("t2i", T2I), ("i2i", I2I)):
        shipped = json.loads((EXPORTS / f"{name}_workflow_api.json").read_text(encoding="utf-8"))
        assert builtin_gpugeek_workflows()[workflow_id] == shipped


@pytest.fixture
def gpu(gpugeek_emulator: GPUGeekEmulator) -> GPUGeekEmulator:
    """A running GPUGeek emulator with fast tasks: the public plugin's ``gpugeek_emulator`` (see conftest)."""
    return gpugeek_emulator


@pytest.fixture
async def api(gpu: GPUGeekEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for the GPUGeek API origin, sending the bearer key."""
    async with bearer_client(gpu.base_url, gpu.api_key) as client:
        yield client


def data_of(response: httpx.Response) -> Any:
    """The ``data`` of a successful GPUGeek envelope, after checking the envelope's shape."""
    envelope = response.json()
    assert response.status_code == 200, envelope
    assert (envelope["code"], envelope["message"]) == (0, "success"), envelope
    assert TRACEID.match(envelope["traceid"])
    return envelope["data"]


def refusal(response: httpx.Response, status_code: int = 200) -> str:
    """The ``message`` of an error envelope (``code != 0``, a traceid), after checking its HTTP status."""
    envelope = response.json()
    assert response.status_code == status_code, envelope
    assert envelope["code"] != 0 and TRACEID.match(envelope["traceid"]), envelope
    message: str = envelope["message"]
    assert message
    return message


async def upload(api: httpx.AsyncClient, storage: httpx.AsyncClient, content: bytes, name: str = "fox.png") -> str:
    """Presign, PUT (no key), commit: the committed ``oss_url``."""
    signed = data_of(await api.get(G.PRESIGN_PATH, params={"file_name": name}))["signed_url"]
    put = await storage.put(signed, content=content, headers={"Content-Type": G.UPLOAD_CONTENT_TYPE})
    assert put.status_code == 200, put.text
    committed: str = data_of(await api.post(G.COMMIT_PATH, json={"oss_url": G.object_url(signed)}))["oss_url"]
    return committed


async def submit(api: httpx.AsyncClient, prompt: dict[str, Any], workflow_id: int = T2I) -> str:
    prompt_id: str = data_of(
        await api.post(G.SUBMIT_PATH, json={"workflow_id": workflow_id, "task_type": 1, "prompt": prompt})
    )["prompt_id"]
    return prompt_id


async def task(api: httpx.AsyncClient, prompt_id: str | int) -> dict[str, Any]:
    info: dict[str, Any] = data_of(await api.get(G.TASK_PATH.format(prompt_id=prompt_id)))
    return info


# --- the whole flow ------------------------------------------------------------------------------------------------


async def test_upload_then_image_to_image_then_poll_to_3_then_download(
    gpu: GPUGeekEmulator, api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    source = render_image(96, 64, 5, "a fox")
    oss_url = await upload(api, storage, source)
    assert oss_url == f"{gpu.storage_url}/comfy/input/fox.png"
    prompt = export("i2i")
    prompt["10"]["inputs"]["image"] = oss_url
    prompt_id = await submit(api, prompt, I2I)
    assert PROMPT_ID.match(prompt_id)

    seen: list[int] = []
    async with asyncio.timeout(10):  # a failure bound only
        while not seen or seen[-1] != 3:
            info = await task(api, prompt_id)
            seen.append(info["status"])
            assert info["status"] in (1, 2, 3), info
            await asyncio.sleep(0.005)
    assert seen == sorted(seen)  # queued, running, succeeded: never backwards
    assert info["prompt_id"] == int(prompt_id) and info["workflow_id"] == I2I
    assert isinstance(info["env_id"], int) and info["error_msg"] == ""
    assert (info["queue_size"], info["current_position"], info["origin_price"]) == (0, 0, 0.11)
    assert isinstance(info["queue_duration"], int) and info["queue_duration"] >= 0
    assert isinstance(info["run_duration"], int) and info["run_duration"] > 0
    created = datetime.strptime(info["created_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=G.CREATED_AT_ZONE)
    assert abs(created - datetime.fromtimestamp(gpu.service.clock.now(), UTC)) < timedelta(minutes=1)

    assert list(info["result_url"]) == ["9"]  # keyed by the workflow's SaveImage node
    [url] = info["result_url"]["9"]
    assert url.startswith(gpu.storage_url + "/")
    image = await storage.get(url)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert decode_png(image.content)[:2] == (96, 64)  # image-to-image: the size of what was uploaded
    stats = gpu.stats
    assert (stats.submits, stats.uploads, stats.commits, stats.storage_downloads) == (1, 1, 1, 1)
    assert stats.storage_requests_with_authorization == 0
    assert stats.requests["presign"] == 1 and stats.requests["upload_put"] == 1 and stats.requests["task"] == len(seen)


async def test_a_text_to_image_export_keys_results_by_its_output_nodes(gpu: GPUGeekEmulator,
                                                                       api: httpx.AsyncClient) -> None:
    prompt = export("t2i")
    prompt["5"]["inputs"].update(width=128, height=64, batch_size=2)
    prompt["20"] = {"inputs": {"images": ["8", 0]}, "class_type": "PreviewImage", "_meta": {"title": "Preview"}}
    info = await gpu.wait_status(await submit(api, prompt), GPUGeekStatus.SUCCEEDED)
    assert {node: len(urls) for node, urls in info["result_url"].items()} == {"9": 2, "20": 2}


async def test_a_queued_task_reports_its_place_and_its_time_in_the_queue(
    gpu: GPUGeekEmulator, api: httpx.AsyncClient
) -> None:
    gpu.pause()
    first, second = await submit(api, export("t2i")), await submit(api, export("t2i"))
    gpu.advance_clock(5)
    info = await task(api, second)
    assert (info["status"], info["current_position"], info["queue_size"]) == (1, 2, 2)
    assert info["result_url"] == {} and info["run_duration"] == 0 and info["queue_duration"] >= 5000
    assert (await task(api, first))["current_position"] == 1
    assert gpu.task_ids() == [first, second]


# --- cancel, ids, unknown ids -------------------------------------------------------------------------------------


async def test_cancel_makes_a_queued_or_running_task_status_5(gpu: GPUGeekEmulator, api: httpx.AsyncClient) -> None:
    gpu.pause()
    queued = await submit(api, export("t2i"))
    assert data_of(await api.post(G.CANCEL_PATH, json={"task_id": int(queued)})) is None
    assert (await task(api, queued))["status"] == 5
    assert (await gpu.wait_status(int(queued), 5))["status"] == GPUGeekStatus.CANCELLED

    gpu.set_timing(steps=50, step_seconds=0.01)
    gpu.resume()
    running = await submit(api, export("t2i"))
    await gpu.wait_status(running, 2)
    data_of(await api.post(G.CANCEL_PATH, json={"task_id": int(running)}))
    info = await task(api, running)
    assert (info["status"], info["result_url"], info["error_msg"]) == (5, {}, "")
    data_of(await api.post(G.CANCEL_PATH, json={"task_id": int(running)}))  # an ended task stays as it is
    assert (await task(api, running))["status"] == 5 and gpu.stats.cancels == 3


async def test_ids_are_digit_strings_from_submit_integers_in_the_task_and_integers_to_cancel(
    gpu: GPUGeekEmulator, api: httpx.AsyncClient
) -> None:
    gpu.pause()
    prompt_id = await submit(api, export("t2i"))
    assert isinstance(prompt_id, str) and PROMPT_ID.match(prompt_id)
    info = await task(api, prompt_id)
    assert info["prompt_id"] == int(prompt_id) and isinstance(info["workflow_id"], int)
    by_string, by_int = gpu.task_info(prompt_id), gpu.task_info(int(prompt_id))
    assert by_string is not None and by_int is not None
    def still(snapshot: dict[str, Any]) -> dict[str, Any]:  # without the durations, which grow while it waits
        return {key: value for key, value in snapshot.items() if key not in ("queue_duration", "run_duration")}

    assert still(by_string) == still(info)
    assert by_int["prompt_id"] == by_string["prompt_id"] == int(prompt_id)
    assert "task_id" in refusal(await api.post(G.CANCEL_PATH, json={"task_id": prompt_id}))  # a string: refused
    assert (await task(api, prompt_id))["status"] == 1
    refused = await api.post(G.SUBMIT_PATH, json={"workflow_id": str(T2I), "task_type": 1, "prompt": export("t2i")})
    assert "workflow_id" in refusal(refused)


async def test_an_unknown_task_is_http_404_with_an_envelope(gpu: GPUGeekEmulator, api: httpx.AsyncClient) -> None:
    for prompt_id in ("763289064770885", "not-a-number", "1" * 400):
        message = refusal(await api.get(G.TASK_PATH.format(prompt_id=prompt_id)), 404)
        assert "not found" in message and len(message) < 200
    assert "not found" in refusal(await api.post(G.CANCEL_PATH, json={"task_id": 763289064770885}))
    assert gpu.task_info(763289064770885) is None
    with pytest.raises(EmulatorError, match="unknown task"):
        await gpu.wait_status(763289064770885, 3)


# --- what submit refuses -------------------------------------------------------------------------------------------


def without(node: str, key: str) -> dict[str, Any]:
    prompt = export("t2i")
    del prompt[node][key]
    return prompt


def replaced(node: str, **fields: Any) -> dict[str, Any]:
    prompt = export("t2i")
    prompt[node].update(fields)
    return prompt


def with_image(value: object) -> dict[str, Any]:
    prompt = export("i2i")
    prompt["10"]["inputs"]["image"] = value
    return prompt


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"workflow_id": 42, "task_type": 1, "prompt": export("t2i")}, "workflow_id 42 not found"),
        ({"workflow_id": "763311996779461", "task_type": 1, "prompt": export("t2i")}, "workflow_id must be"),
        ({"workflow_id": True, "task_type": 1, "prompt": export("t2i")}, "workflow_id must be"),
        ({"workflow_id": 7.5, "task_type": 1, "prompt": export("t2i")}, "workflow_id must be"),
        ({"workflow_id": T2I, "task_type": 2, "prompt": export("t2i")}, "task_type must be 1"),
        ({"workflow_id": T2I, "prompt": export("t2i")}, "task_type must be 1"),
        ({"workflow_id": T2I, "task_type": "1", "prompt": export("t2i")}, "task_type must be 1"),
        ({"workflow_id": T2I, "task_type": 1, "prompt": without("3", "class_type")}, "node '3': this node has no"),
        ({"workflow_id": T2I, "task_type": 1, "prompt": without("6", "inputs")}, "node '6': each node must be"),
        ({"workflow_id": T2I, "task_type": 1, "prompt": {"3": {"inputs": {"seed": 1}}}}, "no class_type"),
        ({"workflow_id": T2I, "task_type": 1, "prompt": [1, 2]}, "whole API-format workflow"),
        ({"workflow_id": T2I, "task_type": 1, "prompt": replaced("9", class_type="Note")}, "no output node"),
        ({"workflow_id": T2I, "task_type": 1, "prompt": replaced("9", inputs={"images": ["88", 0]})},
         "node '9' input 'images': links to node '88'"),
        ({"workflow_id": I2I, "task_type": 1, "prompt": with_image("example.png")},
         "node '10' input 'image': image 'example.png' is neither a committed upload"),
        ({"workflow_id": I2I, "task_type": 1, "prompt": with_image(7)}, "must be a URL string"),
        ([1], "JSON object"),
    ],
)
async def test_submit_refusals_name_the_culprit(gpu: GPUGeekEmulator, api: httpx.AsyncClient, body: Any,
                                                named: str) -> None:
    assert named in refusal(await api.post(G.SUBMIT_PATH, json=body))
    assert gpu.stats.submits == 0 and gpu.task_ids() == []


async def test_a_load_image_url_of_this_store_must_be_a_committed_upload(
    gpu: GPUGeekEmulator, api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    never = f"{gpu.storage_url}/comfy/input/never.png"
    assert "never uploaded" in refusal(await api.post(G.SUBMIT_PATH, json={
        "workflow_id": I2I, "task_type": 1, "prompt": with_image(never)}))
    signed = data_of(await api.get(G.PRESIGN_PATH, params={"file_name": "late.png"}))["signed_url"]
    await storage.put(signed, content=render_image(8, 8, 1, ""), headers={"Content-Type": G.UPLOAD_CONTENT_TYPE})
    uncommitted = G.object_url(signed)
    assert "not committed" in refusal(await api.post(G.SUBMIT_PATH, json={
        "workflow_id": I2I, "task_type": 1, "prompt": with_image(uncommitted)}))
    elsewhere = await submit(api, with_image("https://example.com/comfy/input/fox.png"), I2I)  # taken on trust
    assert (await gpu.wait_status(elsewhere, 3))["result_url"]


async def test_an_upload_that_is_not_an_image_fails_the_task_that_loads_it(
    gpu: GPUGeekEmulator, api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    oss_url = await upload(api, storage, b"%PDF-1.7 not an image", name="notes.png")
    info = await gpu.wait_status(await submit(api, with_image(oss_url), I2I), GPUGeekStatus.FAILED)
    assert "cannot identify image file" in info["error_msg"] and info["result_url"] == {}


# --- uploads -------------------------------------------------------------------------------------------------------


async def test_presign_takes_get_or_post_and_file_name_or_filename(gpu: GPUGeekEmulator,
                                                                   api: httpx.AsyncClient) -> None:
    by_get = data_of(await api.get(G.PRESIGN_PATH, params={"file_name": "a.png"}))
    by_post = data_of(await api.post(f"{G.PRESIGN_PATH}?fileName=b.png", headers={"Content-Type": "application/json"}))
    for answer, name in ((by_get, "a.png"), (by_post, "b.png")):
        assert answer["signed_url"] == answer["signedUrl"]
        parts = urlsplit(answer["signed_url"])
        assert f"{parts.scheme}://{parts.netloc}" == gpu.storage_url and parts.path == f"/comfy/input/{name}"
        assert {"Expires", "OSSAccessKeyId", "Signature"} <= {p.split("=")[0] for p in parts.query.split("&")}
        expires = datetime.strptime(answer["expired_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        now = datetime.fromtimestamp(gpu.service.clock.now(), UTC)
        assert timedelta(minutes=59) < expires - now <= timedelta(minutes=61)
    for field in ("signed_url", "signedUrl"):
        gpu.set_faults(presign_field=field)
        assert set(data_of(await api.get(G.PRESIGN_PATH, params={"file_name": "c.png"}))) == {field, "expired_at"}


@pytest.mark.parametrize("name", ["", "../up.png", "a/b.png", "a\\b.png", "..", "bell\x07.png", "x" * 300])
async def test_presign_refuses_a_name_that_is_not_a_plain_file_name(api: httpx.AsyncClient, name: str) -> None:
    assert "file_name" in refusal(await api.get(G.PRESIGN_PATH, params={"file_name": name}))


async def test_the_object_store_refuses_the_api_key_and_counts_it(
    gpu: GPUGeekEmulator, api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    signed = data_of(await api.get(G.PRESIGN_PATH, params={"file_name": "k.png"}))["signed_url"]
    keyed = {"Content-Type": G.UPLOAD_CONTENT_TYPE, "Authorization": f"Bearer {gpu.api_key}"}
    refused = await storage.put(signed, content=b"\x89PNG", headers=keyed)
    assert refused.status_code == 400 and "<Code>InvalidArgument</Code>" in refused.text
    assert "not" in refusal(await api.post(G.COMMIT_PATH, json={"oss_url": G.object_url(signed)}))  # nothing stored
    info = await gpu.wait_status(await submit(api, export("t2i")), 3)
    download = await storage.get(info["result_url"]["9"][0], headers={"Authorization": f"Bearer {gpu.api_key}"})
    assert download.status_code == 400
    assert gpu.stats.storage_requests_with_authorization == 2 and gpu.stats.uploads == 0


async def test_the_object_store_finds_the_key_wherever_it_is_sent(
    gpu: GPUGeekEmulator, api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    info = await gpu.wait_status(await submit(api, export("t2i")), 3)
    url = info["result_url"]["9"][0]
    carriers: list[dict[str, Any]] = [
        {"headers": {"X-Api-Key": gpu.api_key}},
        {"headers": {"Cookie": f"session={gpu.api_key}"}},
        {"params": {"key": gpu.api_key}},
    ]
    for carrier in carriers:
        assert (await storage.get(url, **carrier)).status_code == 400, carrier
    assert (await storage.get(url)).status_code == 200
    assert gpu.stats.storage_requests_with_authorization == len(carriers)


async def test_a_put_is_signed_for_its_content_type_and_its_expiry(
    gpu: GPUGeekEmulator, api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    signed = data_of(await api.get(G.PRESIGN_PATH, params={"file_name": "s.png"}))["signed_url"]
    png = render_image(8, 8, 1, "")
    wrong_type = await storage.put(signed, content=png, headers={"Content-Type": "image/png"})
    assert wrong_type.status_code == 403 and "SignatureDoesNotMatch" in wrong_type.text
    decoded = await storage.put(httpx.URL(unquote(signed)), content=png,
                                headers={"Content-Type": G.UPLOAD_CONTENT_TYPE})
    assert decoded.status_code == 403  # a percent-decoded signature no longer matches
    gpu.advance_clock(GPUGEEK_PRESIGN_TTL_SECONDS + 120)
    late = await storage.put(signed, content=png, headers={"Content-Type": G.UPLOAD_CONTENT_TYPE})
    assert late.status_code == 403 and "expired" in late.text
    assert gpu.stats.uploads == 0


@pytest.mark.parametrize(
    ("oss_url", "named"),
    [
        (None, "oss_url must be"),
        ("", "oss_url must be"),
        ("https://example.com/comfy/input/a.png", "is not an upload URL"),
        ("{storage}/comfy/input/a.png?Expires=1&Signature=x", "without its query"),
        ("{storage}/comfy/input/never.png", "nothing was uploaded"),
        ("{storage}/elsewhere/a.png", "is not an upload URL"),
    ],
)
async def test_commit_refusals(gpu: GPUGeekEmulator, api: httpx.AsyncClient, oss_url: str | None, named: str) -> None:
    body = {"oss_url": oss_url.format(storage=gpu.storage_url) if oss_url else oss_url}
    assert named in refusal(await api.post(G.COMMIT_PATH, json=body))
    assert gpu.stats.commits == 0


async def test_an_upload_over_the_limit_is_413_and_a_client_that_hangs_up_is_let_go(
    storage: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with Emulator(service="gpugeek", max_upload_bytes=1000) as small, bearer_client(
        small.base_url, small.api_key
    ) as api:
        signed = data_of(await api.get(G.PRESIGN_PATH, params={"file_name": "big.png"}))["signed_url"]
        big = await storage.put(signed, content=b"x" * 2000, headers={"Content-Type": G.UPLOAD_CONTENT_TYPE})
        assert big.status_code == 413 and "EntityTooLarge" in big.text
        await hang_up_mid_put(signed)

        def settled() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "went away" in r.getMessage() or r.levelno >= logging.ERROR]

        await eventually(lambda: bool(settled()), what="the object store to notice the client leave")
        assert [r.levelno for r in settled()] == [logging.DEBUG]
        assert small.stats.uploads == 0


async def hang_up_mid_put(signed: str) -> None:
    """Start a PUT whose body (900 bytes, says Content-Length) stops after 4, then hang up."""
    where = urlsplit(signed)
    assert where.hostname is not None and where.port is not None
    _, writer = await asyncio.open_connection(where.hostname, where.port)
    writer.write(f"PUT {where.path}?{where.query} HTTP/1.1\r\nHost: {where.netloc}\r\n"
                 f"Content-Type: {G.UPLOAD_CONTENT_TYPE}\r\nContent-Length: 900\r\n\r\n\x89PNG".encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


# --- auth, envelopes, faults ----------------------------------------------------------------------------------------


async def test_every_api_call_needs_the_bearer_key(gpu: GPUGeekEmulator) -> None:
    calls = [("POST", G.SUBMIT_PATH), ("GET", G.TASK_PATH.format(prompt_id=1)), ("POST", G.CANCEL_PATH),
             ("GET", G.PRESIGN_PATH), ("POST", G.COMMIT_PATH), ("GET", "/_emulator/stats")]
    async with httpx.AsyncClient(base_url=gpu.base_url, trust_env=False) as anonymous:
        for method, path in calls:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": gpu.api_key}):
                assert "API key" in refusal(await anonymous.request(method, path, json={}, headers=headers), 401)
    assert gpu.stats.unauthorized == len(calls) * 3


async def test_an_injected_5xx_can_be_an_nginx_page(gpu: GPUGeekEmulator, api: httpx.AsyncClient) -> None:
    gpu.set_faults(http_error_rate=1.0, http_error_status=502, http_error_html=True, endpoints={"task"})
    response = await api.get(G.TASK_PATH.format(prompt_id=1))
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text and "nginx" in response.text
    gpu.set_faults(http_error_rate=1.0, http_error_status=503)
    assert refusal(await api.get(G.PRESIGN_PATH, params={"file_name": "a.png"}), 503)  # an envelope by default
    assert gpu.stats.http_errors_injected == 2


async def test_the_rate_limit_answers_429_with_retry_after(gpu: GPUGeekEmulator, api: httpx.AsyncClient) -> None:
    gpu.set_faults(rate_limit=0.5, rate_limit_burst=1, endpoints={"task"})
    assert (await api.get(G.TASK_PATH.format(prompt_id=1))).status_code == 404  # served: the one token
    limited = await api.get(G.TASK_PATH.format(prompt_id=1))
    assert "too many requests" in refusal(limited, 429) and int(limited.headers["retry-after"]) in (1, 2)
    assert (await api.get(G.PRESIGN_PATH, params={"file_name": "a.png"})).status_code == 200  # not in scope
    assert gpu.stats.rate_limited == 1


async def test_storage_faults_reach_the_object_store_only_when_named(
    gpu: GPUGeekEmulator, api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    gpu.set_faults(http_error_rate=1.0)  # every API endpoint, not the object store
    assert (await api.get(G.PRESIGN_PATH, params={"file_name": "a.png"})).status_code == 500
    gpu.set_faults()
    signed = data_of(await api.get(G.PRESIGN_PATH, params={"file_name": "a.png"}))["signed_url"]
    gpu.set_faults(http_error_rate=1.0)
    png = render_image(8, 8, 1, "")
    assert (await storage.put(signed, content=png, headers={"Content-Type": G.UPLOAD_CONTENT_TYPE})).status_code == 200
    gpu.set_faults(http_error_rate=1.0, http_error_status=503, endpoints={"upload_put"})
    failed = await storage.put(signed, content=png, headers={"Content-Type": G.UPLOAD_CONTENT_TYPE})
    assert failed.status_code == 503 and "<Code>InternalError</Code>" in failed.text


async def test_fail_tasks_and_workflow_faults_by_integer_id(gpu: GPUGeekEmulator, api: httpx.AsyncClient) -> None:
    gpu.set_workflow_faults(I2I, fail_tasks="CUDA out of memory")
    failing = await submit(api, with_image("https://example.com/a.png"), I2I)
    info = await gpu.wait_status(failing, 4)
    assert (info["status"], info["error_msg"], info["result_url"]) == (4, "CUDA out of memory", {})
    assert (await gpu.wait_status(await submit(api, export("t2i")), 3))["error_msg"] == ""
    with pytest.raises(EmulatorError, match=r"ended with status 4 \(error_msg 'CUDA out of memory'\)"):
        await gpu.wait_status(await submit(api, with_image("https://example.com/a.png"), I2I), 3)


def test_faults_gpugeek_cannot_apply_are_refused_by_name() -> None:
    with pytest.raises(FaultError, match="ws_drop_after does not apply to the GPUGeek emulator"):
        Emulator(service="gpugeek", faults=Faults(ws_drop_after=1))
    emulator = Emulator(service="gpugeek")
    for refused in ({"deny_tasks": True}, {"tutorial_shapes": True}, {"endpoints": {"task_info"}}):
        with pytest.raises(FaultError):
            emulator.set_faults(**refused)
    with pytest.raises(FaultError, match="presign_field does not apply to the GenStudio emulator"):
        Emulator().set_faults(presign_field="signedUrl")
    with pytest.raises(FaultError, match="GenStudio has no presign"):
        Emulator().set_faults(endpoints={"presign"})
    with pytest.raises(FaultError, match="presign_field must be one of"):
        Faults(presign_field="url")
    assert {"task", "presign", "commit", "upload_put", "storage"} <= ENDPOINTS


async def test_admin_routes_speak_gpugeek(gpu: GPUGeekEmulator, api: httpx.AsyncClient) -> None:
    stats = data_of(await api.get("/_emulator/stats"))
    assert stats["submits"] == 0
    mine = export("t2i")
    workflows = data_of(await api.post("/_emulator/workflows", json={"workflow_id": 5, "workflow": mine}))
    assert 5 in workflows["workflows"] and isinstance(gpu.workflow(5), ApiWorkflow)
    assert "workflow_id" in refusal(await api.post("/_emulator/workflows", json={"workflow_id": "5", "workflow": mine}))
    assert "workflow" in refusal(await api.post("/_emulator/workflows", json={"workflow_id": 6, "workflow": {"1": 2}}))
    faults = data_of(await api.post("/_emulator/faults", json={"workflow_id": 5, "faults": {"fail_tasks": "x"}}))
    assert faults["workflows"]["5"]["fail_tasks"] == "x"
    assert "ws_junk" in refusal(await api.post("/_emulator/faults", json={"faults": {"ws_junk": True}}))
    assert (await gpu.wait_status(await submit(api, mine, 5), 4))["error_msg"] == "x"


# --- the Emulator object ------------------------------------------------------------------------------------------


async def test_the_emulator_object_for_gpugeek(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(export("t2i")), encoding="utf-8")
    emulator: GPUGeekEmulator = Emulator(service="gpugeek", builtin_workflows=False, workflows={9: path})
    assert emulator.workflow_ids == [9] and emulator.service_name == "GPUGeek"
    assert emulator.register_workflow(10, export("i2i")).nodes["10"].class_type == "LoadImage"
    with pytest.raises(ValueError, match="positive integer"):
        emulator.register_workflow("wf-x", export("t2i"))  # a GenStudio id on GPUGeek
    with pytest.raises(KeyError):
        emulator.workflow(T2I)
    async with emulator:
        assert repr(emulator).startswith(f"<Emulator {emulator.base_url} service=GPUGeek")
        with pytest.raises(EmulatorError, match="no WebSocket"):
            _ = emulator.ws_url
    assert set(Emulator(service="gpugeek").workflow_ids) == set(GPUGEEK_BUILTIN_WORKFLOW_IDS) == {T2I, I2I}
    with pytest.raises(ValueError, match="unknown service 'comfy'"):
        Emulator(service="comfy")


async def test_the_sdk_client_runs_a_workflow_against_it(gpu: GPUGeekEmulator, tmp_path: Path) -> None:
    from genstudio_async import AsyncGPUGeek

    source = tmp_path / "fox.png"
    source.write_bytes(render_image(40, 30, 2, "fox"))
    async with gpu.client() as client:
        assert isinstance(client, AsyncGPUGeek)
        prompt = copy.deepcopy(export("i2i"))
        prompt["10"]["inputs"]["image"] = await client.upload_image(source)
        result = await client.run(str(I2I), prompt, timeout=10)
        [path] = await client.download(result, tmp_path / "out")
    assert decode_png(path.read_bytes())[:2] == (40, 30)
    assert gpu.stats.storage_requests_with_authorization == 0 and gpu.stats.commits == 1
