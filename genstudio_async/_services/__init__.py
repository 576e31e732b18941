"""One module per hosted service: its wire, and what it can do (see ``_base.Service``).

- ``genstudio``: GenStudio (HTTP + a progress WebSocket; many ids per status request);
- ``gpugeek``: GPUGeek (HTTP only; one task per status request; whole-workflow prompts).
"""

from ._base import Environment, ProgressSocket, Service, TaskQuery
from .genstudio import GenStudio
from .gpugeek import GPUGeek

__all__ = ["Environment", "GPUGeek", "GenStudio", "ProgressSocket", "Service", "TaskQuery"]
