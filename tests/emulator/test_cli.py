"""The emulator from a shell: ``python -m genstudio_async.emulator`` and ``genstudio emulator``, in subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from genstudio_async._services import genstudio as GS
from genstudio_async._services import gpugeek as G
from genstudio_async.cli import build_parser, main
from genstudio_async.emulator import _defaults as ED
from tests.cli_support import default_sigint

FIRST_LINE = re.compile(r"^(GenStudio|GPUGeek) emulator listening on http://127\.0\.0\.1:(\d+)\n$")
BLOCK_STARLETTE = "import sys; sys.modules['starlette'] = None; "


class Running:
    """An emulator process and where it listens."""

    def __init__(self, process: asyncio.subprocess.Process, base_url: str) -> None:
        self.process = process
        self.base_url = base_url


@asynccontextmanager
async def emulator_process(*argv: str, name: str = "GenStudio") -> AsyncIterator[Running]:
    """Start an emulator command, read its first line (``name`` emulator listening on …), and make sure it is
    gone afterwards."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "0"},
        preexec_fn=default_sigint,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        match = FIRST_LINE.match(first)
        assert match, (first, (await process.stderr.read()).decode() if process.stderr else "")
        assert match.group(1) == name and int(match.group(2)) != 0
        yield Running(process, first.removeprefix(f"{name} emulator listening on ").strip())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stop_with(running: Running, signum: signal.Signals) -> str:
    running.process.send_signal(signum)
    stdout, _ = await asyncio.wait_for(running.process.communicate(), 20)
    assert running.process.returncode == 0
    return stdout.decode()


async def test_python_m_emulator_serves_until_sigint(tmp_path: Path) -> None:
    spec = {"1": {"inputs": {"text": {"type": "STRING", "current": "x", "spec": {}}}, "class_type": "SaveImage"}}
    spec_file = tmp_path / "mine.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    async with emulator_process(
        sys.executable, "-m", "genstudio_async.emulator", "--host", "127.0.0.1", "--port", "0",
        "--api-key", "sk-cli-test", "--workers", "1", "--steps", "2", "--step-seconds", "0.01",
        "--workflow", f"wf-mine={spec_file}", "--fault", "ws_junk=true", "--fault", "wf-mine:deny_tasks=true",
    ) as running:
        headers = {"Authorization": "Bearer sk-cli-test"}
        async with httpx.AsyncClient(base_url=running.base_url, headers=headers, trust_env=False) as api:
            denied = (await api.post(GS.SUBMIT_PATH, json={"workflow_id": "wf-mine"})).json()["data"]["prompt_id"]
            info = (await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": [denied]})).json()
            assert info["data"]["comfy_task_info"][0]["status"] == 5
            faults = (await api.get(f"{ED.EMULATOR_ADMIN_PATH_PREFIX}/faults")).json()["data"]
            assert faults["faults"]["ws_junk"] is True and faults["workflows"]["wf-mine"]["deny_tasks"] is True
            workflows = (await api.get(f"{ED.EMULATOR_ADMIN_PATH_PREFIX}/workflows")).json()["data"]["workflows"]
            assert set(workflows) == {"wf-mine", "wf-c73diz7kadp6ffgn", "wf-c73epllu4i3bxvzr", "wf-c72qozydy6suxesa"}
            assert (await api.post(GS.SUBMIT_PATH, json={"workflow_id": "wf-mine"}, headers={"Authorization": "x"})
                    ).status_code == 401
        rest = await stop_with(running, signal.SIGINT)
    assert "GenStudio emulator stopped." in rest and "sk-cli-test" not in rest


async def test_service_gpugeek_serves_gpugeek_until_sigint(tmp_path: Path) -> None:
    workflow = {"1": {"inputs": {"images": []}, "class_type": "SaveImage", "_meta": {"title": "Out"}}}
    workflow_file = tmp_path / "mine_api.json"
    workflow_file.write_text(json.dumps(workflow), encoding="utf-8")
    script = Path(sys.executable).with_name("genstudio")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "genstudio_async.cli"]
    async with emulator_process(
        *command, "emulator", "--service", "gpugeek", "--port", "0", "--api-key", "gk-cli-test-key",
        "--steps", "2", "--step-seconds", "0.01", "--workflow", f"5={workflow_file}", "--fault", "5:fail_tasks=boom",
        name="GPUGeek",
    ) as running:
        headers = {"Authorization": "Bearer gk-cli-test-key"}
        async with httpx.AsyncClient(base_url=running.base_url, headers=headers, trust_env=False) as api:
            body = {"workflow_id": 5, "task_type": 1, "prompt": workflow}
            prompt_id = (await api.post(G.SUBMIT_PATH, json=body)).json()["data"]["prompt_id"]
            async with asyncio.timeout(10):  # a failure bound only; GPUGeek is polled
                while True:
                    info = (await api.get(f"/api/v1/task/{prompt_id}")).json()["data"]
                    if info["status"] >= 3:
                        break
                    await asyncio.sleep(0.01)
            assert (info["status"], info["error_msg"]) == (4, "boom")
            workflows = (await api.get(f"{ED.EMULATOR_ADMIN_PATH_PREFIX}/workflows")).json()
            assert workflows["message"] == "success" and set(workflows["data"]["workflows"]) == {
                5, 763311996779461, 763311996779525}
        rest = await stop_with(running, signal.SIGINT)
    assert "GPUGeek emulator stopped." in rest and "WebSocket" not in rest and "gk-cli-test-key" not in rest


async def test_genstudio_emulator_stops_cleanly_on_sigterm() -> None:
    script = Path(sys.executable).with_name("genstudio")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "genstudio_async.cli"]
    async with emulator_process(*command, "emulator", "--port", "0", "--no-builtin-workflows") as running:
        async with httpx.AsyncClient(base_url=running.base_url, trust_env=False) as api:
            stats = await api.get(f"{ED.EMULATOR_ADMIN_PATH_PREFIX}/stats",
                                  headers={"Authorization": f"Bearer {ED.EMULATOR_DEFAULT_API_KEY}"})
            assert stats.json()["code"] == 0
            workflows = await api.get(f"{ED.EMULATOR_ADMIN_PATH_PREFIX}/workflows",
                                      headers={"Authorization": f"Bearer {ED.EMULATOR_DEFAULT_API_KEY}"})
            assert workflows.json()["data"]["workflows"] == []
        await stop_with(running, signal.SIGTERM)


async def run_to_end(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_bad_flags_and_a_busy_port_exit_with_a_message(tmp_path: Path) -> None:
    module = [sys.executable, "-m", "genstudio_async.emulator"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        bad_fault, bad_workflow, busy_port = await asyncio.gather(
            run_to_end(*module, "--port", "0", "--fault", "ws_drop_after=soon"),
            run_to_end(*module, "--port", "0", "--workflow", f"wf-x={tmp_path / 'missing.json'}"),
            run_to_end(*module, "--port", str(port)),
        )
    assert bad_fault[0] == 2 and "ws_drop_after" in bad_fault[2]
    assert bad_workflow[0] == 2 and "missing.json" in bad_workflow[2]
    assert busy_port[0] == 1 and f"127.0.0.1:{port}" in busy_port[2] and busy_port[1] == ""


async def test_gpugeek_flags_it_cannot_take_exit_2_naming_them(tmp_path: Path) -> None:
    module = [sys.executable, "-m", "genstudio_async.emulator", "--service", "gpugeek", "--port", "0"]
    socket_fault, string_id, unknown = await asyncio.gather(
        run_to_end(*module, "--fault", "ws_junk=true"),
        run_to_end(*module, "--workflow", f"wf-x={tmp_path / 'x.json'}"),
        run_to_end(sys.executable, "-m", "genstudio_async.emulator", "--service", "comfy"),
    )
    assert socket_fault[0] == 2 and "ws_junk does not apply to the GPUGeek emulator" in socket_fault[2]
    assert string_id[0] == 2 and "'wf-x'" in string_id[2]
    assert unknown[0] == 2 and "comfy" in unknown[2]
    assert build_parser().parse_args(["emulator", "--service", "gpugeek"]).service == "gpugeek"
    assert build_parser().parse_args(["emulator"]).service == "genstudio"


async def test_without_the_emulator_extra_the_error_says_what_to_install() -> None:
    imported, cli, help_text = await asyncio.gather(
        # The package itself imports (its defaults need no server), the first use of the emulator says what to install.
        run_to_end(sys.executable, "-c", BLOCK_STARLETTE + "import genstudio_async.emulator as e; e.Emulator"),
        run_to_end(
            sys.executable, "-c",
            BLOCK_STARLETTE + "from genstudio_async.cli import main; sys.exit(main(['emulator', '--port', '0']))",
        ),
        run_to_end(
            sys.executable, "-c",
            BLOCK_STARLETTE + "import genstudio_async, genstudio_async.testing, genstudio_async.workflow;"
            " from genstudio_async.cli import main; sys.exit(main(['--help']))",
        ),
    )
    assert imported[0] == 1 and "EmulatorDependencyError" in imported[2]
    assert "pip install 'genstudio-async[emulator]'" in imported[2] and "starlette" in imported[2]
    assert cli[0] == 1 and "pip install 'genstudio-async[emulator]'" in cli[2]
    assert help_text[0] == 0 and "emulator" in help_text[1]  # the SDK, CLI help and plugin need no server deps


def test_cli_help_lists_the_emulator_and_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "emulator" in capsys.readouterr().out
    with pytest.raises(SystemExit) as caught:
        main(["emulator", "--help"])
    assert caught.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--host", "--port", "--api-key", "--workers", "--workflow", "--fault", "--step-seconds"):
        assert flag in help_text
    args = build_parser().parse_args(["emulator", "--fault", "delay=1", "--fault", "seed=2", "--port", "0"])
    assert args.fault == ["delay=1", "seed=2"] and args.port == 0


def low_file_limit_and_default_sigint() -> None:
    """In the child, before exec: a soft open-file limit of 256, as a small container might give."""
    import resource

    default_sigint()
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def soft_file_limit(pid: int) -> str:
    """A process's soft open-file limit, as /proc shows it."""
    limits = Path(f"/proc/{pid}/limits").read_text()
    return next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3]


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads the child's limits from /proc")
async def test_a_standalone_emulator_raises_its_own_open_file_limit() -> None:
    # One descriptor per socket: with the soft limit it was started with, it could not serve 10,000 of them.
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard open-file limit leaves nothing to raise")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "genstudio_async.emulator", "--port", "0", stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, preexec_fn=low_file_limit_and_default_sigint,
    )
    try:
        assert process.stdout is not None
        assert FIRST_LINE.match((await asyncio.wait_for(process.stdout.readline(), 20)).decode())
        assert soft_file_limit(process.pid) == ("unlimited" if hard == resource.RLIM_INFINITY else str(hard))
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_a_standalone_emulator_runs_on_uvloop_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvloop  # a dev dependency (not on Windows, where the emulator's loop is asyncio's)

    from genstudio_async.emulator import _runner
    monkeypatch.delenv(ED.EMULATOR_LOOP_ENV, raising=False)
    assert _runner.loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv(ED.EMULATOR_LOOP_ENV, "asyncio")  # asyncio's own loop when asked
    assert _runner.loop_factory() is None
    monkeypatch.delenv(ED.EMULATOR_LOOP_ENV)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # and when uvloop is not installed
    assert _runner.loop_factory() is None
