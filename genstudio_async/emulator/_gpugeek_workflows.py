"""GPUGeek's workflows: whole ComfyUI API-format workflows by integer id, and the checks a submitted one meets.

GPUGeek runs the workflow it is sent (``prompt`` is the whole export: every node with ``class_type``,
``inputs`` and ``_meta``); the ``workflow_id`` names the hosted workflow it runs under. The emulator knows the
docs' two exports as built-ins (the SDK ships them, in ``genstudio_async.workflows``, which the ``genstudio``
command reads too) plus any registered, and refuses what ComfyUI would refuse before queueing: a node without
``class_type`` or ``inputs`` (the SDK's own check, ``workflow_shape_problems``), a link to a node the workflow
does not have, no output node, and a ``LoadImage`` image that is neither an upload committed to this emulator
nor an http(s) URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .._exceptions import InvalidInputError, PromptProblem
from .._prompt import copy_workflow, workflow_shape_problems
from ..workflow import ApiWorkflow, SpecSource, _load_json_source
from ..workflows import builtin_api_workflows
from ._core import Registry
from ._defaults import GPUGEEK_IMAGE_CLASS_TYPES, GPUGEEK_OUTPUT_CLASS_TYPES
from ._plan import RunNode

#: The input of a ``LoadImage`` node that names the image.
IMAGE_INPUT = "image"


def builtin_gpugeek_workflows() -> dict[int, dict[str, Any]]:
    """The docs' API-format exports the GPUGeek emulator knows unless told otherwise, by workflow id (fresh
    copies: the SDK's built-in ones, ``genstudio_async.workflows.builtin_api_workflows``)."""
    return {workflow_id: workflow.to_dict() for workflow_id, workflow in builtin_api_workflows().items()}


def is_workflow_id(value: object) -> bool:
    """Whether ``value`` is a GPUGeek workflow id: a positive integer (a JSON number, never a string)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class ApiWorkflowRegistry(Registry[int, ApiWorkflow]):
    """GPUGeek's API-format workflows by integer id."""

    def register(self, workflow_id: int, source: ApiWorkflow | SpecSource) -> ApiWorkflow:
        """Add or replace a workflow: an ``ApiWorkflow``, or a dict, JSON text or path of the export."""
        if not is_workflow_id(workflow_id):
            raise ValueError(f"a GPUGeek workflow id is a positive integer, got {workflow_id!r}")
        if isinstance(source, ApiWorkflow):
            workflow = source
        else:
            export = _load_json_source(source, "workflow")
            problems = workflow_shape_problems(export)
            if problems:
                raise InvalidInputError("not an API-format workflow: " + "; ".join(str(p) for p in problems))
            workflow = ApiWorkflow.from_dict(export)
        return self.add(workflow_id, workflow)


def _is_link(value: object) -> bool:
    """ComfyUI's link to another node's output: ``["4", 0]``."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def output_nodes(prompt: Mapping[str, Any]) -> tuple[str, ...]:
    """The ids of the workflow's output nodes (``SaveImage``/``PreviewImage``), in its order."""
    return tuple(node_id for node_id, node in prompt.items() if node.get("class_type") in GPUGEEK_OUTPUT_CLASS_TYPES)


def image_values(prompt: Mapping[str, Any]) -> Iterator[tuple[str, object]]:
    """``(node_id, value)`` of every image a ``LoadImage``-like node loads."""
    for node_id, node in prompt.items():
        if node.get("class_type") in GPUGEEK_IMAGE_CLASS_TYPES and IMAGE_INPUT in node["inputs"]:
            yield node_id, node["inputs"][IMAGE_INPUT]


def prompt_problems(prompt: object, image_problem: Callable[[object], str | None]) -> list[PromptProblem]:
    """Why ComfyUI would refuse ``prompt`` before running it; empty when it would run.

    ``image_problem(value)`` says what is wrong with a ``LoadImage`` value (``None``: nothing).
    """
    problems = workflow_shape_problems(prompt)
    if problems:
        return problems
    assert isinstance(prompt, Mapping)
    nodes = copy_workflow(prompt)
    for node_id, node in nodes.items():
        for name, value in node["inputs"].items():
            if _is_link(value) and str(value[0]) not in nodes:
                target = str(value[0])
                problems.append(
                    PromptProblem(node_id, str(name), f"links to node {target!r}, which the workflow does not have")
                )
    if not output_nodes(nodes):
        problems.append(
            PromptProblem("*", None, "the workflow has no output node: nothing to run",
                          allowed=", ".join(sorted(GPUGEEK_OUTPUT_CLASS_TYPES)))
        )
    for node_id, value in image_values(nodes):
        problem = image_problem(value)
        if problem is not None:
            problems.append(
                PromptProblem(node_id, IMAGE_INPUT, problem,
                              allowed="the oss_url of a committed upload, or an http(s) URL")
            )
    return problems


def run_nodes(prompt: Mapping[str, Any]) -> Iterator[RunNode]:
    """The nodes of a validated workflow as a run reads them (``_plan``)."""
    for node_id, node in prompt.items():
        images = frozenset({IMAGE_INPUT}) if node.get("class_type") in GPUGEEK_IMAGE_CLASS_TYPES else frozenset()
        yield RunNode(node_id=str(node_id), values=node["inputs"], image_inputs=images)
