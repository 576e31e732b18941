"""Notebook: the service tutorial's text-to-image job with the sync client ``GenStudio``, no asyncio anywhere.

The tutorial's own notebook calls ``requests`` by hand: submit, poll ``get_task_info`` every 5 s until status 3
(and spins for ever on a 4), download each URL. Here the same job is a few lines, with live progress. Each
``# %%`` cell can be pasted into a Jupyter cell as it is (Jupyter's running loop is no obstacle). Run it as a
script too::

    python examples/notebook.py [-o OUTPUT_DIR] [--prompt TEXT]

It talks to the service named by ``GENSTUDIO_API_KEY`` (and ``GENSTUDIO_BASE_URL``, if set); without a key it
starts the built-in emulator in a background thread: no key, no network.
"""

# %% Settings: the workflow, its parameter spec ("入参范围") and its ComfyUI "Save (API Format)" export
from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from pathlib import Path

from genstudio_async import ApiWorkflow, GenStudio, ProgressEvent, TaskStatus, WorkflowSpec

WORKFLOWS = Path(__file__).resolve().parent / "workflows" if "__file__" in globals() else Path("workflows")
WORKFLOW_ID = os.environ.get("GENSTUDIO_WORKFLOW_ID", "wf-c73diz7kadp6ffgn")  # the docs' text-to-image example
spec = WorkflowSpec.load(WORKFLOWS / "t2i_spec.json")
exported = ApiWorkflow.load(WORKFLOWS / "t2i_workflow_api.json")

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("-o", "--output", type=Path, default=Path("output"), help="where to save (default: %(default)s)")
parser.add_argument("--prompt", default="a red fox in fresh snow, morning light", help="the positive prompt")
# parse_known_args: in a Jupyter kernel, sys.argv holds the kernel's own arguments.
args, _ = parser.parse_known_args()

# %% No key? A local emulator stands in for the service (in a background thread: this notebook has no loop)
resources = ExitStack()
if not os.environ.get("GENSTUDIO_API_KEY"):
    from anyio.from_thread import start_blocking_portal

    from genstudio_async.emulator import Emulator

    portal = resources.enter_context(start_blocking_portal())
    emulator = resources.enter_context(portal.wrap_async_context_manager(Emulator(step_seconds=0.1)))
    os.environ.update(GENSTUDIO_API_KEY=emulator.api_key, GENSTUDIO_BASE_URL=emulator.base_url)
    print(f"GENSTUDIO_API_KEY is not set: using the built-in emulator at {emulator.base_url}")

# %% The prompt: the tutorial's "Base Prompt" with the texts and the seed changed, checked against the spec
prompt = (
    spec.builder(workflow=exported)
    .positive(args.prompt)
    .negative("ugly, deformed, blurry")
    .randomize_seeds()
    .build()
)


def show(event: ProgressEvent) -> None:
    if event.status is TaskStatus.QUEUED:
        print(f"  queued: position {event.queue_position} of {event.queue_size}", flush=True)
    else:
        print(f"  {event.status.name.lower()}: {event.progress:3d}%", flush=True)


# %% Generate and save: submit, follow to the end (status 4 raises TaskFailedError), download every file
with resources, GenStudio() as client:
    submission = client.submit(WORKFLOW_ID, prompt, spec=spec)
    print(f"submitted {submission.prompt_id}")
    result = client.wait(submission, timeout=600, on_progress=show)
    for path in client.download(result, args.output):  # output/<node id>/<file name>
        print(f"saved {path}")
