"""The examples run, as a user would run them, against the built-in emulator: they cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GENSTUDIO_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_quickstart_generates_and_saves_a_png(tmp_path: Path) -> None:
    done = run_example("quickstart.py", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "using the built-in emulator" in done.stdout
    assert "succeeded: 100%" in done.stdout
    pngs = list((tmp_path / "out").rglob("*.png"))
    assert len(pngs) == 1 and pngs[0].parent.name == "9"
    assert pngs[0].read_bytes().startswith(PNG_SIGNATURE)
    assert str(pngs[0].relative_to(tmp_path)) in done.stdout
