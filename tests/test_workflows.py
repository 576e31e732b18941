"""The docs' example workflows the SDK ships (``genstudio_async.workflows``): what the CLI and the emulator read."""

from __future__ import annotations

import subprocess
import sys

from genstudio_async.emulator import builtin_workflows
from genstudio_async.workflows import builtin_spec, builtin_specs, builtin_workflow_ids

DOCS_WORKFLOWS = ["wf-c72qozydy6suxesa", "wf-c73diz7kadp6ffgn", "wf-c73epllu4i3bxvzr"]


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
        "from genstudio_async.workflows import builtin_spec; "
        "print(builtin_spec('wf-c73diz7kadp6ffgn').nodes['3'].class_type)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout == "KSampler\n", done.stderr
