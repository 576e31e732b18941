"""The jobs file of ``genstudio batch``: JSON lines, one job each, all checked before anything is sent.

::

    {"id": "fox", "workflow_id": "wf-c73diz7kadp6ffgn", "prompt": {"6": {"inputs": {"text": "a red fox"}}}}
    {"workflow_id": "wf-c73diz7kadp6ffgn"}

``workflow_id`` is required; ``prompt`` (overrides, ``{node_id: {"inputs": {...}}}``) and ``id`` are optional.
A job's name is its ``id``, or else a hash of the line (``job-1a2b3c4d``; ``job-1a2b3c4d-2`` for the second identical
line): inserting, deleting or moving other lines never renames a job, and editing a job makes it a new one (a job
with an ``id`` whose workflow or prompt changed is submitted again too). Blank lines are skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import _safe_component
from .._prompt import prompt_shape_problems
from . import defaults as CD
from .errors import CLIError, ExitCode

_KNOWN_KEYS = frozenset({"id", "workflow_id", "prompt"})
_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class Job:
    """One line of the jobs file."""

    name: str
    line: int
    workflow_id: str
    prompt: dict[str, Any] | None
    folder: str  # the job's directory under --out: its name, made safe for a file system
    aliases: tuple[str, ...] = ()  # names an earlier version of the command gave this job (journal lookups)

    @property
    def fingerprint(self) -> str:
        """What the job asks for (workflow and prompt, key order ignored): a journaled task of another
        fingerprint was made for an earlier version of this job."""
        what = json.dumps([self.workflow_id, self.prompt], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(what.encode()).hexdigest()[:16]


def job_folder(name: str) -> str:
    """The job's folder under ``--out``: its name with anything but letters, digits, ``.``, ``-`` and ``_``
    replaced (the same rule as every other name the SDK puts on disk)."""
    return _safe_component(name, "job")


def load_jobs(path: Path) -> list[Job]:
    """Every job of the file; raises ``CLIError`` (exit 2) listing every problem found, by line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot read the jobs file {str(path)!r}: {exc.strerror or exc}", ExitCode.USAGE) from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"the jobs file {str(path)!r} is not UTF-8 text: {exc}", ExitCode.USAGE) from None
    jobs: list[Job] = []
    problems: list[str] = []
    names: dict[str, int] = {}
    folders: dict[str, str] = {}
    # Only "\n" ends a line: str.splitlines() also splits at U+2028, U+0085, \x1c…, which JSON strings may hold.
    occurrences: dict[str, int] = {}  # an unnamed job is named by its content, and which copy of it it is
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        occurrences[line.strip()] = occurrence = occurrences.get(line.strip(), 0) + 1
        job, trouble = _parse_line(number, line, occurrence)
        if trouble:
            problems += [f"line {number}: {problem}" for problem in trouble]
            continue
        assert job is not None
        if job.name in names:
            problems.append(f"line {number}: job id {job.name!r} is already used on line {names[job.name]}")
            continue
        if job.folder in folders:
            problems.append(
                f"line {number}: job id {job.name!r} would share the output folder {job.folder!r} "
                f"with job {folders[job.folder]!r}"
            )
            continue
        names[job.name] = number
        folders[job.folder] = job.name
        jobs.append(job)
    if problems:
        shown = problems[:_PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append(f"… and {len(problems) - len(shown)} more")
        count = len(problems)
        header = f"the jobs file {str(path)!r} has {count} problem{'s' if count != 1 else ''}; nothing was sent:"
        raise CLIError("\n".join([header, *(f"  - {problem}" for problem in shown)]), ExitCode.USAGE)
    if not jobs:
        raise CLIError(f"the jobs file {str(path)!r} has no jobs", ExitCode.USAGE)
    return jobs


def _parse_line(number: int, line: str, occurrence: int = 1) -> tuple[Job | None, list[str]]:
    try:
        data = json.loads(line)
    except ValueError as exc:
        return None, [f"not valid JSON ({exc})"]
    if not isinstance(data, Mapping):
        return None, ["a job must be a JSON object with a 'workflow_id'"]
    problems: list[str] = []
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        problems.append(f"unknown keys {unknown} (a job has 'workflow_id', 'prompt' and 'id')")
    workflow_id = data.get("workflow_id")
    if not isinstance(workflow_id, str) or not workflow_id.strip():
        problems.append("'workflow_id' must be a non-empty string")
    prompt = data.get("prompt")
    if prompt is not None:
        problems += [str(problem) for problem in prompt_shape_problems(prompt)]
    raw_id = data.get("id")
    valid_id = isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and bool(str(raw_id).strip())
    if raw_id is not None and not valid_id:
        problems.append("'id' must be a non-empty string or a number")
    if problems:
        return None, problems
    assert isinstance(workflow_id, str)
    aliases: tuple[str, ...] = ()
    if raw_id is not None:
        name = str(raw_id).strip()
    else:
        # Not the line number: deleting or inserting another line must not rename (and resubmit) this job.
        digest = hashlib.sha256(line.strip().encode()).hexdigest()[: CD.CLI_JOB_HASH_DIGITS]
        name = f"job-{digest}" if occurrence == 1 else f"job-{digest}-{occurrence}"
        aliases = (f"{number}-{digest}",)  # the line-numbered name of journals written before
    prompt_copy = dict(prompt) if prompt is not None else None
    return Job(name, number, workflow_id.strip(), prompt_copy, job_folder(name), aliases), []
