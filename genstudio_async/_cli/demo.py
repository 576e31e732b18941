"""``genstudio demo``: the whole SDK end to end against an emulator started in this process. No key, no network.

A text-to-image generation, then an image-to-image generation of its result (a local ``Path`` on the LoadImage
node, uploaded at submit time), each with live progress: its place in the queue while queued (a few tasks of
"other users" are queued ahead of it), then its percent. Real PNGs are saved under ``--out``
(``genstudio-demo/`` by default), and each phase is timed: submit, generate, download.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._client import AsyncGenStudio
from .._services import genstudio as GS
from ..workflow import WorkflowSpec
from . import defaults as CD
from .console import Console
from .display import TaskProgress
from .errors import CLIError, ExitCode

if TYPE_CHECKING:
    from ..emulator import Emulator

TEXT_TO_IMAGE = "wf-c73diz7kadp6ffgn"  # the service docs' text-to-image example
IMAGE_TO_IMAGE = "wf-c73epllu4i3bxvzr"  # the docs' image-to-image example; LoadImage is node "10"
SUBJECT = "a red fox in fresh snow, golden hour, highly detailed"
I2I_SUBJECT = "the same fox as a watercolour painting, purple galaxy sky"


@dataclass(frozen=True)
class Phases:
    """How long each phase of one generation took, in seconds."""

    submit: float
    generate: float
    download: float

    def __str__(self) -> str:
        return f"submit {self.submit:.2f} s, generate {self.generate:.2f} s, download {self.download:.2f} s"


def text_to_image_prompt(spec: WorkflowSpec) -> dict[str, Any]:
    return (
        spec.builder()
        .set("6", text=SUBJECT)
        .set("7", text="blurry, deformed, watermark")
        .set("KSampler", seed=42, steps=20, cfg=7.0)
        .set("EmptyLatentImage", width=512, height=512, batch_size=1)
        .build()
    )


def image_to_image_prompt(source: Path) -> dict[str, Any]:
    # Only what changes (a prompt holds overrides): the image is a local Path, uploaded when submitted.
    return {
        "10": {"inputs": {"image": source}},
        "6": {"inputs": {"text": I2I_SUBJECT}},
        "3": {"inputs": {"seed": 7, "denoise": 0.6}},
    }


async def queue_tasks_ahead(others: AsyncGenStudio, count: int) -> None:
    """Tasks of "other users", queued before ours, so the demo shows its place in the queue moving."""
    for number in range(count):
        await others.submit(TEXT_TO_IMAGE, {"6": {"inputs": {"text": f"another user's picture #{number + 1}"}}})


async def generate(
    client: AsyncGenStudio,
    console: Console,
    workflow_id: str,
    prompt: dict[str, Any],
    spec: WorkflowSpec,
    directory: Path,
) -> tuple[list[Path], Phases]:
    """Submit, follow and download one task; the saved files and the time of each phase."""
    started = time.perf_counter()
    submission = await client.submit(workflow_id, prompt, spec=spec)
    submitted = time.perf_counter()
    console.line(f"  submitted {submission.prompt_id}")
    with TaskProgress(console, submission.prompt_id) as progress:
        result = await client.wait(submission, timeout=120, on_progress=progress.update)
    generated = time.perf_counter()
    paths = await client.download(result, directory)
    downloaded = time.perf_counter()
    return paths, Phases(submitted - started, generated - submitted, downloaded - generated)


async def start_emulator(step_seconds: float) -> Emulator:
    try:
        from ..emulator import Emulator, EmulatorDependencyError
    except ImportError as exc:  # raised by the emulator package when its extra is missing
        raise CLIError(f"genstudio demo: {exc}", ExitCode.FAILED) from None
    try:
        emulator = Emulator(workers=CD.CLI_DEMO_WORKERS, step_seconds=step_seconds)
        await emulator.start()
    except (EmulatorDependencyError, OSError) as exc:
        raise CLIError(f"genstudio demo: cannot start the emulator: {exc}", ExitCode.FAILED) from None
    return emulator


async def demo_command(args: argparse.Namespace, console: Console) -> int:
    began = time.perf_counter()
    output = Path(args.out)
    emulator = await start_emulator(args.step_seconds)
    try:
        t2i_spec, i2i_spec = emulator.workflow(TEXT_TO_IMAGE), emulator.workflow(IMAGE_TO_IMAGE)
        console.line(f"A local GenStudio emulator is running at {emulator.base_url}: no API key, no network.")
        console.line(f"It runs {CD.CLI_DEMO_WORKERS} task at a time; other users' tasks are queued ahead of yours.")
        async with emulator.client() as client, emulator.client() as others:
            ahead_t2i, ahead_i2i = CD.CLI_DEMO_TASKS_AHEAD
            console.line("")
            console.line(f"1. text to image ({TEXT_TO_IMAGE}): {SUBJECT!r}")
            await queue_tasks_ahead(others, ahead_t2i)
            first, t2i_time = await generate(
                client, console, TEXT_TO_IMAGE, text_to_image_prompt(t2i_spec), t2i_spec, output / "text-to-image"
            )
            for path in first:
                console.line(f"  saved {path}")
            console.line(f"  {t2i_time}")

            console.line("")
            console.line(f"2. image to image ({IMAGE_TO_IMAGE}): {first[0]} is uploaded with the submit")
            await queue_tasks_ahead(others, ahead_i2i)
            second, i2i_time = await generate(
                client, console, IMAGE_TO_IMAGE, image_to_image_prompt(first[0]), i2i_spec, output / "image-to-image"
            )
            for path in second:
                console.line(f"  saved {path}")
            console.line(f"  {i2i_time}")
    finally:
        await emulator.stop()
    console.line("")
    console.line(f"Done in {time.perf_counter() - began:.1f} s. Your images:")
    for path in (*first, *second):
        console.line(f"  {path}")
    console.line(f"Next: export {GS.ENV_API_KEY}=sk-... and try 'genstudio run WORKFLOW_ID --set NODE.INPUT=VALUE'.")
    return ExitCode.OK
