"""Workflow parameter specs (GenStudio's "入参范围"): load one, build a base prompt, check a prompt against it.

GenStudio publishes, for each hosted workflow, the inputs a ``prompt`` may override::

    {"3": {"inputs": {"steps": {"type": "INT", "current": 20, "spec": {"default": 20, "min": 1, "max": 10000}}},
           "class_type": "KSampler", "_meta": {"title": "KSampler"}}}

``WorkflowSpec`` reads that format. ``base_prompt()`` turns it into a prompt holding every current value
(what the service's tutorial calls the "Base Prompt"), and ``problems()`` / ``validate()`` check a prompt of
overrides before it is sent, reporting every problem at once::

    spec = WorkflowSpec.load("my-workflow-spec.json")
    spec.validate({"3": {"inputs": {"steps": 30}}})       # raises PromptValidationError listing each problem

Input types the SDK knows (INT, FLOAT, STRING, BOOLEAN, LIST, MODEL, IMAGE) are checked; any other type is
kept as it is and accepts any value. Unknown keys are kept everywhere, and ``to_dict()`` gives the spec back.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias

from ._exceptions import InvalidInputError, PromptProblem, PromptValidationError
from ._prompt import (
    LocalImage,
    copy_overrides,
    copy_workflow,
    is_local_image,
    prompt_shape_problems,
    workflow_shape_problems,
)

__all__ = [
    "ApiNode",
    "ApiWorkflow",
    "InputSpec",
    "LocalImage",
    "NodeSpec",
    "PromptBuilder",
    "SpecSource",
    "ValueSpec",
    "WorkflowSpec",
]

#: What ``WorkflowSpec.load`` accepts: a parsed dict, a JSON text (str or bytes), or a path to a JSON file.
SpecSource: TypeAlias = "Mapping[str, Any] | str | bytes | os.PathLike[str]"

# ComfyUI's largest seed, 0xffffffffffffffff, reaches a spec through JavaScript as 18446744073709552000 (2**64
# rounded to a double). Taken literally, that bound lets through seeds up to 385 above what ComfyUI accepts.
_UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_UINT64_MAX_AS_DOUBLE = 18446744073709552000

_NUMBER_KEYS = ("default", "min", "max", "step", "round")
_SPEC_KEYS = (*_NUMBER_KEYS, "choices")
_CHOICES_SHOWN = 8
_VALUE_SHOWN = 60


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_SHOWN else text[: _VALUE_SHOWN - 1] + "…"


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True)
class ValueSpec:
    """The ``spec`` of one input: its default and what values are allowed. Unknown keys are kept in ``extra``."""

    default: Any = None
    min: int | float | None = None
    max: int | float | None = None
    step: int | float | None = None
    round: int | float | None = None
    choices: tuple[Any, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, where: str) -> ValueSpec:
        """Read a ``spec`` object; ``where`` names it in error messages."""
        numbers: dict[str, int | float | None] = {}
        for key in ("min", "max", "step", "round"):
            value = raw.get(key)
            if value is not None and not _is_number(value):
                raise InvalidInputError(f"{where}: spec {key!r} must be a number, got {_short(value)}")
            numbers[key] = value
        choices = raw.get("choices", ())
        if choices is None:
            choices = ()
        if not isinstance(choices, list | tuple):
            raise InvalidInputError(f"{where}: spec 'choices' must be a list, got {_type_name(choices)}")
        extra = {key: copy.deepcopy(value) for key, value in raw.items() if key not in _SPEC_KEYS}
        return cls(
            default=copy.deepcopy(raw.get("default")),
            min=numbers["min"],
            max=numbers["max"],
            step=numbers["step"],
            round=numbers["round"],
            choices=tuple(choices),
            extra=MappingProxyType(extra),
        )


@dataclass(frozen=True)
class InputSpec:
    """One input of a node a prompt may set: its ``type``, ``current`` value and allowed values (``spec``)."""

    name: str
    type: str
    current: Any = None
    spec: ValueSpec = field(default_factory=ValueSpec)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def check(self, value: object) -> str | None:
        """What is wrong with ``value`` for this input, or ``None`` when it is allowed."""
        kind = self.type.upper()
        if kind == "INT":
            if not isinstance(value, int) or isinstance(value, bool):
                return f"expected an integer, got {_type_name(value)} {_short(value)}"
            return self._range_problem(value) or self._choice_problem(value)
        if kind == "FLOAT":
            if not _is_number(value):
                return f"expected a number, got {_type_name(value)} {_short(value)}"
            assert isinstance(value, int | float)
            if not math.isfinite(value):
                return f"expected a finite number, got {_short(value)}"
            return self._range_problem(value) or self._choice_problem(value)
        if kind == "STRING":
            if not isinstance(value, str):
                return f"expected a string, got {_type_name(value)} {_short(value)}"
            return self._choice_problem(value)
        if kind == "BOOLEAN":
            if not isinstance(value, bool):
                return f"expected true or false, got {_type_name(value)} {_short(value)}"
            return None
        if kind == "IMAGE":
            if is_local_image(value):
                return None  # uploaded at submit time; the service then gets its image_id
            if not isinstance(value, str) or not value:
                return f"expected an image id or URL string, got {_type_name(value)} {_short(value)}"
            return self._choice_problem(value)
        if kind in ("LIST", "MODEL"):
            return self._choice_problem(value)
        return None

    def allowed(self) -> str | None:
        """A short description of the values this input accepts, for error messages."""
        kind = self.type.upper()
        if self.spec.choices:
            shown = ", ".join(_short(choice) for choice in self.spec.choices[:_CHOICES_SHOWN])
            more = len(self.spec.choices) - _CHOICES_SHOWN
            if more > 0:
                shown += f", … ({len(self.spec.choices)} choices)"
            return f"one of {shown}"
        if kind in ("INT", "FLOAT"):
            noun = "an integer" if kind == "INT" else "a number"
            low, high = self.spec.min, self.spec.max
            if low is not None and high is not None:
                return f"{noun} from {low} to {high}"
            if low is not None:
                return f"{noun} of at least {low}"
            if high is not None:
                return f"{noun} of at most {high}"
            return noun
        return {
            "STRING": "a string",
            "BOOLEAN": "true or false",
            "IMAGE": "an uploaded image_id or an http(s) URL",
        }.get(kind)

    def _range_problem(self, value: int | float) -> str | None:
        high = self.spec.max
        if self.type.upper() == "INT" and high is not None and _UINT64_MAX < high <= _UINT64_MAX_AS_DOUBLE:
            high = _UINT64_MAX
        if self.spec.min is not None and value < self.spec.min:
            return f"{_short(value)} is below the minimum {self.spec.min}"
        if high is not None and value > high:
            return f"{_short(value)} is above the maximum {high}"
        return None

    def _choice_problem(self, value: object) -> str | None:
        if not self.spec.choices:
            return None
        for choice in self.spec.choices:
            if value == choice and isinstance(value, bool) == isinstance(choice, bool):
                return None
        return f"{_short(value)} is not one of the allowed choices"


@dataclass(frozen=True)
class NodeSpec:
    """One node of the workflow: its id, ``class_type``, ``title`` (from ``_meta.title``) and settable inputs."""

    node_id: str
    class_type: str | None
    title: str | None
    inputs: Mapping[str, InputSpec]
    extra: Mapping[str, Any] = field(default_factory=dict)


def _load_json_source(source: SpecSource, what: str) -> Any:
    """Parsed JSON from a dict (as is), a JSON text (``str`` starting with ``{``, or ``bytes``) or a file path."""
    if isinstance(source, Mapping):
        return source
    try:
        if isinstance(source, bytes) or (isinstance(source, str) and source.lstrip().startswith("{")):
            return json.loads(source)
        if isinstance(source, str | os.PathLike):
            return json.loads(Path(source).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"cannot read the {what} {os.fspath(source)!r}: {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"the {what} is not valid JSON: {exc}") from exc
    raise InvalidInputError(f"a {what} must be a dict, a JSON text or a file path, got {_type_name(source)}")


class WorkflowSpec:
    """A workflow's parameter spec ("入参范围"): its nodes by id, each with the inputs a prompt may set."""

    def __init__(self, nodes: Mapping[str, NodeSpec], *, raw: Mapping[str, Any] | None = None) -> None:
        self._nodes = MappingProxyType(dict(nodes))
        self._raw: dict[str, Any] = copy.deepcopy(dict(raw)) if raw is not None else {}

    # --- loading -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: SpecSource) -> WorkflowSpec:
        """Load from a dict, a JSON text (``str`` starting with ``{``, or ``bytes``) or a path to a JSON file."""
        return cls.from_dict(_load_json_source(source, "workflow spec"))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkflowSpec:
        """Parse a JSON text holding a spec."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"the workflow spec is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> WorkflowSpec:
        """Read a JSON file holding a spec."""
        return cls.from_dict(_load_json_source(Path(path), "workflow spec"))

    @classmethod
    def from_dict(cls, data: object) -> WorkflowSpec:
        """Build from a parsed spec: ``{node_id: {"inputs": {name: {"type", "current", "spec"}}, ...}}``."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"a workflow spec must be a JSON object of nodes, got {_type_name(data)}")
        nodes: dict[str, NodeSpec] = {}
        for node_id, node_raw in data.items():
            nodes[str(node_id)] = _parse_node(str(node_id), node_raw)
        return cls(nodes, raw=data)

    # --- reading -------------------------------------------------------------------------------------------
    @property
    def nodes(self) -> Mapping[str, NodeSpec]:
        """The nodes by id, in the spec's order (read-only)."""
        return self._nodes

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __repr__(self) -> str:
        return f"WorkflowSpec(nodes={list(self._nodes)!r})"

    def to_dict(self) -> dict[str, Any]:
        """The spec as it was loaded (a fresh deep copy), ready for ``json.dumps``."""
        return copy.deepcopy(self._raw)

    def builder(self, *, workflow: ApiWorkflow | None = None) -> PromptBuilder:
        """A ``PromptBuilder`` starting from this spec's ``base_prompt()``."""
        return PromptBuilder.from_spec(self, workflow=workflow)

    def base_prompt(self) -> dict[str, dict[str, dict[str, Any]]]:
        """A prompt setting every input to its ``current`` value: ``{node_id: {"inputs": {name: current}}}``.

        Each call returns a fresh deep copy, so changing it never changes the spec.
        """
        return {
            node.node_id: {"inputs": {name: copy.deepcopy(spec.current) for name, spec in node.inputs.items()}}
            for node in self._nodes.values()
        }

    # --- checking ------------------------------------------------------------------------------------------
    def problems(self, prompt: object) -> list[PromptProblem]:
        """Every problem of ``prompt`` (a mapping of overrides, or ``None`` for none) against this spec.

        The prompt's shape is checked first, by the same rules the client applies before sending (a mapping
        of node ids to ``{"inputs": {...}}``); then each input against the spec: unknown node or input,
        wrong type, out of ``[min, max]``, not among the ``choices``.
        """
        if prompt is None:
            return []
        shape = [self._titled(problem) for problem in prompt_shape_problems(prompt)]
        if not isinstance(prompt, Mapping):
            return shape
        return shape + self.input_problems(prompt, shape)

    def input_problems(self, prompt: Mapping[Any, Any], shape: Sequence[PromptProblem] = ()) -> list[PromptProblem]:
        """The problems of a prompt's inputs against this spec alone (its shape already checked, with the
        problems ``shape``): an unknown node or input, a wrong type, out of ``[min, max]``, not a choice.
        Nodes that are not ``{"inputs": {...}}`` and the inputs ``shape`` already names are skipped."""
        malformed_inputs = {(p.node_id, p.input) for p in shape if p.input is not None}
        found: list[PromptProblem] = []
        for raw_node_id, overrides in prompt.items():
            node_id = str(raw_node_id)
            node = self._nodes.get(node_id)
            if node is None:
                found.append(
                    PromptProblem(node_id=node_id, input=None, problem="unknown node", allowed=self._node_list())
                )
                continue
            inputs = overrides.get("inputs") if isinstance(overrides, Mapping) else None
            if not isinstance(inputs, Mapping):
                continue  # reported by the shape check
            for raw_name, value in inputs.items():
                name = str(raw_name)
                if (node_id, name) in malformed_inputs:
                    continue
                input_spec = node.inputs.get(name)
                if input_spec is None:
                    found.append(
                        PromptProblem(
                            node_id=node_id,
                            input=name,
                            problem="unknown input",
                            allowed=", ".join(node.inputs) or "this node has no settable inputs",
                            title=node.title,
                        )
                    )
                    continue
                problem = input_spec.check(value)
                if problem is not None:
                    found.append(
                        PromptProblem(
                            node_id=node_id,
                            input=name,
                            problem=problem,
                            allowed=input_spec.allowed(),
                            title=node.title,
                        )
                    )
        return found

    def validate(self, prompt: object) -> None:
        """Raise ``PromptValidationError`` listing every problem of ``prompt``; return quietly if it fits."""
        found = self.problems(prompt)
        if found:
            raise PromptValidationError(found)

    def _titled(self, problem: PromptProblem) -> PromptProblem:
        node = self._nodes.get(problem.node_id)
        if node is None or problem.title or not node.title:
            return problem
        return dataclasses.replace(problem, title=node.title)

    def _node_list(self) -> str:
        described = [f"{node.node_id} ({node.title})" if node.title else node.node_id for node in self]
        return ", ".join(described) or "the workflow has no settable nodes"


def _parse_node(node_id: str, raw: object) -> NodeSpec:
    where = f"node {node_id!r}"
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{where} must be an object, got {_type_name(raw)}")
    inputs_raw = raw.get("inputs", {})
    if inputs_raw is None:
        inputs_raw = {}
    if not isinstance(inputs_raw, Mapping):
        raise InvalidInputError(f"{where}: 'inputs' must be an object, got {_type_name(inputs_raw)}")
    inputs = {str(name): _parse_input(node_id, str(name), value) for name, value in inputs_raw.items()}
    class_type = raw.get("class_type")
    meta = raw.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    extra = {key: copy.deepcopy(value) for key, value in raw.items() if key not in ("inputs", "class_type")}
    return NodeSpec(
        node_id=node_id,
        class_type=class_type if isinstance(class_type, str) else None,
        title=title if isinstance(title, str) else None,
        inputs=MappingProxyType(inputs),
        extra=MappingProxyType(extra),
    )


def _parse_input(node_id: str, name: str, raw: object) -> InputSpec:
    where = f"node {node_id!r} input {name!r}"
    if not isinstance(raw, Mapping):
        raise InvalidInputError(
            f"{where} must be an object with 'type', 'current' and 'spec', got {_short(raw)} "
            "(is this a ComfyUI API export rather than a GenStudio parameter spec?)"
        )
    kind = raw.get("type", "")
    if not isinstance(kind, str):
        raise InvalidInputError(f"{where}: 'type' must be a string, got {_type_name(kind)}")
    spec_raw = raw.get("spec", {})
    if spec_raw is None:
        spec_raw = {}
    if not isinstance(spec_raw, Mapping):
        raise InvalidInputError(f"{where}: 'spec' must be an object, got {_type_name(spec_raw)}")
    extra = {key: copy.deepcopy(value) for key, value in raw.items() if key not in ("type", "current", "spec")}
    return InputSpec(
        name=name,
        type=kind,
        current=copy.deepcopy(raw.get("current")),
        spec=ValueSpec.from_dict(spec_raw, where=where),
        extra=MappingProxyType(extra),
    )


# --- the exported ComfyUI workflow ("API format") --------------------------------------------------------------


@dataclass(frozen=True)
class ApiNode:
    """One node of an exported ComfyUI API-format workflow."""

    node_id: str
    class_type: str | None
    title: str | None
    inputs: Mapping[str, Any]


class ApiWorkflow:
    """A workflow as ComfyUI's "Save (API Format)" exports it: ``{node_id: {"class_type", "inputs", "_meta"}}``.

    The SDK reads it to find nodes, chiefly the positive and negative text encoders, which a sampler's
    ``positive`` / ``negative`` inputs link to (``["6", 0]``: output 0 of node 6). On GenStudio it is never sent
    (a prompt holds overrides only); on GPUGeek the prompt *is* the whole workflow, and ``builder()`` starts one::

        prompt = ApiWorkflow.load("workflow_api.json").builder().positive("a red fox").randomize_seeds().build()
    """

    def __init__(self, nodes: Mapping[str, ApiNode], *, raw: Mapping[str, Any] | None = None) -> None:
        self._nodes = MappingProxyType(dict(nodes))
        self._raw: dict[str, Any] = copy_workflow(raw) if raw is not None else {
            node.node_id: {"class_type": node.class_type, "inputs": dict(node.inputs)} for node in nodes.values()
        }

    @classmethod
    def load(cls, source: SpecSource) -> ApiWorkflow:
        """Load from a dict, a JSON text or a path to the exported JSON file."""
        return cls.from_dict(_load_json_source(source, "workflow"))

    @classmethod
    def from_dict(cls, data: object) -> ApiWorkflow:
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"an API-format workflow must be a JSON object of nodes, got {_type_name(data)}")
        nodes: dict[str, ApiNode] = {}
        for raw_id, raw in data.items():
            node_id = str(raw_id)
            if not isinstance(raw, Mapping) or not isinstance(raw.get("inputs", {}), Mapping):
                raise InvalidInputError(f"node {node_id!r} of the API-format workflow must have an 'inputs' object")
            class_type = raw.get("class_type")
            meta = raw.get("_meta")
            title = meta.get("title") if isinstance(meta, Mapping) else None
            nodes[node_id] = ApiNode(
                node_id=node_id,
                class_type=class_type if isinstance(class_type, str) else None,
                title=title if isinstance(title, str) else None,
                inputs=MappingProxyType(dict(raw.get("inputs", {}))),
            )
        return cls(nodes, raw=data)

    @property
    def nodes(self) -> Mapping[str, ApiNode]:
        return self._nodes

    def to_dict(self) -> dict[str, Any]:
        """The whole workflow as it was loaded (a fresh deep copy): ``class_type``, ``inputs``, ``_meta``, all of it."""
        return copy_workflow(self._raw)

    def builder(self, *, spec: WorkflowSpec | None = None) -> PromptBuilder:
        """A ``PromptBuilder`` over the whole workflow, for a service that runs the workflow it is sent (GPUGeek):
        its ``build()`` is the whole workflow with your changes, ``class_type``, ``inputs`` and ``_meta`` kept,
        this workflow untouched."""
        return PromptBuilder(self.to_dict(), spec=spec, workflow=self, whole=True)

    def linked_node(self, input_name: str) -> str | None:
        """The node that a sampler's ``input_name`` (``positive`` or ``negative``) links to, if exactly one."""
        targets = {
            str(link[0])
            for node in self._nodes.values()
            if isinstance(link := node.inputs.get(input_name), list | tuple) and link and str(link[0]) in self._nodes
        }
        return targets.pop() if len(targets) == 1 else None


# --- building prompts ------------------------------------------------------------------------------------------

SEED_INPUTS = frozenset({"seed", "noise_seed"})
_MAX_SEED = 0xFFFF_FFFF_FFFF_FFFF  # ComfyUI's largest seed
_POSITIVE_TITLE_WORDS = ("positive", "正向", "正面")
_NEGATIVE_TITLE_WORDS = ("negative", "负向", "负面", "反向")


class PromptBuilder:
    """Builds a ``prompt`` step by step without ever changing what it started from.

    Every method returns a new builder; ``build()`` gives a fresh dict. Nodes are named by id (``"6"``), by
    ``class_type`` (``"KSampler"``) or by title (``"Load Checkpoint"``), looked up in the spec, the exported
    workflow and the prompt itself; a name that matches several nodes is an error that lists them::

        builder = PromptBuilder.from_spec(spec, workflow=ApiWorkflow.load("workflow_api.json"))
        prompt = (builder.positive("a red fox").negative("blurry")
                         .set("KSampler", steps=30, cfg=6.5).randomize_seeds()
                         .set("LoadImage", image=Path("fox.png")).build())
    """

    def __init__(
        self,
        base: Mapping[str, Any] | None = None,
        *,
        spec: WorkflowSpec | None = None,
        workflow: ApiWorkflow | None = None,
        whole: bool = False,
    ) -> None:
        """``base``: what to start from (overrides; with ``whole``, a whole API-format workflow, every node kept
        with its ``class_type`` and ``_meta``, as GPUGeek takes it)."""
        shape = workflow_shape_problems if whole else prompt_shape_problems
        problems = shape(base) if base is not None else []
        if problems:
            raise PromptValidationError(problems)
        self._whole = whole
        self._prompt: dict[str, dict[str, Any]] = (
            copy_workflow(base or {}) if whole else copy_overrides(base or {})
        )
        self._spec = spec
        self._workflow = workflow

    @classmethod
    def from_spec(cls, spec: WorkflowSpec, *, workflow: ApiWorkflow | None = None) -> PromptBuilder:
        """Start from the spec's ``base_prompt()``: every input at its current value."""
        return cls(spec.base_prompt(), spec=spec, workflow=workflow)

    def build(self) -> dict[str, dict[str, Any]]:
        """The prompt, a fresh copy: ``{node_id: {"inputs": {...}}}``, or the whole workflow for a builder made
        with ``whole`` (``ApiWorkflow.builder()``). Local images are kept as they are (uploaded at submit time)."""
        return copy_workflow(self._prompt) if self._whole else copy_overrides(self._prompt)

    def set(self, node: str, /, **inputs: Any) -> PromptBuilder:
        """Set ``inputs`` of ``node`` (an id, a class_type or a title)."""
        if not inputs:
            raise InvalidInputError(f"set({node!r}) needs at least one input=value")
        return self._with(self.node_id(node), inputs)

    def positive(self, text: str) -> PromptBuilder:
        """Set the positive prompt text (the node a sampler's ``positive`` input links to)."""
        return self._with(self._text_node("positive"), {"text": text})

    def negative(self, text: str) -> PromptBuilder:
        """Set the negative prompt text (the node a sampler's ``negative`` input links to)."""
        return self._with(self._text_node("negative"), {"text": text})

    def randomize_seeds(self, rng: random.Random | None = None) -> PromptBuilder:
        """A fresh random value for every ``seed`` / ``noise_seed`` input, within the spec's range."""
        draw = rng or random.SystemRandom()
        builder = self
        for node_id, name, low, high in self._seed_inputs():
            builder = builder._with(node_id, {name: draw.randint(low, high)})
        if builder is self:
            raise InvalidInputError("no seed input to randomise: the workflow has no 'seed' or 'noise_seed' input")
        return builder

    def node_id(self, node: str) -> str:
        """The id of the node named ``node`` (an id, a class_type or a title)."""
        known = self._known_nodes()
        if node in known:
            return node
        matches = sorted(node_id for node_id, (class_type, title) in known.items() if node in (class_type, title))
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise InvalidInputError(f"{node!r} names several nodes ({', '.join(matches)}): use a node id")
        raise InvalidInputError(f"no node is called {node!r}; known nodes: {', '.join(sorted(known)) or 'none'}")

    def _with(self, node_id: str, inputs: Mapping[str, Any]) -> PromptBuilder:
        if self._whole and node_id not in self._prompt:
            raise InvalidInputError(f"the workflow has no node {node_id!r} to set")
        clone = PromptBuilder.__new__(PromptBuilder)
        clone._spec, clone._workflow, clone._whole = self._spec, self._workflow, self._whole
        clone._prompt = dict(self._prompt)  # copy-on-write: only the changed node gets a new dict
        node = self._prompt.get(node_id, {"inputs": {}})
        clone._prompt[node_id] = {**node, "inputs": {**node["inputs"], **inputs}}
        return clone

    def _known_nodes(self) -> dict[str, tuple[str | None, str | None]]:
        known: dict[str, tuple[str | None, str | None]] = {node_id: (None, None) for node_id in self._prompt}
        if self._workflow is not None:
            known.update({n.node_id: (n.class_type, n.title) for n in self._workflow.nodes.values()})
        if self._spec is not None:
            for spec_node in self._spec:
                class_type, title = known.get(spec_node.node_id, (None, None))
                known[spec_node.node_id] = (spec_node.class_type or class_type, spec_node.title or title)
        return known

    def _text_node(self, which: str) -> str:
        if self._workflow is not None:
            linked = self._workflow.linked_node(which)
            if linked is not None:
                return linked
        words = _POSITIVE_TITLE_WORDS if which == "positive" else _NEGATIVE_TITLE_WORDS
        titled = sorted(
            node_id
            for node_id, (_class_type, title) in self._known_nodes().items()
            if title and any(word in title.lower() for word in words)
        )
        if len(titled) == 1:
            return titled[0]
        raise InvalidInputError(
            f"cannot tell which node holds the {which} prompt: pass workflow=ApiWorkflow.load('workflow_api.json') "
            f"(the exported ComfyUI workflow, whose sampler links it), or set it by node id"
        )

    def _seed_inputs(self) -> list[tuple[str, str, int, int]]:
        found: list[tuple[str, str, int, int]] = []
        if self._spec is not None:
            for spec_node in self._spec:
                for name, input_spec in spec_node.inputs.items():
                    if name in SEED_INPUTS:
                        low = int(input_spec.spec.min) if input_spec.spec.min is not None else 0
                        ceiling = input_spec.spec.max
                        high = int(min(ceiling, _MAX_SEED)) if ceiling is not None else _MAX_SEED
                        found.append((spec_node.node_id, name, max(low, 0), high))
        else:
            for node_id, node in self._prompt.items():
                found += [
                    (node_id, name, 0, _MAX_SEED)
                    for name, value in node["inputs"].items()
                    if name in SEED_INPUTS and isinstance(value, int) and not isinstance(value, bool)  # not a link
                ]
        return found
