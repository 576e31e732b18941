"""``genstudio run``: one task from the command line, submit to saved files, with live progress.

The prompt is built from ``--prompt``, ``--set`` and ``--image`` (on GPUGeek, from the whole workflow:
``--prompt``, ``--workflow-json`` or a built-in export) and checked in full before anything is sent (see
``prompt``). Images given with ``--image`` are uploaded at submit time (GPUGeek: presigned, PUT and committed).
Files are saved under ``--out`` (default ``genstudio-output/<prompt_id>/``, the id made a safe folder name:
``task_folder``) as ``<node id>/<file name>``. ``--json`` prints one JSON object (``prompt_id``, ``status``,
``files``, ``paths``) and nothing else on stdout, also when the task fails; ``--events`` JSON lines as it goes
(``events``). ``--timeout`` with ``--cancel-on-timeout`` cancels a task that is not done in time.
Ctrl-C leaves the task running on the service and says how to follow (``genstudio watch``) or cancel it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._exceptions import GenStudioError
from .._files import safe_name
from ..types import ProgressEvent, Submission, TaskResult
from . import defaults as CD
from .client import endpoint_of, make_client
from .console import Console
from .display import TaskProgress
from .errors import CLIError, Endpoint, ExitCode, describe_error, exit_code_for
from .events import (
    DOWNLOAD_FAILED,
    INTERRUPTED,
    SUCCEEDED,
    EventLog,
    cancelled_on_timeout,
    events_of,
    status_word,
    submit_outcome,
)
from .prompt import build_prompt, load_prompt_file, load_spec, whole_workflow
from .services import Profile, profile_of


def task_folder(prompt_id: str) -> str:
    """The folder ``run`` saves a task's files in by default, under ``CLI_RUN_OUTPUT_DIR``: named from the
    server's ``prompt_id``, which may be anything (``../../x``, ``/etc``): made a safe single name, of bounded
    length, so nothing the server sends places a file outside the output folder."""
    name = safe_name(prompt_id, "task")
    if len(name.encode()) <= CD.CLI_TASK_FOLDER_MAX_BYTES:
        return name
    digest = hashlib.sha256(prompt_id.encode()).hexdigest()[:8]
    head = name.encode()[: CD.CLI_TASK_FOLDER_MAX_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{head}-{digest}"


def own_folder(folder: Path, within: Path) -> Path:
    """``folder``, a folder the command makes inside ``within`` (the one the user named, or the default output
    folder) to save one task's or job's files in; ``GenStudioError`` if it is a symlink or leads outside
    ``within`` (planted there since: the download would write through it)."""
    if folder.is_symlink() or (folder.exists() and not folder.resolve().is_relative_to(within.resolve())):
        raise GenStudioError(
            f"its output folder {folder} is a symlink or leads outside {within}: not followed "
            "(move it away, then try again)"
        )
    return folder


def result_document(
    prompt_id: str,
    result: TaskResult | None,
    paths: list[Path],
    error: BaseException | None,
    endpoint: Endpoint | None = None,
) -> dict[str, Any]:
    """The ``--json`` object of a finished run (``endpoint``: where the failed request went, as for the error
    line)."""
    document: dict[str, Any] = {
        "prompt_id": prompt_id,
        "status": status_word(error),
        "files": result.files if result is not None else {},
        "paths": [str(path) for path in paths],
    }
    if error is not None:
        document["error"] = describe_error(error, endpoint)
    if cancelled_on_timeout(error):
        document["cancelled"] = True
    return document


def on_progress_of(
    display: TaskProgress, events: EventLog, job: str | None = None, *, row: str | None = None
) -> Callable[[ProgressEvent], None]:
    """``wait``'s ``on_progress``: each event to the live display (its ``row``, for several tasks) and to the
    ``--events`` stream."""

    def show(event: ProgressEvent) -> None:
        display.update(event, row)
        events.progress(event, job=job)

    return show


def workflow_id_of(args: argparse.Namespace, profile: Profile) -> str | int:
    """``WORKFLOW_ID`` as the service takes it (GPUGeek's an int); ``CLIError`` (exit 2) if it cannot be one."""
    workflow_id = profile.workflow_id(args.workflow_id)
    if workflow_id is None:
        raise CLIError(
            f"a {profile.title} workflow id is {profile.service.workflow_id_hint}, got {args.workflow_id!r}",
            ExitCode.USAGE,
        )
    return workflow_id


def prepare(args: argparse.Namespace) -> None:
    """The local work, before the event loop starts: read ``--spec``, ``--prompt`` and ``--workflow-json``
    (stdin may block until EOF; outside the loop a Ctrl-C there is a plain KeyboardInterrupt, exit 130), build
    and check the prompt, and refuse an ``--out`` that cannot be a directory, before a task is paid for."""
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CLIError(f"--out {args.out!r} exists and is not a directory", ExitCode.USAGE)
    profile = profile_of(args)
    workflow_id = args.wire_workflow_id = workflow_id_of(args, profile)
    assignments = [*args.set, *args.image]
    workflow_json: str | None = getattr(args, "workflow_json", None)
    if profile.whole_workflow:
        if args.spec is not None:
            raise CLIError(
                "--spec is a GenStudio parameter spec ('入参范围'); on GPUGeek the workflow itself (built-in, "
                "--workflow-json or --prompt) names the nodes and types the values",
                ExitCode.USAGE,
            )
        given = load_prompt_file(args.prompt, profile)
        source = Path(workflow_json) if workflow_json is not None else None
        base = whole_workflow(workflow_id, given, source, json_name="--workflow-json")
        args.built_prompt = build_prompt(base, assignments, profile=profile)
        return
    if workflow_json is not None:
        raise CLIError(
            "--workflow-json is GPUGeek's (its prompt is the whole workflow); a GenStudio prompt holds overrides "
            "only: name nodes with --spec SPEC.json",
            ExitCode.USAGE,
        )
    spec = load_spec(args.spec, str(workflow_id))
    args.built_prompt = build_prompt(load_prompt_file(args.prompt), assignments, spec)


async def run_command(args: argparse.Namespace, console: Console) -> int:
    if not hasattr(args, "built_prompt"):
        prepare(args)
    profile, prompt = profile_of(args), args.built_prompt
    events = events_of(args)
    submission: Submission | None = None
    try:
        async with make_client(args, console) as client:
            try:
                submission = await client.submit(args.wire_workflow_id, prompt)  # checked in full by prepare
            except GenStudioError as error:
                events.outcome(submit_outcome(error), prompt_id=None, error=describe_error(error, endpoint_of(args)))
                raise
            events.submitted(submission, args.wire_workflow_id)
            prompt_id = submission.prompt_id
            uploads = f" (uploaded {', '.join(Path(image.value).name for image in args.image)})" if args.image else ""
            console.line(f"submitted {prompt_id}{uploads}")
            try:
                with TaskProgress(console, prompt_id, profile) as progress:
                    result = await client.wait(
                        submission,
                        timeout=args.timeout,
                        on_progress=on_progress_of(progress, events),
                        cancel_on_timeout=args.cancel_on_timeout,
                    )
            except GenStudioError as error:
                message = describe_error(error, endpoint_of(args))
                status = status_word(error)
                events.outcome(status, prompt_id=prompt_id, error=message, cancelled=cancelled_on_timeout(error))
                if args.json:
                    console.json(result_document(prompt_id, None, [], error, endpoint_of(args)))
                raise
            directory = Path(args.out) if args.out else Path(CD.CLI_RUN_OUTPUT_DIR) / task_folder(prompt_id)
            try:
                if not args.out:  # a folder this command names inside genstudio-output/: never a planted symlink
                    own_folder(directory, Path(CD.CLI_RUN_OUTPUT_DIR))
                paths = await client.download(result, directory)
            except GenStudioError as error:
                # The task succeeded: say which one, so its files can still be fetched ('genstudio watch').
                events.outcome(DOWNLOAD_FAILED, prompt_id=prompt_id, error=describe_error(error))
                if args.json:
                    document = result_document(prompt_id, result, [], error)
                    console.json(document | {"status": DOWNLOAD_FAILED})
                raise CLIError(
                    f"task {prompt_id} succeeded but its files were not saved: {describe_error(error)} "
                    f"('genstudio watch {prompt_id}' saves them while the service keeps them)",
                    exit_code_for(error),
                ) from error
            events.downloaded(prompt_id, paths)
    except asyncio.CancelledError:
        if submission is not None:
            task = submission.prompt_id
            console.note(
                f"interrupted: task {task} goes on on the service "
                f"('genstudio watch {task}' to follow it, 'genstudio cancel {task}' to stop it)"
            )
            events.outcome(INTERRUPTED, prompt_id=task, error="interrupted: the task goes on on the service")
        else:
            console.note("interrupted while submitting: the service may or may not have created the task")
            events.outcome(INTERRUPTED, prompt_id=None, error="interrupted while submitting: the task may exist")
        raise
    events.outcome(SUCCEEDED, prompt_id=prompt_id, paths=paths)
    if args.json:
        console.json(result_document(prompt_id, result, paths, None))
    for path in paths:
        console.line(f"saved {path}")
    return ExitCode.OK
