"""Text to image: build a prompt from the workflow's parameter spec, check it, submit it, follow it, save the PNGs.

Shows ``WorkflowSpec`` (the "入参范围" JSON), ``ApiWorkflow`` (the ComfyUI export, which tells the positive text
node from the negative one), ``PromptBuilder`` (texts, sampler settings, a random seed) and
``submit(..., spec=spec)``, which refuses a bad prompt before anything is sent::

    python examples/text_to_image.py [OUTPUT_DIR] [--prompt TEXT] [--negative TEXT] [--steps N] [--cfg X] [--seed N]

Files land in ``OUTPUT_DIR/<node id>/`` (default ``output/``). With no ``GENSTUDIO_API_KEY`` it runs against the
built-in emulator; see ``_support.py`` for the real service, your own workflow, or an emulator you started.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

# The examples share a little set-up code in examples/_support.py: make it importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._support import TEXT_TO_IMAGE, add_workflow_arguments, describe, load_workflow, open_client
from genstudio_async import GenStudioError, ProgressEvent, PromptValidationError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, default=Path("output"), help="where to save the images")
    parser.add_argument(
        "--prompt",
        default="Spiderman in a red suit standing in middle of a crowded place, skyscrapers in the background, "
        "cinematic, neon colors, realistic look",
    )
    parser.add_argument("--negative", default="ugly, deformed")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps (default: %(default)s)")
    parser.add_argument("--cfg", type=float, default=7.0, help="classifier-free guidance (default: %(default)s)")
    parser.add_argument("--seed", type=int, help="a fixed seed, to reproduce an image (default: a random one)")
    add_workflow_arguments(parser, TEXT_TO_IMAGE)
    return parser.parse_args()


def show(event: ProgressEvent) -> None:
    print(f"  {describe(event)}", flush=True)


async def main(args: argparse.Namespace) -> int:
    workflow = load_workflow(args, TEXT_TO_IMAGE)

    # Start from every input's current value, then change what this run is about. Nodes are named by what
    # they are; the builder finds their ids in the spec and the export (the sampler's "positive" input links
    # to the positive text node). Nothing is checked yet: a builder is just a dict being put together.
    builder = (
        workflow.builder()
        .positive(args.prompt)
        .negative(args.negative)
        .set("KSampler", steps=args.steps, cfg=args.cfg)
    )
    sampler = builder.node_id("KSampler")
    builder = builder.set(sampler, seed=args.seed) if args.seed is not None else builder.randomize_seeds()
    prompt = builder.build()

    async with open_client() as client:
        try:
            # spec=... checks every input against the spec first (unknown nodes, types, ranges, choices) and
            # raises PromptValidationError listing each problem: a bad prompt never reaches the service.
            submission = await client.submit(workflow.workflow_id, prompt, spec=workflow.spec)
        except PromptValidationError as error:
            print(f"not submitted, the prompt does not fit the workflow:\n{error}", file=sys.stderr)
            return 2
        print(f"submitted {submission.prompt_id} (seed {prompt[sampler]['inputs']['seed']})", flush=True)

        # Progress arrives over the WebSocket as the service pushes it (polling if the socket is unavailable).
        result = await client.wait(submission, timeout=600, on_progress=show)
        paths = await client.download(result, args.output)

    for path in paths:
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_args())))
    except GenStudioError as error:  # a failed task, a refused key, an unreachable service...
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
