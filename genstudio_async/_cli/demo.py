"""``genstudio demo``: the whole SDK end to end against an emulator started in this process. No key, no network.

A text-to-image generation, then an image-to-image generation of its result (a local ``Path`` on the LoadImage
node, uploaded at submit time), each with live progress: its place in the queue while queued (a few tasks of
"other users" are queued ahead of it), then its percent (GPUGeek gives none: running), then done. Real PNGs are
saved under ``--out`` (``genstudio-demo/`` by default), and each phase is timed: submit, generate, download.

One demo for both services (``--service``): a ``DemoPlan`` says, for each, which of the docs' example workflows
it runs and how it builds their prompts (GenStudio: input overrides, with the workflow's spec; GPUGeek: the
whole workflow, with ``ApiWorkflow.builder()`` over the built-in export); the rest is the same code.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..workflow import ApiWorkflow, PromptBuilder, WorkflowSpec
from ..workflows import builtin_api_workflow, builtin_spec
from . import defaults as CD
from .console import Console
from .display import TaskProgress
from .errors import CLIError, ExitCode
from .services import GPUGEEK, Profile, profile_of

if TYPE_CHECKING:
    from ..emulator import Emulator
    from .services import Client

SUBJECT = "a red fox in fresh snow, golden hour, highly detailed"
NEGATIVE = "blurry, deformed, watermark"
I2I_SUBJECT = "the same fox as a watercolour painting, purple galaxy sky"


@dataclass(frozen=True)
class Phases:
    """How long each phase of one generation took, in seconds."""

    submit: float
    generate: float
    download: float

    def __str__(self) -> str:
        return f"submit {self.submit:.2f} s, generate {self.generate:.2f} s, download {self.download:.2f} s"


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs on one service: the docs' text-to-image and image-to-image workflows, how it builds
    each prompt, and the next command to try."""

    text_to_image: str | int
    image_to_image: str | int
    text_to_image_prompt: Callable[[], dict[str, Any]]
    image_to_image_prompt: Callable[[Path], dict[str, Any]]
    other_users_prompt: Callable[[int], dict[str, Any]]
    spec: Callable[[str | int], WorkflowSpec | None]
    """The spec ``submit`` checks a prompt against (GenStudio's "入参范围"; GPUGeek has none)."""
    next_step: str


# --- GenStudio: overrides, checked against the workflows' specs ---------------------------------------------

GENSTUDIO_T2I = "wf-c73diz7kadp6ffgn"  # the service docs' text-to-image example
GENSTUDIO_I2I = "wf-c73epllu4i3bxvzr"  # the docs' image-to-image example; LoadImage is node "10"


def _genstudio_spec(workflow_id: str | int) -> WorkflowSpec:
    spec = builtin_spec(str(workflow_id))
    assert spec is not None, f"{workflow_id} is a built-in workflow"
    return spec


def _text_to_image_settings(builder: PromptBuilder) -> dict[str, Any]:
    """What both services' text-to-image prompts set, once the texts are in."""
    sampled = builder.set("KSampler", seed=42, steps=20, cfg=7.0)
    return sampled.set("EmptyLatentImage", width=512, height=512, batch_size=1).build()


def _genstudio_text_to_image() -> dict[str, Any]:
    builder = _genstudio_spec(GENSTUDIO_T2I).builder()  # node ids: the spec's titles do not tell the texts apart
    return _text_to_image_settings(builder.set("6", text=SUBJECT).set("7", text=NEGATIVE))


def _genstudio_image_to_image(source: Path) -> dict[str, Any]:
    # Only what changes (a prompt holds overrides): the image is a local Path, uploaded when submitted.
    return {
        "10": {"inputs": {"image": source}},
        "6": {"inputs": {"text": I2I_SUBJECT}},
        "3": {"inputs": {"seed": 7, "denoise": 0.6}},
    }


def _genstudio_other_user(number: int) -> dict[str, Any]:
    return {"6": {"inputs": {"text": f"another user's picture #{number}"}}}


# --- GPUGeek: the whole workflow, from the built-in exports --------------------------------------------------

GPUGEEK_T2I = 763311996779461  # the workflow the API doc's request sample submits to
GPUGEEK_I2I = 763311996779525  # the docs' image-to-image export (LoadImage is node "10")


def _gpugeek_workflow(workflow_id: int) -> ApiWorkflow:
    workflow = builtin_api_workflow(workflow_id)
    assert workflow is not None, f"{workflow_id} is a built-in workflow"
    return workflow


def _gpugeek_text_to_image() -> dict[str, Any]:
    builder = _gpugeek_workflow(GPUGEEK_T2I).builder()  # the export links the sampler to its texts
    return _text_to_image_settings(builder.positive(SUBJECT).negative(NEGATIVE))


def _gpugeek_image_to_image(source: Path) -> dict[str, Any]:
    # The whole workflow, with the image a local Path: presigned, PUT and committed when submitted.
    return (
        _gpugeek_workflow(GPUGEEK_I2I)
        .builder()
        .set("LoadImage", image=source)
        .positive(I2I_SUBJECT)
        .set("KSampler", seed=7, denoise=0.6)
        .build()
    )


def _gpugeek_other_user(number: int) -> dict[str, Any]:
    return _gpugeek_workflow(GPUGEEK_T2I).builder().positive(f"another user's picture #{number}").build()


PLANS = {
    "genstudio": DemoPlan(
        text_to_image=GENSTUDIO_T2I,
        image_to_image=GENSTUDIO_I2I,
        text_to_image_prompt=_genstudio_text_to_image,
        image_to_image_prompt=_genstudio_image_to_image,
        other_users_prompt=_genstudio_other_user,
        spec=_genstudio_spec,
        next_step="genstudio run WORKFLOW_ID --set NODE.INPUT=VALUE",
    ),
    GPUGEEK.name: DemoPlan(
        text_to_image=GPUGEEK_T2I,
        image_to_image=GPUGEEK_I2I,
        text_to_image_prompt=_gpugeek_text_to_image,
        image_to_image_prompt=_gpugeek_image_to_image,
        other_users_prompt=_gpugeek_other_user,
        spec=lambda _workflow_id: None,
        next_step=f"genstudio run --service {GPUGEEK.name} {GPUGEEK_T2I} --set KSampler.steps=30",
    ),
}


# --- the demo -----------------------------------------------------------------------------------------------


async def queue_tasks_ahead(others: Client, plan: DemoPlan, count: int) -> None:
    """Tasks of "other users", queued before ours, so the demo shows its place in the queue moving."""
    for number in range(count):
        await others.submit(plan.text_to_image, plan.other_users_prompt(number + 1))


async def generate(
    client: Client,
    console: Console,
    profile: Profile,
    workflow_id: str | int,
    prompt: dict[str, Any],
    spec: WorkflowSpec | None,
    directory: Path,
) -> tuple[list[Path], Phases]:
    """Submit, follow and download one task; the saved files and the time of each phase."""
    started = time.perf_counter()
    submission = await client.submit(workflow_id, prompt, spec=spec)
    submitted = time.perf_counter()
    console.line(f"  submitted {submission.prompt_id}")
    with TaskProgress(console, submission.prompt_id, profile) as progress:
        result = await client.wait(submission, timeout=120, on_progress=progress.update)
    generated = time.perf_counter()
    paths = await client.download(result, directory)
    downloaded = time.perf_counter()
    return paths, Phases(submitted - started, generated - submitted, downloaded - generated)


async def start_emulator(profile: Profile, step_seconds: float) -> Emulator:
    try:
        from ..emulator import Emulator, EmulatorDependencyError
    except ImportError as exc:  # raised by the emulator package when its extra is missing
        raise CLIError(f"genstudio demo: {exc}", ExitCode.FAILED) from None
    try:
        emulator: Emulator = Emulator(service=profile.name, workers=CD.CLI_DEMO_WORKERS, step_seconds=step_seconds)
        await emulator.start()
    except (EmulatorDependencyError, OSError) as exc:
        raise CLIError(f"genstudio demo: cannot start the emulator: {exc}", ExitCode.FAILED) from None
    return emulator


async def demo_command(args: argparse.Namespace, console: Console) -> int:
    began = time.perf_counter()
    output = Path(args.out)
    profile = profile_of(args)
    plan = PLANS[profile.name]
    emulator = await start_emulator(profile, args.step_seconds)
    try:
        console.line(f"A local {profile.title} emulator is running at {emulator.base_url}: no API key, no network.")
        console.line(f"It runs {CD.CLI_DEMO_WORKERS} task at a time; other users' tasks are queued ahead of yours.")
        if not profile.progress_socket:
            console.line(f"{profile.title} has no progress socket: each task is polled every "
                         f"{CD.CLI_DEMO_POLL_INTERVAL} s.")
        client: Client
        others: Client
        async with (
            emulator.client(poll_interval=CD.CLI_DEMO_POLL_INTERVAL) as client,
            emulator.client() as others,
        ):
            ahead_t2i, ahead_i2i = CD.CLI_DEMO_TASKS_AHEAD
            console.line("")
            console.line(f"1. text to image ({plan.text_to_image}): {SUBJECT!r}")
            await queue_tasks_ahead(others, plan, ahead_t2i)
            first, t2i_time = await generate(
                client, console, profile, plan.text_to_image, plan.text_to_image_prompt(),
                plan.spec(plan.text_to_image), output / "text-to-image",
            )
            for path in first:
                console.line(f"  saved {path}")
            console.line(f"  {t2i_time}")

            console.line("")
            console.line(f"2. image to image ({plan.image_to_image}): {first[0]} is uploaded with the submit")
            await queue_tasks_ahead(others, plan, ahead_i2i)
            second, i2i_time = await generate(
                client, console, profile, plan.image_to_image, plan.image_to_image_prompt(first[0]),
                plan.spec(plan.image_to_image), output / "image-to-image",
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
    console.line(f"Next: export {profile.environment.api_key}=... and try '{plan.next_step}'.")
    return ExitCode.OK
