"""The installed command where it once lost a task id, re-billed a job or echoed a key (regressions)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from genstudio_async.emulator import Emulator, Faults
from tests.cli_support import T2I, command_env, finish, genstudio, started
from tests.support import eventually, no_crash

SECRET = "sk-live-SECRETSECRETSECRET0123"


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    return {"workers": 8, "steps": 3, "step_seconds": 0.01}


def job_line(text: str, **extra: Any) -> str:
    return json.dumps({"workflow_id": T2I, "prompt": {"6": {"inputs": {"text": text}}}, **extra}, ensure_ascii=False)


async def test_a_misplaced_api_key_is_never_echoed(tmp_path: Path) -> None:
    for argv in (("--api-key", SECRET, "status", "cft-x"), ("demo", f"--api-key={SECRET}")):
        done = await genstudio(*argv, cwd=tmp_path, env=command_env())
        assert done.returncode == 2
        assert SECRET not in done.stderr + done.stdout


async def test_run_refuses_an_output_path_that_is_a_file_before_submitting(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("not a directory")
    done = await genstudio("run", T2I, "--out", "afile", cwd=tmp_path, emulator=genstudio_emulator)
    assert done.returncode == 2 and "not a directory" in done.stderr
    assert genstudio_emulator.stats.submits == 0


async def test_deleting_a_finished_line_resubmits_nothing(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(job_line(f"fox {n}") for n in range(3)) + "\n", encoding="utf-8")
    first = await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, emulator=genstudio_emulator)
    assert first.returncode == 0, first.stderr
    jobs.write_text("\n".join(job_line(f"fox {n}") for n in range(1, 3)) + "\n", encoding="utf-8")
    again = await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, emulator=genstudio_emulator)
    assert again.returncode == 0, again.stderr
    assert genstudio_emulator.stats.submits == 3  # the two remaining jobs kept their names: nothing re-billed


async def test_a_named_job_whose_prompt_changed_is_submitted_again(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(job_line("a red fox", id="fox") + "\n", encoding="utf-8")
    assert (await genstudio("batch", "jobs.jsonl", cwd=tmp_path, emulator=genstudio_emulator)).returncode == 0
    jobs.write_text(job_line("a totally different cat", id="fox") + "\n", encoding="utf-8")
    again = await genstudio("batch", "jobs.jsonl", cwd=tmp_path, emulator=genstudio_emulator)
    assert again.returncode == 0, again.stderr
    assert genstudio_emulator.stats.submits == 2
    assert "changed since their task was submitted" in again.stderr + again.stdout


async def test_jobs_may_hold_unicode_line_separators(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "jobs.jsonl").write_text(job_line("line\u2028separator") + "\n" + job_line("nel\u0085") + "\n")
    done = await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, emulator=genstudio_emulator)
    assert done.returncode == 0, done.stderr
    assert genstudio_emulator.stats.submits == 2


async def test_ctrl_c_during_a_submit_in_flight_is_reported_without_a_traceback(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    jobs = json.dumps({"workflow_id": "wf-unknown", "id": "bad"}) + "\n" + job_line("slow fox", id="fox") + "\n"
    (tmp_path / "jobs.jsonl").write_text(jobs, encoding="utf-8")
    genstudio_emulator.set_faults(Faults(delay=0.3, endpoints=frozenset({"submit"})))
    env = command_env(genstudio_emulator)
    async with started("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, env=env) as process:
        await eventually(lambda: genstudio_emulator.stats.requests["submit"] >= 2, what="both submits on the wire")
        process.send_signal(signal.SIGINT)
        interrupted = await finish(process)
    assert interrupted.returncode == 130, interrupted.stderr
    no_crash(interrupted.stderr)  # the refused submit's error is reported, not left as "never retrieved"
    # The good submit's answer arrived during the grace period: journaled, so a rerun resumes it.
    genstudio_emulator.set_faults(Faults())
    again = await genstudio("batch", "jobs.jsonl", "--out", "out", cwd=tmp_path, emulator=genstudio_emulator)
    assert genstudio_emulator.stats.submits == 1  # fox's task was created once and resumed, never re-billed
    assert genstudio_emulator.stats.requests["submit"] == 3  # the refused job was simply tried again
    assert "fox" in again.stdout


async def test_a_base_url_that_is_not_a_url_is_a_usage_error(tmp_path: Path) -> None:
    env = command_env(GENSTUDIO_API_KEY="sk-test-key-0123456789")
    done = await genstudio("status", "cft-x", "--base-url", "http://127.0.0.1:99999", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "internal error" not in done.stderr
