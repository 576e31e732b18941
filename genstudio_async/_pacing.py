"""One pace for all of a client's requests: rate limits answered with one pause and a slower rate, not retries.

A batch of ten thousand tasks that meets a rate limit (HTTP 429) must not answer it with ten thousand separate
retries. ``Pacer`` is shared by every request of a client (submits, polls, cancels, uploads):

- a 429 holds back every request not yet sent until its ``Retry-After`` has passed (or the request loop's own
  back-off, when the server gives none);
- and it lowers the client's request rate multiplicatively (by ``PACING_DECREASE``, once per burst of 429s),
  from the rate it was sending at (at the first limit: the rate the last second's requests were answered at);
  answered requests then raise it again, doubling each second while it is below ``PACING_DECREASE`` of the rate the
  server was seen to answer, then by ``PACING_GROWTH`` a second (AIMD with a slow start, as TCP does with its
  window), and ``PACING_FORGET_AFTER`` s without a limit end the pacing. Requests are spaced at that rate: each
  takes a place in line, a request refused takes its new place at once, a new burst of 429s voids the places
  taken (their requests take new ones, at the new rate), and a request given up before it is sent gives its place
  back. No place is ever given to two requests.
- ``max_requests_per_second``, for a user who knows the account's limit, is a ceiling from the start.

Pacing only ever delays a request before it is sent; it never sends one again (the request loop's submit-safety
rule is untouched). With no limit met and no ceiling given, a request costs a few comparisons and the note of its
start and answer in the last second's window (what a first limit is measured against).
"""

from __future__ import annotations

import collections
import heapq
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
        self._last_decrease = float("-inf")
        self._last_limited = float("-inf")
        self._limit_seen = 0.0  # the rate requests were sent at when a limit was first met
        # Before the first limit: when requests started and were answered in the last PACING_DECREASE_EVERY s.
        self._starts: collections.deque[float] = collections.deque()
        self._answers: collections.deque[float] = collections.deque()
        # How many times the places reserved so far were voided (a new burst of 429s: a hold, a lower rate): a
        # request that slept its place through one takes a new place, without giving the old one back.
        self.hold_count = 0
        self._free: list[float] = []  # a heap of places given back before their time (a request cancelled)

    def delay(self, *, unless_until: float = 0.0) -> float:
        """Seconds the next request must wait before it is sent, its place in the pace reserved.

        ``unless_until``: the end of a hold the caller set and has already slept through (its own 429).
        """
        now = self._clock()
        start = now
        if self._resume_at > unless_until:
            start = max(start, self._resume_at)
        if self.rate is not None:
            while self._free and self._free[0] < start:  # a place given back whose time has passed: gone
                heapq.heappop(self._free)
            if self._free:  # a place given back, still to come: taken before a new one
                return heapq.heappop(self._free) - now
            start = max(start, self._next_at)
            self._next_at = start + 1.0 / self.rate
        else:
            _remember(self._starts, start)
        return start - now

    def now(self) -> float:
        """The pacer's clock, for a ``sent_at``."""
        return self._clock()

    def limited(self, hold_seconds: float, *, sent_at: float | None = None) -> float:
        """A request was answered 429: hold every request for ``hold_seconds`` and lower the rate; when the hold
        ends.

        One burst of 429s is one decrease: ``sent_at`` (``now()`` when the refused request was sent) before the
        last decrease means it was sent at the old rate, so its 429 says nothing new; sent after it, the lower
        rate was still too high, and it is lowered again. Without ``sent_at``, at most one decrease every
        ``PACING_DECREASE_EVERY`` s.
        """
        now = self._clock()
        self.holds += 1
        self._last_limited = now
        fresh = (
            sent_at >= self._last_decrease if sent_at is not None
            else now - self._last_decrease >= C.PACING_DECREASE_EVERY
        )
        if now + hold_seconds > self._resume_at:
            self._resume_at = now + max(hold_seconds, 0.0)
        if fresh:
            self._last_decrease = now
            self.hold_count += 1  # the places reserved so far are void: their requests take new ones
            self._free.clear()
            self._next_at = min(self._next_at, now)
            sending = self.rate
            if sending is None:  # the first limit met: measured by the requests answered (or sent) lately
                sent, self._limit_seen = self._measured_rates()
                sending = self._limit_seen or sent
            if sending is not None:
                self.rate = max(C.PACING_MIN_RATE, sending * C.PACING_DECREASE)
                if self.ceiling is not None:
                    self.rate = min(self.rate, self.ceiling)
        return self._resume_at

    def _measured_rates(self) -> tuple[float | None, float]:
        """Requests per second sent, and answered, over the last ``PACING_DECREASE_EVERY`` s: from the oldest
        start in that window to now, so a burst sent at once and refused a round trip later is measured by what it
        achieved (N requests a round trip), not by its instant starts. ``(None, 0.0)``: nothing sent lately."""
        now = self._clock()
        for times in (self._starts, self._answers):
            while times and now - times[0] > C.PACING_DECREASE_EVERY:
                times.popleft()
        if not self._starts:
            return None, 0.0
        window = max(now - self._starts[0], 1e-3)
        return len(self._starts) / window, len(self._answers) / window

    def refund(self, place: float) -> None:
        """The request whose place starts at ``place`` (``now() + delay()``) was given up before it was sent (its
        caller was cancelled): the place goes back, to the next request that asks, so requests given up never hold
        the live ones back, and no place is ever given to two requests."""
        if self.rate is None:
            return
        if abs(place + 1.0 / self.rate - self._next_at) < 1e-9:  # the last place reserved: the pace steps back
            self._next_at = max(self._clock(), place)
        elif place > self._clock():
            heapq.heappush(self._free, place)

    def succeeded(self) -> None:
        """A request was answered: the rate grows again, fast (doubling per second of answers) while it is below
        half the rate a limit was first met at, then by ``PACING_GROWTH`` a second; after ``PACING_FORGET_AFTER``
        s without a limit, pacing stops (down to the ceiling, if one was given)."""
        now = self._clock()
        if self.rate is None:  # what a first limit is measured against
            _remember(self._answers, now)
        rate = self.rate
        if rate is None or (self.ceiling is not None and rate >= self.ceiling):
            return
        if now - self._last_limited >= C.PACING_FORGET_AFTER:
            self.rate = self.ceiling
            return
        per_second = 2.0 if rate < self._limit_seen * C.PACING_DECREASE else 1.0 + C.PACING_GROWTH
        rate = max(rate * per_second ** (1.0 / rate), rate + C.PACING_INCREASE / rate)
        self.rate = min(rate, self.ceiling) if self.ceiling is not None else rate


def _remember(times: collections.deque[float], now: float) -> None:
    """Add ``now`` to a window of times, dropping those older than ``PACING_DECREASE_EVERY`` s."""
    times.append(now)
    while now - times[0] > C.PACING_DECREASE_EVERY:
        times.popleft()
