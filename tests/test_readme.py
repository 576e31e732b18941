"""Every code block of the README, run as written.

Each ``python`` / ``bash`` block is preceded by a marker saying how it is run (an HTML comment, invisible on the
rendered page)::

    <!-- readme: run python -->       a whole script, run in a fresh project folder
    <!-- readme: run pytest -->       files of a user's project ("# conftest.py", "# test_x.py" sections), run by pytest
    <!-- readme: run shell -->        each command line run by bash in that folder
    <!-- readme: not run: REASON -->  a block that cannot run offline (it installs, or serves until Ctrl-C)

Blocks run against emulators started here (one of each service), reached through ``GENSTUDIO_BASE_URL`` /
``GENSTUDIO_API_KEY`` and ``GPUGEEK_BASE_URL`` / ``GPUGEEK_API_KEY`` exactly as a user's environment would point
them at the services; the project folder holds the files the blocks
name (``fox.png``, ``spec.json``, ``workflow_api.json``, ``jobs.jsonl``). A block without a marker fails the test.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from genstudio_async._services import GPUGeek
from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import Emulator

from .support import tiny_png

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_MARKER = re.compile(r"<!--\s*readme:\s*(run python|run pytest|run shell|not run:\s*\S.*?)\s*-->")
# Any fence CommonMark knows: three or more backticks or tildes, indented up to three spaces, any info string.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
_RUNNERS = {"run python": {"python", "py"}, "run pytest": {"python", "py"}, "run shell": {"bash", "sh", "shell"}}
_FILE_SECTION = re.compile(r"^# (\S+\.py)\b.*$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    how: str | None
    code: str

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text``, each with the marker just above it (blank lines allowed between)."""
    blocks: list[Block] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        start = index
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        marker = _MARKER.search(lines[above]) if above >= 0 else None
        opening = fence.group(1)
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].lstrip(" ").startswith(opening):
            body.append(lines[index])
            index += 1
        index += 1
        blocks.append(Block(start + 1, fence.group(2), marker.group(1) if marker else None, "\n".join(body) + "\n"))
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_every_block_says_how_it_is_run() -> None:
    unmarked = [block.name for block in BLOCKS if block.how is None]
    assert not unmarked, f"fenced blocks without a '<!-- readme: ... -->' marker: {unmarked}"
    misfit = [block.name for block in BLOCKS if block.how in _RUNNERS and block.language not in _RUNNERS[block.how]]
    assert not misfit, f"blocks whose language their marker cannot run: {misfit}"
    assert any(block.how == "run python" for block in BLOCKS)


def test_the_block_finder_sees_every_fence() -> None:
    text = "\n".join(
        [
            "<!-- readme: run python -->",
            "```py",
            "print(1)",
            "```",
            "- a list item:",
            "  ~~~console",
            "  $ genstudio demo",
            "  ~~~",
            "```",
            "a diagram",
            "```",
        ]
    )
    found = readme_blocks(text)
    assert [(block.language, block.how) for block in found] == [("py", "run python"), ("console", None), ("", None)]


def _project(folder: Path) -> Path:
    """A user's project folder with the files the README's blocks name."""
    folder.mkdir(parents=True, exist_ok=True)
    workflows = ROOT / "examples" / "workflows"
    shutil.copy(workflows / "t2i_spec.json", folder / "spec.json")
    shutil.copy(workflows / "t2i_spec.json", folder / "my-workflow-spec.json")
    shutil.copy(workflows / "t2i_workflow_api.json", folder / "workflow_api.json")
    (folder / "fox.png").write_bytes(tiny_png(8, 8))
    (folder / "jobs.jsonl").write_text(
        '{"id": "fox", "workflow_id": "wf-c73diz7kadp6ffgn", "prompt": {"6": {"inputs": {"text": "a red fox"}}}}\n'
        '{"id": "owl", "workflow_id": "wf-c73diz7kadp6ffgn", "prompt": {"6": {"inputs": {"text": "an owl"}}}}\n'
    )
    return folder


def _environment(emulator: Emulator, gpugeek: Emulator[Any]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GENSTUDIO_", "GPUGEEK_"))}
    env[GS.ENV_API_KEY] = emulator.api_key
    env[GS.ENV_BASE_URL] = emulator.base_url
    env[GPUGeek.environment.api_key] = gpugeek.api_key
    env[GPUGeek.environment.base_url] = gpugeek.base_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


async def _run(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.mark.genstudio_emulator(step_seconds=0.005)
@pytest.mark.gpugeek_emulator(step_seconds=0.005)
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.how and b.how.startswith("run")], ids=lambda b: b.name)
async def test_the_block_runs_as_written(
    block: Block, genstudio_emulator: Emulator, gpugeek_emulator: Emulator[Any], tmp_path: Path
) -> None:
    project = _project(tmp_path / "project")
    env = _environment(genstudio_emulator, gpugeek_emulator)
    if block.how == "run python":
        (project / "snippet.py").write_text(block.code, encoding="utf-8")
        code, output = await _run([sys.executable, "snippet.py"], cwd=project, env=env)
        assert code == 0, f"{block.name} failed:\n{output}"
    elif block.how == "run pytest":
        sections = _FILE_SECTION.split(block.code)
        files = dict(zip(sections[1::2], sections[2::2], strict=True))
        assert files, f"{block.name}: no '# name.py' sections"
        for name, content in files.items():
            (project / name).write_text(content, encoding="utf-8")
        code, output = await _run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=env
        )
        assert code == 0, f"{block.name} failed:\n{output}"
        assert "passed" in output and "skipped" not in output, output
    else:
        joined = block.code.replace("\\\n", " ")  # a line ending in a backslash goes on on the next one
        commands = [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        for command in commands:
            code, output = await _run(["bash", "-e", "-c", command], cwd=project, env=env)
            assert code == 0, f"{block.name}: {command!r} failed:\n{output}"
