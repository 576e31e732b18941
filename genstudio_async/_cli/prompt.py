"""``--prompt FILE``, ``--set NODE.INPUT=VALUE`` and ``--image NODE=PATH`` into one prompt, checked in full
before anything is sent: every problem is collected and raised at once.

The prompt's shape is checked once, by ``PromptBuilder`` (the SDK's own rule for the service: GenStudio's input
overrides ``{node_id: {"inputs": {...}}}``, GPUGeek's whole API-format workflow), and copied by it; the changes
are checked as they are made.

GenStudio: ``--prompt`` holds overrides. The spec is ``--spec FILE``, or for one of the docs' example workflows
(``genstudio_async.workflows``) its built-in spec. NODE is a node id, a ``class_type`` or a title (resolved
against the spec); without a spec it must be a node id (digits): a name is refused, saying it needs ``--spec``.
VALUE is typed by the spec when there is one (INT → int, FLOAT → float, BOOLEAN → true/false, anything else a
string; a JSON string literal, ``"a fox"``, is that string); without a spec a JSON literal (``42``, ``1.5``,
``true``, ``"text"``) is parsed and anything else is a string. A value that does not convert is left as the
string given, so the spec's check reports it with what is allowed.

GPUGeek: the prompt is the whole workflow: ``--prompt FILE`` or ``--workflow-json FILE`` (the ComfyUI API
export), else the built-in export of a built-in id. ``ApiWorkflow.builder()`` applies the changes: NODE is an
id, a ``class_type`` or a title of the workflow's nodes; INPUT must be one the node has, and not a link to
another node; VALUE is typed like the value it replaces (a number, true/false, or text).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._exceptions import InvalidInputError, PromptProblem, PromptValidationError
from .errors import CLIError, ExitCode
from .services import GENSTUDIO, Profile

if TYPE_CHECKING:  # imported where used: the parser needs parse_set and parse_image only
    from ..workflow import ApiWorkflow, WorkflowSpec

IMAGE_INPUT = "image"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

Kind = Literal["text", "json", "image"]


@dataclass(frozen=True)
class Assignment:
    """One change to a prompt: ``--set NODE.INPUT=VALUE``, ``--image NODE=PATH`` (whose input is ``image``), or a
    batch job's ``"set"`` entry.

    ``kind``: ``text``, a value typed on the command line (converted, see the module docstring); ``json``, a value
    from a JSON file, used as it is; ``image``, the path of a local image, uploaded at submit time.
    """

    node: str
    input: str
    value: Any
    kind: Kind = "text"


def parse_set(text: str) -> Assignment:
    """argparse ``type=`` of ``--set``: ``NODE.INPUT=VALUE`` (NODE may hold dots: the last one splits)."""
    target, equals, value = text.partition("=")
    node, dot, name = target.rpartition(".")
    if not equals or not dot or not node.strip() or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NODE.INPUT=VALUE (e.g. KSampler.steps=30), got {text!r}")
    return Assignment(node.strip(), name.strip(), value)


def parse_image(text: str) -> Assignment:
    """argparse ``type=`` of ``--image``: ``NODE=PATH``."""
    node, equals, path = text.partition("=")
    if not equals or not node.strip() or not path:
        raise argparse.ArgumentTypeError(f"expected NODE=PATH (e.g. LoadImage=photo.png), got {text!r}")
    return Assignment(node.strip(), IMAGE_INPUT, path, "image")


# --- reading files ----------------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def load_json(text: str) -> Any:
    """``text`` parsed as strict JSON: ``NaN`` and ``Infinity`` (which Python's json takes, and no request can
    carry) are refused, as ``ValueError``."""
    return json.loads(text, parse_constant=_refuse_constant)


def read_json_object(source: str, what: str, shape: str, *, stdin: bool = False) -> dict[str, Any]:
    """The JSON object in the file ``source`` (``-``: standard input, when ``stdin``); ``CLIError`` (exit 2)
    naming ``what`` (``the prompt file``) and, for anything but an object, the ``shape`` it must have."""
    try:
        text = sys.stdin.read() if stdin and source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot read {what} {source!r}: {exc.strerror or exc}", ExitCode.USAGE) from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{what} {source!r} is not UTF-8 text: {exc}", ExitCode.USAGE) from None
    try:
        data = load_json(text)
    except ValueError as exc:
        raise CLIError(f"{what} {source!r} is not valid JSON: {exc}", ExitCode.USAGE) from None
    if not isinstance(data, dict):
        raise CLIError(f"{what} {source!r} must hold a JSON object {shape}", ExitCode.USAGE)
    return data


OVERRIDES_SHAPE = '{node_id: {"inputs": {...}}}'
WORKFLOW_SHAPE = '(the whole API-format workflow, {node_id: {"class_type": ..., "inputs": {...}}})'


def load_prompt_file(source: str | None, profile: Profile = GENSTUDIO) -> dict[str, Any] | None:
    """The prompt in ``--prompt FILE`` (``-`` reads stdin), or ``None``: GenStudio's overrides, GPUGeek's whole
    workflow."""
    if source is None:
        return None
    shape = WORKFLOW_SHAPE if profile.whole_workflow else OVERRIDES_SHAPE
    return read_json_object(source, "the prompt file", shape, stdin=True)


def load_spec(source: str | None, workflow_id: str | None = None) -> WorkflowSpec | None:
    """The spec in ``--spec FILE``; without one, the built-in spec of ``workflow_id`` if it has one."""
    if source is None:
        from ..workflows import builtin_spec

        return builtin_spec(workflow_id) if workflow_id is not None else None
    from ..workflow import WorkflowSpec

    try:
        return WorkflowSpec.load(Path(source))
    except InvalidInputError as exc:
        raise CLIError(f"--spec: {exc}", ExitCode.USAGE) from None


def whole_workflow(
    workflow_id: str | int, prompt: Mapping[str, Any] | None, workflow_json: Path | None, *, json_name: str
) -> Mapping[str, Any]:
    """What a GPUGeek prompt starts from: ``prompt`` (given whole), the export in ``workflow_json``, or the
    built-in export of ``workflow_id``; ``CLIError`` (exit 2) when there is none or two. ``json_name``: how the
    user names ``workflow_json`` (``--workflow-json``, ``"workflow_json"``)."""
    if prompt is not None and workflow_json is not None:
        raise CLIError(f"the prompt and {json_name} both give the whole workflow: give one", ExitCode.USAGE)
    if prompt is not None:
        return prompt  # (build_prompt copies what it starts from)
    if workflow_json is not None:
        return read_json_object(str(workflow_json), f"the workflow export ({json_name})", WORKFLOW_SHAPE)
    from ..workflows import builtin_api_workflow, builtin_api_workflow_ids

    builtin = builtin_api_workflow(workflow_id)
    if builtin is None:
        known = ", ".join(str(number) for number in builtin_api_workflow_ids())
        raise CLIError(
            f"GPUGeek runs the workflow it is sent, and {workflow_id} is not a built-in one ({known}): give its "
            f"ComfyUI API-format export with {json_name}, or the whole workflow as the prompt",
            ExitCode.USAGE,
        )
    return builtin.to_dict()


# --- typing a value ---------------------------------------------------------------------------------------------


def typed_value(raw: str, kind: str | None, *, have_spec: bool, choices: Sequence[Any] = ()) -> Any:
    """``raw`` converted for an input of type ``kind`` (see the module docstring). When the spec lists
    ``choices``, the one whose text ``raw`` is wins, whatever its JSON type (a LIST of 512, 768, 1024).
    ``NUMBER`` (the type of a number in a whole workflow) is an int when ``raw`` is one, else a float. A number
    that is not finite is never made: ``raw`` stays a string."""
    if not have_spec:
        try:
            return load_json(raw)
        except ValueError:
            return raw
    text = raw.strip()
    if text.startswith('"'):  # a JSON string literal, as a shell user may quote it: the string it spells
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        if isinstance(decoded, str):
            raw = text = decoded
    for choice in choices:
        if not isinstance(choice, bool | dict | list) and choice is not None and str(choice) in (raw, text):
            return choice
    kind = (kind or "").upper()
    try:
        if kind in ("INT", "NUMBER") and text.lstrip("+-").isdigit():
            return int(text)
        if kind in ("FLOAT", "NUMBER") and math.isfinite(number := float(text)):
            return number
    except ValueError:
        return raw
    if kind == "BOOLEAN":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
    return raw


def _kind_of(current: object) -> str | None:
    """The type of a whole workflow's input, from the value it holds: what a ``--set`` of it is converted to."""
    if isinstance(current, bool):
        return "BOOLEAN"
    if isinstance(current, int | float):
        return "NUMBER"
    if isinstance(current, str):
        return "STRING"
    return None


def _local_image(assignment: Assignment) -> Path | None:
    path = Path(assignment.value)
    return path if path.is_file() else None


def _no_such_file(node_id: str, assignment: Assignment, title: str | None = None) -> PromptProblem:
    return PromptProblem(
        node_id, assignment.input, f"no such file: {assignment.value!r}", allowed="an image file", title=title
    )


# --- building ---------------------------------------------------------------------------------------------------


def is_node_id(node: str) -> bool:
    """True for a node id (ComfyUI numbers its nodes: ASCII digits), False for a name (a class_type, a title)."""
    return node.isascii() and node.isdigit()


def _id_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), node_id) if is_node_id(node_id) else (-1, node_id)


def name_needs_spec(assignment: Assignment, known_ids: Sequence[str]) -> PromptProblem:
    """The problem of a node named (not numbered) for a workflow without a spec: only a spec maps names to ids."""
    problem = (
        "not a node id, and a name (a class_type or a title) needs --spec SPEC.json, the workflow's parameter "
        "spec ('入参范围'), to find its id"
    )
    if known_ids:
        problem += f"; this prompt's node ids: {', '.join(known_ids)}"
    return PromptProblem(node_id=assignment.node, input=assignment.input, problem=problem)


def build_prompt(
    base: Mapping[str, Any] | None,
    assignments: Sequence[Assignment],
    spec: WorkflowSpec | None = None,
    *,
    profile: Profile = GENSTUDIO,
) -> dict[str, Any] | None:
    """The prompt to submit: ``base`` with ``assignments`` made; raises ``PromptValidationError`` with every
    problem. GenStudio: ``base`` holds overrides (or is ``None``), and the result is ``None`` when nothing is set.
    GPUGeek: ``base`` is the whole workflow (see ``whole_workflow``), and so is the result."""
    if profile.whole_workflow:
        assert base is not None, "a GPUGeek prompt starts from a whole workflow"
        return _build_whole(base, assignments)
    return _build_overrides(base, assignments, spec)


def _build_overrides(
    base: Mapping[str, Any] | None, assignments: Sequence[Assignment], spec: WorkflowSpec | None
) -> dict[str, Any] | None:
    from ..workflow import PromptBuilder

    builder = PromptBuilder(base, spec=spec)  # the shape check of --prompt, once: raises listing every problem
    prompt = builder.build()
    problems: list[PromptProblem] = []
    known_ids = sorted({*prompt, *(item.node for item in assignments if is_node_id(item.node))}, key=_id_order)
    for assignment in assignments:
        if spec is None and not is_node_id(assignment.node):
            problems.append(name_needs_spec(assignment, known_ids))
            continue
        try:
            node_id = builder.node_id(assignment.node) if spec is not None else assignment.node
        except InvalidInputError as exc:
            problems.append(PromptProblem(node_id=assignment.node, input=assignment.input, problem=str(exc)))
            continue
        value: Any = assignment.value
        if assignment.kind == "image":
            value = _local_image(assignment)
            if value is None:
                problems.append(_no_such_file(node_id, assignment))
                continue
        elif assignment.kind == "text":
            kind, choices = None, ()
            if spec is not None and node_id in spec.nodes:
                input_spec = spec.nodes[node_id].inputs.get(assignment.input)
                if input_spec is not None:
                    kind, choices = input_spec.type, input_spec.spec.choices
            value = typed_value(assignment.value, kind, have_spec=spec is not None, choices=choices)
        prompt.setdefault(node_id, {"inputs": {}})["inputs"][assignment.input] = value
    if spec is not None:
        problems += spec.input_problems(prompt)  # the values against the spec (the shape is the builder's)
    if problems:
        raise PromptValidationError(problems)
    return prompt or None


def _build_whole(base: Mapping[str, Any], assignments: Sequence[Assignment]) -> dict[str, Any]:
    from ..workflow import ApiWorkflow, PromptBuilder

    try:
        workflow = ApiWorkflow.from_dict(base)
    except InvalidInputError:  # not even nodes with inputs: the shape check says all that is wrong with it
        PromptBuilder(base, whole=True)  # raises PromptValidationError, listing every problem
        raise
    builder = workflow.builder()  # the shape check of the whole workflow, once: raises listing every problem
    problems: list[PromptProblem] = []
    for assignment in assignments:
        try:
            node_id = builder.node_id(assignment.node)
        except InvalidInputError as exc:
            problems.append(PromptProblem(node_id=assignment.node, input=assignment.input, problem=str(exc)))
            continue
        value, problem = _whole_workflow_value(workflow, node_id, assignment)
        if problem is not None:
            problems.append(problem)
            continue
        builder = builder.set(node_id, **{assignment.input: value})
    if problems:
        raise PromptValidationError(problems)
    return builder.build()


def _whole_workflow_value(
    workflow: ApiWorkflow, node_id: str, assignment: Assignment
) -> tuple[Any, PromptProblem | None]:
    """The value ``assignment`` gives an input of a whole workflow's node, or the problem with it."""
    node = workflow.nodes[node_id]
    title = node.title or node.class_type

    def problem(text: str, allowed: str | None = None) -> tuple[Any, PromptProblem]:
        return None, PromptProblem(node_id, assignment.input, text, allowed=allowed, title=title)

    if assignment.input not in node.inputs:
        return problem("the workflow's node has no such input", ", ".join(node.inputs) or "none")
    current = node.inputs[assignment.input]
    if isinstance(current, list) and len(current) == 2 and str(current[0]) in workflow.nodes:
        return problem(f"links to the output of node {str(current[0])!r}: a connection, not a value to set")
    if assignment.kind == "image":
        path = _local_image(assignment)
        return (path, None) if path is not None else (None, _no_such_file(node_id, assignment, title))
    kind = _kind_of(current)
    if assignment.kind == "json":  # a batch job's value, JSON already: it must be of the type it replaces
        value = assignment.value
    else:
        value = typed_value(assignment.value, kind, have_spec=kind is not None)
    if kind == "NUMBER" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return problem(f"expected a number, got {assignment.value!r}", f"a number, like the workflow's {current!r}")
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return problem(f"expected true or false, got {assignment.value!r}", "true, false")
    if kind == "STRING" and not isinstance(value, str):
        return problem(f"expected text, got {assignment.value!r}", f"text, like the workflow's {current!r}")
    return value, None

