"""``genstudio status``, ``genstudio cancel`` and ``genstudio upload``: a few requests each, for a shell or a script.

GenStudio answers the status of many tasks in one request; GPUGeek one task per request (a few at once).
``status`` answers once (one status column: ``queued: position 2 of 3``, ``running:  40%``); to follow tasks to
their end and save their files, ``genstudio watch``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._exceptions import GenStudioError
from .._redact import redact_shapes
from ..types import TaskInfo, TaskStatus
from .client import endpoint_of, make_client
from .console import Console
from .display import describe
from .errors import ExitCode, describe_error, exit_code_for
from .services import Profile, profile_of


def task_document(info: TaskInfo) -> dict[str, Any]:
    """A task as ``status --json`` shows it (with what only GPUGeek sends, when it is there: the time queued
    and running in seconds, the price, when it was created)."""
    document: dict[str, Any] = {
        "prompt_id": info.prompt_id,
        "status": info.status.name.lower(),
        "status_code": int(info.status),
        "progress": info.progress,
        "queue_position": info.queue_position,
        "queue_size": info.queue_size,
        "error": info.error_message,
        "files": info.files,
        "final_files": info.final_files,
    }
    for name in ("queue_duration", "run_duration"):
        duration = getattr(info, name)
        if duration is not None:
            document[name] = duration.total_seconds()
    if info.price is not None:
        document["price"] = info.price
    if info.created_at is not None:
        document["created_at"] = info.created_at.isoformat()
    return document


async def status_command(args: argparse.Namespace, console: Console) -> int:
    """Every task asked for (GenStudio: in one request). Exit 1 when the service knows some id not."""
    profile = profile_of(args)
    async with make_client(args, console) as client:
        infos = await client.get_tasks(args.prompt_ids)
    found = {info.prompt_id: info for info in infos}
    # A prompt_token pasted where an id belongs is shown masked, like every token (redact_shapes: JWTs).
    asked = list(dict.fromkeys(prompt_id.strip() for prompt_id in args.prompt_ids))
    shown = {prompt_id: redact_shapes(prompt_id) for prompt_id in asked}
    missing = [prompt_id for prompt_id in asked if prompt_id not in found]
    if args.json:
        documents = [
            task_document(found[prompt_id])
            if prompt_id in found
            else {"prompt_id": shown[prompt_id], "status": "not_found"}
            for prompt_id in asked
        ]
        console.json(documents)
    else:
        rows = []
        for prompt_id in asked:
            info = found.get(prompt_id)
            if info is None:
                rows.append([shown[prompt_id], "not found", ""])
                continue
            files = sum(len(urls) for urls in info.files.values()) or len(info.final_files)
            rows.append([prompt_id, describe(info, profile), str(files)])  # one column: "running:  40%"
        console.table(["prompt_id", "status", "files"], rows)
    for prompt_id in missing:
        console.note(f"the service does not know task {shown[prompt_id]}")
    return ExitCode.FAILED if missing else ExitCode.OK


# How a task that has already ended ended, for "already ...: not cancelled".
_ENDED = {
    TaskStatus.SUCCEEDED: "succeeded",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "cancelled",
    TaskStatus.PERMISSION_DENIED: "ended (permission denied)",
}


def ended_as(info: TaskInfo, profile: Profile) -> str:
    """How a terminal task ended, in a word or two."""
    if info.status is TaskStatus.FAILED and profile.failed_may_be_cancelled:
        return "failed or cancelled"  # GenStudio's 4 means both
    return _ENDED.get(info.status, f"ended ({info.status.name.lower()})")


async def cancel_command(args: argparse.Namespace, console: Console) -> int:
    """Cancel each task that has not ended, after asking their status in one request; report each. A task
    already ended is not cancelled (the service would answer as if it had been) and exits 1. If the status
    cannot be asked, each task is sent its cancel anyway (and the reason is noted). The exit code is the worst
    of them."""
    code = ExitCode.OK
    outcomes: list[dict[str, Any]] = []
    asked = list(dict.fromkeys(prompt_id.strip() for prompt_id in args.prompt_ids))
    profile = profile_of(args)
    async with make_client(args, console) as client:
        try:
            found = {info.prompt_id: info for info in await client.get_tasks(asked)}
        except GenStudioError as error:
            console.note(f"cannot ask the tasks' status first ({describe_error(error, endpoint_of(args))}): "
                         "cancelling them anyway")
            found = {}
        for prompt_id in asked:
            shown = redact_shapes(prompt_id)
            info = found.get(prompt_id)
            if info is not None and info.is_terminal:  # unknown ones are asked anyway: the service says why not
                code = max(code, ExitCode.FAILED)
                message = f"already {ended_as(info, profile)}: not cancelled"
                status = info.status.name.lower()
                outcomes.append({"prompt_id": shown, "cancelled": False, "status": status, "error": message})
                console.error(f"{shown} {message}")
                continue
            try:
                await client.cancel(prompt_id)
            except GenStudioError as error:
                code = max(code, exit_code_for(error))
                message = describe_error(error, endpoint_of(args))
                outcomes.append({"prompt_id": shown, "cancelled": False, "error": message})
                console.error(f"cannot cancel {shown}: {message}")
            else:
                outcomes.append({"prompt_id": prompt_id, "cancelled": True})
                console.line(f"cancelled {prompt_id}")
    if args.json:
        console.json(outcomes)
    return code


async def upload_command(args: argparse.Namespace, console: Console) -> int:
    """Upload an image; print the value for a ``LoadImage`` input: GenStudio's ``image_id``, GPUGeek's committed
    ``oss_url`` (presigned, PUT, then committed; ``--json`` names it so)."""
    answer = profile_of(args).upload_answer
    async with make_client(args, console) as client:
        value = await client.upload_image(Path(args.file))
    if args.json:
        console.json({"file": args.file, answer: value})
    else:
        console.line(value)
    return ExitCode.OK
