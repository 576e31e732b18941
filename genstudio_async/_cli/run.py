"""``genstudio run``: one task from the command line, submit to saved files, with live progress.

The prompt is built from ``--prompt``, ``--set`` and ``--image`` and checked in full before anything is sent
(see ``prompt``). Images given with ``--image`` are uploaded at submit time. Files are saved under ``--out``
(default ``genstudio-output/<prompt_id>/``, the id made a safe folder name: ``task_folder``) as
``<node id>/<file name>``. ``--json`` prints one JSON object (``prompt_id``, ``status``, ``files``, ``paths``)
and nothing else on stdout, also when the task fails.
Ctrl-C leaves the task running on the service and says how to follow or cancel it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path
from typing import Any

from .._exceptions import GenStudioError, TaskCancelledError, TaskError, TaskPermissionError, TaskTimeoutError
from .._files import _safe_component
from ..types import Submission, TaskResult
from . import defaults as CD
from .client import make_client, service_of
from .console import Console
from .display import TaskProgress
from .errors import CLIError, ExitCode, Service, describe_error, exit_code_for
from .prompt import build_prompt, load_prompt_file, load_spec


def task_folder(prompt_id: str) -> str:
    """The folder ``run`` saves a task's files in by default, under ``CLI_RUN_OUTPUT_DIR``: named from the
    server's ``prompt_id``, which may be anything (``../../x``, ``/etc``): made a safe single name, of bounded
    length, so nothing the server sends places a file outside the output folder."""
    name = _safe_component(prompt_id, "task")
    if len(name.encode()) <= CD.CLI_TASK_FOLDER_MAX_BYTES:
        return name
    digest = hashlib.sha256(prompt_id.encode()).hexdigest()[:8]
    head = name.encode()[: CD.CLI_TASK_FOLDER_MAX_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{head}-{digest}"


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
    prompt_id: str,
    result: TaskResult | None,
    paths: list[Path],
    error: BaseException | None,
    service: Service | None = None,
) -> dict[str, Any]:
    """The ``--json`` object of a finished run (``service``: where the failed request went, as for the error line)."""
    document: dict[str, Any] = {
        "prompt_id": prompt_id,
        "status": status_word(error),
        "files": result.files if result is not None else {},
        "paths": [str(path) for path in paths],
    }
    if error is not None:
        document["error"] = describe_error(error, service)
    return document


def prepare(args: argparse.Namespace) -> None:
    """The local work, before the event loop starts: read ``--spec`` and ``--prompt`` (stdin may block until
    EOF; outside the loop a Ctrl-C there is a plain KeyboardInterrupt, exit 130), build and check the prompt,
    and refuse an ``--out`` that cannot be a directory, before a task is paid for."""
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CLIError(f"--out {args.out!r} exists and is not a directory", ExitCode.USAGE)
    args.loaded_spec = load_spec(args.spec, args.workflow_id)
    args.built_prompt = build_prompt(load_prompt_file(args.prompt), args.set, args.image, args.loaded_spec)


async def run_command(args: argparse.Namespace, console: Console) -> int:
    if not hasattr(args, "built_prompt"):
        prepare(args)
    spec, prompt = args.loaded_spec, args.built_prompt
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
                    console.json(result_document(submission.prompt_id, None, [], error, service_of(args)))
                raise
            directory = Path(args.out) if args.out else Path(CD.CLI_RUN_OUTPUT_DIR) / task_folder(submission.prompt_id)
            try:
                paths = await client.download(result, directory)
            except GenStudioError as error:
                # The task succeeded: say which one, so its files can still be fetched ('genstudio status').
                if args.json:
                    document = result_document(submission.prompt_id, result, [], error)
                    console.json(document | {"status": "download_failed"})
                raise CLIError(
                    f"task {submission.prompt_id} succeeded but its files were not saved: {describe_error(error)}",
                    exit_code_for(error),
                ) from error
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
