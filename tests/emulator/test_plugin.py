"""The opt-in pytest plugin, run as a user would: a separate pytest session in a temporary project."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

PYTEST_INI = """[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
"""

USER_TESTS = '''
import httpx
import pytest

from genstudio_async import AsyncGenStudio
from genstudio_async.emulator import Emulator, Faults


@pytest.mark.asyncio
async def test_a_running_emulator(genstudio_emulator: Emulator) -> None:
    assert genstudio_emulator.base_url.startswith("http://127.0.0.1:")
    assert genstudio_emulator.api_key == "sk-from-options"
    async with httpx.AsyncClient(base_url=genstudio_emulator.base_url, trust_env=False,
                                 headers={"Authorization": "Bearer sk-from-options"}) as api:
        response = await api.post("/api/maas/comfy_task_api/prompt", json={"workflow_id": "wf-c73diz7kadp6ffgn"})
    task_id = response.json()["data"]["prompt_id"]
    await genstudio_emulator.wait_status(task_id, 3)
    assert genstudio_emulator.stats.submits == 1


@pytest.mark.asyncio
@pytest.mark.genstudio_emulator(workers=1, faults=Faults(deny_tasks=True))
async def test_marker_options(genstudio_emulator: Emulator) -> None:
    assert genstudio_emulator.faults.deny_tasks
    assert genstudio_emulator.api_key == "sk-from-options"


@pytest.mark.asyncio
async def test_client_factory(genstudio_emulator: Emulator) -> None:
    client = genstudio_emulator.client()
    assert isinstance(client, AsyncGenStudio)
    async with client:
        result = await client.run("wf-c73diz7kadp6ffgn", {"6": {"inputs": {"text": "a red fox"}}}, timeout=10)
    assert result.final_files and genstudio_emulator.stats.storage_requests_with_authorization == 0


@pytest.mark.asyncio
async def test_env(genstudio_emulator_env: Emulator) -> None:
    async with AsyncGenStudio() as client:
        submission = await client.submit("wf-c73diz7kadp6ffgn")
    assert genstudio_emulator_env.task_ids() == [submission.prompt_id]
'''


async def run_pytest(project: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", str(project),
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_plugin_gives_users_a_running_emulator(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "conftest.py").write_text(
        'import pytest\n\npytest_plugins = ["genstudio_async.testing"]\n\n\n'
        "@pytest.fixture\ndef genstudio_emulator_options():\n"
        '    return {"api_key": "sk-from-options", "steps": 2, "step_seconds": 0.01}\n'
    )
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    code, output = await run_pytest(tmp_path)
    assert code == 0, output
    assert "4 passed" in output


async def test_the_plugin_does_not_load_by_itself(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "test_user.py").write_text("def test_needs_it(genstudio_emulator):\n    pass\n")
    code, output = await run_pytest(tmp_path)
    assert code != 0 and "fixture 'genstudio_emulator' not found" in output
