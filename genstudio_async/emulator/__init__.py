"""A local GenStudio: the service's HTTP API, progress WebSocket and signed-URL storage, on loopback.

Install with ``pip install 'genstudio-async[emulator]'``. Use it from Python::

    from genstudio_async.emulator import Emulator, Faults

    async with Emulator(api_key="sk-emulator", workers=2) as emu:
        ...  # point a client at emu.base_url with emu.api_key
        emu.set_faults(Faults(ws_drop_after=2))
        print(emu.stats.submits)

or from a shell: ``python -m genstudio_async.emulator --port 8188 --api-key sk-emulator`` (also
``genstudio emulator``). The first line printed is ``GenStudio emulator listening on http://HOST:PORT``.

The docs' example workflows are registered (``BUILTIN_WORKFLOW_IDS``); their parameter specs ship in
``genstudio_async/emulator/workflows/*.json``.
"""

from __future__ import annotations

from ._deps import EmulatorDependencyError, require_server_dependencies

require_server_dependencies()

from ._faults import ENDPOINTS, FaultError, Faults  # noqa: E402
from ._server import Emulator  # noqa: E402
from ._state import EmulatorError, Status  # noqa: E402
from ._stats import EmulatorStats  # noqa: E402
from ._workflows import builtin_workflows  # noqa: E402

#: The example workflows every emulator knows unless told otherwise.
BUILTIN_WORKFLOW_IDS = ("wf-c73diz7kadp6ffgn", "wf-c73epllu4i3bxvzr", "wf-c72qozydy6suxesa")

__all__ = [
    "BUILTIN_WORKFLOW_IDS",
    "ENDPOINTS",
    "Emulator",
    "EmulatorDependencyError",
    "EmulatorError",
    "EmulatorStats",
    "FaultError",
    "Faults",
    "Status",
    "builtin_workflows",
]
