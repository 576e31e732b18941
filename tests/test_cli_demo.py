"""``genstudio demo``: the README's first command. The installed command, in a subprocess, as a user runs it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.cli_support import GENSTUDIO, TIMEOUT, command_env, default_sigint
from tests.support import no_crash, png_size


def test_demo_generates_text_to_image_then_image_to_image_and_saves_real_pngs(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(GENSTUDIO), "demo", "--out", "pictures"],
        cwd=tmp_path, env=command_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False,
        preexec_fn=default_sigint,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "no API key, no network" in out

    # Live progress: the place in the queue while other users' tasks run first, then the percent, forward only.
    for phase in out.split("2. image to image"):
        assert re.search(r"^  queued: position [12] of \d+$", phase, re.M)
        percents = [int(p) for p in re.findall(r"^  running: +(\d+)%$", phase, re.M)]
        assert percents and percents == sorted(percents)
    assert out.count("  succeeded: 100%") == 2
    assert len(re.findall(r"^  submit \d+\.\d\d s, generate \d+\.\d\d s, download \d+\.\d\d s$", out, re.M)) == 2

    # Two real PNGs: the text-to-image result, and the image-to-image result drawn at the size of its input.
    saved = re.findall(r"^  saved (\S+\.png)$", out, re.M)
    assert len(saved) == 2
    first, second = (tmp_path / path for path in saved)
    assert first.parent == tmp_path / "pictures" / "text-to-image" / "9"
    assert second.parent == tmp_path / "pictures" / "image-to-image" / "9"
    assert png_size(first) == (512, 512) and png_size(second) == (512, 512)
    assert f"2. image to image (wf-c73epllu4i3bxvzr): {saved[0]} is uploaded with the submit" in out
    assert sorted((tmp_path / "pictures").rglob("*.png")) == sorted([first, second])
    # Printed again at the end, where a user looks.
    assert out.rstrip().splitlines()[-3:-1] == [f"  {saved[0]}", f"  {saved[1]}"]
    no_crash(done.stderr)
