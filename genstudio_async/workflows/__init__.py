"""The service docs' example workflows: their parameter specs ("入参范围"), shipped with the SDK.

One JSON file per workflow, ``<workflow_id>.json``, in the format GenStudio's "查看参数" shows:

- ``wf-c73diz7kadp6ffgn``: the API guide's text-to-image example (its checkpoint list accepts both the bare and
  the ``common/sd1.5/`` spelling, since the guide's curl body uses the bare one);
- ``wf-c73epllu4i3bxvzr``: the guide's image-to-image example (``LoadImage`` node ``"10"``);
- ``wf-c72qozydy6suxesa``: the tutorial's text-to-image workflow, spec copied verbatim.

The ``genstudio`` command uses them as the spec of these ids when no ``--spec`` is given (so
``--set KSampler.steps=30`` and ``--image LoadImage=fox.png`` work as the README shows them), and the emulator
registers them as its built-in workflows. Reading them needs nothing beyond the SDK itself.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a spec is read: listing the ids (genstudio run --help) needs nothing more
    from ..workflow import WorkflowSpec

__all__ = ["builtin_spec", "builtin_specs", "builtin_workflow_ids"]

_SUFFIX = ".json"


def builtin_workflow_ids() -> list[str]:
    """The ids of the built-in workflows, sorted."""
    folder = resources.files(__name__)
    return sorted(entry.name.removesuffix(_SUFFIX) for entry in folder.iterdir() if entry.name.endswith(_SUFFIX))


def builtin_spec(workflow_id: str) -> WorkflowSpec | None:
    """The spec of a built-in workflow, or ``None`` for any other id.

    ``workflow_id`` is only compared with the ids listed here, never joined into a path.
    """
    if workflow_id not in builtin_workflow_ids():
        return None
    from ..workflow import WorkflowSpec

    text = resources.files(__name__).joinpath(workflow_id + _SUFFIX).read_text(encoding="utf-8")
    return WorkflowSpec.from_json(text)


def builtin_specs() -> dict[str, WorkflowSpec]:
    """Every built-in workflow's spec, by id."""
    specs: dict[str, WorkflowSpec] = {}
    for workflow_id in builtin_workflow_ids():
        spec = builtin_spec(workflow_id)
        assert spec is not None  # listed just above
        specs[workflow_id] = spec
    return specs
