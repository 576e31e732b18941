"""GPUGeek's wire read as the SDK's models: ids of either type, status 5, durations, price, time zone, result_url."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from genstudio_async import InvalidInputError, InvalidResponseError, TaskResult, TaskStatus
from genstudio_async._prompt import workflow_shape_problems
from genstudio_async._services.gpugeek import object_url, parse_task_info, upload_name

# The doc's own "获取任务详情" answer (data), as printed.
DOC_TASK = {
    "prompt_id": 763289064770885,
    "workflow_id": 763311996779461,
    "env_id": 763311996779461,
    "status": 2,
    "queue_duration": 10,
    "run_duration": 150,
    "result_url": {"property1": ["string"], "property2": ["string"]},
    "error_msg": "",
    "queue_size": 0,
    "current_position": 0,
    "origin_price": 0.11,
    "created_at": "2026-01-19 14:46:54",
}


def test_the_docs_task_answer_reads_into_typed_fields() -> None:
    info = parse_task_info(DOC_TASK)
    assert info.prompt_id == "763289064770885"  # an integer on the wire, a str here
    assert info.status is TaskStatus.RUNNING and info.progress == 0
    assert info.queue_duration == timedelta(milliseconds=10)
    assert info.run_duration == timedelta(milliseconds=150)
    assert info.price == pytest.approx(0.11)
    assert info.created_at == datetime(2026, 1, 19, 6, 46, 54, tzinfo=UTC)  # read as UTC+8
    assert info.created_at is not None and info.created_at.utcoffset() == timedelta(hours=8)
    assert info.workflow_id == "763311996779461"
    assert info.files == {"property1": ["string"], "property2": ["string"]}
    assert info.error_message is None
    assert info.model_extra == {"env_id": 763311996779461}  # what the SDK has no field for is kept


@pytest.mark.parametrize(
    ("wire", "status"),
    [(1, TaskStatus.QUEUED), (2, TaskStatus.RUNNING), (3, TaskStatus.SUCCEEDED), (4, TaskStatus.FAILED),
     (5, TaskStatus.CANCELLED), (6, TaskStatus.UNKNOWN), ("5", TaskStatus.CANCELLED), (None, TaskStatus.UNKNOWN)],
)
def test_status_five_is_a_cancellation_not_a_permission_problem(wire: Any, status: TaskStatus) -> None:
    info = parse_task_info({**DOC_TASK, "status": wire})
    assert info.status is status
    assert info.is_terminal == (status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED))


def test_a_success_is_full_progress_and_its_files_are_the_outputs() -> None:
    url = "https://oss.test/comfy/output/a.png?Expires=1&Signature=x%2By"
    info = parse_task_info({**DOC_TASK, "status": 3, "result_url": {"9": url}})  # a bare string, not a list
    assert info.progress == 100
    assert info.files == {"9": [url]}
    assert TaskResult.from_info(info).outputs == [url]


@pytest.mark.parametrize(
    "changes",
    [{"queue_duration": "10"}, {"run_duration": -5}, {"origin_price": "free"}, {"created_at": "yesterday"},
     {"created_at": 1737269214}, {"origin_price": float("nan")}, {"workflow_id": True}],
)
def test_odd_optional_fields_are_none_not_errors(changes: dict[str, Any]) -> None:
    info = parse_task_info({**DOC_TASK, **changes})
    (name,) = changes
    attribute = {"origin_price": "price"}.get(name, name)
    assert getattr(info, attribute) is None


@pytest.mark.parametrize("raw", [{}, {"prompt_id": ""}, {"prompt_id": True}, [], "task"])
def test_an_answer_naming_no_task_is_an_invalid_response(raw: Any) -> None:
    with pytest.raises(InvalidResponseError):
        parse_task_info(raw)


def test_the_commit_url_is_the_signed_url_without_its_query_and_never_decoded() -> None:
    signed = "https://oss.gpugeek.test/comfy/input/a%2Bb%20c.png?X-Amz-Signature=ab%2Bcd&X-Amz-Expires=600"
    assert object_url(signed) == "https://oss.gpugeek.test/comfy/input/a%2Bb%20c.png"


def test_two_images_of_one_name_get_two_object_names_and_one_image_one() -> None:
    assert upload_name("image.png", b"one") != upload_name("image.png", b"two")
    assert upload_name("image.png", b"one") == upload_name("image.png", b"one")
    assert upload_name("image.png", b"one").endswith("-image.png")


def test_an_overrides_only_prompt_is_refused_with_a_reason_that_says_so() -> None:
    problems = workflow_shape_problems({"6": {"inputs": {"text": "a red fox"}}})
    assert len(problems) == 1 and "class_type" in problems[0].problem
    assert "whole ComfyUI API-format workflow" in problems[0].problem


def test_a_whole_workflow_fits() -> None:
    workflow = {
        "1": {"inputs": {"image": "https://x.test/a.png"}, "class_type": "LoadImage", "_meta": {"title": "加载图像"}},
        "2": {"inputs": {"images": ["1", 0]}, "class_type": "PreviewImage", "_meta": {"title": "预览图像"}},
    }
    assert workflow_shape_problems(workflow) == []
    assert workflow_shape_problems({}) != []


def test_a_workflow_id_is_an_integer_or_a_string_of_digits() -> None:
    from genstudio_async._redact import Redactor
    from genstudio_async._services.gpugeek import GPUGeek

    service = GPUGeek.__new__(GPUGeek)
    service.redact = Redactor()
    assert service.workflow_id(763311996779461) == 763311996779461
    assert service.workflow_id(" 763311996779461 ") == 763311996779461
    for bad in ("wf-1", "", 0, "0", -3, True, 1.5, "٣"):
        with pytest.raises(InvalidInputError):
            service.workflow_id(bad)
