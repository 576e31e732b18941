"""``genstudio batch``: the installed command in a subprocess, against the ``genstudio_emulator`` fixture.

What a user must be able to count on: every image downloaded despite broken sockets; after Ctrl-C, a rerun that
submits no job twice and ends with every image; a rerun after completion that does nothing at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from genstudio_async import LocalImage
from genstudio_async._cli import defaults as CD
from genstudio_async._cli.errors import CLIError
from genstudio_async._cli.jobs import load_jobs
from genstudio_async._cli.journal import Journal, parse_journal
from genstudio_async._cli.services import GPUGEEK
from genstudio_async.emulator import Emulator, Faults
from genstudio_async.emulator._gpugeek import GPUGeekService
from tests.cli_support import (
    EXPORTS,
    GPUGEEK_I2I,
    GPUGEEK_T2I,
    I2I,
    SPECS,
    T2I,
    Answer,
    command_env,
    envelope,
    event_lines,
    fake_service,
    finish,
    genstudio,
    one_error_line,
    outcomes_by_job,
    pngs_under,
    started,
)
from tests.support import eventually, no_crash, tiny_png


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    return {"workers": 8, "steps": 3, "step_seconds": 0.01}


def write_jobs(path: Path, count: int, *, named: bool = False) -> list[str]:
    """``count`` text-to-image jobs, one a line; returns their names (``id`` or line number + hash)."""
    lines = []
    for number in range(count):
        job: dict[str, Any] = {"workflow_id": T2I, "prompt": {"6": {"inputs": {"text": f"fox number {number}"}}}}
        if named:
            job["id"] = f"fox-{number:02d}"
        lines.append(json.dumps(job))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [f"fox-{n:02d}" for n in range(count)] if named else []


def journal_records(path: Path) -> list[dict[str, Any]]:
    """Every line of the journal, each asserted to be a whole JSON object (nothing torn)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def journal_records_tolerant(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def journaled_submissions(path: Path) -> int:
    """How many tasks the journal holds so far (its "submitting" records announce submits, not tasks)."""
    if not path.exists():
        return 0
    return sum(1 for record in journal_records_tolerant(path) if record.get("event") == "submitted")


def job_folders_with_one_png(out: Path) -> list[str]:
    folders = []
    for png in pngs_under(out):
        assert png.parent.name == "9"
        folders.append(png.parent.parent.name)
    assert len(folders) == len(set(folders)), "a job downloaded twice into its folder"
    return sorted(folders)


async def test_a_batch_of_50_survives_broken_sockets_and_a_rerun_does_nothing(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", 50)
    # Every socket dies without a close frame right after its first snapshot, however late the client connects
    # (after two snapshots, a socket opened once its task had finished would end normally instead).
    genstudio_emulator.set_faults(Faults(ws_drop_after=1, ws_junk=True))
    done = await genstudio(
        "batch", "jobs.jsonl", "--concurrency", "10", "--out", "out", "--poll-interval", "0.05",
        cwd=tmp_path, emulator=genstudio_emulator,
    )
    assert done.returncode == 0, done.stderr
    stats = genstudio_emulator.stats
    assert stats.submits == 50
    assert stats.ws_connections_dropped == stats.requests["progress_ws"] >= 50
    assert len(job_folders_with_one_png(tmp_path / "out")) == 50
    assert re.search(r"^50 jobs: 50 done, 0 failed$", done.stdout, re.M)
    assert len(re.findall(r"^\[\d+/50\] done job-[0-9a-f]{8}(-\d+)?: out/", done.stdout, re.M)) == 50
    journal = tmp_path / "jobs.jsonl.journal"
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600  # it holds prompt tokens
    events = [record["event"] for record in journal_records(journal)]
    assert events.count("submitted") == 50 and events.count("downloaded") == 50
    no_crash(done.stderr)

    before = stats.snapshot()
    again = await genstudio("batch", "jobs.jsonl", "--out", "out", "--json", cwd=tmp_path, emulator=genstudio_emulator)
    assert again.returncode == 0, again.stderr
    summary = again.json()
    assert summary["done"] == summary["done_before"] == 50 and summary["failed"] == 0
    assert {job["state"] for job in summary["jobs"]} == {"done_before"}
    after = stats.snapshot()
    assert after["submits"] == before["submits"] and after["storage_downloads"] == before["storage_downloads"]
    assert after["requests"] == before["requests"]  # not one request: nothing to do


async def test_ctrl_c_stops_cleanly_and_the_rerun_resumes_without_submitting_twice(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    names = write_jobs(tmp_path / "jobs.jsonl", 8, named=True)
    journal = tmp_path / "jobs.jsonl.journal"
    genstudio_emulator.pause()  # the first tasks stay queued: the interrupt comes while they are followed
    env = command_env(genstudio_emulator)
    async with started("batch", "jobs.jsonl", "--concurrency", "3", "--out", "out", cwd=tmp_path, env=env) as process:
        await eventually(lambda: journaled_submissions(journal) >= 3, what="three submissions in the journal",
                         timeout=20.0, interval=0.02)
        process.send_signal(signal.SIGINT)
        interrupted = await finish(process)
    assert interrupted.returncode == 130, interrupted.stderr
    assert "stopping: no new submits" in interrupted.stdout
    assert "interrupted: 3 task(s) left running on the service (not cancelled)" in interrupted.stderr
    no_crash(interrupted.stderr)
    records = journal_records(journal)  # every line whole
    first_run = [record["job"] for record in records if record["event"] == "submitted"]
    assert len(first_run) == 3 and all(record["prompt_token"] for record in records if record["event"] == "submitted")
    stats = genstudio_emulator.stats
    assert stats.submits == 3 and stats.cancels == 0  # the tasks were left to run on the service
    assert all((genstudio_emulator.task_info(t) or {}).get("status") == 1 for t in genstudio_emulator.task_ids())

    # A crash mid-write leaves a torn last line: the rerun must read past it.
    with journal.open("ab") as torn:
        torn.write(b'{"v":1,"event":"submitted","job":"fox-07","prompt_id":"cft-')
    genstudio_emulator.resume()
    resumed = await genstudio("batch", "jobs.jsonl", "--concurrency", "3", "--out", "out", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "3 to resume, 5 to submit" in resumed.stdout
    assert "has 1 damaged line(s), skipped" in resumed.stderr
    for name in first_run:
        assert re.search(rf"^{name}: resuming cft-\S+$", resumed.stdout, re.M)
    assert stats.submits == 8  # = the number of jobs, across both runs
    assert job_folders_with_one_png(tmp_path / "out") == names
    submitted = [r["job"] for r in journal_records_tolerant(journal) if r.get("event") == "submitted"]
    assert sorted(submitted) == names  # each job submitted exactly once
    no_crash(resumed.stderr)

    before = stats.snapshot()
    nothing = await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, env=env)
    assert nothing.returncode == 0, nothing.stderr
    assert "8 already downloaded, 0 to resume, 0 to submit" in nothing.stdout
    assert re.search(r"^8 jobs: 8 done \(8 before this run\), 0 failed$", nothing.stdout, re.M)
    after = stats.snapshot()
    assert after["submits"] == 8 and after["storage_downloads"] == before["storage_downloads"]


async def test_ctrl_c_during_submits_waits_for_their_answers_and_journals_them(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    names = write_jobs(tmp_path / "jobs.jsonl", 5, named=True)
    journal = tmp_path / "jobs.jsonl.journal"
    genstudio_emulator.set_faults(Faults(delay=0.3, endpoints=frozenset({"submit"})))  # slow submit answers
    env = command_env(genstudio_emulator)
    stats = genstudio_emulator.stats
    async with started("batch", "jobs.jsonl", "--concurrency", "3", "--out", "out", cwd=tmp_path, env=env) as process:
        await eventually(
            lambda: stats.requests["submit"] == 3, what="three submits in flight", timeout=20.0, interval=0.02
        )
        process.send_signal(signal.SIGINT)  # before any answer: the service is creating those three tasks
        interrupted = await finish(process)
    assert interrupted.returncode == 130, interrupted.stderr
    assert "waiting for 3 submit answer(s) to journal them" in interrupted.stdout
    assert stats.submits == 3 and stats.requests["submit"] == 3  # nothing new was sent after Ctrl-C
    journaled = {r["prompt_id"] for r in journal_records(journal) if r["event"] == "submitted"}
    assert journaled == set(genstudio_emulator.task_ids())  # every task the service made is in the journal
    no_crash(interrupted.stderr)

    genstudio_emulator.clear_faults()
    resumed = await genstudio("batch", "jobs.jsonl", "--concurrency", "3", "--out", "out", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert stats.submits == 5
    assert job_folders_with_one_png(tmp_path / "out") == names


async def test_a_second_ctrl_c_stops_at_once_and_says_which_submits_went_unanswered(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", 4, named=True)
    genstudio_emulator.set_faults(Faults(delay=0.5, endpoints=frozenset({"submit"})))
    stats = genstudio_emulator.stats
    env = command_env(genstudio_emulator)
    async with started("batch", "jobs.jsonl", "--concurrency", "2", "--out", "out", cwd=tmp_path, env=env) as process:
        await eventually(
            lambda: stats.requests["submit"] == 2, what="two submits in flight", timeout=20.0, interval=0.02
        )
        process.send_signal(signal.SIGINT)
        assert process.stdout is not None
        while "stopping: no new submits" not in (await process.stdout.readline()).decode():
            pass
        process.send_signal(signal.SIGINT)  # the user will not wait for the answers
        interrupted = await finish(process)
    assert interrupted.returncode == 130, interrupted.stderr
    assert (
        "genstudio: warning: no answer came to the submit of fox-00, fox-01: the service may have created those "
        "tasks, whose ids nothing knows; a rerun leaves those jobs alone (check the service's task list), "
        "--retry-failed submits them again"
    ) in interrupted.stderr
    assert re.search(r"^fox-00 +submit unanswered", interrupted.stdout, re.M)
    no_crash(interrupted.stderr)
    journal = tmp_path / "jobs.jsonl.journal"
    assert sorted(r["job"] for r in journal_records(journal) if r["event"] == "unanswered") == ["fox-00", "fox-01"]

    # The rerun does not submit those two again unasked (a second submit may be a second, billed task)...
    genstudio_emulator.clear_faults()
    sent = stats.requests["submit"]
    held = await genstudio("batch", "jobs.jsonl", "--out", "out", "--events", cwd=tmp_path, env=env)
    assert held.returncode == 1, held.stderr
    assert stats.requests["submit"] == sent + 2  # fox-02 and fox-03 only
    outcomes = outcomes_by_job(event_lines(held.stdout))
    assert {name: o["status"] for name, o in outcomes.items()} == {
        "fox-00": "submit_unanswered", "fox-01": "submit_unanswered", "fox-02": "succeeded", "fox-03": "succeeded"
    }
    assert "--retry-failed submits it again" in outcomes["fox-00"]["error"]
    # ...and --retry-failed does.
    retried = await genstudio("batch", "jobs.jsonl", "--out", "out", "--retry-failed", cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stderr
    assert stats.requests["submit"] == sent + 4
    assert job_folders_with_one_png(tmp_path / "out") == ["fox-00", "fox-01", "fox-02", "fox-03"]


async def test_failed_jobs_exit_1_and_are_submitted_again_only_when_asked(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", 3, named=True)
    env = command_env(genstudio_emulator)
    genstudio_emulator.set_faults(Faults(fail_tasks="CUDA out of memory"))
    failed = await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, env=env)
    assert failed.returncode == 1
    failures = re.findall(r"^\[\d/3\] FAILED fox-0\d: task cft-\S+ failed: CUDA out of memory$", failed.stdout, re.M)
    assert len(failures) == 3
    assert re.search(r"^3 jobs: 0 done, 3 failed$", failed.stdout, re.M)
    assert "--retry-failed submits the failed ones again" in failed.stderr

    genstudio_emulator.clear_faults()
    resumed = await genstudio("batch", "jobs.jsonl", "--out", "out", "--json", cwd=tmp_path, env=env)
    assert resumed.returncode == 1  # the same tasks, followed again: still failed, nothing submitted
    assert resumed.json()["failed"] == 3 and genstudio_emulator.stats.submits == 3

    retried = await genstudio("batch", "jobs.jsonl", "--out", "out", "--retry-failed", cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stderr
    assert genstudio_emulator.stats.submits == 6
    assert job_folders_with_one_png(tmp_path / "out") == ["fox-00", "fox-01", "fox-02"]
    no_crash(retried.stderr)


async def test_a_bad_jobs_file_lists_every_problem_and_sends_nothing(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"id": "a", "workflow_id": T2I}),
        "{not json",
        json.dumps({"prompt": {"6": {"inputs": {"text": "x"}}}}),
        "",
        json.dumps({"id": "a", "workflow_id": T2I}),
        json.dumps({"workflow_id": T2I, "prompt": {"6": {"class_type": "CLIPTextEncode", "inputs": {}}}}),
        json.dumps({"workflow_id": T2I, "promt": {}}),
    ]
    (tmp_path / "jobs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = await genstudio("batch", "jobs.jsonl", cwd=tmp_path, env=command_env(genstudio_emulator, dev_mode=False))
    assert done.returncode == 2
    report = done.stderr.splitlines()
    assert report[0] == "genstudio: error: the jobs file 'jobs.jsonl' has 5 problems; nothing was sent:"
    assert report[1].startswith("  - line 2: not valid JSON")
    assert report[2] == "  - line 3: 'workflow_id' must be a non-empty string"
    assert report[3] == "  - line 5: job id 'a' is already used on line 1"
    assert report[4].startswith("  - line 6: node '6': unexpected keys ['class_type'] (this looks like the exported")
    assert report[5].startswith("  - line 7: unknown keys ['promt']")
    assert genstudio_emulator.stats.submits == 0
    assert not (tmp_path / "jobs.jsonl.journal").exists()


# --- the journal itself, in-process -------------------------------------------------------------------------


def test_journal_reading_skips_damaged_lines_and_keeps_the_latest_task(tmp_path: Path) -> None:
    lines = [
        {"event": "submitted", "job": "a", "prompt_id": "cft-1", "prompt_token": "t1"},
        {"event": "failed", "job": "a", "prompt_id": "cft-1", "error": "boom", "task_failed": True},
        {"event": "submitted", "job": "a", "prompt_id": "cft-2", "prompt_token": "t2"},
        {"event": "downloaded", "job": "a", "prompt_id": "cft-1", "paths": ["stale.png"]},  # of the old task
        {"event": "submitted", "job": "b", "prompt_id": "cft-3", "prompt_token": "t3"},
        {"event": "downloaded", "job": "b", "prompt_id": "cft-3", "paths": [str(tmp_path / "b.png")]},
    ]
    data = b"\n".join(json.dumps(line).encode() for line in lines) + b'\n["junk"]\n{"event": "submitted", "jo'
    contents = parse_journal(data)
    assert contents.damaged_lines == 2
    a, b = contents.history("a"), contents.history("b")
    assert a.submission is not None and a.submission.prompt_id == "cft-2" and a.paths is None and not a.task_failed
    assert b.paths == [str(tmp_path / "b.png")] and not b.files_present()  # recorded, but the file is gone
    (tmp_path / "b.png").write_bytes(b"x")
    assert b.files_present()
    assert contents.history("c").submission is None


async def test_journal_is_private_ends_a_torn_line_and_admits_one_batch_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl.journal"
    path.write_bytes(b'{"event": "submitted", "job": "a", "prompt_id": "cft-1", "prompt_token": "t1"}\n{"ev')
    path.chmod(0o644)
    journal = Journal(path)
    assert journal.open().damaged_lines == 1
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(CLIError, match="another genstudio batch is using the journal"):
            Journal(path).open()
        await journal.append("downloaded", "a", prompt_id="cft-1", paths=[])
    finally:
        await journal.aclose()
    records = path.read_bytes().split(b"\n")
    assert records[1] == b'{"ev' and json.loads(records[2])["event"] == "downloaded"  # not glued to the torn line
    assert parse_journal(path.read_bytes()).history("a").paths == []


# --- GPUGeek: whole workflows -------------------------------------------------------------------------------------


@pytest.fixture
def gpugeek_emulator_options() -> dict[str, Any]:
    return {"workers": 4, "steps": 3, "step_seconds": 0.01}


async def test_a_gpugeek_batch_sends_whole_workflows_and_a_rerun_submits_nothing(
    gpugeek_emulator: Emulator[GPUGeekService], tmp_path: Path
) -> None:
    export = json.loads((EXPORTS / "t2i_workflow_api.json").read_text(encoding="utf-8"))
    gpugeek_emulator.register_workflow(4242, export)
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "mine_api.json").write_text(json.dumps(export), encoding="utf-8")
    jobs = [  # the built-in export changed by "set"; another id's export from a file; a whole prompt
        {"id": "fox", "workflow_id": GPUGEEK_T2I, "set": {"6": {"text": "a red fox"}, "KSampler": {"seed": 1}}},
        {"id": "own", "workflow_id": "4242", "workflow_json": "exports/mine_api.json",
         "set": {"Empty Latent Image": {"width": 64, "height": 48}, "3": {"seed": 2}}},
        {"workflow_id": GPUGEEK_T2I, "prompt": {**export, "3": {**export["3"], "inputs": {**export["3"]["inputs"],
                                                                                          "seed": 3}}}},
    ]
    (tmp_path / "jobs.jsonl").write_text("\n".join(json.dumps(job) for job in jobs) + "\n", encoding="utf-8")
    env = command_env(gpugeek_emulator)
    done = await genstudio(
        "batch", "--service", "gpugeek", "jobs.jsonl", "--out", "out", "--poll-interval", "0.05", cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^3 jobs: 3 done, 0 failed$", done.stdout, re.M)
    assert "(mode 0600)" in done.stdout and "prompt tokens" not in done.stdout  # GPUGeek has none
    tasks = {task.plan.seed: task for task in gpugeek_emulator.service.tasks}
    assert sorted(tasks) == [1, 2, 3]
    assert tasks[1].plan.text.startswith("a red fox") and tasks[2].workflow_id == "4242"
    assert (tasks[2].plan.width, tasks[2].plan.height) == (64, 48)
    assert len(job_folders_with_one_png(tmp_path / "out")) == 3
    records = journal_records(tmp_path / "jobs.jsonl.journal")
    submitted = [record for record in records if record["event"] == "submitted"]
    assert len(submitted) == 3
    assert all(record["prompt_token"] is None and record["service"] == "gpugeek" for record in submitted)
    no_crash(done.stderr)

    before = gpugeek_emulator.stats.snapshot()
    again = await genstudio("batch", "jobs.jsonl", "--out", "out", "--json", cwd=tmp_path,
                            env={**env, "GENSTUDIO_SERVICE": "gpugeek"})
    assert again.returncode == 0, again.stderr
    summary = again.json()
    assert summary["done"] == summary["done_before"] == 3
    assert gpugeek_emulator.stats.snapshot()["requests"] == before["requests"]  # not one request


async def test_a_gpugeek_batch_resumes_its_tasks_after_ctrl_c(
    gpugeek_emulator: Emulator[GPUGeekService], tmp_path: Path
) -> None:
    lines = [json.dumps({"id": f"fox-{n}", "workflow_id": GPUGEEK_T2I, "set": {"3": {"seed": n}}}) for n in range(3)]
    (tmp_path / "jobs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = command_env(gpugeek_emulator, GENSTUDIO_SERVICE="gpugeek")
    gpugeek_emulator.pause()  # every task stays queued: Ctrl-C comes while all three are followed
    async with started("batch", "jobs.jsonl", "--out", "out", "--poll-interval", "0.05", cwd=tmp_path,
                       env=env) as process:
        await eventually(lambda: gpugeek_emulator.stats.submits == 3, what="three submits", timeout=20.0)
        journal = tmp_path / "jobs.jsonl.journal"
        await eventually(
            lambda: sum(r["event"] == "submitted" for r in journal_records_tolerant(journal)) == 3,
            what="three submits journaled", timeout=20.0,
        )
        process.send_signal(signal.SIGINT)
        stopped = await finish(process)
    assert stopped.returncode == 130, stopped.stderr
    gpugeek_emulator.resume()
    resumed = await genstudio("batch", "jobs.jsonl", "--out", "out", "--poll-interval", "0.05", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "0 to submit" in resumed.stdout and "3 to resume" in resumed.stdout
    assert gpugeek_emulator.stats.submits == 3  # not one job submitted twice
    assert job_folders_with_one_png(tmp_path / "out") == ["fox-0", "fox-1", "fox-2"]
    no_crash(stopped.stderr + resumed.stderr)


def test_a_gpugeek_jobs_file_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "broken_api.json").write_text('{"3": {"inputs": {}}}', encoding="utf-8")
    lines = [
        {"workflow_id": "wf-c73diz7kadp6ffgn"},
        {"workflow_id": GPUGEEK_T2I, "spec": {}},
        {"workflow_id": 4242},
        {"workflow_id": 4242, "workflow_json": "missing_api.json"},
        {"workflow_id": 4242, "workflow_json": "broken_api.json"},
        {"workflow_id": GPUGEEK_T2I, "set": {"KSampler": 30}},
        {"workflow_id": GPUGEEK_T2I, "set": {"KSampler": {"colour": "red", "steps": "5"}, "Upscaler": {"scale": 2}}},
        {"workflow_id": GPUGEEK_T2I, "prompt": {"6": {"inputs": {"text": "a fox"}}}},
    ]
    (tmp_path / "jobs.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\nNaN\n", encoding="utf-8")
    with pytest.raises(CLIError) as caught:
        load_jobs(tmp_path / "jobs.jsonl", GPUGEEK)
    report = caught.value.message.splitlines()
    assert report[0] == f"the jobs file {str(tmp_path / 'jobs.jsonl')!r} has 11 problems; nothing was sent:"
    assert report[1] == "  - line 1: 'workflow_id' must be a positive integer (or a string of digits)"
    assert report[2] == (
        "  - line 2: unknown keys ['spec'] (a GPUGeek job has 'id', 'workflow_id', 'prompt', 'workflow_json', 'set' "
        "and 'images')"
    )
    assert report[3].startswith("  - line 3: GPUGeek runs the workflow it is sent, and 4242 is not a built-in one")
    assert report[4].startswith("  - line 4: cannot read the workflow export ('workflow_json') ")
    assert report[5].startswith("  - line 5: node '3': this node has no class_type")
    assert report[6] == (
        "  - line 6: 'set' must be an object {NODE: {INPUT: VALUE}} (NODE: a node id, a class_type or a title)"
    )
    assert report[7].startswith("  - line 7: node '3' (KSampler) input 'colour': the workflow's node has no such input")
    assert report[8] == (  # "set" holds JSON: typed already, and it must be of the type it replaces
        "  - line 7: node '3' (KSampler) input 'steps': expected a number, got '5' (allowed: a number, like the "
        "workflow's 20)"
    )
    assert report[9].startswith("  - line 7: node 'Upscaler' input 'scale': no node is called 'Upscaler'")
    assert report[10].startswith("  - line 8: node '6': this node has no class_type: the service runs the workflow")
    assert report[11] == "  - line 9: not valid JSON (NaN is not a JSON value)"


def test_a_journal_of_one_service_is_not_resumed_on_the_other(tmp_path: Path) -> None:
    contents = parse_journal(b"\n".join(json.dumps(line).encode() for line in [
        {"event": "submitted", "job": "old", "prompt_id": "cft-1", "prompt_token": "t1", "fingerprint": "f"},
        {"event": "submitted", "job": "geek", "prompt_id": "123", "prompt_token": None, "fingerprint": "g",
         "service": "gpugeek"},
    ]))
    old, geek = contents.history("old"), contents.history("geek")
    assert old.made_for("wf", "f", "genstudio") and not old.made_for("wf", "f", "gpugeek")  # written before: GenStudio
    assert geek.submission is not None and geek.submission.prompt_token is None  # GPUGeek's: no token, resumable
    assert geek.made_for(1, "g", "gpugeek") and not geek.made_for(1, "g", "genstudio")


# --- --events, local images, --spec, edited jobs, refused submits (issue #13) ---------------------------------


def write_lines(path: Path, jobs: list[dict[str, Any]]) -> None:
    path.write_text("\n".join(json.dumps(job) for job in jobs) + "\n", encoding="utf-8")


def fox(number: int, text: str | None = None) -> dict[str, Any]:
    """The job ``write_jobs(named=True)`` writes for ``number`` (``text``: its prompt edited)."""
    prompt = {"6": {"inputs": {"text": text or f"fox number {number}"}}}
    return {"id": f"fox-{number:02d}", "workflow_id": T2I, "prompt": prompt}


async def test_batch_events_validate_and_give_each_of_10_jobs_one_outcome_whatever_became_of_it(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    env = command_env(genstudio_emulator)
    write_jobs(tmp_path / "jobs.jsonl", 3, named=True)
    first = await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    [old_fox_01] = pngs_under(tmp_path / "out" / "fox-01")
    # A workflow whose submits get a 500 (the service may have made the task) and one the service does not know.
    genstudio_emulator.register_workflow("wf-flaky", SPECS / f"{T2I}.json")
    genstudio_emulator.set_workflow_faults(
        "wf-flaky", http_error_rate=1.0, http_error_status=500, endpoints=frozenset({"submit"})
    )
    jobs = [fox(0), fox(1, "a fox, edited"), fox(2), *(fox(n) for n in range(3, 8))]
    jobs += [{"id": "refused", "workflow_id": "wf-nowhere"}, {"id": "flaky", "workflow_id": "wf-flaky"}]
    write_lines(tmp_path / "jobs.jsonl", jobs)
    stats = genstudio_emulator.stats
    sent = stats.requests["submit"]
    done = await genstudio("batch", "jobs.jsonl", "--out", "out", "--events", "--concurrency", "4", cwd=tmp_path,
                           env=command_env(genstudio_emulator, dev_mode=False))
    assert done.returncode == 1, done.stderr
    events = event_lines(done.stdout)  # every line valid under the shipped schema; nothing else on stdout
    outcomes = outcomes_by_job(events)  # one each, and nothing of a job after it
    assert len(outcomes) == 10
    assert {name: outcome["status"] for name, outcome in outcomes.items()} == {
        "fox-00": "done_before", "fox-01": "succeeded", "fox-02": "done_before",
        **{f"fox-{n:02d}": "succeeded" for n in range(3, 8)},
        "refused": "never_submitted", "flaky": "submit_unanswered",
    }
    assert events[0]["command"] == "batch"
    assert outcomes["refused"]["prompt_id"] is None and "wf-nowhere" in outcomes["refused"]["error"]
    assert "may have created the task" in outcomes["flaky"]["error"]
    # The edited job: submitted again, its earlier files moved aside (said in its event), its folder the new one.
    assert outcomes["fox-01"]["moved_aside"] == "out/fox-01.previous-1"
    assert (tmp_path / "out" / "fox-01.previous-1" / "9" / old_fox_01.name).is_file()
    [new_fox_01] = pngs_under(tmp_path / "out" / "fox-01")
    assert outcomes["fox-01"]["paths"] == [str(new_fox_01.relative_to(tmp_path))]
    submitted = {event["job"]: event["prompt_id"] for event in events if event["type"] == "submitted"}
    assert sorted(submitted) == ["fox-01", *(f"fox-{n:02d}" for n in range(3, 8))]
    for event in events:
        if event["type"] in ("progress", "downloaded"):
            assert submitted[event["job"]] == event["prompt_id"]
    assert {event["job"] for event in events if event["type"] == "progress"} == set(submitted)
    assert all(outcomes[job]["prompt_id"] == prompt_id for job, prompt_id in submitted.items())
    assert "eyJ" not in done.stdout and genstudio_emulator.api_key not in done.stdout  # no token, no key
    assert stats.requests["submit"] == sent + 8
    no_crash(done.stderr)

    # A rerun submits the refused job again (it made no task), not the unanswered one (it may have).
    again = await genstudio("batch", "jobs.jsonl", "--out", "out", "--events", cwd=tmp_path, env=env)
    assert again.returncode == 1
    outcomes = outcomes_by_job(event_lines(again.stdout))
    assert outcomes["refused"]["status"] == "never_submitted" and outcomes["flaky"]["status"] == "submit_unanswered"
    assert {outcomes[f"fox-{n:02d}"]["status"] for n in range(8)} == {"done_before"}
    assert stats.requests["submit"] == sent + 9


async def test_an_edited_job_moves_its_earlier_files_aside_and_never_follows_a_symlink_out(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    env = command_env(genstudio_emulator)
    write_lines(tmp_path / "jobs.jsonl", [fox(0)])
    assert (await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, env=env)).returncode == 0
    (tmp_path / "out" / "fox-00.previous-1").mkdir()  # taken already: the next number is used
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine", encoding="utf-8")
    (tmp_path / "out" / "linked").symlink_to(outside, target_is_directory=True)  # a new job's folder, a symlink
    write_lines(tmp_path / "jobs.jsonl", [fox(0, "an edited fox"), {"id": "linked", "workflow_id": T2I}])
    done = await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "fox-00: earlier files moved to out/fox-00.previous-2" in done.stdout
    assert re.search(r"^fox-00 +done +cft-\S+ +out/fox-00/9/\S+\.png \(earlier files moved to "
                     r"out/fox-00\.previous-2\)$", done.stdout, re.M), done.stdout
    assert len(pngs_under(tmp_path / "out" / "fox-00.previous-2")) == len(pngs_under(tmp_path / "out" / "fox-00")) == 1
    # The symlink itself was moved aside (renamed in out/); nothing was written or removed through it.
    assert (tmp_path / "out" / "linked.previous-1").is_symlink()
    assert sorted(path.name for path in outside.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "out" / "linked").is_symlink() and len(pngs_under(tmp_path / "out" / "linked")) == 1
    no_crash(done.stderr)


async def test_local_images_are_uploaded_once_each_across_the_batch(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "fox.png").write_bytes(tiny_png(8, 8))
    (images / "cat.png").write_bytes(tiny_png(4, 4))
    (images / "fox-copy.png").write_bytes(tiny_png(8, 8))  # the same bytes under another name: no second upload
    forms: list[Any] = [{"10": "imgs/fox.png"}, {"Load Image": "imgs/cat.png"}, ["10=imgs/fox-copy.png"]]
    jobs = [{"id": f"i2i-{n}", "workflow_id": I2I, "images": forms[n % 3]} for n in range(6)]
    write_lines(tmp_path / "jobs.jsonl", jobs)
    done = await genstudio("batch", "jobs.jsonl", "--out", "out", "--json", cwd=tmp_path, emulator=genstudio_emulator)
    assert done.returncode == 0, done.stderr
    assert done.json()["done"] == 6
    stats = genstudio_emulator.stats
    assert stats.submits == 6 and stats.uploads == 2 and stats.requests["upload"] == 2
    assert len(job_folders_with_one_png(tmp_path / "out")) == 6

    # A changed image is a changed job: that job alone is submitted again.
    (images / "cat.png").write_bytes(tiny_png(5, 5))
    again = await genstudio("batch", "jobs.jsonl", "--out", "out", "--json", cwd=tmp_path, emulator=genstudio_emulator)
    assert again.returncode == 0, again.stderr
    assert {job["job"] for job in again.json()["jobs"] if job["state"] == "done"} == {"i2i-1", "i2i-4"}
    assert stats.submits == 8 and stats.uploads == 3


async def test_a_missing_or_escaping_image_is_a_usage_error_naming_job_and_file_before_any_submit(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "batch").mkdir()
    (tmp_path / "secret.png").write_bytes(tiny_png(2, 2))  # beside the jobs file's folder, not in it
    (tmp_path / "batch" / "ok.png").write_bytes(tiny_png(2, 2))
    (tmp_path / "batch" / "evil.png").symlink_to(tmp_path / "secret.png")
    (tmp_path / "batch" / "empty.png").write_bytes(b"")
    jobs: list[dict[str, Any]] = [
        {"id": "good", "workflow_id": I2I, "images": {"10": "ok.png"}},
        {"id": "missing", "workflow_id": I2I, "images": {"10": "nowhere.png"}},
        {"id": "symlink", "workflow_id": I2I, "images": {"10": "evil.png"}},
        {"id": "dotdot", "workflow_id": I2I, "images": {"10": "../secret.png"}},
        {"id": "empty", "workflow_id": I2I, "images": ["10=empty.png"]},
        {"id": "folder", "workflow_id": I2I, "images": {"10": "."}},
    ]
    write_lines(tmp_path / "batch" / "jobs.jsonl", jobs)
    done = await genstudio("batch", "batch/jobs.jsonl", cwd=tmp_path,
                           env=command_env(genstudio_emulator, dev_mode=False))
    assert done.returncode == 2
    report = done.stderr.splitlines()
    assert report[0].endswith("has 5 problems; nothing was sent:")
    assert report[1].startswith("  - line 2: job 'missing': image 'nowhere.png': no such file")
    assert report[2].startswith("  - line 3: job 'symlink': image 'evil.png' is outside the jobs file's folder")
    assert report[3].startswith("  - line 4: job 'dotdot': image '../secret.png' is outside the jobs file's folder")
    assert report[4] == "  - line 5: job 'empty': image 'empty.png' is empty"
    assert report[5] == "  - line 6: job 'folder': image '.' is not a regular file"
    stats = genstudio_emulator.stats
    assert stats.submits == 0 and stats.uploads == 0 and sum(stats.requests.values()) == 0


async def test_spec_checks_every_job_before_anything_is_sent(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    spec = json.loads((SPECS / f"{T2I}.json").read_text(encoding="utf-8"))
    (tmp_path / "mine.json").write_text(json.dumps(spec), encoding="utf-8")
    jobs = [
        {"id": "fine", "workflow_id": "wf-mine", "prompt": {"3": {"inputs": {"steps": 20}}}},
        {"id": "typo", "workflow_id": "wf-mine", "prompt": {"3": {"inputs": {"stesp": 20}}}},
        {"id": "steps", "workflow_id": "wf-mine", "prompt": {"3": {"inputs": {"steps": "many"}}}},
        {"id": "node", "workflow_id": "wf-mine", "prompt": {"99": {"inputs": {"text": "x"}}}},
        {"id": "builtin", "workflow_id": T2I, "prompt": {"3": {"inputs": {"cfg": "high"}}}},  # its built-in spec
    ]
    write_lines(tmp_path / "jobs.jsonl", jobs)
    done = await genstudio("batch", "jobs.jsonl", "--spec", "wf-mine=mine.json", cwd=tmp_path,
                           env=command_env(genstudio_emulator, dev_mode=False))
    assert done.returncode == 2, done.stderr
    report = done.stderr.splitlines()
    assert report[0] == "genstudio: error: the jobs file 'jobs.jsonl' has 4 problems; nothing was sent:"
    assert report[1].startswith("  - line 2: job 'typo': node '3' (KSampler) input 'stesp'")
    assert report[2].startswith("  - line 3: job 'steps': node '3' (KSampler) input 'steps'")
    assert report[3].startswith("  - line 4: job 'node': node '99'")
    assert report[4].startswith("  - line 5: job 'builtin': node '3' (KSampler) input 'cfg'")
    assert genstudio_emulator.stats.submits == 0 and sum(genstudio_emulator.stats.requests.values()) == 0
    assert not (tmp_path / "jobs.jsonl.journal").exists()


async def test_a_gpugeek_batch_uploads_each_image_once_streams_events_and_refuses_spec(
    gpugeek_emulator: Emulator[GPUGeekService], tmp_path: Path
) -> None:
    (tmp_path / "fox.png").write_bytes(tiny_png(8, 8))
    (tmp_path / "cat.png").write_bytes(tiny_png(4, 4))
    jobs: list[dict[str, Any]] = [
        {"id": f"geek-{n}", "workflow_id": GPUGEEK_I2I, "images": {"Load Image": ["fox.png", "cat.png"][n % 2]},
         "set": {"KSampler": {"seed": n}}}
        for n in range(4)
    ]
    write_lines(tmp_path / "jobs.jsonl", jobs)
    env = command_env(gpugeek_emulator, GENSTUDIO_SERVICE="gpugeek")
    refused = await genstudio("batch", "jobs.jsonl", "--spec", "mine.json", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "--spec is a GenStudio parameter spec" in refused.stderr
    assert sum(gpugeek_emulator.stats.requests.values()) == 0
    done = await genstudio("batch", "jobs.jsonl", "--out", "out", "--events", "--poll-interval", "0.05",
                           cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    events = event_lines(done.stdout)
    assert events[0]["service"] == "gpugeek"
    outcomes = outcomes_by_job(events)
    assert {outcome["status"] for outcome in outcomes.values()} == {"succeeded"} and len(outcomes) == 4
    stats = gpugeek_emulator.stats
    assert stats.submits == 4 and stats.uploads == 2 and stats.commits == 2
    assert len(job_folders_with_one_png(tmp_path / "out")) == 4
    no_crash(done.stderr)


async def test_a_resumed_job_never_downloads_through_a_symlink_planted_in_its_folder(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    env = command_env(genstudio_emulator)
    write_lines(tmp_path / "jobs.jsonl", [fox(0)])
    genstudio_emulator.pause()  # queued: the first run times out with the task journaled, its files not saved
    first = await genstudio("batch", "jobs.jsonl", "--out", "out", "--timeout", "0.5", cwd=tmp_path, env=env)
    assert first.returncode == 1, first.stderr
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir(exist_ok=True)
    if (tmp_path / "out" / "fox-00").exists():
        (tmp_path / "out" / "fox-00").rmdir()
    (tmp_path / "out" / "fox-00").symlink_to(outside, target_is_directory=True)
    genstudio_emulator.resume()
    again = await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, env=env)
    assert genstudio_emulator.stats.submits == 1  # resumed by id, not submitted again
    assert again.returncode == 1 and "is a symlink or leads outside" in again.stdout + again.stderr, again.stdout
    assert list(outside.iterdir()) == []  # nothing written through it
    no_crash(again.stderr)


# --- issue #13's hostile review --------------------------------------------------------------------------------

REVIEW_KEY = "sk-test-0123456789abcdef"
REVIEW_TOKEN = "tok-0123456789-not-a-jwt-but-a-secret"


@pytest.mark.parametrize(
    "answer",
    [
        (200, "application/json", b'{"code": 0, "msg": "Success", "data": {"prompt_i'),  # cut short
        envelope({"prompt_id": "cft-made", "prompt_token": None}),  # the task named, its token missing
    ],
    ids=["cut-body", "no-token"],
)
async def test_a_submit_answered_200_unreadably_is_held_not_submitted_twice(
    tmp_path: Path, answer: Answer
) -> None:
    """An HTTP 200 means the service took the submit: a body the SDK cannot use does not unmake the task. The
    job is "submit unanswered" (not "never submitted"), and a rerun does not submit it again unasked."""
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"id": "fox", "workflow_id": T2I}) + "\n", encoding="utf-8")
    submits = []

    def respond(method: str, path: str, body: bytes) -> Answer:
        if path.endswith("/prompt"):
            submits.append(body)
            return answer
        return 404, "text/plain", b"no"

    async with fake_service(respond) as url:
        env = command_env(GENSTUDIO_API_KEY=REVIEW_KEY, GENSTUDIO_BASE_URL=url)
        first = await genstudio("batch", "jobs.jsonl", "--events", cwd=tmp_path, env=env)
        rerun = await genstudio("batch", "jobs.jsonl", "--events", cwd=tmp_path, env=env)
    assert first.returncode == 1, first.stderr
    assert outcomes_by_job(event_lines(first.stdout))["fox"]["status"] == "submit_unanswered"
    assert len(submits) == 1, f"the rerun submitted the job again ({rerun.stdout})"
    assert outcomes_by_job(event_lines(rerun.stdout))["fox"]["status"] == "submit_unanswered"


async def test_a_resumed_batch_job_never_writes_through_a_symlink_in_its_folders_place(tmp_path: Path) -> None:
    """A symlink planted at out/<job> between two runs is refused for a resumed job (main's 0ff4010)."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "jobs.jsonl").write_text(json.dumps({"id": "fox", "workflow_id": T2I}) + "\n", encoding="utf-8")
    state: dict[str, Any] = {"done": False}

    def respond(method: str, path: str, body: bytes) -> Answer:
        if path.endswith("/prompt"):
            return envelope({"prompt_id": "cft-a", "prompt_token": REVIEW_TOKEN})
        if path.endswith("/get_task_info"):
            if not state["done"]:  # the first run times out on a running task: journaled, not downloaded
                return envelope({"comfy_task_info": [
                    {"comfy_task_id": "cft-a", "status": 2, "progress_num": 10, "files": {}, "final_files": []}]})
            files = {"9": [f"{state['url']}/bucket/x.png?Expires=4102444800&Signature=a%2Fb"]}
            return envelope({"comfy_task_info": [
                {"comfy_task_id": "cft-a", "status": 3, "progress_num": 100, "files": files, "final_files": []}]})
        if path.startswith("/bucket/"):
            return 200, "image/png", tiny_png(4, 4)
        return 404, "text/plain", b"no"

    async with fake_service(respond) as state["url"]:
        env = command_env(GENSTUDIO_API_KEY=REVIEW_KEY, GENSTUDIO_BASE_URL=state["url"])
        follow = ("--out", "out", "--no-websocket", "--poll-interval", "0.05")
        await genstudio("batch", "jobs.jsonl", *follow, "--timeout", "0.2", cwd=work, env=env)
        state["done"] = True
        out = work / "out"
        out.mkdir(exist_ok=True)
        if (out / "fox").exists():
            (out / "fox").rmdir()
        (out / "fox").symlink_to(outside)
        second = await genstudio("batch", "jobs.jsonl", *follow, cwd=work, env=env)
    assert second.returncode == 1, second.stderr
    assert not list(outside.rglob("*")), sorted(outside.rglob("*"))


async def test_a_batch_killed_while_a_submit_is_in_flight_is_not_submitted_again(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    """kill -9 while the service holds the submit: the journal's "submitting" record makes the rerun hold the
    job ("submit unanswered") instead of paying for a second task; --retry-failed submits it."""
    write_jobs(tmp_path / "jobs.jsonl", 1, named=True)
    journal = tmp_path / "jobs.jsonl.journal"
    genstudio_emulator.set_faults(Faults(delay=2.0, endpoints=frozenset({"submit"})))  # held: the kill comes first
    stats = genstudio_emulator.stats
    env = command_env(genstudio_emulator)
    async with started("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, env=env) as process:
        await eventually(lambda: stats.requests["submit"] == 1, what="the submit on the wire", timeout=20.0,
                         interval=0.02)
        process.kill()  # SIGKILL: no handler, no journal write after this
        await process.wait()
    assert [r["event"] for r in journal_records_tolerant(journal)] == ["submitting"]
    genstudio_emulator.clear_faults()
    held = await genstudio("batch", "jobs.jsonl", "--out", "out", "--events", cwd=tmp_path, env=env)
    assert held.returncode == 1, held.stderr
    outcome = outcomes_by_job(event_lines(held.stdout))["fox-00"]
    assert outcome["status"] == "submit_unanswered" and "in flight" in outcome["error"]
    assert stats.requests["submit"] == 1  # not sent again
    retried = await genstudio("batch", "jobs.jsonl", "--out", "out", "--retry-failed", cwd=tmp_path, env=env)
    assert retried.returncode == 0, retried.stderr
    assert stats.requests["submit"] == 2 and job_folders_with_one_png(tmp_path / "out") == ["fox-00"]


async def test_a_refused_submit_after_its_submitting_record_is_submitted_again(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    """The "submitting" record is answered by "refused" when the service made no task: the rerun tries again."""
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"workflow_id": "wf-unknown", "id": "bad"}) + "\n")
    env = command_env(genstudio_emulator)
    first = await genstudio("batch", "jobs.jsonl", cwd=tmp_path, env=env)
    second = await genstudio("batch", "jobs.jsonl", "--events", cwd=tmp_path, env=env)
    assert first.returncode == second.returncode == 1
    assert outcomes_by_job(event_lines(second.stdout))["bad"]["status"] == "never_submitted"
    assert genstudio_emulator.stats.requests["submit"] == 2
    events = [r["event"] for r in journal_records(tmp_path / "jobs.jsonl.journal")]
    assert events == ["submitting", "refused", "submitting", "refused"]


def test_a_journal_of_an_older_version_reads_as_before() -> None:
    """Journals written before the "submitting" and "refused" records: the same histories."""
    old = (
        b'{"v":1,"event":"submitted","job":"fox","workflow_id":"wf-a","prompt_id":"cft-1","prompt_token":"t"}\n'
        b'{"v":1,"event":"unanswered","job":"cat","workflow_id":"wf-a","error":"timed out"}\n'
    )
    contents = parse_journal(old)
    fox, cat = contents.history("fox"), contents.history("cat")
    assert fox.submission is not None and fox.submission.prompt_id == "cft-1" and not fox.unanswered
    assert cat.unanswered and cat.error == "timed out" and cat.submission is None


async def test_ctrl_c_with_no_task_running_says_there_is_nothing_to_resume(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"workflow_id": "wf-unknown", "id": "bad"}) + "\n")
    genstudio_emulator.set_faults(Faults(delay=0.3, endpoints=frozenset({"submit"})))
    env = command_env(genstudio_emulator)
    async with started("batch", "jobs.jsonl", cwd=tmp_path, env=env) as process:
        await eventually(lambda: genstudio_emulator.stats.requests["submit"] == 1, what="the submit on the wire")
        process.send_signal(signal.SIGINT)  # its answer (a refusal) comes in the grace period
        interrupted = await finish(process)
    assert interrupted.returncode == 130, interrupted.stderr
    assert "0 task(s) left running" not in interrupted.stderr
    assert "interrupted: no task of this batch is left running on the service" in interrupted.stderr


async def test_a_fifo_as_the_jobs_file_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO would block the read for ever (and Ctrl-C with it): refused unread, exit 2."""
    os.mkfifo(tmp_path / "jobs.jsonl")
    env = command_env(GENSTUDIO_API_KEY=REVIEW_KEY, GENSTUDIO_BASE_URL="http://127.0.0.1:9")
    async with asyncio.timeout(20):  # a failure bound: the old code never returns
        done = await genstudio("batch", "jobs.jsonl", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "is not a regular file" in one_error_line(done.stderr)


def test_a_jobs_file_too_big_or_a_device_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CD, "CLI_JOBS_FILE_MAX_BYTES", 100)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps({"workflow_id": T2I, "id": f"j{n}"}) for n in range(10)) + "\n")
    with pytest.raises(CLIError, match="is bigger than 100 bytes") as raised:
        load_jobs(jobs)
    assert raised.value.code == 2
    with pytest.raises(CLIError, match="is not a regular file"):
        load_jobs(Path("/dev/zero"))  # the old code read it until MemoryError


def test_a_jobs_image_too_big_is_a_problem_of_its_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CD, "CLI_BATCH_IMAGE_MAX_BYTES", 1000)
    (tmp_path / "big.png").write_bytes(tiny_png(4, 4) + b"\0" * 1000)
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"id": "fox", "workflow_id": I2I, "images": {"10": "big.png"}}))
    with pytest.raises(CLIError) as raised:
        load_jobs(tmp_path / "jobs.jsonl")
    assert raised.value.code == 2
    assert "job 'fox': image 'big.png' is bigger than 1000 bytes" in raised.value.message


async def test_a_jobs_image_is_sent_as_the_bytes_checked_not_as_the_file_is_later(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    """The image is read once, at load: the bytes hashed into the fingerprint are the ones uploaded, even if the
    file is swapped before the submit (and a job does not read it again)."""
    original = tiny_png(8, 8)
    (tmp_path / "fox.png").write_bytes(original)
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"id": "fox", "workflow_id": I2I, "images": {"10": "fox.png"}}))
    [job] = load_jobs(tmp_path / "jobs.jsonl")
    (tmp_path / "fox.png").write_bytes(b"not a png at all, swapped in after the check")
    [image] = [value for node in (job.prompt or {}).values() for value in node["inputs"].values()
               if isinstance(value, LocalImage)]
    assert image.data == original and image.filename == "fox.png"
    assert dict(job.images)[str((tmp_path / "fox.png").resolve())] == hashlib.sha256(original).hexdigest()
    async with genstudio_emulator.client() as client:
        result = await client.wait(await client.submit(job.workflow_id, job.prompt), timeout=30)
    assert result.files  # the emulator read the upload as an image: the swapped bytes would fail the task
