"""Helpers shared by the emulator's tests: workflow ids, an API client, and get_task_info."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from genstudio_async._services import genstudio as GS

T2I = "wf-c73diz7kadp6ffgn"
I2I = "wf-c73epllu4i3bxvzr"
TUTORIAL = "wf-c72qozydy6suxesa"

#: The ``submit`` fixture: ``await submit(workflow_id=T2I, prompt=None)`` → the ``data`` of a successful submit.
Submit = Callable[..., Awaitable[dict[str, Any]]]


def bearer_client(base_url: str, api_key: str) -> httpx.AsyncClient:
    """An httpx client for an emulator's API origin, sending the bearer key (no proxy from the environment)."""
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, trust_env=False, timeout=10
    )


async def task_info(api: httpx.AsyncClient, *task_ids: str, **extra: Any) -> list[dict[str, Any]]:
    """The ``comfy_task_info`` list of a successful get_task_info call."""
    response = await api.post(GS.TASK_INFO_PATH, json={"comfy_task_ids": list(task_ids), **extra})
    envelope = response.json()
    assert response.status_code == 200 and envelope["code"] == 0, envelope
    infos: list[dict[str, Any]] = envelope["data"]["comfy_task_info"]
    return infos
