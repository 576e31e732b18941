"""A local GenStudio or GPUGeek: the service's HTTP API (GenStudio's progress WebSocket too) and signed-URL
storage, on loopback.

Install with ``pip install 'genstudio-async[emulator]'``. Use it from Python::

    from genstudio_async.emulator import Emulator, Faults

    async with Emulator(api_key="sk-emulator", workers=2) as emu:
        ...  # point a client at emu.base_url with emu.api_key
        emu.set_faults(Faults(ws_drop_after=2))
        print(emu.stats.submits)

    async with Emulator(service="gpugeek") as emu:  # GPUGeek's /api/v1/... on the same core
        ...

or from a shell: ``python -m genstudio_async.emulator --port 8188 --api-key sk-emulator`` (also
``genstudio emulator``; ``--service gpugeek`` for GPUGeek). The first line printed is
``GenStudio emulator listening on http://HOST:PORT`` (``GPUGeek emulator listening on …``).

The docs' example workflows are registered: GenStudio's (``BUILTIN_WORKFLOW_IDS``), whose parameter specs ship
with the SDK in ``genstudio_async/workflows/`` (read by ``genstudio_async.workflows``), and GPUGeek's
(``GPUGEEK_BUILTIN_WORKFLOW_IDS``), API-format exports in ``genstudio_async/emulator/gpugeek_workflows/``.

Layout: a neutral core (``_core``, ``_state``: queue, workers, clock, faults, counters, object store, signer,
the shared HTTP pieces ``_endpoints``/``_admin``/``_storage``) and one layer per service: GenStudio's
(``_service``, ``_api``, ``_progress``, ``_workflows``) and GPUGeek's (``_gpugeek``, ``_gpugeek_api``,
``_gpugeek_workflows``).
"""

from __future__ import annotations

from ._deps import EmulatorDependencyError, require_server_dependencies

require_server_dependencies()

from ..workflows import builtin_workflow_ids  # noqa: E402
from ._defaults import GPUGEEK_BUILTIN_WORKFLOW_FILES  # noqa: E402
from ._faults import ENDPOINTS, FaultError, Faults  # noqa: E402
from ._gpugeek import GPUGeekStatus  # noqa: E402
from ._server import SERVICES, Emulator  # noqa: E402
from ._service import Status  # noqa: E402
from ._state import EmulatorError, TaskState  # noqa: E402
from ._stats import EmulatorStats  # noqa: E402
from ._workflows import builtin_workflows  # noqa: E402

#: The example workflows every GenStudio emulator knows unless told otherwise (the specs the SDK ships).
BUILTIN_WORKFLOW_IDS = tuple(builtin_workflow_ids())
#: The example workflows every GPUGeek emulator knows unless told otherwise (the docs' API-format exports).
GPUGEEK_BUILTIN_WORKFLOW_IDS = tuple(GPUGEEK_BUILTIN_WORKFLOW_FILES)

__all__ = [
    "BUILTIN_WORKFLOW_IDS",
    "ENDPOINTS",
    "GPUGEEK_BUILTIN_WORKFLOW_IDS",
    "SERVICES",
    "Emulator",
    "EmulatorDependencyError",
    "EmulatorError",
    "EmulatorStats",
    "FaultError",
    "Faults",
    "GPUGeekStatus",
    "Status",
    "TaskState",
    "builtin_workflows",
]
