"""The emulator's wall clock, which tests may move forward.

Signed-URL expiry, prompt-token expiry and result retention are judged against this clock, so a test can
check "expired after 24 h" or "deleted after 3 days" with ``emu.advance_clock(...)`` instead of waiting.
Task timing (workers, progress steps) uses the event loop's own clock and is not affected.
"""

from __future__ import annotations

import time


class EmulatorClock:
    """Unix time plus an offset that only grows."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """The emulator's current Unix time in seconds."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        self._offset += seconds

    @property
    def offset(self) -> float:
        """How far ahead of real time the clock is, in seconds."""
        return self._offset
