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
(``GPUGEEK_BUILTIN_WORKFLOW_IDS``), API-format exports in ``genstudio_async/workflows/gpugeek/``.

Layout: a neutral core (``_core``, ``_state``: queue, workers, clock, faults, counters, object store, signer,
the shared HTTP pieces ``_endpoints``/``_admin``/``_storage``) and one layer per service: GenStudio's
(``_service``, ``_api``, ``_progress``, ``_workflows``) and GPUGeek's (``_gpugeek``, ``_gpugeek_api``,
``_gpugeek_workflows``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._deps import EmulatorDependencyError, require_server_dependencies

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use, below
    from ._faults import ENDPOINTS, FaultError, Faults
    from ._gpugeek import GPUGeekStatus
    from ._server import SERVICES, Emulator
    from ._service import Status
    from ._state import EmulatorError, TaskState
    from ._stats import EmulatorStats
    from ._workflows import builtin_workflows

    BUILTIN_WORKFLOW_IDS: tuple[str, ...]
    GPUGEEK_BUILTIN_WORKFLOW_IDS: tuple[int, ...]

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

# Where each public name lives. The server dependencies (the ``emulator`` extra) are checked when one of them is
# first used, with the install hint, not when the package is imported: ``genstudio --help`` reads the emulator's
# flag defaults from ``_defaults`` without starlette.
_EXPORTS = {
    "ENDPOINTS": "._faults",
    "FaultError": "._faults",
    "Faults": "._faults",
    "GPUGeekStatus": "._gpugeek",
    "SERVICES": "._server",
    "Emulator": "._server",
    "Status": "._service",
    "EmulatorError": "._state",
    "TaskState": "._state",
    "EmulatorStats": "._stats",
    "builtin_workflows": "._workflows",
}


def _builtin_ids(name: str) -> tuple[Any, ...]:
    if name == "BUILTIN_WORKFLOW_IDS":
        from ..workflows import builtin_workflow_ids

        #: The example workflows every GenStudio emulator knows unless told otherwise (the specs the SDK ships).
        return tuple(builtin_workflow_ids())
    from ..workflows import builtin_api_workflow_ids

    #: The example workflows every GPUGeek emulator knows unless told otherwise (the docs' API-format exports).
    return tuple(builtin_api_workflow_ids())


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in ("BUILTIN_WORKFLOW_IDS", "GPUGEEK_BUILTIN_WORKFLOW_IDS"):
            value = _builtin_ids(name)
        elif name in _EXPORTS:
            require_server_dependencies()
            value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
