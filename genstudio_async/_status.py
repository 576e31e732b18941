"""``TaskStatus``: a task's status, the same for every service (each maps its own wire numbers onto it).

A module of its own, importing nothing heavy: the services' wire tables are built from it at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any


class TaskStatus(IntEnum):
    """A task's status. ``UNKNOWN`` stands for any number a service may add later (never terminal).

    The numbers are GenStudio's (1-5); each service maps its own wire numbers onto these (``from_wire``):
    GenStudio reports a cancelled task as 4 (``FAILED``), GPUGeek as 5, which is ``CANCELLED`` here, not
    ``PERMISSION_DENIED`` (GenStudio's 5).
    """

    UNKNOWN = 0
    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4  # GenStudio uses 4 for "failed" and for "cancelled by the user" alike
    PERMISSION_DENIED = 5
    CANCELLED = 6  # GPUGeek's 5 (this SDK's own number: no service sends 6)

    @property
    def is_terminal(self) -> bool:
        """True for the statuses after which a task never changes again. ``UNKNOWN`` is never terminal."""
        return self in _TERMINAL_STATUSES

    @classmethod
    def from_wire(cls, value: Any, statuses: Mapping[int, TaskStatus]) -> TaskStatus:
        """The status a service's wire number ``value`` stands for in its table ``statuses``; ``UNKNOWN`` for
        anything else (a number it added later, a string, ``None``), never an error."""
        if isinstance(value, TaskStatus):
            return value
        if isinstance(value, bool):
            return cls.UNKNOWN
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            return cls.UNKNOWN
        return statuses.get(number, cls.UNKNOWN)

    @classmethod
    def parse(cls, value: Any) -> TaskStatus:
        """The status for one of this SDK's numbers (GenStudio's); anything else is ``UNKNOWN``, never an error."""
        return cls.from_wire(value, _BY_NUMBER)


_BY_NUMBER: Mapping[int, TaskStatus] = {status.value: status for status in TaskStatus}
_TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.PERMISSION_DENIED, TaskStatus.CANCELLED}
)
