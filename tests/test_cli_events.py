"""``--events`` (``--json-stream``): JSON lines on stdout, each valid under the schema the package ships.

The installed command in a subprocess against the ``genstudio_emulator`` fixture; ``cli_support.event_lines``
validates every line against ``genstudio_async/_cli/event.schema.json``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from genstudio_async._cli.events import EventLog, schema_path
from genstudio_async._redact import Redactor
from genstudio_async.emulator import Emulator, Faults
from genstudio_async.types import Submission, TaskInfo, TaskStatus
from tests.cli_support import T2I, command_env, event_lines, genstudio, outcomes_by_job, pngs_under
from tests.support import no_crash


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    return {"workers": 4, "steps": 3, "step_seconds": 0.01}


async def test_run_events_validate_line_by_line_and_say_everything_the_display_did(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    done = await genstudio("run", T2I, "--events", "--out", "out", cwd=tmp_path, emulator=genstudio_emulator)
    assert done.returncode == 0, done.stderr
    events = event_lines(done.stdout)  # nothing but valid event lines on stdout
    [task] = genstudio_emulator.task_ids()
    kinds = [event["type"] for event in events]
    assert kinds[:2] == ["start", "submitted"] and kinds[-3:] == ["downloaded", "outcome", "end"]
    assert set(kinds[2:-3]) == {"progress"}
    assert events[0]["command"] == "run" and events[0]["service"] == "genstudio"
    progress = [event for event in events if event["type"] == "progress"]
    assert all(event["prompt_id"] == task and event["job"] is None for event in progress)
    assert [event["progress"] for event in progress] == sorted(event["progress"] for event in progress)
    assert progress[-1]["status"] == "succeeded" and progress[-1]["source"] == "websocket"
    states = [(e["status"], e["progress"], e["queue_position"], e["queue_size"]) for e in progress]
    assert len(states) == len(set(states))  # one line per change, never the same state twice
    [outcome] = outcomes_by_job(events, "prompt_id").values()
    [png] = pngs_under(tmp_path / "out")
    assert outcome["status"] == "succeeded" and outcome["paths"] == [str(png.relative_to(tmp_path))]
    assert events[-1]["exit_code"] == 0
    assert "eyJ" not in done.stdout  # no prompt token (a JWT) in any event
    assert "submitted" not in done.stderr and "saved" not in done.stderr  # no human display anywhere
    no_crash(done.stderr)
    for event in events:
        assert event["time"].endswith("Z")


@pytest.mark.genstudio_emulator(faults=Faults(fail_tasks="out of memory \x1b[2J\u202e\u009b sk-emulator"))
async def test_a_failed_run_ends_with_its_outcome_and_error_escaped_as_json(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    env = command_env(genstudio_emulator, dev_mode=False)
    done = await genstudio("run", T2I, "--json-stream", cwd=tmp_path, env=env)
    assert done.returncode == 1
    events = event_lines(done.stdout)
    outcome, error, end = events[-3:]
    assert outcome["type"] == "outcome" and outcome["status"] == "failed" and outcome["cancelled"] is False
    assert outcome["error"].startswith("task cft-") and "out of memory \x1b[2J\u202e\u009b" in outcome["error"]
    assert error["type"] == "error" and error["exit_code"] == 1 and error["message"] == outcome["error"]
    assert end == {**end, "type": "end", "exit_code": 1}
    # The controls a terminal would act on are JSON escapes, never raw bytes; the key is masked.
    assert "\\u001b[2J\\u202e\\u009b" in done.stdout
    assert not {"\x1b", "\u202e", "\u009b"} & set(done.stdout)
    assert "sk-emulator" not in done.stdout
    assert done.stderr.startswith("genstudio: error: task cft-")  # the human line stays on stderr


def test_the_shipped_schema_is_a_valid_schema_and_an_event_log_escapes_and_masks() -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    out = io.StringIO()
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    log = EventLog(out, Redactor(["sk-live-0123456789abcdef"]))
    log.submitted(Submission(prompt_id="cft-1", prompt_token=token), "wf-x")
    info = TaskInfo(prompt_id="cft-1", status=TaskStatus.RUNNING, progress=40)
    log.progress(info)
    log.progress(info)  # the same state: not a second line
    log.outcome("failed", prompt_id="cft-1", error=f"boom\u2028next line sk-live-0123456789abcdef {token}")
    log.end(1)
    log.end(1)  # after the end, nothing
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["submitted", "progress", "outcome", "end"]
    for line in lines:
        assert not list(validator.iter_errors(json.loads(line)))
    assert "\\u2028" in lines[2] and "sk-live-0123456789abcdef" not in out.getvalue() and token not in out.getvalue()
    disabled = EventLog(None)
    disabled.outcome("succeeded", prompt_id="cft-1")  # no --events: nothing, nowhere
    assert not disabled.enabled


@pytest.mark.parametrize(
    "argv", [["run", "--events"], ["watch", "--json-stream", "--timeout", "soon", "cft-a"], ["batch", "--ev"]]
)
async def test_a_usage_error_argparse_finds_still_ends_the_events_stream(tmp_path: Path, argv: list[str]) -> None:
    """A command line refused by argparse, that asked for --events: start, error, end on stdout (exit 2)."""
    env = command_env(GENSTUDIO_API_KEY="sk-test-0123456789abcdef")
    done = await genstudio(*argv, cwd=tmp_path, env=env)
    assert done.returncode == 2
    events = event_lines(done.stdout)  # start first, end last, each valid under the schema
    assert [event["type"] for event in events] == ["start", "error", "end"]
    assert events[0]["command"] == argv[0] and events[-1]["exit_code"] == 2
    assert "usage:" in done.stderr
