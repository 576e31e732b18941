"""``genstudio status``, ``cancel`` and ``upload``; the key, the errors and the exit codes; the rich display.

The commands run installed, in subprocesses, against the ``genstudio_emulator`` fixture (several at once with
``asyncio.gather``: each waits on its own process while the test's loop keeps the emulator serving).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from genstudio_async import TaskInfo, TaskStatus
from genstudio_async._cli.console import Console
from genstudio_async._cli.display import BatchProgress, TaskProgress
from genstudio_async.cli import main
from genstudio_async.emulator import Emulator, Faults
from genstudio_async.emulator._gpugeek import GPUGeekService
from genstudio_async.workflows import builtin_api_workflow
from tests.cli_support import GPUGEEK_T2I, T2I, command_env, genstudio, one_error_line
from tests.support import no_crash, tiny_png

KEY = "sk-cli-secret-0123456789abcdef"
GPUGeekEmulator = Emulator[GPUGeekService]


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    return {"api_key": KEY, "workers": 1, "steps": 2, "step_seconds": 0.01}


async def test_upload_status_and_cancel(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    emulator = genstudio_emulator
    (tmp_path / "fox.png").write_bytes(tiny_png(8, 8))
    async with emulator.client() as client:
        finished = await client.run(T2I)
        emulator.pause()
        queued = await client.submit(T2I)
    env = command_env(emulator, dev_mode=False)
    upload, upload_json, status, status_json = await asyncio.gather(
        genstudio("upload", "fox.png", cwd=tmp_path, env=env),
        genstudio("upload", "fox.png", "--json", cwd=tmp_path, env=env),
        genstudio("status", finished.prompt_id, queued.prompt_id, "cft-unknown", cwd=tmp_path, env=env),
        genstudio("status", finished.prompt_id, "--json", cwd=tmp_path, env=env),
    )
    assert upload.returncode == 0 and upload_json.returncode == 0, upload.stderr + upload_json.stderr
    image_id = upload.stdout.strip()
    assert "\n" not in image_id and emulator.service.objects.has_upload(image_id)
    assert upload_json.json() == {"file": "fox.png", "image_id": upload_json.json()["image_id"]}
    assert emulator.stats.uploads == 2

    assert status.returncode == 1  # one id is unknown
    rows = {line.split()[0]: line for line in status.stdout.splitlines()[1:]}
    assert rows[finished.prompt_id].split()[1:] == ["succeeded:", "100%", "1"]  # one status column, not two
    assert rows[queued.prompt_id].split()[1:3] == ["queued:", "position"]
    assert rows["cft-unknown"].split()[1:] == ["not", "found"]
    assert status.stderr == "genstudio: the service does not know task cft-unknown\n"
    assert status_json.returncode == 0
    [document] = status_json.json()
    assert document["prompt_id"] == finished.prompt_id and document["status"] == "succeeded"
    assert document["status_code"] == 3 and document["progress"] == 100 and list(document["files"]) == ["9"]

    cancel, refused = await asyncio.gather(
        genstudio("cancel", queued.prompt_id, cwd=tmp_path, env=env),
        genstudio("cancel", "cft-unknown", cwd=tmp_path, env=env),
    )
    assert cancel.returncode == 0 and cancel.stdout == f"cancelled {queued.prompt_id}\n"
    assert (emulator.task_info(queued.prompt_id) or {}).get("status") == 4
    assert refused.returncode == 3
    assert one_error_line(refused.stderr).startswith("cannot cancel cft-unknown: ")


async def test_cancel_leaves_an_ended_task_alone_and_says_so(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    emulator = genstudio_emulator
    async with emulator.client() as client:
        finished = await client.run(T2I)
        emulator.pause()
        queued, other = await client.submit(T2I), await client.submit(T2I)
    env = command_env(emulator, dev_mode=False)
    before = emulator.stats.task_info_requests
    plain = await genstudio("cancel", finished.prompt_id, queued.prompt_id, cwd=tmp_path, env=env)
    assert emulator.stats.task_info_requests == before + 1  # one status request for every id
    assert plain.returncode == 1
    assert plain.stderr == f"genstudio: error: {finished.prompt_id} already succeeded: not cancelled\n"
    assert plain.stdout == f"cancelled {queued.prompt_id}\n"
    assert emulator.stats.cancels == 1
    assert (emulator.task_info(finished.prompt_id) or {}).get("status") == 3
    assert (emulator.task_info(queued.prompt_id) or {}).get("status") == 4

    as_json = await genstudio("cancel", queued.prompt_id, other.prompt_id, "--json", cwd=tmp_path, env=env)
    assert as_json.returncode == 1
    assert as_json.json() == [
        {"prompt_id": queued.prompt_id, "cancelled": False, "status": "failed",
         "error": "already failed or cancelled: not cancelled"},
        {"prompt_id": other.prompt_id, "cancelled": True},
    ]
    assert emulator.stats.cancels == 2


async def test_cancel_goes_on_when_the_status_cannot_be_asked(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client() as client:
        queued = await client.submit(T2I)
    status_refused = Faults(http_error_rate=1.0, http_error_status=501, endpoints=frozenset({"task_info"}))
    genstudio_emulator.set_faults(status_refused)
    env = command_env(genstudio_emulator, dev_mode=False)
    done = await genstudio("cancel", queued.prompt_id, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"cancelled {queued.prompt_id}\n"
    [note] = done.stderr.splitlines()
    assert note.startswith("genstudio: cannot ask the tasks' status first (HTTP 501")
    assert note.endswith("cancelling them anyway")
    assert (genstudio_emulator.task_info(queued.prompt_id) or {}).get("status") == 4


async def test_the_key_errors_and_exit_codes(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    emulator = genstudio_emulator
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    plain = command_env(dev_mode=False)
    no_key, wrong_key, flag_key, unreachable, bad_flag, bad_workflow, batch_refused = await asyncio.gather(
        genstudio("status", "cft-x", cwd=tmp_path, env={**plain, "GENSTUDIO_BASE_URL": emulator.base_url}),
        genstudio("status", "cft-x", cwd=tmp_path,
                  env={**plain, "GENSTUDIO_BASE_URL": emulator.base_url, "GENSTUDIO_API_KEY": "sk-wrong-987654321"}),
        genstudio("status", "cft-x", "--api-key", KEY, "--base-url", emulator.base_url, cwd=tmp_path, env=plain),
        genstudio("status", "cft-x", "--base-url", dead_url, cwd=tmp_path, env={**plain, "GENSTUDIO_API_KEY": KEY}),
        genstudio("batch", "jobs.jsonl", "--concurrency", "0", cwd=tmp_path, env=plain),
        genstudio("run", "wf-nope", cwd=tmp_path, env=command_env(emulator, dev_mode=False)),
        genstudio("batch", str(write_one_job(tmp_path)), cwd=tmp_path,
                  env={**plain, "GENSTUDIO_BASE_URL": emulator.base_url, "GENSTUDIO_API_KEY": "sk-wrong-987654321"}),
    )
    assert no_key.returncode == 2
    assert one_error_line(no_key.stderr) == "no API key: set GENSTUDIO_API_KEY (or pass --api-key)"

    assert wrong_key.returncode == 3
    assert "HTTP 401" in one_error_line(wrong_key.stderr) and "check GENSTUDIO_API_KEY" in wrong_key.stderr
    assert "sk-wrong-987654321" not in wrong_key.stderr

    assert flag_key.returncode == 1  # it worked: cft-x is just not a task the emulator knows
    warning, *rest = flag_key.stderr.splitlines()
    assert warning.startswith("genstudio: warning: --api-key puts the key in the process list")
    assert "GENSTUDIO_API_KEY" in warning and KEY not in flag_key.stderr + flag_key.stdout
    assert rest == ["genstudio: the service does not know task cft-x"]

    assert unreachable.returncode == 3
    assert one_error_line(unreachable.stderr).startswith("cannot reach the service: ")

    assert bad_flag.returncode == 2 and "--concurrency: expected a positive integer" in bad_flag.stderr
    assert bad_workflow.returncode == 3 and "wf-nope" in one_error_line(bad_workflow.stderr)

    assert batch_refused.returncode == 3  # a refused key stops the batch: it would fail every job the same way
    assert batch_refused.stderr.splitlines()[-1].startswith("genstudio: error: HTTP 401")
    for finished in (no_key, wrong_key, flag_key, unreachable, bad_workflow, batch_refused):
        no_crash(finished.stderr)
    assert emulator.stats.submits == 0


async def test_a_connection_error_names_the_base_url_it_tried(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    env = {**command_env(dev_mode=False), "GENSTUDIO_API_KEY": KEY}
    unreachable, with_password, batch_unreachable = await asyncio.gather(
        genstudio("status", "cft-x", "--base-url", dead_url, cwd=tmp_path, env=env),
        genstudio("status", "cft-x", "--base-url", dead_url.replace("//", "//me:hunter2@"), cwd=tmp_path, env=env),
        genstudio("batch", str(write_one_job(tmp_path)), "--base-url", dead_url, cwd=tmp_path, env=env),
    )
    assert unreachable.returncode == 3
    assert one_error_line(unreachable.stderr).startswith(f"cannot reach the service: {dead_url}: ")
    assert with_password.returncode == 3 and "hunter2" not in with_password.stderr  # only where it went
    assert one_error_line(with_password.stderr).startswith(f"cannot reach the service: {dead_url}: ")
    assert batch_unreachable.returncode == 1
    assert re.search(rf"FAILED job-\w+: cannot reach the service: {re.escape(dead_url)}: ", batch_unreachable.stdout)
    for finished in (unreachable, with_password, batch_unreachable):
        no_crash(finished.stderr)


async def test_a_refused_key_given_with_the_flag_is_said_to_come_from_the_flag(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    refused = await genstudio(
        "status", "cft-x", "--api-key", "sk-wrong-987654321", "--base-url", genstudio_emulator.base_url,
        cwd=tmp_path, env=command_env(dev_mode=False),
    )
    assert refused.returncode == 3
    warning, error = refused.stderr.splitlines()
    assert warning.startswith("genstudio: warning: --api-key puts the key in the process list")
    assert error.startswith("genstudio: error: HTTP 401") and error.endswith("(check the key given with --api-key)")
    assert "sk-wrong-987654321" not in refused.stderr
    no_crash(refused.stderr)


def write_one_job(directory: Path) -> Path:
    path = directory / "one.jsonl"
    path.write_text(json.dumps({"workflow_id": T2I}) + "\n", encoding="utf-8")
    return path


def test_help_lists_the_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for command in ("demo", "run", "batch", "status", "cancel", "upload", "emulator"):
        assert re.search(rf"^    {command} ", text, re.M), command
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^  {code} +\S", text, re.M), code
    assert "GENSTUDIO_API_KEY" in text
    with pytest.raises(SystemExit):
        main(["batch", "--help"])
    batch_help = capsys.readouterr().out
    assert "--journal" in batch_help and "0600" in batch_help
    assert "holds that job ('submit unanswered') until --retry-failed" in " ".join(batch_help.split())


async def test_debug_shows_the_traceback_and_never_the_key(tmp_path: Path) -> None:
    env = {**command_env(dev_mode=False), "GENSTUDIO_API_KEY": KEY, "GENSTUDIO_BASE_URL": "http://127.0.0.1:1"}
    done = await genstudio("--debug", "status", "cft-x", cwd=tmp_path, env=env)
    assert done.returncode == 3
    assert "Traceback" in done.stderr and done.stderr.splitlines()[-1].startswith("genstudio: error: cannot reach")
    assert KEY not in done.stderr


# --- the rich display, in-process ---------------------------------------------------------------------------


def info(status: int, progress: int = 0, position: int = 0) -> TaskInfo:
    return TaskInfo(
        prompt_id="cft-1", status=TaskStatus(status), progress=progress, queue_position=position, queue_size=2
    )


def test_rich_draws_progress_and_tables_when_the_terminal_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    out = io.StringIO()
    console = Console(stdout=out)
    assert console.pretty
    with TaskProgress(console, "cft-[1]") as progress:
        for event in (info(1, position=2), info(2, 50), info(3, 100)):
            progress.update(event)
    with BatchProgress(console, 3, done_before=1) as batch:
        batch.started("job-[a]", "submitting")
        batch.submitted("job-[a]", "cft-1")
        batch.update("job-[a]", info(2, 40))
        batch.succeeded("job-[a]", [Path("out/a/9/x.png")])
        batch.started("job-b", "resuming cft-2")
        batch.failed_job("job-b", "task cft-2 failed: [CUDA] out of memory")
    console.table(["job", "state"], [["job-[a]", "done"], ["job-b", "failed"]], title="summary")
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # without the colours
    assert "succeeded: 100%" in drawn and "cft-[1]" in drawn
    assert "[2/3] done job-[a]: out/a/9/x.png" in drawn
    assert "[3/3] FAILED job-b: task cft-2 failed: [CUDA] out of memory" in drawn
    assert "┃ job " in drawn and "│ job-[a] │ done " in drawn


def test_without_rich_a_terminal_gets_plain_lines_and_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setitem(sys.modules, "rich.console", None)  # as if rich were not installed
    out, err = io.StringIO(), io.StringIO()
    console = Console(stdout=out, stderr=err)
    assert not console.pretty
    assert "pip install 'genstudio-async[cli]'" in err.getvalue()
    with TaskProgress(console, "cft-1") as progress:
        progress.update(info(1, position=1))
        progress.update(info(1, position=1))  # unchanged: not printed twice
        progress.update(info(2, 30))
    console.table(["job", "state"], [["a", "done"]])
    assert out.getvalue().splitlines() == ["  queued: position 1 of 2", "  running:  30%", "job  state", "a    done"]


async def test_a_malformed_key_from_the_environment_is_named_by_its_variable(tmp_path: Path) -> None:
    env = {**command_env(dev_mode=False), "GENSTUDIO_API_KEY": "sk-pasted\twith-a-tab-0123", "GENSTUDIO_BASE_URL":
           "http://127.0.0.1:9"}
    result = await genstudio("status", "cft-x", cwd=tmp_path, env=env)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "GENSTUDIO_API_KEY" in line and "position 10" in line
    assert "with-a-tab" not in result.stderr


# --- GPUGeek ----------------------------------------------------------------------------------------------------

GPUGEEK_KEY = "gg-cli-secret-0123456789abcdef"


@pytest.fixture
def gpugeek_emulator_options() -> dict[str, Any]:
    return {"api_key": GPUGEEK_KEY, "workers": 1, "steps": 2, "step_seconds": 0.01}


async def test_gpugeek_upload_status_and_cancel(gpugeek_emulator: GPUGeekEmulator, tmp_path: Path) -> None:
    emulator = gpugeek_emulator
    (tmp_path / "fox.png").write_bytes(tiny_png(8, 8))
    workflow = builtin_api_workflow(GPUGEEK_T2I)
    assert workflow is not None
    async with emulator.client(poll_interval=0.02) as client:
        finished = await client.run(GPUGEEK_T2I, workflow.builder().build())
        emulator.pause()
        queued = await client.submit(GPUGEEK_T2I, workflow.builder().build())
    env = command_env(emulator, dev_mode=False)
    from_env = {**env, "GENSTUDIO_SERVICE": "gpugeek"}  # the variable works as the flag does
    unknown = "999999999999999"
    upload, upload_json, status, status_json = await asyncio.gather(
        genstudio("upload", "--service", "gpugeek", "fox.png", cwd=tmp_path, env=env),
        genstudio("upload", "fox.png", "--json", cwd=tmp_path, env=from_env),
        genstudio("status", "--service", "gpugeek", finished.prompt_id, queued.prompt_id, unknown, cwd=tmp_path,
                  env=env),
        genstudio("status", finished.prompt_id, "--json", cwd=tmp_path, env=from_env),
    )
    assert upload.returncode == 0 and upload_json.returncode == 0, upload.stderr + upload_json.stderr
    oss_url = upload.stdout.strip()
    assert oss_url.startswith(emulator.storage_url) and "?" not in oss_url  # committed: no signature
    assert upload_json.json() == {"file": "fox.png", "oss_url": upload_json.json()["oss_url"]}
    assert emulator.stats.commits == 2 and emulator.stats.storage_requests_with_authorization == 0

    assert status.returncode == 1  # one id is unknown
    rows = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines()[1:]}
    assert rows[finished.prompt_id] == ["succeeded", "1"]  # no percent: GPUGeek gives none
    assert rows[queued.prompt_id][:2] == ["queued:", "position"] and rows[unknown] == ["not", "found"]
    assert status.stderr == f"genstudio: the service does not know task {unknown}\n"
    assert status_json.returncode == 0
    [document] = status_json.json()
    assert document["prompt_id"] == finished.prompt_id and document["status"] == "succeeded"
    assert document["progress"] == 100 and list(document["files"]) == ["9"]
    assert document["price"] == 0.11 and document["created_at"].endswith("+08:00")  # what only GPUGeek sends
    assert document["queue_duration"] >= 0 and document["run_duration"] >= 0

    cancel, ended = await asyncio.gather(
        genstudio("cancel", "--service", "gpugeek", queued.prompt_id, cwd=tmp_path, env=env),
        genstudio("cancel", "--service", "gpugeek", finished.prompt_id, cwd=tmp_path, env=env),
    )
    assert cancel.returncode == 0 and cancel.stdout == f"cancelled {queued.prompt_id}\n"
    assert (emulator.task_info(queued.prompt_id) or {}).get("status") == 5  # GPUGeek's own cancelled status
    assert ended.returncode == 1
    assert ended.stderr == f"genstudio: error: {finished.prompt_id} already succeeded: not cancelled\n"
    again = await genstudio("cancel", "--service", "gpugeek", queued.prompt_id, cwd=tmp_path, env=env)
    assert again.returncode == 1
    assert again.stderr == f"genstudio: error: {queued.prompt_id} already cancelled: not cancelled\n"
    assert emulator.stats.cancels == 1
    for finished_command in (upload, upload_json, status, status_json, cancel, ended, again):
        no_crash(finished_command.stderr)


async def test_gpugeek_keys_come_from_its_own_variables(gpugeek_emulator: GPUGeekEmulator, tmp_path: Path) -> None:
    plain = command_env(dev_mode=False)
    url = {"GPUGEEK_BASE_URL": gpugeek_emulator.base_url}
    no_key, wrong_key, flag_wins, genstudio_key_only = await asyncio.gather(
        genstudio("status", "--service", "gpugeek", "1", cwd=tmp_path, env={**plain, **url}),
        genstudio("status", "--service", "gpugeek", "1", cwd=tmp_path,
                  env={**plain, **url, "GPUGEEK_API_KEY": "gg-wrong-987654321"}),
        genstudio("status", "--service", "genstudio", "cft-x", cwd=tmp_path,
                  env={**plain, **url, "GENSTUDIO_SERVICE": "gpugeek", "GPUGEEK_API_KEY": GPUGEEK_KEY}),
        genstudio("status", "1", cwd=tmp_path,
                  env={**plain, **url, "GENSTUDIO_SERVICE": "gpugeek", "GENSTUDIO_API_KEY": GPUGEEK_KEY}),
    )
    assert no_key.returncode == 2
    assert one_error_line(no_key.stderr) == "no API key: set GPUGEEK_API_KEY (or pass --api-key)"
    assert wrong_key.returncode == 3
    assert "HTTP 401" in one_error_line(wrong_key.stderr) and "check GPUGEEK_API_KEY" in wrong_key.stderr
    assert "gg-wrong-987654321" not in wrong_key.stderr
    assert flag_wins.returncode == 2  # --service genstudio beats GENSTUDIO_SERVICE: GenStudio's key is missing
    assert one_error_line(flag_wins.stderr) == "no API key: set GENSTUDIO_API_KEY (or pass --api-key)"
    assert genstudio_key_only.returncode == 2  # GenStudio's key is not GPUGeek's
    assert one_error_line(genstudio_key_only.stderr) == "no API key: set GPUGEEK_API_KEY (or pass --api-key)"
    assert gpugeek_emulator.stats.requests["task"] == 1  # only the wrong key was sent, and refused
