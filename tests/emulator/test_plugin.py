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


def user_project(tmp_path: Path, options_fixture: str, api_key: str, tests: str) -> Path:
    """A project that turns the plugin on, overrides ``options_fixture`` (a key, fast tasks) and holds ``tests``."""
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "conftest.py").write_text(
        'import pytest\n\npytest_plugins = ["genstudio_async.testing"]\n\n\n'
        f"@pytest.fixture\ndef {options_fixture}():\n"
        f'    return {{"api_key": "{api_key}", "steps": 2, "step_seconds": 0.01}}\n'
    )
    (tmp_path / "test_user.py").write_text(tests)
    return tmp_path


async def test_the_plugin_gives_users_a_running_emulator(tmp_path: Path) -> None:
    code, output = await run_pytest(user_project(tmp_path, "genstudio_emulator_options", "sk-from-options", USER_TESTS))
    assert code == 0, output
    assert "4 passed" in output


async def test_the_plugin_does_not_load_by_itself(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "test_user.py").write_text("def test_needs_it(genstudio_emulator):\n    pass\n")
    code, output = await run_pytest(tmp_path)
    assert code != 0 and "fixture 'genstudio_emulator' not found" in output


GPUGEEK_USER_TESTS = '''
import httpx
import pytest

from genstudio_async.emulator import Emulator, Faults

SUBMIT = {"workflow_id": 763311996779461, "task_type": 1,
          "prompt": {"1": {"inputs": {"images": []}, "class_type": "SaveImage"}}}


@pytest.mark.asyncio
async def test_the_gpugeek_fixture(gpugeek_emulator: Emulator) -> None:
    assert gpugeek_emulator.service_name == "GPUGeek" and gpugeek_emulator.api_key == "gk-from-options"
    async with httpx.AsyncClient(base_url=gpugeek_emulator.base_url, trust_env=False,
                                 headers={"Authorization": "Bearer gk-from-options"}) as api:
        prompt_id = (await api.post("/api/v1/prompt", json=SUBMIT)).json()["data"]["prompt_id"]
        assert (await gpugeek_emulator.wait_status(prompt_id, 3))["status"] == 3
        assert (await api.get(f"/api/v1/task/{prompt_id}")).json()["message"] == "success"


@pytest.mark.asyncio
@pytest.mark.gpugeek_emulator(faults=Faults(fail_tasks="boom"))
async def test_the_gpugeek_marker(gpugeek_emulator: Emulator) -> None:
    assert gpugeek_emulator.faults.fail_tasks == "boom"


@pytest.mark.asyncio
@pytest.mark.genstudio_emulator(service="gpugeek")
async def test_the_genstudio_marker_picks_the_service(genstudio_emulator: Emulator) -> None:
    assert genstudio_emulator.service_name == "GPUGeek"


@pytest.mark.asyncio
async def test_the_gpugeek_env(gpugeek_emulator_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    assert os.environ["GPUGEEK_BASE_URL"] == gpugeek_emulator_env.base_url
    assert os.environ["GPUGEEK_API_KEY"] == "gk-from-options"
'''


async def test_the_plugin_gives_users_a_gpugeek_emulator_too(tmp_path: Path) -> None:
    project = user_project(tmp_path, "gpugeek_emulator_options", "gk-from-options", GPUGEEK_USER_TESTS)
    code, output = await run_pytest(project)
    assert code == 0, output
    assert "4 passed" in output
