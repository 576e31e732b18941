"""``genstudio --version`` and ``--help`` answer at once: they import only what they print.

The installed command runs in a subprocess with ``PYTHONPROFILEIMPORTTIME=1`` (``python -X importtime``), whose
stderr names every module imported: none of the service's stack (httpx, pydantic, websockets), nor asyncio, may
be among them. Imports are counted, not timed.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from genstudio_async import __version__
from tests.cli_support import command_env, genstudio

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.M)
NOT_FOR_HELP = frozenset(
    {"httpx", "httpcore", "pydantic", "pydantic_core", "websockets", "anyio", "rich", "starlette", "uvicorn", "asyncio"}
)


async def test_version_and_help_import_nothing_they_do_not_need(tmp_path: Path) -> None:
    env = command_env(dev_mode=False, PYTHONPROFILEIMPORTTIME="1")
    commands = (("--version",), ("--help",), ("emulator", "--help"), ("run", "--help"))
    done = await asyncio.gather(*(genstudio(*argv, cwd=tmp_path, env=env) for argv in commands))
    for argv, finished in zip(commands, done, strict=True):
        assert finished.returncode == 0, finished.stderr
        imported = {name.split(".")[0] for name in IMPORT_LINE.findall(finished.stderr)}
        assert "genstudio_async" in imported, finished.stderr  # the profile was read
        assert not imported & NOT_FOR_HELP, (argv, sorted(imported & NOT_FOR_HELP))
    version, top_help, emulator_help, run_help = (finished.stdout for finished in done)
    assert version == f"genstudio {__version__}\n"
    assert "emulator" in top_help and "--storage-port" in emulator_help and "--spec" in run_help
