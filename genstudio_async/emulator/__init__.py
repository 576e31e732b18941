"""A local GenStudio: the service's HTTP API, progress WebSocket and signed-URL storage, on loopback.

Install with ``pip install 'genstudio-async[emulator]'``. Use it from Python::

    from genstudio_async.emulator import Emulator, Faults

    async with Emulator(api_key="sk-emulator", workers=2) as emu:
        ...  # point a client at emu.base_url with emu.api_key
        emu.set_faults(Faults(ws_drop_after=2))
        print(emu.stats.submits)

or from a shell: ``python -m genstudio_async.emulator --port 8188 --api-key sk-emulator`` (also
``genstudio emulator``). The first line printed is ``GenStudio emulator listening on http://HOST:PORT``.

The docs' example workflows are registered (``BUILTIN_WORKFLOW_IDS``); their parameter specs ship with the SDK
in ``genstudio_async/workflows/`` (read by ``genstudio_async.workflows``).

Layout: a neutral core (``_core``, ``_state``: queue, workers, clock, faults, counters, object store, signer,
the shared HTTP pieces ``_endpoints``/``_admin``/``_storage``) and a layer per service: GenStudio's
(``_service``, ``_api``, ``_progress``, ``_workflows``).
"""

from __future__ import annotations

from ._deps import EmulatorDependencyError, require_server_dependencies

require_server_dependencies()

from ..workflows import builtin_workflow_ids  # noqa: E402
from ._faults import ENDPOINTS, FaultError, Faults  # noqa: E402
from ._server import SERVICES, Emulator  # noqa: E402
from ._service import Status  # noqa: E402
from ._state import EmulatorError, TaskState  # noqa: E402
from ._stats import EmulatorStats  # noqa: E402
from ._workflows import builtin_workflows  # noqa: E402

#: The example workflows every emulator knows unless told otherwise (the specs the SDK ships).
BUILTIN_WORKFLOW_IDS = tuple(builtin_workflow_ids())
__all__ = [
    "BUILTIN_WORKFLOW_IDS",
    "ENDPOINTS",
    "SERVICES",
    "Emulator",
    "EmulatorDependencyError",
    "EmulatorError",
    "EmulatorStats",
    "FaultError",
    "Faults",
    "Status",
    "TaskState",
    "builtin_workflows",
]
