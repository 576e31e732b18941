"""Helpers of the ``genstudio`` command's tests: run the INSTALLED command in a subprocess, read PNGs.

The command is the console script next to this interpreter (``.venv/bin/genstudio``), run with
``asyncio.create_subprocess_exec`` so that an emulator served by the test's own event loop (the
``genstudio_emulator`` fixture) keeps answering while the test awaits the command. It finds the emulator as a
user would point it at any service: ``GENSTUDIO_BASE_URL`` and ``GENSTUDIO_API_KEY`` in its environment (for a
GPUGeek emulator, the ``gpugeek_emulator`` fixture: ``GPUGEEK_BASE_URL`` and ``GPUGEEK_API_KEY``).

Every child starts with the default SIGINT disposition (``spawn``): a pytest started in the background
(``cmd &``) inherits SIGINT as *ignored*, and so would every command it starts, which then never sees the
Ctrl-C a test sends it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from genstudio_async._cli.events import schema_path
from genstudio_async.emulator import Emulator
from tests.support import png_size, raw_http_server, read_request_head

GENSTUDIO = Path(sys.executable).with_name("genstudio")
TIMEOUT = 60.0
T2I = "wf-c73diz7kadp6ffgn"
I2I = "wf-c73epllu4i3bxvzr"
SPECS = Path(__file__).resolve().parent.parent / "genstudio_async" / "workflows"
GPUGEEK_T2I = 763311996779461
GPUGEEK_I2I = 763311996779525
EXPORTS = Path(__file__).resolve().parent.parent / "examples" / "workflows"


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def command_env(emulator: Emulator[Any] | None = None, *, dev_mode: bool = True, **extra: str) -> dict[str, str]:
    """The command's environment: none of the developer's GENSTUDIO_* or GPUGEEK_* settings, the emulator's if
    given (a GPUGeek emulator's in GPUGEEK_*: the command still needs ``--service gpugeek`` to use them).

    ``dev_mode``: warnings are errors and asyncio runs in debug mode, so a leaked task or an unclosed
    resource shows up on stderr (``no_crash`` looks for it).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GENSTUDIO_", "GPUGEEK_")) and key not in ("FORCE_COLOR", "NO_COLOR", "COLUMNS")
    }
    if emulator is not None and emulator.service_name == "GPUGeek":
        env.update(GPUGEEK_BASE_URL=emulator.base_url, GPUGEEK_API_KEY=emulator.api_key)
    elif emulator is not None:
        env.update(GENSTUDIO_BASE_URL=emulator.base_url, GENSTUDIO_API_KEY=emulator.api_key)
    env.update(PYTHONUNBUFFERED="1", PYTHONWARNINGS="error")
    if dev_mode:
        env["PYTHONDEVMODE"] = "1"
    env.update(extra)
    return env


def default_sigint() -> None:
    """``preexec_fn`` of every child a test starts: SIGINT back to its default (Python then raises
    KeyboardInterrupt on it), whatever this process inherited. An ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@asynccontextmanager
async def spawn(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``argv`` running, stdout and stderr piped, SIGINT at its default; killed (if still running) and reaped
    when the block ends. ``stdin``: given, stdin is a pipe (write it with ``finish``); else it is /dev/null."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.communicate()


@asynccontextmanager
async def started(
    *args: str, cwd: Path, env: dict[str, str], stdin: bytes | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``genstudio ARGS...`` running; killed (if still running) and reaped when the block ends."""
    assert GENSTUDIO.exists(), f"the genstudio command is not installed next to {sys.executable}"
    async with spawn(str(GENSTUDIO), *args, cwd=cwd, env=env, stdin=stdin) as process:
        yield process


async def finish(process: asyncio.subprocess.Process, stdin: bytes | None = None) -> Finished:
    async with asyncio.timeout(TIMEOUT):
        stdout, stderr = await process.communicate(stdin)
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


async def genstudio(
    *args: str, cwd: Path, emulator: Emulator[Any] | None = None, env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> Finished:
    """Run ``genstudio ARGS...`` to its end."""
    environment = env if env is not None else command_env(emulator)
    async with started(*args, cwd=cwd, env=environment, stdin=stdin) as process:
        return await finish(process, stdin)


def pngs_under(directory: Path) -> list[Path]:
    found = sorted(directory.rglob("*.png"))
    for path in found:
        png_size(path)
    return found


def files_under(directory: Path) -> list[Path]:
    """Every file under ``directory``, at any depth."""
    return sorted(path for path in directory.rglob("*") if path.is_file())


_EVENT_SCHEMA = Draft202012Validator(json.loads(schema_path().read_text(encoding="utf-8")))


def event_lines(stdout: str) -> list[dict[str, Any]]:
    """The ``--events`` stream on ``stdout``: every line asserted to be one JSON object valid under the JSON
    Schema the package ships (nothing else on stdout, not even a blank line), the last one ``end``."""
    assert stdout.endswith("\n"), stdout[-200:]
    events = []
    for number, line in enumerate(stdout.split("\n")[:-1], start=1):
        event = json.loads(line)
        problems = [error.message for error in _EVENT_SCHEMA.iter_errors(event)]
        assert not problems, f"line {number} breaks the schema: {problems}\n{line}"
        events.append(event)
    assert events and events[0]["type"] == "start" and events[-1]["type"] == "end", stdout
    assert [event["type"] for event in events].count("end") == 1
    return events


def outcomes_by_job(events: list[dict[str, Any]], key: str = "job") -> dict[Any, dict[str, Any]]:
    """Each job's (or, with ``key="prompt_id"``, each task's) ``outcome`` event, asserted to be its only one and
    its last event."""
    found: dict[Any, dict[str, Any]] = {}
    for index, event in enumerate(events):
        if event["type"] != "outcome":
            continue
        name = event[key]
        assert name not in found, f"a second outcome for {name!r}: {event}"
        found[name] = event
        later = [other for other in events[index + 1 :] if other.get(key) == name and other["type"] != "end"]
        assert not later, f"events of {name!r} after its outcome: {later}"
    return found


def one_error_line(stderr: str) -> str:
    """The command's stderr, asserted to be exactly one ``genstudio: error: ...`` line; its text."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("genstudio: error: "), stderr
    return lines[0].removeprefix("genstudio: error: ")


# --- a hostile service ------------------------------------------------------------------------------------------

Answer = tuple[int, str, bytes]  # status, content type, body
Responder = Callable[[str, str, bytes], Answer]  # (method, path with query, body) -> the answer


def envelope(data: Any) -> Answer:
    """A GenStudio success answer ``{"code": 0, "msg": "Success", "data": data}``."""
    return 200, "application/json", json.dumps({"code": 0, "msg": "Success", "data": data}).encode()


@asynccontextmanager
async def fake_service(respond: Responder) -> AsyncIterator[str]:
    """A tiny HTTP/1.1 server on 127.0.0.1 (a free port) answering every request with ``respond(...)``, one
    request per connection; yields its base URL. For what the emulator would never send."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await read_request_head(reader)
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, content_type, payload = respond(method, target, body)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode() + payload
            )
            await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the client went away: nothing to answer

    async with raw_http_server(serve) as origin:
        yield origin
