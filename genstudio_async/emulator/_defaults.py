"""The emulator's own defaults (the SDK's are in ``genstudio_async._constants``; the ``EMULATOR_*`` ones there,
older than this module, are the emulator's too and stay where code outside the emulator reads them).

Grouped like ``_constants``: one section per concern, each value with a comment saying why it is what it is.
"""

from __future__ import annotations

from typing import Final

# --- which service an emulator plays ---------------------------------------------------------------------------
# ``Emulator(service=...)``: GenStudio unless told otherwise.
SERVICE_GENSTUDIO: Final = "genstudio"
DEFAULT_SERVICE: Final = SERVICE_GENSTUDIO
