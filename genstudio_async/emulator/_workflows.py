"""GenStudio's workflows: the built-in examples from the service's docs plus any a user registers, by string id.

The built-in specs ship with the SDK (``genstudio_async/workflows/<workflow_id>.json``, read by
``genstudio_async.workflows``; the ``genstudio`` command uses them too), in the "入参范围" format of the
service's tutorial: the API guide's text-to-image (``wf-c73diz7kadp6ffgn``) and image-to-image
(``wf-c73epllu4i3bxvzr``, ``LoadImage`` node ``"10"``) examples and the tutorial's workflow
(``wf-c72qozydy6suxesa``).

Each has a ``SaveImage`` output node ``"9"``. Prompts are checked by ``WorkflowSpec.problems`` (the SDK's own
validation) plus one check only a server can make: an IMAGE input must name an image uploaded to this
emulator or be an http(s) URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import PromptProblem
from ..workflow import SpecSource, WorkflowSpec
from ..workflows import builtin_specs
from ._core import Registry
from ._defaults import EMULATOR_DEFAULT_OUTPUT_NODE
from ._plan import RenderPlan, RunNode, plan_run

_OUTPUT_CLASS_TYPES = frozenset({"SaveImage"})


def builtin_workflows() -> dict[str, WorkflowSpec]:
    """The built-in example workflows, by id (the specs the SDK ships: ``genstudio_async.workflows``)."""
    return builtin_specs()


@dataclass(frozen=True)
class RegisteredWorkflow:
    """A workflow the emulator runs: its spec and the ids of its output (SaveImage) nodes."""

    workflow_id: str
    spec: WorkflowSpec
    output_nodes: tuple[str, ...]

    @classmethod
    def build(
        cls, workflow_id: str, spec: WorkflowSpec, output_nodes: tuple[str, ...] | None = None
    ) -> RegisteredWorkflow:
        """``output_nodes`` (the ids of the workflow's output nodes, as ``files`` will key them) default to the
        spec's SaveImage nodes, else ``"9"``. A spec pasted from the console usually lists no SaveImage node (it
        has nothing to set), so pass the real ids: code keyed on ``files["9"]`` would pass here and fail there."""
        if output_nodes is None:
            found = tuple(node.node_id for node in spec if node.class_type in _OUTPUT_CLASS_TYPES)
            output_nodes = found or (EMULATOR_DEFAULT_OUTPUT_NODE,)
        if not output_nodes or not all(isinstance(node_id, str) and node_id for node_id in output_nodes):
            raise ValueError("output_nodes must be non-empty node id strings")
        return cls(workflow_id=workflow_id, spec=spec, output_nodes=tuple(output_nodes))


class WorkflowRegistry(Registry[str, RegisteredWorkflow]):
    """GenStudio's workflows by string id."""

    def register(
        self, workflow_id: str, spec: WorkflowSpec | SpecSource, *, output_nodes: tuple[str, ...] | None = None
    ) -> RegisteredWorkflow:
        """Add or replace a workflow; ``spec`` may be a ``WorkflowSpec`` or anything ``WorkflowSpec.load`` takes."""
        if not isinstance(workflow_id, str) or not workflow_id.strip():
            raise ValueError("a workflow id must be a non-empty string")
        loaded = spec if isinstance(spec, WorkflowSpec) else WorkflowSpec.load(spec)
        return self.add(workflow_id, RegisteredWorkflow.build(workflow_id, loaded, output_nodes))


def image_problems(
    spec: WorkflowSpec, prompt: Mapping[str, Any], is_uploaded: Callable[[str], bool]
) -> list[PromptProblem]:
    """IMAGE inputs of ``prompt`` that name neither an image uploaded here nor an http(s) URL."""
    found: list[PromptProblem] = []
    for node_id, overrides in prompt.items():
        node = spec.nodes.get(str(node_id))
        inputs = overrides.get("inputs") if isinstance(overrides, Mapping) else None
        if node is None or not isinstance(inputs, Mapping):
            continue
        for name, value in inputs.items():
            input_spec = node.inputs.get(str(name))
            if input_spec is None or input_spec.type.upper() != "IMAGE" or not isinstance(value, str):
                continue
            if value.startswith(("http://", "https://")) or is_uploaded(value):
                continue
            found.append(
                PromptProblem(
                    node_id=str(node_id),
                    input=str(name),
                    problem=f"image {value!r} was not uploaded to this emulator and is not an http(s) URL",
                    allowed="an image_id returned by upload/image, or an http(s) URL",
                    title=node.title,
                )
            )
    return found


def unreadable_images(
    spec: WorkflowSpec, inputs: Mapping[str, Mapping[str, Any]], is_unreadable: Callable[[str], bool]
) -> list[str]:
    """The values of IMAGE inputs of a run that name an upload which is not an image."""
    return [
        value
        for node in spec
        for name, input_spec in node.inputs.items()
        if input_spec.type.upper() == "IMAGE"
        and isinstance(value := inputs.get(node.node_id, {}).get(name), str)
        and is_unreadable(value)
    ]


def merge_prompt(spec: WorkflowSpec, prompt: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every input's value for a run: the spec's current values with the (validated) overrides applied."""
    merged = {node_id: node["inputs"] for node_id, node in spec.base_prompt().items()}
    for node_id, overrides in (prompt or {}).items():
        merged.setdefault(str(node_id), {}).update(overrides["inputs"])
    return merged


def plan_render(
    workflow: RegisteredWorkflow,
    inputs: Mapping[str, Mapping[str, Any]],
    uploaded_size: Callable[[str], tuple[int, int] | None],
) -> RenderPlan:
    """What a run's results look like (see ``_plan.plan_run``): the spec's nodes in order, its IMAGE inputs as
    the image inputs, ``inputs`` (from ``merge_prompt``) as the values."""
    nodes = (
        RunNode(
            node_id=node.node_id,
            values=inputs.get(node.node_id, {}),
            image_inputs=frozenset(name for name, spec in node.inputs.items() if spec.type.upper() == "IMAGE"),
        )
        for node in workflow.spec
    )
    return plan_run(nodes, workflow.output_nodes, uploaded_size)
