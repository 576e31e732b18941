"""Helpers shared by the emulator's tests: workflow ids, get_task_info, and a by-hand PNG decoder."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from genstudio_async import _constants as C

T2I = "wf-c73diz7kadp6ffgn"
I2I = "wf-c73epllu4i3bxvzr"
TUTORIAL = "wf-c72qozydy6suxesa"

#: The ``submit`` fixture: ``await submit(workflow_id=T2I, prompt=None)`` → the ``data`` of a successful submit.
Submit = Callable[..., Awaitable[dict[str, Any]]]


async def task_info(api: httpx.AsyncClient, *task_ids: str, **extra: Any) -> list[dict[str, Any]]:
    """The ``comfy_task_info`` list of a successful get_task_info call."""
    response = await api.post(C.TASK_INFO_PATH, json={"comfy_task_ids": list(task_ids), **extra})
    envelope = response.json()
    assert response.status_code == 200 and envelope["code"] == 0, envelope
    infos: list[dict[str, Any]] = envelope["data"]["comfy_task_info"]
    return infos


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Check PNG bytes by hand: signature, IHDR (RGB 8-bit), every chunk's CRC; return width, height, raw rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    offset, width, height, idat = 8, 0, 0, b""
    kinds = []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            width, height, depth, color_type = struct.unpack(">IIBB", payload[:10])
            assert (depth, color_type) == (8, 2)
        elif kind == b"IDAT":
            idat += payload
        offset += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


async def eventually(condition: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.01) -> None:
    """Wait (a bounded number of short polls) until ``condition()`` holds; fail the test if it never does."""
    for _ in range(int(timeout / interval)):
        if condition():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition still false after {timeout} s")
