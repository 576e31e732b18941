"""Quickstart: one text-to-image generation from submit to saved PNG, with live progress.

Runs against the real service when ``GENSTUDIO_API_KEY`` is set (and ``GENSTUDIO_WORKFLOW_ID`` names one of your
text-to-image workflows); otherwise it starts the built-in emulator in-process: no key, no network::

    python examples/quickstart.py [OUTPUT_DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from contextlib import AsyncExitStack
from pathlib import Path

from genstudio_async import AsyncGenStudio, ProgressEvent, TaskStatus

EXAMPLE_WORKFLOW = "wf-c73diz7kadp6ffgn"  # the service docs' text-to-image example, built into the emulator
PROMPT = {
    "6": {"inputs": {"text": "Spiderman in a red suit standing in a crowded place, cinematic, neon colors"}},
    "7": {"inputs": {"text": "ugly, deformed"}},
    "5": {"inputs": {"width": 512, "height": 512, "batch_size": 1}},
}


def show(event: ProgressEvent) -> None:
    if event.status is TaskStatus.QUEUED:
        print(f"  queued: position {event.queue_position} of {event.queue_size}", flush=True)
    else:
        print(f"  {event.status.name.lower()}: {event.progress:3d}%  (via {event.source})", flush=True)


async def main(output: Path) -> None:
    async with AsyncExitStack() as stack:
        if os.environ.get("GENSTUDIO_API_KEY"):
            client = await stack.enter_async_context(AsyncGenStudio())
            workflow_id = os.environ.get("GENSTUDIO_WORKFLOW_ID", EXAMPLE_WORKFLOW)
        else:
            from genstudio_async.emulator import Emulator

            emulator = await stack.enter_async_context(Emulator(step_seconds=0.1))
            print(f"GENSTUDIO_API_KEY is not set: using the built-in emulator at {emulator.base_url}")
            client = await stack.enter_async_context(emulator.client())
            workflow_id = EXAMPLE_WORKFLOW

        started = time.perf_counter()
        submission = await client.submit(workflow_id, PROMPT)
        print(f"submitted {submission.prompt_id}")
        result = await client.wait(submission, timeout=600, on_progress=show)
        generated = time.perf_counter()
        paths = await client.download(result, output)
        downloaded = time.perf_counter()

    print(f"generated in {generated - started:.2f} s, downloaded in {downloaded - generated:.2f} s:")
    for path in paths:
        print(f"  {path}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "output",
        nargs="?",
        type=Path,
        default=Path("genstudio-demo"),
        metavar="OUTPUT_DIR",
        help="where to save the PNG (default: %(default)s)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args().output))
