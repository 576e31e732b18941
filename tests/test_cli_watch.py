"""``genstudio watch``: the installed command in a subprocess, following tasks the test submitted itself.

Each test holds the emulator paused while the command starts, so the task is seen queued, then lets it run: the
command shows it move and saves its files, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from genstudio_async._cli.defaults import CLI_SUBMISSION_FILE_MAX_BYTES
from genstudio_async.emulator import Emulator, Faults
from genstudio_async.emulator._gpugeek import GPUGeekService
from genstudio_async.emulator._state import TaskState
from genstudio_async.workflows import builtin_api_workflow
from tests.cli_support import (
    GPUGEEK_T2I,
    T2I,
    Answer,
    command_env,
    envelope,
    event_lines,
    fake_service,
    files_under,
    finish,
    genstudio,
    one_error_line,
    outcomes_by_job,
    pngs_under,
    started,
)
from tests.support import eventually, no_crash, raw_http_server, read_request_head, tiny_png


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    return {"workers": 2, "steps": 4, "step_seconds": 0.02}


@pytest.fixture
def gpugeek_emulator_options() -> dict[str, Any]:
    return {"workers": 2, "steps": 4, "step_seconds": 0.05}


async def first_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(20):
        return (await process.stdout.readline()).decode()


async def test_watch_follows_a_saved_submission_over_the_websocket_and_saves_its_files(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client() as client:
        submission = await client.submit(T2I)
    assert submission.prompt_token is not None
    (tmp_path / "task.json").write_text(submission.model_dump_json(), encoding="utf-8")
    async with started("watch", "task.json", cwd=tmp_path, env=command_env(genstudio_emulator)) as process:
        assert await first_line(process) == "  queued: position 1 of 1\n"  # following it before it runs
        genstudio_emulator.resume()
        done = await finish(process)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    progress = [int(percent) for percent in re.findall(r"^  running: +(\d+)%$", done.stdout, re.M)]
    assert progress and progress == sorted(progress) and "  succeeded: 100%" in lines
    [png] = pngs_under(tmp_path / "genstudio-output" / submission.prompt_id)  # run's default folder
    assert png.parent.name == "9" and lines[-1] == f"saved {png.relative_to(tmp_path)}"
    assert genstudio_emulator.stats.ws_connections_opened == 1  # the token opened the progress socket
    assert genstudio_emulator.stats.submits == 1  # followed, never submitted again
    assert submission.prompt_token not in done.stdout + done.stderr
    no_crash(done.stderr)


async def test_watch_of_several_ids_gives_each_its_row_folder_and_outcome(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    async with genstudio_emulator.client() as client:
        finished = await client.run(T2I)  # ended before the watch: reported, its files saved
        genstudio_emulator.pause()
        queued = await client.submit(T2I)
    ids = (finished.prompt_id, queued.prompt_id, "cft-unknown")
    env = command_env(genstudio_emulator, dev_mode=False)  # (debug mode's slow-callback notes: stderr is read)
    async with started("watch", *ids, "--out", "out", "--events", cwd=tmp_path, env=env) as process:
        assert process.stdout is not None
        seen: list[dict[str, Any]] = []
        while not any(e["type"] == "progress" and e["prompt_id"] == queued.prompt_id for e in seen):
            seen.append(json.loads(await process.stdout.readline()))
        genstudio_emulator.resume()
        done = await finish(process)
    assert done.returncode == 1  # the unknown id
    events = event_lines("".join(json.dumps(e) + "\n" for e in seen) + done.stdout)
    outcomes = outcomes_by_job(events, "prompt_id")
    assert {name: event["status"] for name, event in outcomes.items()} == {
        finished.prompt_id: "succeeded", queued.prompt_id: "succeeded", "cft-unknown": "not_found",
    }
    assert {e["prompt_id"] for e in events if e["type"] == "following"} == {finished.prompt_id, queued.prompt_id}
    for prompt_id in (finished.prompt_id, queued.prompt_id):
        [png] = pngs_under(tmp_path / "out" / prompt_id)  # several tasks: DIR/<prompt_id>/<node id>/
        assert outcomes[prompt_id]["paths"] == [str(png.relative_to(tmp_path))]
    statuses = [e["status"] for e in events if e["type"] == "progress" and e["prompt_id"] == queued.prompt_id]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    assert one_error_line(done.stderr) == "the service does not know task cft-unknown"
    assert genstudio_emulator.stats.submits == 2

    plain = await genstudio("watch", finished.prompt_id, queued.prompt_id, "--no-download", cwd=tmp_path, env=env)
    assert plain.returncode == 0, plain.stderr
    assert set(plain.stdout.splitlines()) == {  # one line per task, named by its id
        f"{finished.prompt_id}: succeeded: 100%", f"{queued.prompt_id}: succeeded: 100%",
        f"{finished.prompt_id}: succeeded", f"{queued.prompt_id}: succeeded",
    }


async def test_ctrl_c_leaves_the_watched_task_running_and_says_so(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client() as client:
        submission = await client.submit(T2I)
    task = submission.prompt_id
    env = command_env(genstudio_emulator)
    async with started("watch", task, "--events", cwd=tmp_path, env=env) as process:
        assert process.stdout is not None
        seen = [json.loads(await process.stdout.readline()) for _ in range(3)]  # start, following, progress
        assert seen[-1]["type"] == "progress" and seen[-1]["status"] == "queued"
        process.send_signal(signal.SIGINT)
        interrupted = await finish(process)
    assert interrupted.returncode == 130
    events = event_lines("".join(json.dumps(e) + "\n" for e in seen) + interrupted.stdout)
    assert events[-2]["type"] == "outcome" and events[-2]["status"] == "interrupted" and events[-1]["exit_code"] == 130
    assert f"interrupted: 1 task(s) go on on the service: {task} ('genstudio watch {task}'" in interrupted.stderr
    no_crash(interrupted.stderr)
    assert genstudio_emulator.stats.cancels == 0
    assert (genstudio_emulator.task_info(task) or {}).get("status") == 1  # still queued on the service


async def test_watch_refuses_what_is_not_a_task_before_any_request(tmp_path: Path) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3YXRjaCJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
    (tmp_path / "junk.json").write_text(json.dumps({"prompt_token": token}), encoding="utf-8")
    (tmp_path / "spaced.json").write_text(json.dumps({"prompt_id": "cft a", "prompt_token": token}), encoding="utf-8")
    padding = "x" * CLI_SUBMISSION_FILE_MAX_BYTES  # valid JSON, a real id: only its size is wrong
    (tmp_path / "huge.json").write_text(json.dumps({"prompt_id": "cft-a", "pad": padding}), encoding="utf-8")
    env = command_env(GENSTUDIO_API_KEY="sk-test-0123456789", GENSTUDIO_BASE_URL="http://127.0.0.1:9", dev_mode=False)
    missing, junk, spaced, spaced_file, huge, no_timeout = await asyncio.gather(
        genstudio("watch", "saved/task.json", cwd=tmp_path, env=env),
        genstudio("watch", "junk.json", cwd=tmp_path, env=env),
        genstudio("watch", "cft-a b", cwd=tmp_path, env=env),
        genstudio("watch", "spaced.json", cwd=tmp_path, env=env),
        genstudio("watch", "huge.json", cwd=tmp_path, env=env),
        genstudio("watch", "cft-a", "--cancel-on-timeout", cwd=tmp_path, env=env),
    )
    assert [f.returncode for f in (missing, junk, spaced, spaced_file, huge, no_timeout)] == [2] * 6
    assert one_error_line(missing.stderr) == (
        "no such file: 'saved/task.json' (a task is a prompt_id, or a file holding one)"
    )
    assert one_error_line(junk.stderr).startswith("the saved task 'junk.json' must hold a 'prompt_id'")
    assert "is not a prompt_id" in one_error_line(spaced.stderr)
    assert one_error_line(spaced_file.stderr).startswith("the saved task 'spaced.json' is not a prompt_id")
    assert one_error_line(huge.stderr).startswith("the saved task 'huge.json' is ")  # refused unread
    assert one_error_line(no_timeout.stderr).startswith("--cancel-on-timeout needs --timeout S")
    for finished in (junk, spaced_file):
        assert token not in finished.stdout + finished.stderr


async def test_a_token_pasted_as_an_id_is_never_shown_whole(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    """A prompt_token where the prompt_id belongs (both come back from a submit): unknown, and masked, as
    ``status`` masks it, on stderr and in ``--json``."""
    async with genstudio_emulator.client() as client:
        submission = await client.submit(T2I)
    token = submission.prompt_token
    assert token is not None
    env = command_env(genstudio_emulator, dev_mode=False)  # (debug mode's slow-callback notes: stderr is read)
    done = await genstudio("watch", token, "--json", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert token not in done.stdout + done.stderr
    [document] = done.json()
    assert document["status"] == "not_found" and document["prompt_id"].endswith("…")
    assert one_error_line(done.stderr) == f"the service does not know task {document['prompt_id']}"


async def test_an_ended_task_is_reported_and_a_late_one_cancelled_on_timeout(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    """One ``--events`` stream, both ways a watch ends badly: a task that failed before (exit 1, its message),
    and one cancelled on the service by ``--cancel-on-timeout``; one terminal outcome each."""
    genstudio_emulator.set_faults(Faults(fail_tasks="CUDA out of memory"))
    async with genstudio_emulator.client() as client:
        failed = await client.submit(T2I)
        await eventually(lambda: (genstudio_emulator.task_info(failed.prompt_id) or {}).get("status") == 4,
                         what="the task's failure")
        genstudio_emulator.pause()
        late = await client.submit(T2I)
    env = command_env(genstudio_emulator)
    done = await genstudio(
        # --timeout bounds the whole follow, the first question included: long enough for a loaded machine to
        # answer that one (the failed task is then reported as failed), a bound of the late task's wait only.
        "watch", failed.prompt_id, late.prompt_id, "--timeout", "1.5", "--cancel-on-timeout", "--events",
        cwd=tmp_path, env=env,
    )
    assert done.returncode == 1, done.stderr
    events = event_lines(done.stdout)
    outcomes = outcomes_by_job(events, "prompt_id")
    assert set(outcomes) == {failed.prompt_id, late.prompt_id}
    assert outcomes[failed.prompt_id]["status"] == "failed" and not outcomes[failed.prompt_id]["cancelled"]
    assert "CUDA out of memory" in outcomes[failed.prompt_id]["error"]
    assert outcomes[late.prompt_id]["status"] == "timeout" and outcomes[late.prompt_id]["cancelled"] is True
    assert events[-1] == events[-1] | {"type": "end", "exit_code": 1}
    await eventually(lambda: genstudio_emulator.stats.cancels == 1, what="the cancel")
    assert {task.task_id: task.state for task in genstudio_emulator.service.tasks} == {
        failed.prompt_id: TaskState.FAILED, late.prompt_id: TaskState.CANCELLED,
    }
    assert not files_under(tmp_path)
    no_crash(done.stderr)


async def test_a_hostile_service_places_no_file_outside_the_folder_and_a_refusal_ends_each_task(
    tmp_path: Path,
) -> None:
    """The ids come from a file anyone may have written, the answers from a service that means harm: the files
    land under genstudio-output/<safe id>/; and when the first request is refused, each task still gets its
    outcome event before the error."""
    hostile_id = "../../escape"
    (tmp_path / "task.json").write_text(json.dumps({"prompt_id": hostile_id}), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    service: dict[str, Any] = {"refuse": False}

    def respond(method: str, path: str, body: bytes) -> Answer:
        if service["refuse"]:
            return 401, "application/json", b'{"code": 401, "msg": "invalid key"}'
        if path.endswith("/get_task_info"):
            files = {"../9": [f"{service['url']}/bucket/..%2F..%2Fpwn.png?Expires=4102444800&Signature=x%2By"]}
            return envelope({"comfy_task_info": [
                {"comfy_task_id": hostile_id, "status": 3, "progress_num": 100, "files": files, "final_files": []}
            ]})
        if path.startswith("/bucket/"):
            return 200, "image/png", tiny_png(4, 4)
        return 404, "text/plain", b"no"

    async with fake_service(respond) as service["url"]:
        env = command_env(GENSTUDIO_API_KEY="sk-test-0123456789", GENSTUDIO_BASE_URL=service["url"])
        done = await genstudio("watch", "../task.json", "--poll-interval", "0.05", cwd=work, env=env)
        service["refuse"] = True
        refused = await genstudio("watch", "cft-a", "cft-b", "--events", cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    [png] = files_under(tmp_path)[1:]  # (task.json first) nothing was written anywhere else
    assert png.is_relative_to(work / "genstudio-output") and png.parent.parent.parent == work / "genstudio-output"
    assert done.stdout.splitlines()[-1] == f"saved {png.relative_to(work)}"
    no_crash(done.stderr)

    assert refused.returncode == 3, refused.stderr  # authentication, as for every command
    events = event_lines(refused.stdout)
    outcomes = outcomes_by_job(events, "prompt_id")
    assert {name: event["status"] for name, event in outcomes.items()} == {"cft-a": "failed", "cft-b": "failed"}
    assert [event["type"] for event in events][-2:] == ["error", "end"]
    assert outcomes["cft-a"]["error"] == events[-2]["message"]  # the same reason, once per task


# --- GPUGeek: polled ------------------------------------------------------------------------------------------


async def test_watch_on_gpugeek_shows_progress_saves_files_and_cancels_on_timeout(
    gpugeek_emulator: Emulator[GPUGeekService], tmp_path: Path
) -> None:
    workflow = builtin_api_workflow(GPUGEEK_T2I)
    assert workflow is not None
    gpugeek_emulator.pause()
    async with gpugeek_emulator.client() as client:
        followed = await client.submit(GPUGEEK_T2I, workflow.builder().build())
        abandoned = await client.submit(GPUGEEK_T2I, workflow.builder().build())
    env = command_env(gpugeek_emulator, GENSTUDIO_SERVICE="gpugeek")
    watch = ("watch", "--poll-interval", "0.02")
    async with started(*watch, followed.prompt_id, "--out", "one", cwd=tmp_path, env=env) as process:
        assert (await first_line(process)).startswith("  queued: position ")
        timed_out = await genstudio(
            *watch, abandoned.prompt_id, "--timeout", "0.3", "--cancel-on-timeout", "--json", cwd=tmp_path, env=env
        )  # (still paused: it cannot finish in time)
        gpugeek_emulator.resume()
        done = await finish(process)
    assert done.returncode == 0, done.stderr
    assert "  running\n" in done.stdout and "  succeeded\n" in done.stdout and "%" not in done.stdout
    [png] = pngs_under(tmp_path / "one")  # one task: --out is its folder, as for run
    assert png.parent == tmp_path / "one" / "9"
    no_crash(done.stderr)

    assert timed_out.returncode == 1
    [document] = timed_out.json()
    assert document["status"] == "timeout" and document["cancelled"] is True
    assert document["error"].startswith(f"task {abandoned.prompt_id} did not finish within 0.3 s")
    assert document["error"].endswith("; it was cancelled on the service")
    await eventually(lambda: gpugeek_emulator.stats.cancels == 1, what="the cancel")
    states = {task.task_id: task.state for task in gpugeek_emulator.service.tasks}
    assert states == {followed.prompt_id: TaskState.SUCCEEDED, abandoned.prompt_id: TaskState.CANCELLED}

    quiet = command_env(gpugeek_emulator, dev_mode=False, GENSTUDIO_SERVICE="gpugeek")  # (stderr is read)
    again = await genstudio(*watch, followed.prompt_id, "424242", "--no-download", "--events", cwd=tmp_path, env=quiet)
    assert again.returncode == 1  # the unknown id; the known one still reported
    outcomes = outcomes_by_job(event_lines(again.stdout), "prompt_id")
    assert {name: event["status"] for name, event in outcomes.items()} == {
        followed.prompt_id: "succeeded", "424242": "not_found",
    }
    assert one_error_line(again.stderr) == "the service does not know task 424242"


# --- issue #13's hostile review --------------------------------------------------------------------------------

SAVED_TOKEN = "tok-0123456789-not-a-jwt-but-a-secret"  # a saved Submission's token (no JWT shape to spot it by)


async def test_watch_never_shows_the_saved_token_a_service_echoes_in_its_error(tmp_path: Path) -> None:
    """The first answer about the task (before any wait) quotes the token: neither the progress line, nor the
    error line, nor --json shows it whole."""
    (tmp_path / "task.json").write_text(
        json.dumps({"prompt_id": "cft-a", "prompt_token": SAVED_TOKEN}), encoding="utf-8"
    )

    def respond(method: str, path: str, body: bytes) -> Answer:
        if path.endswith("/get_task_info"):
            return envelope({"comfy_task_info": [{
                "comfy_task_id": "cft-a", "status": 4, "progress_num": 0, "files": {}, "final_files": [],
                "errMsg": f"worker crashed; retry with authorization={SAVED_TOKEN} {SAVED_TOKEN}",
            }]})
        return 404, "text/plain", b"no"

    async with fake_service(respond) as url:
        env = command_env(GENSTUDIO_API_KEY="sk-test-0123456789abcdef", GENSTUDIO_BASE_URL=url)
        plain = await genstudio("watch", "task.json", "--no-websocket", cwd=tmp_path, env=env)
        as_json = await genstudio("watch", "task.json", "--no-websocket", "--json", cwd=tmp_path, env=env)
    assert plain.returncode == 1 and "worker crashed" in plain.stdout + plain.stderr, plain.stderr
    for done in (plain, as_json):
        assert SAVED_TOKEN not in done.stdout + done.stderr, done.stdout + done.stderr
    [document] = as_json.json()
    assert document["status"] == "failed" and "worker crashed" in document["error"]


async def test_watch_timeout_bounds_a_service_that_never_answers(tmp_path: Path) -> None:
    """--timeout S bounds the whole follow, the first question about the task included: a silent service is a
    timeout after S (exit 1), not minutes of retries (exit 3)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        await asyncio.sleep(3600)

    async with raw_http_server(silent) as url:
        env = command_env(GENSTUDIO_API_KEY="sk-test-0123456789abcdef", GENSTUDIO_BASE_URL=url)
        async with asyncio.timeout(20):  # a failure bound only: the command is asked for 0.5 s
            done = await genstudio("watch", "cft-a", "--timeout", "0.5", "--events", cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    outcome = outcomes_by_job(event_lines(done.stdout), "prompt_id")["cft-a"]
    assert outcome["status"] == "timeout" and not outcome["cancelled"]
    assert "did not finish within 0.5 s" in outcome["error"]


@pytest.mark.parametrize("several", [False, True], ids=["default-folder", "out-per-task-folder"])
async def test_watch_never_saves_through_a_symlink_planted_as_the_tasks_folder(
    genstudio_emulator: Emulator, tmp_path: Path, several: bool
) -> None:
    """genstudio-output/<id> (or, for several tasks, --out DIR/<id>) is a folder the command makes: a symlink
    found in its place is refused (the task's files are not saved, nothing lands where it points)."""
    async with genstudio_emulator.client() as client:
        submissions = [await client.submit(T2I) for _ in range(2 if several else 1)]
        for submission in submissions:
            await client.wait(submission, timeout=30)
    outside = tmp_path / "outside"
    outside.mkdir()
    parent = tmp_path / ("out" if several else "genstudio-output")
    parent.mkdir()
    planted = submissions[0].prompt_id
    (parent / planted).symlink_to(outside)
    ids = [submission.prompt_id for submission in submissions]
    out = ["--out", "out"] if several else []
    done = await genstudio("watch", *ids, *out, "--events", cwd=tmp_path, env=command_env(genstudio_emulator))
    assert done.returncode == 1, done.stderr
    assert not list(outside.rglob("*")), sorted(outside.rglob("*"))
    outcomes = outcomes_by_job(event_lines(done.stdout), "prompt_id")
    assert outcomes[planted]["status"] == "download_failed" and "symlink" in outcomes[planted]["error"]
    if several:
        assert outcomes[ids[1]]["status"] == "succeeded" and pngs_under(parent / ids[1])
