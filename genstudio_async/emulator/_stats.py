"""Counters of what the emulator served, for tests and benchmarks (``emu.stats``, ``GET /_emulator/stats``)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EmulatorStats:
    """Live counters. Read them at any time; ``snapshot()`` gives a JSON-ready copy, ``reset()`` zeroes them.

    ``requests`` counts every request by endpoint name, whatever its answer: GenStudio's ``submit``,
    ``task_info``, ``cancel``, ``upload``, ``progress_ws``; GPUGeek's ``submit``, ``task``, ``cancel``,
    ``presign``, ``commit``, ``upload_put``; and ``storage`` (result downloads), ``admin``, ``other``.

    ``task_info_requests`` counts status requests (one GPUGeek ``GET /api/v1/task/{id}`` is one, asking for one
    id); ``uploads`` counts images stored (GenStudio's ``upload/image``, GPUGeek's PUTs), ``commits`` GPUGeek's
    commits that succeeded.
    """

    submits: int = 0
    task_info_requests: int = 0
    task_ids_requested: int = 0
    cancels: int = 0
    uploads: int = 0
    commits: int = 0
    unauthorized: int = 0
    http_errors_injected: int = 0
    rate_limited: int = 0
    ws_connections_opened: int = 0
    ws_connections_open: int = 0
    ws_connections_peak: int = 0  # the most progress sockets open at once
    ws_handshakes_refused: int = 0
    ws_frames_sent: int = 0
    ws_connections_dropped: int = 0
    storage_downloads: int = 0
    storage_requests_refused: int = 0
    storage_requests_with_authorization: int = 0
    requests: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        """A plain-dict copy of every counter."""
        values = dataclasses.asdict(self)
        values["requests"] = dict(self.requests)
        return values

    def reset(self) -> None:
        """Zero every counter except ``ws_connections_open``, which tracks sockets still open."""
        still_open = self.ws_connections_open  # (and the peak starts again from what is open now)
        for item in dataclasses.fields(self):
            if item.name == "requests":
                self.requests.clear()
            else:
                setattr(self, item.name, 0)
        self.ws_connections_open = still_open
        self.ws_connections_peak = still_open
