"""GPUGeek: text to image from the workflow's ComfyUI export, then image to image of the result.

On GPUGeek the prompt is the whole API-format workflow ("Save (API Format)" in ComfyUI): ``ApiWorkflow.builder()``
changes it (the positive prompt, a sampler's inputs, a fresh seed) without touching the file. A local image on a
``LoadImage`` node is uploaded when the task is submitted (a pre-signed PUT, then a commit). There is no
WebSocket: progress is polled, and the service gives no percent (queued, running, then done).

Runs against the real service when ``GPUGEEK_API_KEY`` is set (``GPUGEEK_BASE_URL`` too, for another address, and
``GPUGEEK_T2I_WORKFLOW_ID`` / ``GPUGEEK_I2I_WORKFLOW_ID`` for your own workflows, exported as
``examples/workflows/*_workflow_api.json`` are); otherwise it starts the built-in GPUGeek emulator in-process: no
key, no network::

    python examples/gpugeek.py [OUTPUT_DIR] [--prompt TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from genstudio_async import ApiWorkflow, AsyncGPUGeek, ProgressEvent, TaskStatus

WORKFLOWS = Path(__file__).resolve().parent / "workflows"
TEXT_TO_IMAGE = 763311996779461  # the workflow the API doc's sample submits to; built into the emulator
IMAGE_TO_IMAGE = 763311996779525  # the emulator's image-to-image workflow (LoadImage is node "10")


def show(event: ProgressEvent) -> None:
    if event.status is TaskStatus.QUEUED:
        print(f"  queued: position {event.queue_position} of {event.queue_size}", flush=True)
    else:
        print(f"  {event.status.name.lower()}", flush=True)  # polled: no percent on this service


async def generate(client: AsyncGPUGeek, workflow_id: int, prompt: Mapping[str, Any], output: Path) -> list[Path]:
    """Submit the whole workflow, follow it to its end, save its images under ``output``."""
    started = time.perf_counter()
    submission = await client.submit(workflow_id, prompt)  # uploads a local image first, if the prompt has one
    print(f"submitted {submission.prompt_id}")
    result = await client.wait(submission, timeout=600, on_progress=show)
    paths = await client.download(result, output)
    print(f"  done in {time.perf_counter() - started:.2f} s: {', '.join(str(path) for path in paths)}")
    return paths


async def main(output: Path, text: str) -> None:
    async with AsyncExitStack() as stack:
        if os.environ.get("GPUGEEK_API_KEY"):
            client = await stack.enter_async_context(AsyncGPUGeek(poll_interval=2.0))
            t2i_id = int(os.environ.get("GPUGEEK_T2I_WORKFLOW_ID", TEXT_TO_IMAGE))
            i2i_id = int(os.environ.get("GPUGEEK_I2I_WORKFLOW_ID", IMAGE_TO_IMAGE))
        else:
            from genstudio_async.emulator import Emulator

            emulator = await stack.enter_async_context(Emulator(service="gpugeek", step_seconds=0.1))
            print(f"GPUGEEK_API_KEY is not set: using the built-in GPUGeek emulator at {emulator.base_url}")
            client = await stack.enter_async_context(
                AsyncGPUGeek(emulator.api_key, base_url=emulator.base_url, poll_interval=0.1)
            )
            t2i_id, i2i_id = TEXT_TO_IMAGE, IMAGE_TO_IMAGE

        text_to_image = ApiWorkflow.load(WORKFLOWS / "t2i_workflow_api.json")
        prompt = (
            text_to_image.builder()
            .positive(text)
            .negative("ugly, deformed, watermark")
            .set("EmptyLatentImage", width=512, height=512)
            .randomize_seeds()
            .build()
        )
        print(f"1. text to image ({t2i_id}): {text!r}")
        [picture, *_] = await generate(client, t2i_id, prompt, output / "text-to-image")

        image_to_image = ApiWorkflow.load(WORKFLOWS / "i2i_workflow_api.json")
        prompt = (
            image_to_image.builder()
            .set("LoadImage", image=picture)  # a local Path: uploaded at submit time
            .positive(f"{text}, as a watercolour painting")
            .set("KSampler", denoise=0.6)
            .randomize_seeds()
            .build()
        )
        print(f"2. image to image ({i2i_id}) of {picture}")
        await generate(client, i2i_id, prompt, output / "image-to-image")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "output",
        nargs="?",
        type=Path,
        default=Path("gpugeek-demo"),
        metavar="OUTPUT_DIR",
        help="where to save the PNGs (default: %(default)s)",
    )
    parser.add_argument(
        "--prompt", default="a red fox in fresh snow, golden hour", help="what to draw (default: %(default)r)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    asyncio.run(main(args.output, args.prompt))
