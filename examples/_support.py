"""What the examples share: which service they talk to, which workflow they run, how they show progress.

Not an example itself (copy it along with the example you copy). Every example opens its client with
``open_client()``:

- ``GENSTUDIO_API_KEY`` set: ``AsyncGenStudio()`` talks to the real service, or to ``GENSTUDIO_BASE_URL`` when
  that is set too (e.g. an emulator started with ``genstudio emulator --api-key sk-emulator``);
- no key at all: the built-in emulator is started in-process (``pip install 'genstudio-async[emulator]'``), so
  every example runs offline with nothing to configure.

Workflows: the docs' example ids by default, each with its parameter spec ("入参范围", as GenStudio's "查看参数"
shows it) and its ComfyUI "Save (API Format)" export from ``examples/workflows/``. To run your own workflow, pass
``--workflow``, ``--spec`` and ``--api-json`` (or set ``GENSTUDIO_WORKFLOW_ID``, ``GENSTUDIO_WORKFLOW_SPEC`` and
``GENSTUDIO_WORKFLOW_API_JSON``; the image-to-image ones are ``GENSTUDIO_I2I_WORKFLOW_*``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genstudio_async import ApiWorkflow, AsyncGenStudio, PromptBuilder, TaskInfo, TaskStatus, WorkflowSpec

WORKFLOWS_DIR = Path(__file__).resolve().parent / "workflows"

#: How the in-process emulator runs: slow enough to watch the progress, fast enough not to wait.
DEMO_STEP_SECONDS = 0.1
DEMO_WORKERS = 4


@asynccontextmanager
async def open_client(**options: Any) -> AsyncIterator[AsyncGenStudio]:
    """An ``AsyncGenStudio`` (``options`` are its keyword arguments) for the service, or for an emulator.

    With ``GENSTUDIO_API_KEY`` set, the client reads its key and base URL from the environment. Without it, a
    built-in emulator is started in this process for as long as the client is open.
    """
    if os.environ.get("GENSTUDIO_API_KEY"):
        async with AsyncGenStudio(**options) as client:
            yield client
        return

    from genstudio_async.emulator import Emulator  # only needed, and only installed, for the offline demo

    async with Emulator(step_seconds=DEMO_STEP_SECONDS, workers=DEMO_WORKERS) as emulator:
        print(f"GENSTUDIO_API_KEY is not set: using the built-in emulator at {emulator.base_url}", flush=True)
        async with emulator.client(**options) as client:
            yield client


# --- workflows -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workflow:
    """A hosted workflow, as a prompt builder needs it: its id, its parameter spec and its exported JSON."""

    workflow_id: str
    spec: WorkflowSpec  # what a prompt may set, and the values allowed: submit(..., spec=spec) checks against it
    api: ApiWorkflow  # the export: it tells which text node is the positive prompt and which the negative

    def builder(self) -> PromptBuilder:
        """A ``PromptBuilder`` starting from the spec's current values (the tutorial's "Base Prompt")."""
        return self.spec.builder(workflow=self.api)


@dataclass(frozen=True)
class WorkflowDefaults:
    """Where a workflow comes from unless told otherwise: ``<env_prefix>WORKFLOW_ID`` / ``_SPEC`` / ``_API_JSON``
    environment variables, else the docs' example workflow and the files in ``examples/workflows/``."""

    env_prefix: str
    workflow_id: str
    spec: Path
    api_json: Path

    def setting(self, name: str, default: str | Path) -> str:
        return os.environ.get(f"{self.env_prefix}{name}") or str(default)

    def load(self, workflow_id: str | None = None, spec: str | None = None, api_json: str | None = None) -> Workflow:
        """The workflow: each argument given wins over its environment variable, which wins over the default."""
        return Workflow(
            workflow_id=workflow_id or self.setting("WORKFLOW_ID", self.workflow_id),
            spec=WorkflowSpec.load(Path(spec or self.setting("WORKFLOW_SPEC", self.spec))),
            api=ApiWorkflow.load(Path(api_json or self.setting("WORKFLOW_API_JSON", self.api_json))),
        )


TEXT_TO_IMAGE = WorkflowDefaults(
    env_prefix="GENSTUDIO_",
    workflow_id="wf-c73diz7kadp6ffgn",  # the API guide's text-to-image example
    spec=WORKFLOWS_DIR / "t2i_spec.json",
    api_json=WORKFLOWS_DIR / "t2i_workflow_api.json",
)
IMAGE_TO_IMAGE = WorkflowDefaults(
    env_prefix="GENSTUDIO_I2I_",
    workflow_id="wf-c73epllu4i3bxvzr",  # the API guide's image-to-image example (LoadImage is node "10")
    spec=WORKFLOWS_DIR / "i2i_spec.json",
    api_json=WORKFLOWS_DIR / "i2i_workflow_api.json",
)


def add_workflow_arguments(parser: argparse.ArgumentParser, defaults: WorkflowDefaults) -> None:
    """``--workflow``, ``--spec`` and ``--api-json``; read them back with ``load_workflow``."""
    env = defaults.env_prefix
    parser.add_argument(
        "--workflow", metavar="ID", help=f"workflow id (default: ${env}WORKFLOW_ID or {defaults.workflow_id})"
    )
    parser.add_argument(
        "--spec",
        metavar="FILE",
        help=f"its parameter spec, '入参范围' JSON (default: ${env}WORKFLOW_SPEC or the example's)",
    )
    parser.add_argument(
        "--api-json",
        metavar="FILE",
        help=f"its ComfyUI 'Save (API Format)' export (default: ${env}WORKFLOW_API_JSON or the example's)",
    )


def load_workflow(args: argparse.Namespace, defaults: WorkflowDefaults) -> Workflow:
    """The workflow named by the ``add_workflow_arguments`` options (or their defaults)."""
    workflow_id: str | None = args.workflow
    spec: str | None = args.spec
    api_json: str | None = args.api_json
    return defaults.load(workflow_id, spec, api_json)


# --- progress --------------------------------------------------------------------------------------------------


def describe(event: TaskInfo) -> str:
    """One progress event in a few words: ``queued: position 2 of 3``, ``running:  40%``, ``succeeded: 100%``."""
    if event.status is TaskStatus.QUEUED:
        return f"queued: position {event.queue_position} of {event.queue_size}"
    if event.status is TaskStatus.FAILED:
        return f"failed: {event.error_message or 'no reason given'}"
    if event.status is TaskStatus.PERMISSION_DENIED:
        return "permission denied"
    return f"{event.status.name.lower()}: {event.progress:3d}%"
