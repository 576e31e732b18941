"""The docs' example workflows the SDK ships (``genstudio_async.workflows``): what the CLI and the emulator read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from genstudio_async.emulator import GPUGEEK_BUILTIN_WORKFLOW_IDS, Emulator, builtin_workflows
from genstudio_async.workflows import (
    builtin_api_workflow,
    builtin_api_workflow_ids,
    builtin_api_workflows,
    builtin_spec,
    builtin_specs,
    builtin_workflow_ids,
)

DOCS_WORKFLOWS = ["wf-c72qozydy6suxesa", "wf-c73diz7kadp6ffgn", "wf-c73epllu4i3bxvzr"]
GPUGEEK_T2I, GPUGEEK_I2I = 763311996779461, 763311996779525
PACKAGE = Path(__file__).resolve().parent.parent / "genstudio_async"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "workflows"


def test_the_docs_workflows_ship_with_the_sdk_and_the_emulator_runs_them() -> None:
    assert builtin_workflow_ids() == DOCS_WORKFLOWS
    i2i = builtin_spec("wf-c73epllu4i3bxvzr")
    assert i2i is not None and i2i.nodes["10"].class_type == "LoadImage"
    assert {wf: spec.to_dict() for wf, spec in builtin_workflows().items()} == {
        wf: spec.to_dict() for wf, spec in builtin_specs().items()
    }


def test_any_other_id_has_no_spec_and_is_never_a_path() -> None:
    for workflow_id in ("wf-unknown", "", "../workflow", "__init__", "wf-c73diz7kadp6ffgn.json", "/etc/hostname"):
        assert builtin_spec(workflow_id) is None, workflow_id


def test_reading_them_needs_no_emulator_extra() -> None:
    check = (
        "import sys; sys.modules.update(starlette=None, uvicorn=None, multipart=None); "
        "from genstudio_async.workflows import builtin_api_workflow, builtin_spec; "
        "print(builtin_spec('wf-c73diz7kadp6ffgn').nodes['3'].class_type); "
        "print(builtin_api_workflow(763311996779525).nodes['10'].class_type)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout == "KSampler\nLoadImage\n", done.stderr


# --- GPUGeek's exports -------------------------------------------------------------------------------------------


def test_the_gpugeek_exports_ship_once_and_are_the_examples_copies() -> None:
    assert builtin_api_workflow_ids() == [GPUGEEK_T2I, GPUGEEK_I2I]
    for name, workflow_id in (("t2i", GPUGEEK_T2I), ("i2i", GPUGEEK_I2I)):
        example = json.loads((EXAMPLES / f"{name}_workflow_api.json").read_text(encoding="utf-8"))
        shipped = builtin_api_workflow(workflow_id)
        assert shipped is not None and shipped.to_dict() == example
        assert builtin_api_workflow(str(workflow_id)) is not None  # a string of digits names it too
    # One copy in the package, and the emulator runs it under its id.
    copies = sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("76331199677*.json"))
    assert copies == ["workflows/gpugeek/763311996779461.json", "workflows/gpugeek/763311996779525.json"]
    assert GPUGEEK_BUILTIN_WORKFLOW_IDS == (GPUGEEK_T2I, GPUGEEK_I2I)
    emulator = Emulator(service="gpugeek")
    assert {wf: emulator.workflow(wf).to_dict() for wf in emulator.workflow_ids} == {
        wf: workflow.to_dict() for wf, workflow in builtin_api_workflows().items()
    }
    assert not list(PACKAGE.joinpath("emulator").rglob("*.json"))  # no second copy beside the emulator


def test_any_other_gpugeek_id_has_no_export_and_is_never_a_path() -> None:
    for workflow_id in (1, True, "", "763311996779461.json", "../763311996779461", "/etc/hostname", " 7 "):
        assert builtin_api_workflow(workflow_id) is None, workflow_id
