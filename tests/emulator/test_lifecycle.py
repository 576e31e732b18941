"""Starting and stopping: two origins, clean shutdown with clients still connected, test helpers' errors."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import BUILTIN_WORKFLOW_IDS, Emulator, EmulatorError, builtin_workflows
from genstudio_async.emulator._deps import EmulatorDependencyError, missing_dependencies, require_server_dependencies

from .support import T2I, Submit


async def test_start_and_stop_leave_no_task_behind() -> None:
    before = asyncio.all_tasks()
    async with Emulator(workers=3) as emu:
        assert len(asyncio.all_tasks() - before) >= 5  # 2 servers and 3 workers
        api, storage = urlsplit(emu.base_url), urlsplit(emu.storage_url)
        assert api.hostname == storage.hostname == "127.0.0.1" and api.port != storage.port
        assert emu.ws_url == f"ws://127.0.0.1:{api.port}"
        assert repr(emu).startswith(f"<Emulator {emu.base_url}")
    assert asyncio.all_tasks() == before


async def test_two_emulators_run_side_by_side() -> None:
    async with Emulator(api_key="sk-a") as first, Emulator(api_key="sk-b") as second:
        assert len({first.base_url, first.storage_url, second.base_url, second.storage_url}) == 4
        async with httpx.AsyncClient(trust_env=False) as client:
            ok = await client.get(f"{first.base_url}/_emulator/stats", headers={"Authorization": "Bearer sk-a"})
            refused = await client.get(f"{second.base_url}/_emulator/stats", headers={"Authorization": "Bearer sk-a"})
        assert (ok.status_code, refused.status_code) == (200, 401)


async def test_stopping_with_clients_connected_closes_their_sockets(submit: Submit, emu: Emulator,
                                                                    api: httpx.AsyncClient) -> None:
    emu.pause()
    task = await submit()
    ws = await connect(emu.progress_url(task["prompt_token"]), proxy=None)
    await ws.recv()
    await emu.stop()
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1012  # service restart, not an abnormal 1006
    await ws.close()
    with pytest.raises(httpx.ConnectError):
        await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": []})


async def test_misuse_is_refused_with_a_clear_error() -> None:
    emulator = Emulator()
    with pytest.raises(EmulatorError, match="not started"):
        _ = emulator.base_url
    with pytest.raises(ValueError, match="api_key"):
        Emulator(api_key="")
    with pytest.raises(ValueError, match="worker"):
        Emulator(workers=0)
    async with emulator:
        with pytest.raises(EmulatorError, match="already running"):
            await emulator.start()


async def test_wait_status_says_why_it_gave_up(emu: Emulator, submit: Submit) -> None:
    with pytest.raises(EmulatorError, match="unknown task"):
        await emu.wait_status("cft-nope", 3)
    emu.pause()
    queued = (await submit())["prompt_id"]
    with pytest.raises(TimeoutError, match="still has status 1"):
        await emu.wait_status(queued, 3, timeout=0.05)
    emu.set_faults(deny_tasks=True)
    denied = (await submit())["prompt_id"]
    with pytest.raises(EmulatorError, match="ended with status 5"):
        await emu.wait_status(denied, [2, 3])
    assert (await emu.wait_status(denied, 5))["status"] == 5
    assert emu.task_info(queued)["status"] == 1  # type: ignore[index]
    assert emu.task_info("cft-nope") is None
    assert emu.task_ids() == [queued, denied]


async def test_builtin_workflows_are_package_data_and_optional(api: httpx.AsyncClient) -> None:
    assert set(builtin_workflows()) == set(BUILTIN_WORKFLOW_IDS)
    for spec in builtin_workflows().values():
        assert spec.nodes["9"].class_type == "SaveImage"
    async with Emulator(builtin_workflows=False, workflows={"wf-only": {"1": {"inputs": {}}}}) as bare:
        assert bare.workflow_ids == ["wf-only"]
        assert bare.workflow("wf-only").nodes["1"].inputs == {}
        with pytest.raises(KeyError):
            bare.workflow(T2I)


def test_the_builtin_ids_are_the_specs_the_sdk_ships_and_the_docstring_says_where() -> None:
    import genstudio_async.emulator as emulator_package
    from genstudio_async.workflows import builtin_workflow_ids

    assert tuple(builtin_workflow_ids()) == BUILTIN_WORKFLOW_IDS  # one list, not a second copy of it
    doc = emulator_package.__doc__ or ""
    assert "genstudio_async/workflows/" in doc and "emulator/workflows" not in doc


def test_missing_server_dependencies_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert missing_dependencies() == []
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("uvicorn", "multipart") else real_find_spec(name)
    )
    assert missing_dependencies() == ["uvicorn", "python-multipart"]
    with pytest.raises(EmulatorDependencyError, match=r"uvicorn, python-multipart.*genstudio-async\[emulator\]"):
        require_server_dependencies()
    assert issubclass(EmulatorDependencyError, ImportError)


async def test_a_new_task_wakes_one_idle_worker_not_every_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a worker per task (the benchmarks run 10,000), waking every idle worker on each submit made N submits
    # cost O(N²) callbacks: the emulator, not the client, was then what a benchmark measured.
    async with Emulator(workers=200) as emu:
        for _ in range(3):  # every worker reaches its idle wait
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        scheduled: list[object] = []
        call_soon = loop.call_soon

        def counting_call_soon(callback: object, *args: object, **kwargs: object) -> object:
            scheduled.append(callback)
            return call_soon(callback, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(loop, "call_soon", counting_call_soon)
        task = emu.service.submit({"workflow_id": T2I})
        monkeypatch.undo()
        assert len(scheduled) <= 2  # one worker woken (the old code woke all 200)
        await emu.wait_status(task["prompt_id"], [3], timeout=10)  # and that one runs the task to its end
