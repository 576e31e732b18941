"""The service docs' example workflows, shipped with the SDK: GenStudio's parameter specs ("入参范围") and
GPUGeek's ComfyUI API-format exports. One copy each in the package, read by the ``genstudio`` command and by
the emulator.

GenStudio: one JSON file per workflow, ``<workflow_id>.json``, in the format GenStudio's "查看参数" shows:

- ``wf-c73diz7kadp6ffgn``: the API guide's text-to-image example (its checkpoint list accepts both the bare and
  the ``common/sd1.5/`` spelling, since the guide's curl body uses the bare one);
- ``wf-c73epllu4i3bxvzr``: the guide's image-to-image example (``LoadImage`` node ``"10"``);
- ``wf-c72qozydy6suxesa``: the tutorial's text-to-image workflow, spec copied verbatim.

The ``genstudio`` command uses them as the spec of these ids when no ``--spec`` is given (so
``--set KSampler.steps=30`` and ``--image LoadImage=fox.png`` work as the README shows them), and the emulator
registers them as its built-in workflows.

GPUGeek: one export per workflow, ``gpugeek/<workflow_id>.json`` (ComfyUI's "Save (API Format)": every node with
``class_type``, ``inputs`` and ``_meta``), the prompt itself on that service:

- ``763311996779461``: text-to-image, the id the API doc's request sample submits to;
- ``763311996779525``: image-to-image (``LoadImage`` node ``"10"``); the doc names no second id, so this one has
  the same shape.

``genstudio run --service gpugeek 763311996779461`` starts from the export of a built-in id, and the GPUGeek
emulator runs them under these ids. ``examples/workflows/`` keeps the user-facing copies (a test pins them equal).

Reading any of them needs nothing beyond the SDK itself; listing the ids needs not even pydantic.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a workflow is read: listing the ids (genstudio run --help) needs nothing more
    from ..workflow import ApiWorkflow, WorkflowSpec

__all__ = [
    "builtin_api_workflow",
    "builtin_api_workflow_ids",
    "builtin_api_workflows",
    "builtin_spec",
    "builtin_specs",
    "builtin_workflow_ids",
]

_SUFFIX = ".json"
_GPUGEEK_FOLDER = "gpugeek"


def _ids_in(folder: Traversable) -> list[str]:
    return sorted(entry.name.removesuffix(_SUFFIX) for entry in folder.iterdir() if entry.name.endswith(_SUFFIX))


# --- GenStudio: parameter specs ---------------------------------------------------------------------------------


def builtin_workflow_ids() -> list[str]:
    """The ids of the built-in GenStudio workflows (those with a spec), sorted."""
    return _ids_in(resources.files(__name__))


def builtin_spec(workflow_id: str) -> WorkflowSpec | None:
    """The spec of a built-in GenStudio workflow, or ``None`` for any other id.

    ``workflow_id`` is only compared with the ids listed here, never joined into a path.
    """
    return _read_spec(workflow_id) if workflow_id in builtin_workflow_ids() else None


def builtin_specs() -> dict[str, WorkflowSpec]:
    """Every built-in GenStudio workflow's spec, by id."""
    return {workflow_id: _read_spec(workflow_id) for workflow_id in builtin_workflow_ids()}


def _read_spec(workflow_id: str) -> WorkflowSpec:
    from ..workflow import WorkflowSpec

    return WorkflowSpec.from_json(resources.files(__name__).joinpath(workflow_id + _SUFFIX).read_text(encoding="utf-8"))


# --- GPUGeek: API-format exports --------------------------------------------------------------------------------


def builtin_api_workflow_ids() -> list[int]:
    """The ids of the built-in GPUGeek workflows (those with an export), in increasing order."""
    return sorted(int(name) for name in _ids_in(resources.files(__name__).joinpath(_GPUGEEK_FOLDER)))


def builtin_api_workflow(workflow_id: int | str) -> ApiWorkflow | None:
    """The export of a built-in GPUGeek workflow (a fresh ``ApiWorkflow``), or ``None`` for any other id.

    ``workflow_id`` is an int or a string of digits; it is only compared with the ids listed here, never joined
    into a path.
    """
    known = {str(number): number for number in builtin_api_workflow_ids()}
    number = known.get(str(workflow_id).strip()) if isinstance(workflow_id, int | str) else None
    return _read_export(number) if number is not None else None


def builtin_api_workflows() -> dict[int, ApiWorkflow]:
    """Every built-in GPUGeek workflow's export, by id."""
    return {workflow_id: _read_export(workflow_id) for workflow_id in builtin_api_workflow_ids()}


def _read_export(workflow_id: int) -> ApiWorkflow:
    from ..workflow import ApiWorkflow

    folder = resources.files(__name__).joinpath(_GPUGEEK_FOLDER)
    return ApiWorkflow.load(folder.joinpath(f"{workflow_id}{_SUFFIX}").read_text(encoding="utf-8"))
