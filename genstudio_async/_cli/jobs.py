"""The jobs file of ``genstudio batch``: JSON lines, one job each, all checked before anything is sent.

GenStudio::

    {"id": "fox", "workflow_id": "wf-c73diz7kadp6ffgn", "prompt": {"6": {"inputs": {"text": "a red fox"}}}}
    {"workflow_id": "wf-c73diz7kadp6ffgn"}

``workflow_id`` is required; ``prompt`` (overrides, ``{node_id: {"inputs": {...}}}``), ``images`` and ``id`` are
optional. With a spec (``batch --spec [WORKFLOW_ID=]SPEC.json``, else the built-in spec of the docs' example
workflows) every prompt is checked against its workflow's spec before anything is sent.

Local images, on either service: ``"images": {"10": "fox.png"}`` (or ``["10=fox.png"]``, the form of
``run --image``) sets the ``image`` input of the LoadImage node ``10`` (a node id; with a spec, or on GPUGeek, also
a class_type or a title) to that file, uploaded at submit time: each distinct image once for the whole batch. A
path is relative to the jobs file's folder and must stay inside it, symlinks resolved (a jobs file can only send
files that sit beside it); a missing, unreadable, empty or too big (``CLI_BATCH_IMAGE_MAX_BYTES``) image, or one
outside that folder, is a problem of its job (exit 2, nothing sent). Each image is read once, when the file is
loaded: its bytes are hashed and kept, and those very bytes are what is uploaded (a file swapped in meanwhile is
never sent). The job's fingerprint holds each image's content hash: a changed image makes the job a new one.

The jobs file itself must be a regular file of at most ``CLI_JOBS_FILE_MAX_BYTES`` (a FIFO or a device is refused
unread, exit 2).

GPUGeek (``--service gpugeek``), whose prompt is the whole workflow::

    {"id": "fox", "workflow_id": 763311996779461, "set": {"6": {"text": "a red fox"}, "KSampler": {"steps": 5}}}
    {"workflow_id": 763311996779461, "prompt": {"3": {"class_type": "KSampler", "inputs": {...}}, ...}}
    {"workflow_id": 1234, "workflow_json": "my_workflow_api.json", "set": {"Load Image": {"image": "https://…"}}}

``workflow_id`` (an integer, or a string of digits) is required. The workflow is ``prompt`` (the whole API-format
workflow), or the ComfyUI export in the file ``workflow_json`` (relative to the jobs file's folder), or else the
built-in export of a built-in id. ``set`` changes it: ``{NODE: {INPUT: VALUE}}``, NODE a node id, a class_type
or a title, each VALUE JSON as it is sent (an image is a URL: ``genstudio upload`` prints one for a local file),
checked like ``run --set`` (the node must have the input; a link cannot be set). The job's fingerprint is that
of the workflow it sends: editing the export file makes its jobs new ones.

A job's name is its ``id``, or else a hash of the line (``job-1a2b3c4d``; ``job-1a2b3c4d-2`` for the second identical
line): inserting, deleting or moving other lines never renames a job, and editing a job makes it a new one (a job
with an ``id`` whose workflow or prompt changed is submitted again too). Blank lines are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidInputError, PromptValidationError
from .._files import safe_name
from .._prompt import LocalImage
from . import defaults as CD
from .errors import CLIError, ExitCode
from .prompt import IMAGE_INPUT, Assignment, build_prompt, load_json, whole_workflow
from .services import GENSTUDIO, Profile

if TYPE_CHECKING:
    from ..workflow import WorkflowSpec

_KEYS = {
    False: ("id", "workflow_id", "prompt", "images"),
    True: ("id", "workflow_id", "prompt", "workflow_json", "set", "images"),
}
_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class Job:
    """One line of the jobs file."""

    name: str
    line: int
    workflow_id: str | int  # GPUGeek's: an int
    prompt: dict[str, Any] | None
    folder: str  # the job's directory under --out: its name, made safe for a file system
    aliases: tuple[str, ...] = ()  # names an earlier version of the command gave this job (journal lookups)
    images: tuple[tuple[str, str], ...] = ()  # (the local image's resolved path, the SHA-256 of its content)
    # What the job asks for (workflow and prompt, key order ignored; a local image by its content): a journaled
    # task of another fingerprint was made for an earlier version of this job (``fingerprint_of``).
    fingerprint: str = ""


def fingerprint_of(workflow_id: str | int, prompt: dict[str, Any] | None, images: tuple[tuple[str, str], ...]) -> str:
    """A job's ``fingerprint``: of its prompt as built, each local image (a ``Path``) by its content hash."""
    digests = dict(images)

    def image(value: object) -> str:
        if isinstance(value, Path) and str(value) in digests:
            return f"image sha256:{digests[str(value)]}"
        raise TypeError(f"not JSON: {type(value).__name__}")

    what = json.dumps([workflow_id, prompt], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=image)
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def with_contents(prompt: dict[str, Any] | None, contents: Mapping[str, LocalImage]) -> dict[str, Any] | None:
    """``prompt`` with each local image (a ``Path``) replaced by the bytes read and hashed at load: those are sent,
    whatever the file holds by then (and no job reads the file again)."""
    if prompt is None or not contents:
        return prompt
    return {
        node_id: {
            **node,
            "inputs": {
                name: contents.get(str(value), value) if isinstance(value, Path) else value
                for name, value in node["inputs"].items()
            },
        }
        if isinstance(node, Mapping) and isinstance(node.get("inputs"), Mapping)
        else node
        for node_id, node in prompt.items()
    }


def job_folder(name: str) -> str:
    """The job's folder under ``--out``: its name with anything but letters, digits, ``.``, ``-`` and ``_``
    replaced (the same rule as every other name the SDK puts on disk)."""
    return safe_name(name, "job")


class WorkflowSources:
    """The whole workflows GPUGeek jobs start from, each read once (a thousand jobs may share one export)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder  # where a relative "workflow_json" is
        self._read: dict[object, Mapping[str, Any] | CLIError] = {}

    def base(self, workflow_id: str | int, prompt: Any, workflow_json: str | None) -> Mapping[str, Any]:
        """The workflow a job starts from (see ``prompt.whole_workflow``); ``CLIError`` if there is none."""
        source = self.folder / workflow_json if workflow_json is not None else None
        if prompt is not None:
            return whole_workflow(workflow_id, prompt, source, json_name="'workflow_json'")
        key = source.resolve() if source is not None else workflow_id
        if key not in self._read:
            try:
                self._read[key] = whole_workflow(workflow_id, None, source, json_name="'workflow_json'")
            except CLIError as error:
                self._read[key] = error
        found = self._read[key]
        if isinstance(found, CLIError):
            raise found
        return found


SpecOf = Callable[[str], "WorkflowSpec | None"]
"""The spec a GenStudio job's prompt is checked against, by its workflow id (``None``: no spec)."""


class ImageFiles:
    """The local images jobs send, each checked and hashed once (a thousand jobs may share one image).

    ``folder``: the jobs file's folder, which every image must be inside once symlinks are resolved.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._root: Path | None = None
        self._read: dict[str, tuple[Path, str] | str] = {}
        self.contents: dict[str, LocalImage] = {}  # each image's bytes, by its resolved path: what is uploaded

    def check(self, given: str) -> tuple[Path, str]:
        """``(resolved path, SHA-256 of its content)`` of the image ``given`` (relative to ``folder``), its bytes
        kept in ``contents``; raises ``CLIError`` saying what is wrong with it."""
        if given not in self._read:
            try:
                self._read[given] = self._check(given)
            except CLIError as error:
                self._read[given] = error.message
        found = self._read[given]
        if isinstance(found, str):
            raise CLIError(found, ExitCode.USAGE)
        return found

    def _check(self, given: str) -> tuple[Path, str]:
        if self._root is None:
            self._root = self.folder.resolve()
        where = f"(relative to the jobs file's folder {str(self._root)!r})"
        try:
            real = (self.folder / given).resolve(strict=True)
        except FileNotFoundError:
            raise CLIError(f"image {given!r}: no such file {where}", ExitCode.USAGE) from None
        except (OSError, RuntimeError) as exc:  # a symlink loop, a path too long, no permission on a folder
            raise CLIError(f"image {given!r}: cannot resolve it: {getattr(exc, 'strerror', None) or exc}") from None
        if not real.is_relative_to(self._root):
            raise CLIError(
                f"image {given!r} is outside the jobs file's folder {str(self._root)!r} (it resolves to "
                f"{str(real)!r}): a jobs file sends only the files beside it",
                ExitCode.USAGE,
            )
        try:
            # O_NOFOLLOW: the path is resolved, so a symlink here was put there since (refused, not followed).
            data = _read_regular_file(real, CD.CLI_BATCH_IMAGE_MAX_BYTES, follow=False)
        except OSError as exc:
            raise CLIError(f"image {given!r}: cannot read it: {exc.strerror or exc}", ExitCode.USAGE) from None
        except _NotARegularFile:
            raise CLIError(f"image {given!r} is not a regular file", ExitCode.USAGE) from None
        except _TooBig:
            raise CLIError(
                f"image {given!r} is bigger than {CD.CLI_BATCH_IMAGE_MAX_BYTES} bytes, the most a batch job sends",
                ExitCode.USAGE,
            ) from None
        if not data:
            raise CLIError(f"image {given!r} is empty", ExitCode.USAGE)
        self.contents[str(real)] = LocalImage(data, filename=real.name)
        return real, hashlib.sha256(data).hexdigest()


class _NotARegularFile(Exception):
    """A FIFO, a device or a folder where a file was expected."""


class _TooBig(Exception):
    """A file over the limit it was read with."""


def _read_regular_file(path: Path, limit: int, *, follow: bool = True) -> bytes:
    """What the regular file ``path`` holds, never more than ``limit`` bytes read. O_NONBLOCK: opening a FIFO does
    not wait for a writer (it is then refused, unread); ``follow=False``: a symlink is refused (O_NOFOLLOW).
    Raises ``OSError``, ``_NotARegularFile`` or ``_TooBig``."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    descriptor = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise _NotARegularFile
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(descriptor, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _TooBig
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def read_jobs_file(path: Path) -> str:
    """The jobs file's text; ``CLIError`` (exit 2) for one that is not a regular file (a FIFO would block for
    ever, a device never end), is bigger than ``CLI_JOBS_FILE_MAX_BYTES``, or is not UTF-8."""
    try:
        data = _read_regular_file(path, CD.CLI_JOBS_FILE_MAX_BYTES)
    except OSError as exc:
        raise CLIError(f"cannot read the jobs file {str(path)!r}: {exc.strerror or exc}", ExitCode.USAGE) from None
    except _NotARegularFile:
        raise CLIError(
            f"the jobs file {str(path)!r} is not a regular file (a FIFO, a device or a folder): give a file",
            ExitCode.USAGE,
        ) from None
    except _TooBig:
        raise CLIError(
            f"the jobs file {str(path)!r} is bigger than {CD.CLI_JOBS_FILE_MAX_BYTES} bytes: split it",
            ExitCode.USAGE,
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CLIError(f"the jobs file {str(path)!r} is not UTF-8 text: {exc}", ExitCode.USAGE) from None


def load_jobs(
    path: Path, profile: Profile = GENSTUDIO, *, spec_of: SpecOf | None = None
) -> list[Job]:
    """Every job of the file, for ``profile``'s service; raises ``CLIError`` (exit 2) listing every problem
    found, by line (and job name). ``spec_of``: the spec of a GenStudio job's workflow (default: none)."""
    text = read_jobs_file(path)
    jobs: list[Job] = []
    problems: list[str] = []
    names: dict[str, int] = {}
    folders: dict[str, str] = {}
    # Only "\n" ends a line: str.splitlines() also splits at U+2028, U+0085, \x1c…, which JSON strings may hold.
    occurrences: dict[str, int] = {}  # an unnamed job is named by its content, and which copy of it it is
    sources = WorkflowSources(path.parent)
    images = ImageFiles(path.parent)
    specs = spec_of or _no_spec
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        occurrences[line.strip()] = occurrence = occurrences.get(line.strip(), 0) + 1
        job, trouble = _parse_line(
            number, line, occurrence, profile=profile, sources=sources, images=images, spec_of=specs
        )
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


def _no_spec(workflow_id: str) -> WorkflowSpec | None:
    return None


def _parse_line(
    number: int,
    line: str,
    occurrence: int = 1,
    *,
    profile: Profile = GENSTUDIO,
    sources: WorkflowSources,
    images: ImageFiles,
    spec_of: SpecOf = _no_spec,
) -> tuple[Job | None, list[str]]:
    try:
        data = load_json(line)
    except ValueError as exc:
        return None, [f"not valid JSON ({exc})"]
    if not isinstance(data, Mapping):
        return None, ["a job must be a JSON object with a 'workflow_id'"]
    problems: list[str] = []
    keys = _KEYS[profile.whole_workflow]
    unknown = sorted(set(data) - set(keys))
    if unknown:
        named = ", ".join(repr(key) for key in keys[:-1])
        problems.append(f"unknown keys {unknown} (a {profile.title} job has {named} and {keys[-1]!r})")
    workflow_id = profile.workflow_id(data.get("workflow_id"))
    if workflow_id is None:
        kind = "a positive integer (or a string of digits)" if profile.whole_workflow else "a non-empty string"
        problems.append(f"'workflow_id' must be {kind}")
    raw_id = data.get("id")
    valid_id = isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and bool(str(raw_id).strip())
    if raw_id is not None and not valid_id:
        problems.append("'id' must be a non-empty string or a number")
    prompt: dict[str, Any] | None = None
    assignments, digests, image_problems = _images_of(data.get("images"), images)
    problems += image_problems
    if workflow_id is not None or not profile.whole_workflow:  # (a GPUGeek job may start from its id's export)
        try:
            prompt = _prompt_of(data, workflow_id, profile, sources, assignments, spec_of)
        except PromptValidationError as error:
            problems += [str(problem) for problem in error.problems] or [str(error)]
        except (InvalidInputError, CLIError) as error:
            problems.append(str(error))
    if problems:
        if valid_id:  # the job's name too: "line 7: job 'fox': image 'fox.png': no such file"
            problems = [f"job {str(raw_id).strip()!r}: {problem}" for problem in problems]
        return None, problems
    assert workflow_id is not None
    aliases: tuple[str, ...] = ()
    if raw_id is not None:
        name = str(raw_id).strip()
    else:
        # Not the line number: deleting or inserting another line must not rename (and resubmit) this job.
        digest = hashlib.sha256(line.strip().encode()).hexdigest()[: CD.CLI_JOB_HASH_DIGITS]
        name = f"job-{digest}" if occurrence == 1 else f"job-{digest}-{occurrence}"
        aliases = (f"{number}-{digest}",)  # the line-numbered name of journals written before
    fingerprint = fingerprint_of(workflow_id, prompt, digests)
    sent = with_contents(prompt, images.contents)  # the bytes hashed are the bytes uploaded
    return Job(name, number, workflow_id, sent, job_folder(name), aliases, digests, fingerprint), []


def _images_of(
    given: Any, images: ImageFiles
) -> tuple[list[Assignment], tuple[tuple[str, str], ...], list[str]]:
    """A job's ``images`` (``{NODE: PATH}`` or ``["NODE=PATH", ...]``) as ``image`` assignments of resolved
    paths, with each image's content hash, and the problems found."""
    if given is None:
        return [], (), []
    pairs: list[tuple[Any, Any]]
    if isinstance(given, Mapping):
        pairs = list(given.items())
    elif isinstance(given, list) and all(isinstance(item, str) and "=" in item for item in given):
        pairs = [tuple(item.split("=", 1)) for item in given]
    else:
        return [], (), ['\'images\' must be an object {NODE: PATH} or a list ["NODE=PATH", ...] (PATH: a local image)']
    assignments: list[Assignment] = []
    digests: dict[str, str] = {}
    problems: list[str] = []
    for node, path in pairs:
        if not isinstance(path, str) or not path or not str(node).strip():
            problems.append(f"image of node {node!r}: expected a node and the path of a local image, got {path!r}")
            continue
        try:
            real, digest = images.check(path)
        except CLIError as error:
            problems.append(error.message)
            continue
        digests[str(real)] = digest
        assignments.append(Assignment(str(node).strip(), IMAGE_INPUT, str(real), "image"))
    return assignments, tuple(sorted(digests.items())), problems


def _prompt_of(
    data: Mapping[str, Any],
    workflow_id: str | int | None,
    profile: Profile,
    sources: WorkflowSources,
    images: list[Assignment],
    spec_of: SpecOf,
) -> dict[str, Any] | None:
    """The prompt a job sends, its shape checked once and copied (``PromptBuilder``), checked against its spec
    when it has one (GenStudio), its images set; raises what is wrong."""
    prompt = data.get("prompt")
    if not profile.whole_workflow:
        spec = spec_of(str(workflow_id)) if workflow_id is not None else None
        if prompt is None and not images and spec is None:
            return None
        built = build_prompt(prompt, images, spec)
        return built if built is not None or prompt is None else {}
    workflow_json = data.get("workflow_json")
    if workflow_json is not None and (not isinstance(workflow_json, str) or not workflow_json.strip()):
        raise CLIError("'workflow_json' must be the path of a ComfyUI API-format export")
    settings = data.get("set")
    if settings is not None and not (
        isinstance(settings, Mapping) and all(isinstance(inputs, Mapping) for inputs in settings.values())
    ):
        raise CLIError("'set' must be an object {NODE: {INPUT: VALUE}} (NODE: a node id, a class_type or a title)")
    assignments = [
        Assignment(str(node), str(name), value, "json")
        for node, inputs in (settings or {}).items()
        for name, value in inputs.items()
    ]
    assert workflow_id is not None
    base = sources.base(workflow_id, prompt, workflow_json)
    return build_prompt(base, [*assignments, *images], profile=profile)
