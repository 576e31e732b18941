"""``genstudio demo``: the README's first command. The installed command, in a subprocess, as a user runs it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.cli_support import GENSTUDIO, TIMEOUT, command_env, default_sigint
from tests.support import no_crash, png_size


def run_demo(tmp_path: Path, *args: str) -> str:
    """``genstudio demo ARGS --out pictures`` to its end; its stdout, asserted to be a success without a crash."""
    done = subprocess.run(
        [str(GENSTUDIO), "demo", *args, "--out", "pictures"],
        cwd=tmp_path, env=command_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False,
        preexec_fn=default_sigint,
    )
    assert done.returncode == 0, done.stderr
    no_crash(done.stderr)
    assert "no API key, no network" in done.stdout
    timings = r"^  submit \d+\.\d\d s, generate \d+\.\d\d s, download \d+\.\d\d s$"
    assert len(re.findall(timings, done.stdout, re.M)) == 2
    return done.stdout


def assert_two_real_pngs(out: str, tmp_path: Path, image_to_image: str) -> None:
    """The text-to-image result, and the image-to-image result drawn at the size of its (uploaded) input."""
    saved = re.findall(r"^  saved (\S+\.png)$", out, re.M)
    assert len(saved) == 2
    first, second = (tmp_path / path for path in saved)
    assert first.parent == tmp_path / "pictures" / "text-to-image" / "9"
    assert second.parent == tmp_path / "pictures" / "image-to-image" / "9"
    assert png_size(first) == (512, 512) and png_size(second) == (512, 512)
    assert f"2. image to image ({image_to_image}): {saved[0]} is uploaded with the submit" in out
    assert sorted((tmp_path / "pictures").rglob("*.png")) == sorted([first, second])
    # Printed again at the end, where a user looks.
    assert out.rstrip().splitlines()[-3:-1] == [f"  {saved[0]}", f"  {saved[1]}"]


def test_demo_generates_text_to_image_then_image_to_image_and_saves_real_pngs(tmp_path: Path) -> None:
    out = run_demo(tmp_path)
    # Live progress: the place in the queue while other users' tasks run first, then the percent, forward only.
    for phase in out.split("2. image to image"):
        assert re.search(r"^  queued: position [12] of \d+$", phase, re.M)
        percents = [int(p) for p in re.findall(r"^  running: +(\d+)%$", phase, re.M)]
        assert percents and percents == sorted(percents)
    assert out.count("  succeeded: 100%") == 2
    assert_two_real_pngs(out, tmp_path, "wf-c73epllu4i3bxvzr")


def test_demo_on_gpugeek_polls_whole_workflows_to_real_pngs(tmp_path: Path) -> None:
    """The same demo with the other service profile: whole workflows built from the built-in exports, the image
    uploaded through the pre-signed flow, progress polled (queue position, running, done: GPUGeek has no percent)."""
    out = run_demo(tmp_path, "--service", "gpugeek")
    assert out.startswith("A local GPUGeek emulator is running at http://127.0.0.1:")
    first_phase, second_phase = out.split("2. image to image")
    for phase in (first_phase, second_phase):
        states = re.findall(r"^  (queued: position \d of \d|running|succeeded)$", phase, re.M)
        assert states[0].startswith("queued: position ") and states[-2:] == ["running", "succeeded"], phase
    assert re.search(r"^  queued: position 2 of \d+$", first_phase, re.M)  # two other users' tasks ahead
    assert "%" not in out
    assert_two_real_pngs(out, tmp_path, "763311996779525")
    assert out.rstrip().splitlines()[-1] == (
        "Next: export GPUGEEK_API_KEY=... and try 'genstudio run --service gpugeek 763311996779461 "
        "--set KSampler.steps=30'."
    )
