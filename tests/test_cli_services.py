"""Which service a command talks to: ``--service``, else ``GENSTUDIO_SERVICE``, else GenStudio (in-process)."""

from __future__ import annotations

import pytest

from genstudio_async._cli.services import GENSTUDIO, GPUGEEK, profile_of
from genstudio_async._services import GenStudio, GPUGeek
from genstudio_async.cli import build_parser

COMMANDS = (
    ["demo"],
    ["run", "1"],
    ["batch", "jobs.jsonl"],
    ["watch", "1"],
    ["status", "1"],
    ["cancel", "1"],
    ["upload", "fox.png"],
    ["emulator"],
)


def test_every_command_takes_the_service_from_the_variable_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENSTUDIO_SERVICE", raising=False)
    for argv in COMMANDS:
        assert build_parser().parse_args(argv).service == "genstudio", argv
    monkeypatch.setenv("GENSTUDIO_SERVICE", "GPUGeek")  # as a user may spell it
    for argv in COMMANDS:
        assert build_parser().parse_args(argv).service == "gpugeek", argv
        assert build_parser().parse_args([*argv, "--service", "genstudio"]).service == "genstudio", argv
    assert profile_of(build_parser().parse_args(["status", "1"])) is GPUGEEK


def test_a_service_the_command_does_not_know_is_a_usage_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GENSTUDIO_SERVICE", "comfy")
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["status", "1"])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "expected genstudio or gpugeek (from --service or $GENSTUDIO_SERVICE), got 'comfy'" in error
    monkeypatch.delenv("GENSTUDIO_SERVICE")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "1", "--service", "comfy"])


def test_each_profile_reads_its_services_own_wire_and_workflow_ids() -> None:
    assert GENSTUDIO.service is GenStudio and GPUGEEK.service is GPUGeek
    assert GPUGEEK.environment.api_key == "GPUGEEK_API_KEY" and GENSTUDIO.environment.api_key == "GENSTUDIO_API_KEY"
    assert [GPUGEEK.workflow_id(value) for value in (763311996779461, " 42 ", "0", 0, -3, True, "4x", "٣", 1.5)] == [
        763311996779461, 42, None, None, None, None, None, None, None,
    ]
    assert [GENSTUDIO.workflow_id(value) for value in (" wf-x ", "", "  ", 7, None)] == ["wf-x", None, None, None, None]
