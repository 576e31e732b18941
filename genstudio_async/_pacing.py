"""One pace for all of a client's requests: rate limits answered with one pause and a slower rate, not retries.

A batch of ten thousand tasks that meets a rate limit (HTTP 429) must not answer it with ten thousand separate
retries. ``Pacer`` is shared by every request of a client (submits, polls, cancels, uploads):

- a 429 holds back every request not yet sent until its ``Retry-After`` has passed (or the request loop's own
  back-off, when the server gives none);
- and it lowers the client's request rate multiplicatively (halved, at most once per second), from the rate it
  was sending at; each request that succeeds then raises it additively (by ``PACING_INCREASE`` requests per
  second per second): AIMD, as TCP does with its window. Requests are spaced at that rate.
- ``max_requests_per_second``, for a user who knows the account's limit, is a ceiling from the start.

Pacing only ever delays a request before it is sent; it never sends one again (the request loop's submit-safety
rule is untouched). With no limit met and no ceiling given, a request costs one comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import _constants as C


class Pacer:
    """The pace of one client's requests (see the module docstring). Pure arithmetic on a clock: the request
    loop asks ``delay()`` before each attempt and sleeps that long itself."""

    def __init__(self, max_per_second: float | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = max_per_second
        self.rate: float | None = max_per_second  # requests per second now; None: not paced
        self.holds = 0  # how many rate limits were met (for tests and benchmarks)
        self._clock = clock
        self._resume_at = 0.0  # no request starts before this (a Retry-After)
        self._next_at = 0.0  # the earliest start of the next request at ``rate``
        self._last_start = 0.0
        self._gap = 0.0  # a moving average of the time between request starts, for the rate at a 429
        self._last_decrease = float("-inf")

    def delay(self, *, unless_until: float = 0.0) -> float:
        """Seconds the next request must wait before it is sent, its place in the pace reserved.

        ``unless_until``: the end of a hold the caller set and has already slept through (its own 429).
        """
        now = self._clock()
        start = now
        if self._resume_at > unless_until:
            start = max(start, self._resume_at)
        if self.rate is not None:
            start = max(start, self._next_at)
            self._next_at = start + 1.0 / self.rate
        if self._last_start:
            self._gap += (start - self._last_start - self._gap) * C.PACING_GAP_SMOOTHING
        self._last_start = start
        return start - now

    def limited(self, hold_seconds: float) -> float:
        """A request was answered 429: hold every request for ``hold_seconds`` and lower the rate; when the hold
        ends."""
        now = self._clock()
        self.holds += 1
        self._resume_at = max(self._resume_at, now + max(hold_seconds, 0.0))
        if now - self._last_decrease >= C.PACING_DECREASE_EVERY:  # one burst of 429s is one decrease
            self._last_decrease = now
            sending = self.rate if self.rate is not None else (1.0 / self._gap if self._gap > 0 else None)
            if sending is not None:
                self.rate = max(C.PACING_MIN_RATE, sending * C.PACING_DECREASE)
                if self.ceiling is not None:
                    self.rate = min(self.rate, self.ceiling)
        return self._resume_at

    def succeeded(self) -> None:
        """A request was answered: the rate may grow again (by ``PACING_INCREASE`` per second of answers)."""
        rate = self.rate
        if rate is None or (self.ceiling is not None and rate >= self.ceiling):
            return
        rate += C.PACING_INCREASE / rate
        self.rate = min(rate, self.ceiling) if self.ceiling is not None else rate
