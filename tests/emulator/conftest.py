"""Fixtures of the emulator's tests: a running emulator on 127.0.0.1 and an authenticated HTTP client for it.

``emu`` is the ``genstudio_emulator`` fixture of the public pytest plugin (``genstudio_async.testing``),
so these tests exercise the plugin too. Options come from the ``genstudio_emulator`` marker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import Emulator
from genstudio_async.testing import genstudio_emulator

from .support import T2I, Submit, bearer_client

# The plugin's fixtures, used here as any user would use them.
__all__ = ["genstudio_emulator"]


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    """Faster tasks than the default (about 30 ms): tests that watch a task run slow it down themselves."""
    return {"steps": 3, "step_seconds": 0.01}


@pytest.fixture
def gpugeek_emulator_options() -> dict[str, Any]:
    """The same fast tasks for the GPUGeek emulator, with a key of GPUGeek's own shape."""
    return {"api_key": "gk-test-key", "steps": 3, "step_seconds": 0.01}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "genstudio_emulator(**options): Emulator keyword arguments")


@pytest.fixture
def emu(genstudio_emulator: Emulator) -> Emulator:
    """A running emulator (built-in workflows, 2 workers, fast tasks)."""
    return genstudio_emulator


@pytest.fixture
async def api(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for the emulator's API origin, sending the bearer key."""
    async with bearer_client(emu.base_url, emu.api_key) as client:
        yield client


@pytest.fixture
async def storage() -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client with no credentials, for signed result URLs."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        yield client


@pytest.fixture
def submit(api: httpx.AsyncClient) -> Submit:
    """``await submit(workflow_id=T2I, prompt=None)`` → the ``data`` of a successful submit."""

    async def do_submit(workflow_id: str = T2I, prompt: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"workflow_id": workflow_id}
        if prompt is not None:
            body["prompt"] = prompt
        response = await api.post(GS.SUBMIT_PATH, json=body)
        envelope = response.json()
        assert response.status_code == 200 and envelope["code"] == 0, envelope
        data: dict[str, Any] = envelope["data"]
        return data

    return do_submit
