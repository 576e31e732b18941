"""Helpers of the ``genstudio`` command's tests: run the INSTALLED command in a subprocess, read PNGs.

The command is the console script next to this interpreter (``.venv/bin/genstudio``), run with
``asyncio.create_subprocess_exec`` so that an emulator served by the test's own event loop (the
``genstudio_emulator`` fixture) keeps answering while the test awaits the command. It finds the emulator as a
user would point it at any service: ``GENSTUDIO_BASE_URL`` and ``GENSTUDIO_API_KEY`` in its environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from genstudio_async.emulator import Emulator

GENSTUDIO = Path(sys.executable).with_name("genstudio")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 60.0
T2I = "wf-c73diz7kadp6ffgn"
I2I = "wf-c73epllu4i3bxvzr"
SPECS = Path(__file__).resolve().parent.parent / "genstudio_async" / "emulator" / "workflows"


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def command_env(emulator: Emulator | None = None, *, dev_mode: bool = True, **extra: str) -> dict[str, str]:
    """The command's environment: none of the developer's GENSTUDIO_* settings, the emulator's if given.

    ``dev_mode``: warnings are errors and asyncio runs in debug mode, so a leaked task or an unclosed
    resource shows up on stderr (``no_crash`` looks for it).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GENSTUDIO_") and key not in ("FORCE_COLOR", "NO_COLOR", "COLUMNS")
    }
    if emulator is not None:
        env.update(GENSTUDIO_BASE_URL=emulator.base_url, GENSTUDIO_API_KEY=emulator.api_key)
    env.update(PYTHONUNBUFFERED="1", PYTHONWARNINGS="error")
    if dev_mode:
        env["PYTHONDEVMODE"] = "1"
    env.update(extra)
    return env


@asynccontextmanager
async def started(
    *args: str, cwd: Path, env: dict[str, str], stdin: bytes | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``genstudio ARGS...`` running; killed (if still running) and reaped when the block ends."""
    assert GENSTUDIO.exists(), f"the genstudio command is not installed next to {sys.executable}"
    process = await asyncio.create_subprocess_exec(
        str(GENSTUDIO), *args,
        cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.communicate()


async def finish(process: asyncio.subprocess.Process, stdin: bytes | None = None) -> Finished:
    async with asyncio.timeout(TIMEOUT):
        stdout, stderr = await process.communicate(stdin)
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


async def genstudio(
    *args: str, cwd: Path, emulator: Emulator | None = None, env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> Finished:
    """Run ``genstudio ARGS...`` to its end."""
    environment = env if env is not None else command_env(emulator)
    async with started(*args, cwd=cwd, env=environment, stdin=stdin) as process:
        return await finish(process, stdin)


async def wait_for(condition: Any, *, what: str, timeout: float = 20.0) -> None:
    """Poll ``condition()`` every 20 ms (the emulator keeps serving meanwhile); fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def png_size(path: Path) -> tuple[int, int]:
    """The size in a PNG's IHDR, after checking the signature and the IHDR chunk's CRC."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, f"{path}: no IHDR chunk first"
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(data[12:29]), f"{path}: bad IHDR CRC"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def pngs_under(directory: Path) -> list[Path]:
    found = sorted(directory.rglob("*.png"))
    for path in found:
        png_size(path)
    return found


def tiny_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` grey pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def no_crash(stderr: str) -> None:
    for sign in ("Traceback", "Task was destroyed", "never retrieved", "Unclosed", "ResourceWarning", "internal error"):
        assert sign not in stderr, stderr


def one_error_line(stderr: str) -> str:
    """The command's stderr, asserted to be exactly one ``genstudio: error: ...`` line; its text."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("genstudio: error: "), stderr
    return lines[0].removeprefix("genstudio: error: ")
