"""The models: the wire quirks of ``TaskInfo``, and ``TaskStatus``, ``TaskResult``, ``Submission``, post-processing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from genstudio_async import ImagePostProcess, Submission, TaskInfo, TaskResult, TaskStatus
from genstudio_async._services.genstudio import parse_task_info

# The guide's submit answer: a real-looking JWT whose payload says exp 1728699963.
GUIDE_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0ZW5hbnRfaWQiOiJ0ZS1iOTA1NzU0NDI3MzUyMjYxIiwidGFza19pZCI6ImNmdC1jNzZ1"
    "anllemdlcDVwY2FsIiwiaXNzIjoiaW5maW5pIiwiZXhwIjoxNzI4Njk5OTYzfQ.yrWt9_tyKYH_0lZHuFG8l76ddFGgDMV68ZqdZtRAUHA"
)


def task(**fields: Any) -> TaskInfo:
    """A GenStudio task entry, read as the SDK reads it (``_services.genstudio``)."""
    return parse_task_info({"comfy_task_id": "cft-1", **fields})


# --- TaskInfo: the guide's own answer ---------------------------------------------------------------------


def test_guide_success_json_parses_with_urls_intact(guide_success: dict[str, str]) -> None:
    raw_entry = json.loads(guide_success["raw"])["data"]["comfy_task_info"][0]
    info = parse_task_info(raw_entry)

    assert info.prompt_id == "cft-c73e5ci6dwb5wfhl"
    assert info.status is TaskStatus.SUCCEEDED
    assert info.is_terminal
    assert info.progress == 100
    assert info.queue_position == 0
    assert info.queue_size == 0
    assert info.error_message is None
    # \u0026 in the JSON text is a plain "&"; the percent-escapes are the signature and stay exactly as sent.
    assert info.files == {"9": [guide_success["file_url"]]}
    assert info.final_files == [guide_success["final_url"]]
    for url in (*info.files["9"], *info.final_files):
        assert "\\u0026" not in url
        assert "%2F" in url and "%3D" in url
        assert "+" not in url and " " not in url
    assert "Signature=28hPa004ivIW4WX%2BpueVTvQcLXw%3D" in info.files["9"][0]
    assert TaskResult.from_info(info).outputs == [guide_success["final_url"]]


def test_task_info_speaks_python_names_and_accepts_them_too() -> None:
    wire = task(status=2, progress_num=45, current_position=3, queue_size=5, errMsg="boom")
    assert (wire.progress, wire.queue_position, wire.queue_size, wire.error_message) == (45, 3, 5, "boom")

    by_name = TaskInfo(prompt_id="cft-1", status=TaskStatus.RUNNING, progress=45, queue_position=3, queue_size=5)
    assert by_name.progress == 45 and by_name.queue_position == 3
    assert "progress" in by_name.model_dump() and "progress_num" not in by_name.model_dump()


# --- TaskInfo: every quirk ------------------------------------------------------------------------------


def test_files_as_the_string_none_means_no_files() -> None:
    info = task(status=2, files="None", final_files=[])
    assert info.files == {}
    assert TaskResult.from_info(info).outputs == []


def test_files_value_as_a_bare_string_becomes_a_list() -> None:
    info = task(status=3, files={"9": "https://oss.test/a.png?Expires=1&Signature=x%2By%3D"})
    assert info.files == {"9": ["https://oss.test/a.png?Expires=1&Signature=x%2By%3D"]}


def test_files_values_none_placeholders_are_dropped() -> None:
    info = task(status=2, files={"9": "None", "10": ["None", "", "https://oss.test/b.png"]}, final_files="None")
    assert info.files == {"9": [], "10": ["https://oss.test/b.png"]}
    assert info.final_files == []


def test_final_files_missing_is_an_empty_list() -> None:
    info = task(status=3, files={"9": ["https://oss.test/a.png"]})
    assert info.final_files == []


@pytest.mark.parametrize("err_msg", ["", None])
def test_empty_err_msg_is_no_error_message(err_msg: str | None) -> None:
    assert task(status=4, errMsg=err_msg).error_message is None


def test_err_msg_is_kept_as_error_message() -> None:
    assert task(status=4, errMsg="CUDA out of memory").error_message == "CUDA out of memory"


@pytest.mark.parametrize("wire_status", [9, 0, -1, "abc", None, 3.5e9, True, [3]])
def test_unknown_status_is_unknown_and_not_terminal(wire_status: Any) -> None:
    info = task(status=wire_status)
    assert info.status is TaskStatus.UNKNOWN
    assert not info.is_terminal


def test_status_sent_as_a_numeric_string_is_understood() -> None:
    assert task(status="3").status is TaskStatus.SUCCEEDED


def test_missing_status_is_unknown() -> None:
    assert parse_task_info({"comfy_task_id": "cft-1"}).status is TaskStatus.UNKNOWN


def test_unknown_extra_fields_are_kept() -> None:
    info = task(status=1, estimated_seconds=12, node_progress={"3": 0.5})
    assert info.model_extra == {"estimated_seconds": 12, "node_progress": {"3": 0.5}}


def test_progress_is_clamped_and_sloppy_counts_do_not_fail() -> None:
    assert task(progress_num=150).progress == 100
    assert task(progress_num=-5).progress == 0
    assert task(progress_num="45.0").progress == 45
    assert task(current_position=None, queue_size="n/a").queue_position == 0


# --- TaskStatus -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (TaskStatus.UNKNOWN, False),
        (TaskStatus.QUEUED, False),
        (TaskStatus.RUNNING, False),
        (TaskStatus.SUCCEEDED, True),
        (TaskStatus.FAILED, True),
        (TaskStatus.PERMISSION_DENIED, True),
    ],
)
def test_only_3_4_5_are_terminal(status: TaskStatus, terminal: bool) -> None:
    assert status.is_terminal is terminal
    assert task(status=int(status)).is_terminal is terminal


def test_status_numbers_match_the_service() -> None:
    assert [int(s) for s in (TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCEEDED)] == [1, 2, 3]
    assert int(TaskStatus.FAILED) == 4 and int(TaskStatus.PERMISSION_DENIED) == 5


# --- TaskResult -------------------------------------------------------------------------------------------


def test_outputs_are_final_files_when_present() -> None:
    result = TaskResult.from_info(
        task(
            status=3,
            files={"9": ["https://oss.test/a.png"], "12": ["https://oss.test/b.png"]},
            final_files=["https://oss.test/final.png"],
        )
    )
    assert result.outputs == ["https://oss.test/final.png"]
    assert result.prompt_id == "cft-1" and result.status is TaskStatus.SUCCEEDED


def test_outputs_fall_back_to_every_file() -> None:
    result = TaskResult.from_info(
        task(
            status=3,
            files={"9": ["https://oss.test/a.png"], "12": ["https://oss.test/b.png", "https://oss.test/c.png"]},
        )
    )
    assert result.outputs == ["https://oss.test/a.png", "https://oss.test/b.png", "https://oss.test/c.png"]


# --- Submission -------------------------------------------------------------------------------------------


def test_submission_round_trips_through_model_dump_and_json(make_jwt: Callable[..., str]) -> None:
    submission = Submission(prompt_id="cft-abc", prompt_token=make_jwt({"exp": 1728699963}))

    dumped = submission.model_dump()
    assert dumped == {"prompt_id": "cft-abc", "prompt_token": submission.prompt_token}
    assert Submission.model_validate(dumped) == submission
    assert Submission.model_validate_json(submission.model_dump_json()) == submission
    assert Submission(prompt_id=dumped["prompt_id"], prompt_token=dumped["prompt_token"]) == submission


def test_token_expires_at_reads_exp_without_verifying(make_jwt: Callable[..., str]) -> None:
    # A payload whose base64url form needs padding restored, and a signature nobody could verify.
    submission = Submission(prompt_id="cft-abc", prompt_token=make_jwt({"exp": 1728699963, "task_id": "cft-abc1"}))
    assert submission.token_expires_at == datetime(2024, 10, 12, 2, 26, 3, tzinfo=UTC)


def test_token_expires_at_of_the_guides_token() -> None:
    submission = Submission(prompt_id="cft-c73egpxvlvg76yjd", prompt_token=GUIDE_TOKEN)
    assert submission.token_expires_at == datetime.fromtimestamp(1728699963, tz=UTC)


def test_token_expired_compares_with_now(make_jwt: Callable[..., str]) -> None:
    assert Submission(prompt_id="p", prompt_token=make_jwt({"exp": 1})).token_expired
    assert not Submission(prompt_id="p", prompt_token=make_jwt({"exp": 32503680000})).token_expired  # year 3000
    assert not Submission(prompt_id="p", prompt_token="opaque-token").token_expired


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJIUzI1NiJ9.%%%not-base64%%%.sig",
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.sig",  # payload "not json"
        "eyJhbGciOiJIUzI1NiJ9.WzEsMiwzXQ.sig",  # payload [1,2,3]
        "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOiJ0b21vcnJvdyJ9.sig",  # {"exp":"tomorrow"}
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig",  # no exp
        "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjFlMzAwfQ.sig",  # {"exp":1e300}
        "eyJhbGciOiJIUzI1NiJ9.ñ.sig",
    ],
)
def test_malformed_token_has_no_expiry(token: str) -> None:
    submission = Submission(prompt_id="cft-abc", prompt_token=token)
    assert submission.token_expires_at is None
    assert not submission.token_expired


def test_submission_repr_and_str_show_only_a_token_prefix(make_jwt: Callable[..., str]) -> None:
    token = make_jwt({"exp": 1728699963, "task_id": "cft-abc"})
    submission = Submission(prompt_id="cft-abc", prompt_token=token)
    for text in (repr(submission), str(submission), f"{submission}", f"{submission!r}"):
        assert token not in text
        assert token[:7] not in text
        assert token[:6] in text  # a short, recognisable prefix
        assert "cft-abc" in text


def test_submission_rejects_empty_fields() -> None:
    with pytest.raises(ValueError, match="prompt_token"):
        Submission(prompt_id="cft-abc", prompt_token="")


# --- ImagePostProcess -------------------------------------------------------------------------------------


def test_image_post_process_wire_shape() -> None:
    assert ImagePostProcess(format="jpg", quality=80).to_wire() == {"format": "jpg", "quality": {"q": 80}}
    assert ImagePostProcess(format="webp", absolute_quality=90).to_wire() == {"format": "webp", "quality": {"Q": 90}}
    assert ImagePostProcess().to_wire() == {}


@pytest.mark.parametrize("quality", [0, 101])
def test_image_post_process_quality_out_of_range_is_refused(quality: int) -> None:
    with pytest.raises(ValueError, match="quality"):
        ImagePostProcess(format="jpg", quality=quality)
