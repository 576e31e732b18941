"""The emulator's HTTP API, as a client sees it: envelopes, auth, the task lifecycle, cancel, upload, admin."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import Emulator
from genstudio_async.emulator import _defaults as ED
from genstudio_async.emulator._png import render_image
from tests.support import decode_png, eventually

from .support import I2I, T2I, TUTORIAL, Submit, task_info

TASK_ID = re.compile(r"^cft-[a-z0-9]{16}$")


def jwt_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return claims


async def test_submit_answers_a_prompt_id_and_a_jwt_prompt_token(emu: Emulator, api: httpx.AsyncClient) -> None:
    response = await api.post(GS.SUBMIT_PATH, json={"workflow_id": T2I})
    assert response.status_code == 200
    envelope = response.json()
    assert (envelope["code"], envelope["msg"]) == (0, "Success")
    data = envelope["data"]
    assert TASK_ID.match(data["prompt_id"])
    claims = jwt_claims(data["prompt_token"])
    assert claims["task_id"] == data["prompt_id"] and claims["iss"] == "infini"
    assert claims["tenant_id"] == ED.EMULATOR_TENANT_ID
    assert abs(claims["exp"] - (emu.service.clock.now() + 24 * 3600)) < 5
    assert emu.stats.submits == 1


async def test_every_http_call_needs_the_bearer_key(emu: Emulator) -> None:
    refusals = 0
    async with httpx.AsyncClient(base_url=emu.base_url, trust_env=False) as anonymous:
        for path in (GS.SUBMIT_PATH, GS.TASK_INFO_PATH, GS.CANCEL_PATH, GS.UPLOAD_PATH, "/_emulator/stats"):
            for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": emu.api_key},
                            {"Authorization": f"Basic {emu.api_key}"}):
                method = "GET" if path.endswith("stats") else "POST"
                response = await anonymous.request(method, path, json={}, headers=headers)
                assert response.status_code == 401, (path, headers)
                envelope = response.json()
                assert envelope["code"] != 0 and envelope["msg"]
                assert re.fullmatch(r"[0-9a-f]{32}", envelope["traceid"])
                refusals += 1
    assert emu.stats.unauthorized == refusals
    assert emu.stats.submits == 0


async def test_malformed_json_is_http_400_with_an_envelope(api: httpx.AsyncClient) -> None:
    for path in (GS.SUBMIT_PATH, GS.TASK_INFO_PATH, GS.CANCEL_PATH):
        response = await api.post(path, content=b'{"workflow_id": ', headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        envelope = response.json()
        assert envelope["code"] != 0 and "JSON" in envelope["msg"] and envelope["traceid"]


async def test_unknown_route_and_wrong_method_get_envelopes(api: httpx.AsyncClient) -> None:
    missing = await api.post("/api/maas/comfy_task_api/nope", json={})
    assert missing.status_code == 404 and missing.json()["code"] == 404
    wrong = await api.get(GS.SUBMIT_PATH)
    assert wrong.status_code == 405 and wrong.json()["code"] == 405


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "workflow_id"),
        ({"workflow_id": 7}, "workflow_id"),
        ({"workflow_id": "wf-unknown"}, "wf-unknown"),
        ([1, 2], "JSON object"),
        ({"workflow_id": T2I, "prompt": [1]}, "mapping of node ids"),
        ({"workflow_id": T2I, "prompt": {"99": {"inputs": {}}}}, "node '99': unknown node"),
        ({"workflow_id": T2I, "prompt": {"3": {"inputs": {"colour": 1}}}}, "input 'colour': unknown input"),
        ({"workflow_id": T2I, "prompt": {"3": {"inputs": {"steps": "20"}}}}, "input 'steps': expected an integer"),
        ({"workflow_id": T2I, "prompt": {"3": {"inputs": {"steps": 0}}}}, "input 'steps': 0 is below the minimum 1"),
        ({"workflow_id": T2I, "prompt": {"3": {"inputs": {"scheduler": "fast"}}}}, "'fast' is not one of the allowed"),
        ({"workflow_id": I2I, "prompt": {"10": {"inputs": {"image": "te-x/ac-y/sui-never-uploaded.png"}}}},
         "node '10' (Load Image) input 'image': image 'te-x/ac-y/sui-never-uploaded.png' was not uploaded"),
    ],
)
async def test_submit_refusals_are_http_200_with_a_code_and_a_msg_naming_the_culprit(
    emu: Emulator, api: httpx.AsyncClient, body: Any, named: str
) -> None:
    response = await api.post(GS.SUBMIT_PATH, json=body)
    assert response.status_code == 200
    envelope = response.json()
    assert envelope["code"] != 0 and named in envelope["msg"] and envelope["traceid"]
    assert emu.stats.submits == 0 and emu.task_ids() == []


async def test_a_refused_prompt_lists_every_problem(api: httpx.AsyncClient) -> None:
    prompt = {"3": {"inputs": {"steps": 0, "cfg": -1}}, "5": {"inputs": {"width": 1.5}}, "8": {"inputs": {}}}
    envelope = (await api.post(GS.SUBMIT_PATH, json={"workflow_id": T2I, "prompt": prompt})).json()
    problems = envelope["data"]["problems"]
    assert {(p["node_id"], p["input"]) for p in problems} == {("3", "steps"), ("3", "cfg"), ("5", "width"), ("8", None)}
    assert all(p["problem"] for p in problems)


async def test_queued_tasks_have_fifo_positions_and_files_none(emu: Emulator, submit: Submit,
                                                                api: httpx.AsyncClient) -> None:
    emu.pause()
    ids = [(await submit())["prompt_id"] for _ in range(3)]
    infos = await task_info(api, *ids)
    assert [info["comfy_task_id"] for info in infos] == ids
    for position, info in enumerate(infos, start=1):
        assert info == {
            "comfy_task_id": ids[position - 1], "status": 1, "queue_size": 3, "current_position": position,
            "errMsg": "", "files": "None", "progress_num": 0,
        }
    emu.resume()
    await emu.wait_status(ids[0], 2)
    second = (await task_info(api, ids[1]))[0]
    assert second["status"] in (1, 2)


async def test_running_then_succeeded_with_files_of_node_9(emu: Emulator, submit: Submit,
                                                           api: httpx.AsyncClient) -> None:
    emu.set_timing(steps=4, step_seconds=0.05)
    task_id = (await submit())["prompt_id"]
    running = await emu.wait_status(task_id, 2)
    assert running["files"] == {} and running["final_files"] == [] and running["current_position"] == 0
    done = await emu.wait_status(task_id, 3)
    info = (await task_info(api, task_id))[0]
    assert info["status"] == 3 and info["progress_num"] == 100 and info["errMsg"] == ""
    assert list(info["files"]) == ["9"] and len(info["files"]["9"]) == 1
    assert info["final_files"] == info["files"]["9"]
    assert (info["queue_size"], info["current_position"]) == (0, 0)
    assert done["status"] == 3


async def test_progress_advances_in_steps(emu: Emulator, submit: Submit, api: httpx.AsyncClient) -> None:
    emu.set_timing(steps=4, step_seconds=0.05)
    task_id = (await submit())["prompt_id"]
    seen = set()
    while (info := (await task_info(api, task_id))[0])["status"] != 3:
        seen.add(info["progress_num"])
    assert seen <= {0, 25, 50, 75} and len(seen) >= 2


async def test_task_info_asks_for_many_ids_at_once_and_omits_unknown_ones(
    emu: Emulator, submit: Submit, api: httpx.AsyncClient
) -> None:
    ids = [(await submit())["prompt_id"] for _ in range(4)]
    infos = await task_info(api, ids[0], "cft-doesnotexist0000", ids[1], ids[2], ids[3], ids[0])
    assert [info["comfy_task_id"] for info in infos] == ids
    assert emu.stats.task_info_requests == 1 and emu.stats.task_ids_requested == 6


async def test_the_raw_body_escapes_ampersands_as_the_service_does(emu: Emulator, submit: Submit,
                                                                   api: httpx.AsyncClient) -> None:
    task_id = (await submit())["prompt_id"]
    await emu.wait_status(task_id, 3)
    raw = (await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": [task_id]})).text
    assert "&" not in raw and "\\u0026OSSAccessKeyId=" in raw and "\\u0026Signature=" in raw


async def test_result_urls_live_on_another_origin_with_the_oss_shape(emu: Emulator, submit: Submit,
                                                                     api: httpx.AsyncClient) -> None:
    task_id = (await submit())["prompt_id"]
    await emu.wait_status(task_id, 3)
    url = (await task_info(api, task_id))[0]["final_files"][0]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == emu.storage_url != emu.base_url
    assert re.fullmatch(rf"/te-emulator%2Fac-emulator%2F{task_id}%2F[0-9a-f-]{{36}}\.png", parts.path)
    query = dict(parse_qsl(parts.query))
    assert set(query) == {"Expires", "OSSAccessKeyId", "Signature"}
    assert "%2B" in parts.query  # always, so that decoding clients break every time


async def test_url_expire_period_sets_expires_and_each_call_mints_fresh_urls(
    emu: Emulator, submit: Submit, api: httpx.AsyncClient
) -> None:
    task_id = (await submit())["prompt_id"]
    await emu.wait_status(task_id, 3)
    now = int(emu.service.clock.now())
    default = (await task_info(api, task_id))[0]["final_files"][0]
    longer = (await task_info(api, task_id, url_expire_period=1000))[0]["final_files"][0]

    def expires(url: str) -> int:
        return int(dict(parse_qsl(urlsplit(url).query))["Expires"])

    assert 600 <= expires(default) - now <= 600 + 64 + 2
    assert 1000 <= expires(longer) - now <= 1000 + 64 + 2
    assert default.split("?")[0] == longer.split("?")[0] and default != longer


async def test_image_post_process_cmd_adds_a_signed_x_oss_process(emu: Emulator, submit: Submit,
                                                                   api: httpx.AsyncClient) -> None:
    task_id = (await submit())["prompt_id"]
    await emu.wait_status(task_id, 3)
    infos = await task_info(api, task_id, image_post_process_cmd={"format": "jpg", "quality": {"q": 80}})
    url = infos[0]["final_files"][0]
    assert url.endswith("&x-oss-process=image%2Fformat%2Cjpg%2Fquality%2Cq_80")  # as OSS's SDK writes it
    async with httpx.AsyncClient(trust_env=False) as storage:
        assert (await storage.get(url)).status_code == 200
        stripped = url.replace("&x-oss-process=image%2Fformat%2Cjpg%2Fquality%2Cq_80", "")
        assert (await storage.get(stripped)).status_code == 403


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"comfy_task_ids": "cft-1"}, "comfy_task_ids"),
        ({"comfy_task_ids": ["cft-1", 2]}, "comfy_task_ids[1]"),
        ({"comfy_task_ids": [], "url_expire_period": 0}, "url_expire_period"),
        ({"comfy_task_ids": [], "url_expire_period": "600"}, "url_expire_period"),
        ({"comfy_task_ids": [], "image_post_process_cmd": {"format": "tga"}}, "image_post_process_cmd.format"),
        ({"comfy_task_ids": [], "image_post_process_cmd": {"quality": {"q": 101}}}, "quality.q"),
        ({"comfy_task_ids": [], "image_post_process_cmd": {"resize": 1}}, "'resize'"),
    ],
)
async def test_task_info_refusals_name_the_field(api: httpx.AsyncClient, extra: dict[str, Any], named: str) -> None:
    envelope = (await api.post(GS.TASK_INFO_PATH, json=extra)).json()
    assert envelope["code"] != 0 and named in envelope["msg"]


async def test_batch_size_makes_that_many_images_of_the_asked_size(
    emu: Emulator, submit: Submit, api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    prompt = {"5": {"inputs": {"width": 64, "height": 48, "batch_size": 3}}}
    task_id = (await submit(TUTORIAL, prompt))["prompt_id"]
    await emu.wait_status(task_id, 3)
    urls = (await task_info(api, task_id))[0]["files"]["9"]
    assert len(urls) == 3
    images = [(await storage.get(url)).content for url in urls]
    assert {decode_png(image)[:2] for image in images} == {(64, 48)}
    assert len(set(images)) == 3  # each image of the batch is drawn from its own seed


async def test_cancel_a_queued_task(emu: Emulator, submit: Submit, api: httpx.AsyncClient) -> None:
    emu.pause()
    first, second = (await submit())["prompt_id"], (await submit())["prompt_id"]
    response = await api.post(GS.CANCEL_PATH, json={GS.CANCEL_BODY_FIELD: first})
    assert response.json() == {"code": 0, "msg": "Success", "data": {}}
    infos = {info["comfy_task_id"]: info for info in await task_info(api, first, second)}
    assert infos[first]["status"] == 4 and infos[first]["errMsg"] == ""
    assert (infos[second]["status"], infos[second]["current_position"], infos[second]["queue_size"]) == (1, 1, 1)
    assert emu.stats.cancels == 1


async def test_cancel_a_running_task_and_the_worker_lets_it_be(emu: Emulator, submit: Submit,
                                                                api: httpx.AsyncClient) -> None:
    emu.set_timing(steps=5, step_seconds=0.05)
    task_id = (await submit())["prompt_id"]
    await emu.wait_status(task_id, 2)
    await api.post(GS.CANCEL_PATH, json={GS.CANCEL_BODY_FIELD: task_id})
    assert (await emu.wait_status(task_id, 4))["files"] == {}
    follow_up = (await submit())["prompt_id"]
    await emu.wait_status(follow_up, 3)
    assert (await task_info(api, task_id))[0]["status"] == 4


async def test_cancel_of_an_ended_task_is_a_no_op_and_of_an_unknown_one_an_error(
    emu: Emulator, submit: Submit, api: httpx.AsyncClient
) -> None:
    task_id = (await submit())["prompt_id"]
    await emu.wait_status(task_id, 3)
    again = (await api.post(GS.CANCEL_PATH, json={GS.CANCEL_BODY_FIELD: task_id})).json()
    assert again["code"] == 0 and (await task_info(api, task_id))[0]["status"] == 3
    unknown = (await api.post(GS.CANCEL_PATH, json={GS.CANCEL_BODY_FIELD: "cft-nosuchtask00000"})).json()
    assert unknown["code"] != 0 and "cft-nosuchtask00000" in unknown["msg"]
    missing = (await api.post(GS.CANCEL_PATH, json={"prompt_id": task_id})).json()
    assert missing["code"] != 0 and GS.CANCEL_BODY_FIELD in missing["msg"]


async def test_upload_keeps_the_extension_and_the_image_feeds_image_to_image(
    emu: Emulator, submit: Submit, api: httpx.AsyncClient, storage: httpx.AsyncClient
) -> None:
    png = render_image(80, 40, seed=1, text="input")
    response = await api.post(GS.UPLOAD_PATH, files={GS.UPLOAD_FIELD: ("spiderman-in-red-suit.png", png, "image/png")})
    image_id = response.json()["data"]["image_id"]
    assert re.fullmatch(r"te-emulator/ac-emulator/sui-[a-z0-9]{16}\.png", image_id)
    jpeg_file = ("photo.JPEG", b"\xff\xd8\xff\xe0data", "image/jpeg")
    jpeg = await api.post(GS.UPLOAD_PATH, files={GS.UPLOAD_FIELD: jpeg_file})
    assert jpeg.json()["data"]["image_id"].endswith(".jpeg")
    bare = await api.post(GS.UPLOAD_PATH, files={GS.UPLOAD_FIELD: ("noext", png, "application/octet-stream")})
    assert bare.json()["data"]["image_id"].endswith(".png")  # guessed from the bytes
    assert emu.service.objects.upload(image_id) is not None
    assert emu.service.objects.upload(image_id).data == png  # type: ignore[union-attr]

    task_id = (await submit(I2I, {"10": {"inputs": {"image": image_id}}}))["prompt_id"]
    await emu.wait_status(task_id, 3)
    url = (await task_info(api, task_id))[0]["files"]["9"][0]
    assert decode_png((await storage.get(url)).content)[:2] == (80, 40)  # the uploaded PNG's size

    by_url = (await submit(I2I, {"10": {"inputs": {"image": "https://example.com/in.png"}}}))["prompt_id"]
    await emu.wait_status(by_url, 3)
    url = (await task_info(api, by_url))[0]["files"]["9"][0]
    assert decode_png((await storage.get(url)).content)[:2] == (512, 512)
    assert emu.stats.uploads == 3


async def test_upload_refusals(api: httpx.AsyncClient) -> None:
    wrong_field = (await api.post(GS.UPLOAD_PATH, files={"file": ("a.png", b"x", "image/png")})).json()
    assert wrong_field["code"] != 0 and GS.UPLOAD_FIELD in wrong_field["msg"]
    not_multipart = (await api.post(GS.UPLOAD_PATH, json={"source_file": "x"})).json()
    assert not_multipart["code"] != 0 and GS.UPLOAD_FIELD in not_multipart["msg"]
    empty = (await api.post(GS.UPLOAD_PATH, files={GS.UPLOAD_FIELD: ("a.png", b"", "image/png")})).json()
    assert empty["code"] != 0 and GS.UPLOAD_FIELD in empty["msg"]


@pytest.mark.genstudio_emulator(max_upload_bytes=1000)
async def test_an_upload_over_the_limit_is_413(api: httpx.AsyncClient) -> None:
    response = await api.post(GS.UPLOAD_PATH, files={GS.UPLOAD_FIELD: ("a.png", b"x" * 2000, "image/png")})
    assert response.status_code == 413 and response.json()["code"] == 413


async def test_register_a_workflow_of_ones_own(emu: Emulator, submit: Submit, api: httpx.AsyncClient) -> None:
    spec = {
        "1": {"inputs": {"prompt": {"type": "STRING", "current": "hi", "spec": {}},
                         "width": {"type": "INT", "current": 32, "spec": {"min": 8, "max": 64}},
                         "height": {"type": "INT", "current": 16, "spec": {"min": 8, "max": 64}}},
              "class_type": "MyLatent", "_meta": {"title": "Mine"}},
        "20": {"inputs": {}, "class_type": "SaveImage", "_meta": {"title": "Out"}},
    }
    emu.register_workflow("wf-mine", spec)
    refused = (await api.post(GS.SUBMIT_PATH, json={"workflow_id": "wf-mine",
                                                   "prompt": {"1": {"inputs": {"width": 65}}}})).json()
    assert refused["code"] != 0 and "node '1' (Mine) input 'width'" in refused["msg"]
    task_id = (await submit("wf-mine", {"1": {"inputs": {"width": 24}}}))["prompt_id"]
    info = await emu.wait_status(task_id, 3)
    assert list(info["files"]) == ["20"]


async def test_admin_routes_drive_the_emulator_from_another_process(emu: Emulator, api: httpx.AsyncClient,
                                                                    submit: Submit) -> None:
    prefix = ED.EMULATOR_ADMIN_PATH_PREFIX
    assert (await api.post(f"{prefix}/pause")).json()["data"] == {"paused": True}
    assert emu.paused
    task_id = (await submit())["prompt_id"]
    assert (await task_info(api, task_id))[0]["status"] == 1
    assert (await api.post(f"{prefix}/resume")).json()["data"] == {"paused": False}
    await emu.wait_status(task_id, 3)

    faults = (await api.post(f"{prefix}/faults", json={"faults": {"ws_drop_after": "2", "ws_junk": True}})).json()
    assert faults["data"]["faults"]["ws_drop_after"] == 2 and emu.faults.ws_junk
    per_wf = await api.post(f"{prefix}/faults", json={"workflow_id": T2I, "faults": {"deny_tasks": True}})
    assert per_wf.json()["data"]["workflows"][T2I]["deny_tasks"] is True
    bad = (await api.post(f"{prefix}/faults", json={"faults": {"nope": 1}})).json()
    assert bad["code"] != 0 and "nope" in bad["msg"]
    assert (await api.delete(f"{prefix}/faults")).json()["data"]["workflows"] == {}

    stats = (await api.get(f"{prefix}/stats")).json()["data"]
    assert stats["submits"] == 1 and stats["requests"]["submit"] == 1 and stats["requests"]["admin"] >= 5
    assert (await api.post(f"{prefix}/stats/reset")).json()["data"]["submits"] == 0

    registered = await api.post(f"{prefix}/workflows", json={"workflow_id": "wf-x", "spec": {"1": {"inputs": {}}}})
    assert "wf-x" in registered.json()["data"]["workflows"]
    bad_spec = (await api.post(f"{prefix}/workflows", json={"workflow_id": "wf-y", "spec": {"1": 5}})).json()
    assert bad_spec["code"] != 0 and "node '1'" in bad_spec["msg"]

    clock = (await api.post(f"{prefix}/clock", json={"advance": 3600})).json()["data"]
    assert clock["offset"] == 3600
    timing = (await api.post(f"{prefix}/timing", json={"steps": 2, "step_seconds": 0.01})).json()["data"]
    assert timing == {"steps": 2, "step_seconds": 0.01}


async def test_an_emulator_bug_still_answers_with_an_envelope(
    emu: Emulator, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(body: object) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(emu.service, "task_info", broken)
    response = await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": []})
    assert response.status_code == 500
    assert response.json()["code"] == 500 and "RuntimeError" in response.json()["msg"]
    assert (await api.post(GS.SUBMIT_PATH, json={"workflow_id": T2I})).status_code == 200  # still serving


async def leave_mid_body(base_url: str, path: str, headers: dict[str, str], start: bytes) -> None:
    """Send a request whose body is cut short (Content-Length says 1000 bytes, only ``start`` arrives), then hang
    up."""
    where = urlsplit(base_url)
    assert where.hostname is not None and where.port is not None
    _, writer = await asyncio.open_connection(where.hostname, where.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in {"Host": where.netloc, **headers}.items())
    writer.write(f"POST {path} HTTP/1.1\r\n{head}Content-Length: 1000\r\n\r\n".encode() + start)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_a_client_that_hangs_up_mid_request_is_let_go_quietly(
    emu: Emulator, api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    json_head = {"Authorization": f"Bearer {emu.api_key}", "Content-Type": "application/json"}
    form_head = {**json_head, "Content-Type": "multipart/form-data; boundary=x"}
    form_start = b'--x\r\nContent-Disposition: form-data; name="source_file"; filename="a.png"\r\n\r\n\x89PNG'
    paths = {
        GS.SUBMIT_PATH: (json_head, b'{"workflow_i'),
        f"{ED.EMULATOR_ADMIN_PATH_PREFIX}/faults": (json_head, b'{"faults": {'),
        GS.UPLOAD_PATH: (form_head, form_start),
    }
    for path, (headers, start) in paths.items():
        await leave_mid_body(emu.base_url, path, headers, start)

    def settled() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "went away" in r.getMessage() or r.levelno >= logging.ERROR]

    await eventually(lambda: len(settled()) >= len(paths), what="the server to notice each client leave")
    assert [r.levelno for r in settled()] == [logging.DEBUG] * len(paths)  # no traceback, no ERROR line
    assert not any(r.exc_info for r in caplog.records)
    assert (await api.post(GS.SUBMIT_PATH, json={"workflow_id": T2I})).status_code == 200  # still serving
