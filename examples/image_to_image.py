"""Image to image: a local picture goes into the workflow's LoadImage node; the SDK uploads it at submit time.

A ``pathlib.Path`` (or ``LocalImage(bytes)``) set on a ``LoadImage`` input is uploaded when the prompt is
submitted and replaced by the ``image_id`` the service returns; there is no upload step to write. Without an
input image, one is generated first with the text-to-image workflow, then transformed::

    python examples/image_to_image.py [INPUT_IMAGE] [-o OUTPUT_DIR] [--prompt TEXT] [--denoise 0.6]

Results land in ``OUTPUT_DIR/<node id>/`` (default ``output/``; a generated input in ``OUTPUT_DIR/input/``). With
no ``GENSTUDIO_API_KEY`` it runs against the built-in emulator; see ``_support.py`` for the other set-ups.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

# The examples share a little set-up code in examples/_support.py: make it importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._support import (
    IMAGE_TO_IMAGE,
    TEXT_TO_IMAGE,
    add_workflow_arguments,
    describe,
    load_workflow,
    open_client,
)
from genstudio_async import AsyncGenStudio, GenStudioError, ProgressEvent

# The tutorial sets the checkpoint explicitly: the value must be one of the spec's choices ("查看参数"). The
# docs' image-to-image spec has a current value ("sdXL_v10VAEFix.safetensors") that is not among them.
CHECKPOINT = "majicMIX realistic 麦橘写实_v7.safetensors"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", type=Path, help="the image to transform (default: generate one first)")
    parser.add_argument("-o", "--output", type=Path, default=Path("output"), help="where to save the results")
    parser.add_argument("--prompt", default="beautiful scenery nature glass bottle landscape, purple galaxy bottle")
    parser.add_argument("--negative", default="text, watermark")
    parser.add_argument("--denoise", type=float, default=0.6, help="how far from the input to go, 0..1")
    parser.add_argument("--checkpoint", default=CHECKPOINT, help="ckpt_name (default: %(default)s)")
    add_workflow_arguments(parser, IMAGE_TO_IMAGE)
    return parser.parse_args()


def show(event: ProgressEvent) -> None:
    print(f"  {describe(event)}", flush=True)


async def generate_input(client: AsyncGenStudio, output: Path) -> Path:
    """Make a picture to start from, with the text-to-image workflow (see text_to_image.py)."""
    workflow = TEXT_TO_IMAGE.load()
    prompt = workflow.builder().positive("a glass bottle on a wooden table, studio photo").randomize_seeds().build()
    print("no input image given: generating one with text-to-image first", flush=True)
    result = await client.run(workflow.workflow_id, prompt, spec=workflow.spec, timeout=600, on_progress=show)
    first, *_ = await client.download(result, output)
    print(f"generated {first}", flush=True)
    return first


async def main(args: argparse.Namespace) -> int:
    workflow = load_workflow(args, IMAGE_TO_IMAGE)
    async with open_client() as client:
        source: Path = args.input or await generate_input(client, args.output / "input")

        prompt = (
            workflow.builder()
            .set("LoadImage", image=source)  # a Path: uploaded at submit time, then sent as its image_id
            .set("CheckpointLoaderSimple", ckpt_name=args.checkpoint)
            .set("KSampler", denoise=args.denoise)
            .positive(args.prompt)
            .negative(args.negative)
            .randomize_seeds()
            .build()
        )
        # Checked against the spec first (a Path is fine for an IMAGE input), then the image is uploaded,
        # then the task is queued. The same bytes are uploaded once per client, however often they are used.
        submission = await client.submit(workflow.workflow_id, prompt, spec=workflow.spec)
        print(f"uploaded {source.name} and submitted {submission.prompt_id}", flush=True)
        result = await client.wait(submission, timeout=600, on_progress=show)
        paths = await client.download(result, args.output)

    for path in paths:
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_args())))
    except GenStudioError as error:  # a missing input file, a failed task, a refused key...
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
