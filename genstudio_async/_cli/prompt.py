"""``--prompt FILE``, ``--set NODE.INPUT=VALUE`` and ``--image NODE=PATH`` into one prompt, checked in full.

The spec is ``--spec FILE``, or for one of the docs' example workflows (``genstudio_async.workflows``) its
built-in spec. NODE is a node id, a ``class_type`` or a title (``PromptBuilder`` resolves it against the spec);
without a spec it must be a node id (digits): a name is refused, saying it needs ``--spec``. VALUE is typed by
the spec when there is one (INT → int, FLOAT → float, BOOLEAN → true/false, anything else a string; a JSON
string literal, ``"a fox"``, is that string); without a spec a JSON literal (``42``, ``1.5``, ``true``,
``"text"``) is parsed and anything else is a string. A value that does not convert is left as the string given,
so the spec's check reports it with what is allowed. Every problem is collected and raised at once, before
anything is sent.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidInputError, PromptProblem, PromptValidationError
from .._prompt import prompt_shape_problems
from .errors import CLIError, ExitCode

if TYPE_CHECKING:  # imported where used: the parser needs parse_set and parse_image only
    from ..workflow import WorkflowSpec

IMAGE_INPUT = "image"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class Assignment:
    """One ``--set NODE.INPUT=VALUE`` (or ``--image NODE=PATH``, whose input is ``image``)."""

    node: str
    input: str
    value: str


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
    return Assignment(node.strip(), IMAGE_INPUT, path)


def load_prompt_file(source: str | None) -> dict[str, Any] | None:
    """The overrides in ``--prompt FILE`` (``-`` reads stdin), or ``None``."""
    if source is None:
        return None
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot read the prompt file {source!r}: {exc.strerror or exc}", ExitCode.USAGE) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CLIError(f"the prompt file {source!r} is not valid JSON: {exc}", ExitCode.USAGE) from None
    if not isinstance(data, dict):
        raise CLIError(
            f"the prompt file {source!r} must hold a JSON object {{node_id: {{\"inputs\": {{...}}}}}}", ExitCode.USAGE
        )
    return data


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


def typed_value(raw: str, kind: str | None, *, have_spec: bool, choices: Sequence[Any] = ()) -> Any:
    """``raw`` converted for an input of type ``kind`` (see the module docstring). When the spec lists
    ``choices``, the one whose text ``raw`` is wins, whatever its JSON type (a LIST of 512, 768, 1024)."""
    if not have_spec:
        try:
            return json.loads(raw)
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
        if kind == "INT":
            return int(text)
        if kind == "FLOAT":
            return float(text)
    except ValueError:
        return raw
    if kind == "BOOLEAN":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
    return raw


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
    base: dict[str, Any] | None,
    sets: Sequence[Assignment],
    images: Sequence[Assignment],
    spec: WorkflowSpec | None,
) -> dict[str, Any] | None:
    """The prompt to submit (``None`` when nothing is set); raises ``PromptValidationError`` with every problem."""
    if base is not None:
        shape = spec.problems(base) if spec is not None else prompt_shape_problems(base)
        if any(problem.input is None for problem in shape):
            raise PromptValidationError(shape)  # not {node: {"inputs": {...}}}: --set cannot build on it
    prompt: dict[str, dict[str, Any]] = {
        str(node_id): {"inputs": dict(node["inputs"])} for node_id, node in (base or {}).items()
    }
    if not sets and not images:
        return prompt or None
    from ..workflow import PromptBuilder

    builder = PromptBuilder(spec=spec)
    problems: list[PromptProblem] = []
    assignments = [(item, False) for item in sets] + [(item, True) for item in images]
    known_ids = sorted({*prompt, *(item.node for item, _ in assignments if is_node_id(item.node))}, key=_id_order)
    for assignment, is_image in assignments:
        if spec is None and not is_node_id(assignment.node):
            problems.append(name_needs_spec(assignment, known_ids))
            continue
        try:
            node_id = builder.node_id(assignment.node) if spec is not None else assignment.node
        except InvalidInputError as exc:
            problems.append(PromptProblem(node_id=assignment.node, input=assignment.input, problem=str(exc)))
            continue
        value: Any
        if is_image:
            path = Path(assignment.value)
            if not path.is_file():
                problem = f"no such file: {assignment.value!r}"
                problems.append(PromptProblem(node_id, assignment.input, problem, allowed="an image file"))
                continue
            value = path
        else:
            kind, choices = None, ()
            if spec is not None and node_id in spec.nodes:
                input_spec = spec.nodes[node_id].inputs.get(assignment.input)
                if input_spec is not None:
                    kind, choices = input_spec.type, input_spec.spec.choices
            value = typed_value(assignment.value, kind, have_spec=spec is not None, choices=choices)
        prompt.setdefault(node_id, {"inputs": {}})["inputs"][assignment.input] = value
    problems += spec.problems(prompt) if spec is not None else prompt_shape_problems(prompt)
    if problems:
        raise PromptValidationError(problems)
    return prompt
