"""The shape every ``prompt`` must have, checked without knowing the workflow.

A prompt is the overrides only: ``{node_id: {"inputs": {input_name: value}}}``. The service's documentation
warns twice against two mistakes, which are caught here with a message that says so: passing the exported
ComfyUI "API format" workflow (nodes carry ``class_type``), and passing the "入参范围" parameter spec (input values
are ``{"type", "current", "spec"}`` objects).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._exceptions import InvalidInputError, PromptProblem, PromptValidationError

_SPEC_VALUE_KEYS = frozenset({"type", "current", "spec"})


@dataclass(frozen=True)
class LocalImage:
    """Image bytes to upload at submit time, for a ``LoadImage`` / ``LoadImageMask`` input.

    A ``pathlib.Path`` value works the same way; ``LocalImage`` is for bytes already in memory.
    """

    data: bytes = field(repr=False)
    filename: str = "image.png"

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes | bytearray) or not self.data:
            raise InvalidInputError("LocalImage needs non-empty bytes")


def is_local_image(value: object) -> bool:
    """Whether a prompt value is an image to upload (a ``Path`` or a ``LocalImage``) rather than a wire value."""
    return isinstance(value, LocalImage | Path)


def _nodes(
    prompt: Any, *, shape: str, allowed: str, problems: list[PromptProblem]
) -> Iterator[tuple[str, Mapping[Any, Any]]]:
    """The well-formed nodes of ``prompt`` (``node_id``, node), each a mapping with an ``inputs`` mapping; every
    other node (and a prompt that is not a mapping at all) is a problem appended to ``problems``."""
    if not isinstance(prompt, Mapping):
        problems.append(PromptProblem("*", None, f"the prompt must be {shape}, got {type(prompt).__name__}"))
        return
    for node_id, node in prompt.items():
        node_name = str(node_id)
        if not isinstance(node_id, str | int) or isinstance(node_id, bool) or not node_name:
            problems.append(PromptProblem(node_name, None, "node ids must be non-empty strings"))
        elif not isinstance(node, Mapping) or not isinstance(node.get("inputs"), Mapping):
            problems.append(
                PromptProblem(node_name, None, "each node must be an object with an 'inputs' object", allowed=allowed)
            )
        else:
            yield node_name, node


def prompt_shape_problems(prompt: Any) -> list[PromptProblem]:
    """Every way ``prompt`` departs from ``{node_id: {"inputs": {...}}}``; empty when it fits."""
    problems: list[PromptProblem] = []
    shape = "a mapping of node ids to {'inputs': {...}}"
    for node_name, node in _nodes(prompt, shape=shape, allowed="{'inputs': {name: value}}", problems=problems):
        extra_keys = sorted(str(key) for key in node if key != "inputs")
        if extra_keys:
            hint = (
                " (this looks like the exported ComfyUI API-format workflow; send only the inputs to change)"
                if "class_type" in node
                else ""
            )
            problems.append(
                PromptProblem(node_name, None, f"unexpected keys {extra_keys}{hint}", allowed="'inputs' only")
            )
        problems += _input_problems(node_name, node["inputs"])
    return problems


def _json_problem(value: Any) -> str | None:
    """Why ``value`` cannot travel in a JSON body (a set, an object, NaN or infinity...); ``None`` if it can."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"the value cannot be sent as JSON ({exc})"
    return None


def copy_overrides(prompt: Mapping[Any, Any]) -> dict[str, Any]:
    """A well-shaped prompt of overrides, copied: string node ids, each node's ``inputs`` a dict of its own."""
    return {str(node_id): {"inputs": dict(node["inputs"])} for node_id, node in prompt.items()}


def copy_workflow(workflow: Mapping[Any, Any]) -> dict[str, Any]:
    """A whole API-format workflow, copied deeply (``class_type``, ``inputs``, ``_meta`` and any other key)."""
    return {str(node_id): copy.deepcopy(dict(node)) for node_id, node in workflow.items()}


def normalise_prompt(prompt: Mapping[Any, Any] | None) -> dict[str, Any] | None:
    """``prompt`` checked for shape and copied with string node ids; raises ``PromptValidationError``."""
    if prompt is None:
        return None
    problems = prompt_shape_problems(prompt)
    if problems:
        raise PromptValidationError(problems)
    return copy_overrides(prompt)


_OVERRIDES_HINT = (
    "this node has no class_type: the service runs the workflow it is sent, so send the whole ComfyUI API-format "
    "workflow (ApiWorkflow.load('workflow_api.json').builder()...build()), not input overrides"
)


def workflow_shape_problems(workflow: Any) -> list[PromptProblem]:
    """Every way ``workflow`` departs from a whole API-format workflow,
    ``{node_id: {"class_type": str, "inputs": {...}, "_meta"?: {...}}}``; empty when it fits."""
    if isinstance(workflow, Mapping) and not workflow:
        return [PromptProblem("*", None, "the workflow has no nodes")]
    problems: list[PromptProblem] = []
    shape = "the whole API-format workflow (a mapping of node ids to nodes)"
    for node_name, node in _nodes(
        workflow, shape=shape, allowed="{'class_type': ..., 'inputs': {...}}", problems=problems
    ):
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type.strip():
            problems.append(PromptProblem(node_name, None, _OVERRIDES_HINT, allowed="a class_type string"))
            continue
        problems += _input_problems(node_name, node["inputs"])
    return problems


def _input_problems(node_name: str, inputs: Mapping[Any, Any]) -> list[PromptProblem]:
    """What is wrong with one node's ``inputs``: bad names, parameter-spec entries, values JSON cannot carry."""
    problems: list[PromptProblem] = []
    for input_name, value in inputs.items():
        if not isinstance(input_name, str | int) or isinstance(input_name, bool) or input_name == "":
            problems.append(PromptProblem(node_name, str(input_name), "input names must be non-empty strings"))
            continue
        if isinstance(value, Mapping) and set(value) >= _SPEC_VALUE_KEYS:
            problems.append(
                PromptProblem(
                    node_name,
                    str(input_name),
                    "the value is a parameter-spec entry ('入参范围'); send its value, not the spec",
                    allowed=f"e.g. {value.get('current')!r}",
                )
            )
            continue
        if is_local_image(value):
            continue  # uploaded at submit time and replaced by what the service calls it
        unsendable = _json_problem(value)
        if unsendable:
            problems.append(PromptProblem(node_name, str(input_name), unsendable, allowed="JSON values"))
    return problems
