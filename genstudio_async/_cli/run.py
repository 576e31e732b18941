"""``genstudio run``: one task from the command line, submit to saved files, with live progress.

The prompt is built from ``--prompt``, ``--set`` and ``--image`` and checked in full before anything is sent
(see ``prompt``). Images given with ``--image`` are uploaded at submit time. Files are saved under ``--out``
(default ``genstudio-output/<prompt_id>/``) as ``<node id>/<file name>``. ``--json`` prints one JSON object
(``prompt_id``, ``status``, ``files``, ``paths``) and nothing else on stdout, also when the task fails.
Ctrl-C leaves the task running on the service and says how to follow or cancel it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from .. import _constants as C
from .._exceptions import TaskCancelledError, TaskError, TaskPermissionError, TaskTimeoutError
from ..types import Submission, TaskResult
from .client import make_client
from .console import Console
from .display import TaskProgress
from .errors import ExitCode, describe_error
from .prompt import build_prompt, load_prompt_file, load_spec


def status_word(error: BaseException | None) -> str:
    """How a task ended, as ``--json`` says it."""
    if error is None:
        return "succeeded"
    if isinstance(error, TaskTimeoutError):
        return "timeout"
    if isinstance(error, TaskCancelledError):
        return "cancelled"
    if isinstance(error, TaskPermissionError):
        return "permission_denied"
    return "failed"


def result_document(
    prompt_id: str, result: TaskResult | None, paths: list[Path], error: BaseException | None
) -> dict[str, Any]:
    """The ``--json`` object of a finished run."""
    document: dict[str, Any] = {
        "prompt_id": prompt_id,
        "status": status_word(error),
        "files": result.files if result is not None else {},
        "paths": [str(path) for path in paths],
    }
    if error is not None:
        document["error"] = describe_error(error)
    return document


async def run_command(args: argparse.Namespace, console: Console) -> int:
    spec = load_spec(args.spec)
    prompt = build_prompt(load_prompt_file(args.prompt), args.set, args.image, spec)
    submission: Submission | None = None
    try:
        async with make_client(args, console) as client:
            submission = await client.submit(args.workflow_id, prompt, spec=spec)
            uploads = f" (uploaded {', '.join(Path(image.value).name for image in args.image)})" if args.image else ""
            console.line(f"submitted {submission.prompt_id}{uploads}")
            try:
                with TaskProgress(console, submission.prompt_id) as progress:
                    result = await client.wait(submission, timeout=args.timeout, on_progress=progress.update)
            except (TaskError, TaskTimeoutError) as error:
                if args.json:
                    console.json(result_document(submission.prompt_id, None, [], error))
                raise
            directory = Path(args.out) if args.out else Path(C.CLI_RUN_OUTPUT_DIR) / submission.prompt_id
            paths = await client.download(result, directory)
    except asyncio.CancelledError:
        if submission is not None:
            task = submission.prompt_id
            console.note(
                f"interrupted: task {task} goes on on the service "
                f"('genstudio status {task}' to follow it, 'genstudio cancel {task}' to stop it)"
            )
        else:
            console.note("interrupted while submitting: the service may or may not have created the task")
        raise
    if args.json:
        console.json(result_document(submission.prompt_id, result, paths, None))
    for path in paths:
        console.line(f"saved {path}")
    return ExitCode.OK
