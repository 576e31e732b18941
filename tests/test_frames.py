"""A progress frame read the plain way (``GenStudioSocket._plain_event``) is what pydantic makes of it, whatever
the server sends; and the plain way is the one taken for the frames the docs describe."""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
from typing import Any

import pytest

from genstudio_async._redact import Redactor
from genstudio_async._services.genstudio import GenStudioSocket
from genstudio_async.types import ProgressEvent, TaskStatus, same_model

PROMPT_ID = "cft-1"
SECRET = "sk-the-api-key-0123456789"
WS_URL = "wss://genstudio.test/api/maas/comfy_task_ws_api/get_task_progress"

# Values a hostile or broken server might put in each field, the documented ones first.
CHOICES: dict[str, list[Any]] = {
    "comfy_task_id": [PROMPT_ID, "cft-2", 1, None, ""],
    "status": [1, 2, 3, 4, 5, 0, 6, 99, -1, True, False, "2", 2.0, None, 2**70, [], {}],
    "progress_num": [0, 1, 50, 100, 101, -1, 12.5, "40", "x", True, None, 2**60, float("nan"), 10**400 // 10**300],
    "current_position": [0, 3, -2, 2**53, 2**53 + 1, -(2**53) - 1, 1.5, "7", None, True],
    "queue_size": [0, 10, 2**54, "3", 3.9, None, False],
    "errMsg": ["", "boom", f"leaked {SECRET}", None, 0, 7, ["a"], {"k": "v"}, "None"],
    "files": ["None", "", None, {}, {"9": ["https://oss.test/o/a.png?sig=1"]}, {"9": "https://oss.test/o/a.png"},
              {"9": ["", "None", 3, "https://oss.test/o/b.png"]}, {"9": None}, ["https://oss.test/o/c.png"], 5],
    "final_files": [[], ["https://oss.test/o/a.png?x=%2F"], "https://oss.test/o/a.png", "None", None, [1, None, ""],
                    {"a": 1}],
}
EXTRAS: list[tuple[str, Any]] = [
    ("_emulator_changed_ns", 123456789), ("trace", f"token {SECRET}"), ("nested", {"a": [SECRET, 1]}),
    ("flag", True), ("ratio", 0.5), ("progress", 77), ("source", "poll"), ("price", 3), ("none", None),
    (f"echo {SECRET}", 1),
]


def frames(count: int) -> list[dict[str, Any]]:
    rng = random.Random(1234)
    out = []
    for _ in range(count):
        raw: dict[str, Any] = {}
        keys = list(CHOICES)
        rng.shuffle(keys)
        for key in keys:
            if rng.random() < 0.85:
                values = CHOICES[key]
                # The documented value most of the time, so that the plain way is taken often.
                raw[key] = values[0] if rng.random() < 0.5 else rng.choice(values)
        for key, value in rng.sample(EXTRAS, rng.randint(0, 3)):
            raw[key] = value
        out.append(raw)
    return out


def socket() -> GenStudioSocket:
    redact = Redactor()
    redact.add(SECRET)
    return GenStudioSocket(WS_URL, redact)


def test_every_frame_is_read_as_pydantic_reads_it() -> None:
    sock = socket()
    plain_taken = 0
    for raw in frames(4000):
        expected = sock._validated(raw, PROMPT_ID)
        plain = sock._plain_event(raw, PROMPT_ID)
        if plain is not None:
            plain_taken += 1
            assert expected is not None, raw
            assert same_model(plain, expected), raw
            assert plain.model_dump() == expected.model_dump()
            assert list(plain.model_dump()) == list(expected.model_dump())  # the same order of fields
        got = sock.parse_frame(json.dumps({"comfy_task_info": raw}), PROMPT_ID)
        if expected is None:
            assert got is None, raw
        else:
            assert got is not None and same_model(got, expected), raw
        assert SECRET not in repr(got)
    assert sock._plain and sock._plain_checked  # no frame made the socket give the plain way up
    assert plain_taken > 400  # the corpus tries the plain way, not only pydantic's


def test_a_documented_frame_takes_the_plain_way(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket()
    frame = {"comfy_task_info": {"comfy_task_id": PROMPT_ID, "status": 2, "queue_size": 0, "current_position": 0,
                                 "errMsg": "", "progress_num": 40, "files": "None", "final_files": []}}
    first = sock.parse_frame(json.dumps(frame), PROMPT_ID)  # checked against pydantic once
    validations = []
    original = ProgressEvent.model_validate.__func__  # type: ignore[attr-defined]

    def counted(cls: type[ProgressEvent], *args: Any, **kwargs: Any) -> ProgressEvent:
        validations.append(1)
        return original(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(ProgressEvent, "model_validate", classmethod(counted))
    second = sock.parse_frame(json.dumps(frame), PROMPT_ID)
    assert validations == []
    assert first == second and second is not None
    assert second.status is TaskStatus.RUNNING and second.progress == 40 and second.source == "websocket"
    assert second.model_fields_set == first.model_fields_set if first is not None else False


def test_a_secret_in_a_plain_frame_is_masked() -> None:
    sock = socket()
    raw = {"comfy_task_id": PROMPT_ID, "status": 4, "progress_num": 10, "errMsg": f"failed with {SECRET}",
           "note": f"key={SECRET}"}
    assert sock._plain_event(raw, PROMPT_ID) is not None
    event = sock.parse_frame(json.dumps({"comfy_task_info": raw}), PROMPT_ID)
    assert event is not None and event.status is TaskStatus.FAILED
    assert SECRET not in str(event.error_message) and SECRET not in repr(event.model_extra)
    assert event.error_message and event.error_message.startswith("failed with")


def test_a_pydantic_that_builds_models_otherwise_keeps_the_slow_way(monkeypatch: pytest.MonkeyPatch) -> None:
    import genstudio_async._services.genstudio as gs
    import genstudio_async.types as types

    def unlike(plain: Any, validated: Any) -> bool:
        return False

    monkeypatch.setattr(types, "same_model", unlike)
    sock = socket()
    raw = {"comfy_task_id": PROMPT_ID, "status": 2, "progress_num": 10}
    event = sock.parse_frame(json.dumps({"comfy_task_info": raw}), PROMPT_ID)
    assert event is not None and event.progress == 10
    assert not sock._plain
    assert gs.GenStudioSocket(WS_URL, Redactor())._plain  # another client's socket checks for itself


def test_frames_of_many_shapes_are_remembered_up_to_a_bound() -> None:
    sock = socket()
    for index in range(100):
        raw = {"comfy_task_id": PROMPT_ID, "status": 2, "progress_num": 1, f"extra{index}": index}
        event = sock.parse_frame(json.dumps({"comfy_task_info": raw}), PROMPT_ID)
        assert event is not None and event.model_extra == {f"extra{index}": index}
    assert len(sock._shapes) <= 16
    wide = {"comfy_task_id": PROMPT_ID, "status": 2, **{f"k{i}": i for i in range(40)}}
    assert sock._plain_event(wide, PROMPT_ID) is None  # too many keys: pydantic reads it
    event = sock.parse_frame(json.dumps({"comfy_task_info": wide}), PROMPT_ID)
    assert event is not None and len(event.model_extra or {}) == 40


def test_a_socket_keeps_no_hostile_keys_once_their_frames_are_gone() -> None:
    """The shapes remembered live as long as the client: frames whose keys are huge (a hostile server can make
    each as large as a message may be) are read, and then nothing of them is held."""
    sock = socket()
    frames = [json.dumps({"comfy_task_info": {"comfy_task_id": PROMPT_ID, "status": 2, f"k{i}" + "x" * 2**18: i}})
              for i in range(16)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index, frame in enumerate(frames):
            event = sock.parse_frame(frame, PROMPT_ID)
            assert event is not None and list((event.model_extra or {}).values()) == [index]
        del event
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2**18, f"{held} bytes still held after 16 frames of 256 KiB keys"
    assert sock._plain and sock._plain_checked  # read the plain way all the same


def test_a_secret_in_a_fields_name_is_masked() -> None:
    sock = socket()
    raw = {"comfy_task_id": PROMPT_ID, "status": 2, "progress_num": 10, f"echo {SECRET}": 1, "plain": 2}
    event = sock.parse_frame(json.dumps({"comfy_task_info": raw}), PROMPT_ID)
    assert event is not None and event.progress == 10 and event.model_extra is not None
    assert SECRET not in repr(event) and SECRET not in repr(event.model_extra)
    assert event.model_extra["plain"] == 2 and len(event.model_extra) == 2
