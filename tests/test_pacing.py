"""The shared pace of a client's requests: one pause and a slower rate for a rate limit (AIMD), a ceiling when the
user gives one, nothing at all otherwise. Pure arithmetic on a fake clock: nothing sleeps."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from genstudio_async import AsyncGenStudio, AsyncGPUGeek, ConfigurationError
from genstudio_async import _constants as C
from genstudio_async._pacing import Pacer
from genstudio_async.emulator import Emulator, Faults


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_a_limit_nothing_waits() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    for _ in range(100):
        assert pacer.delay() == 0.0
        pacer.succeeded()
        clock.now += 0.001
    assert pacer.rate is None


def test_a_ceiling_spaces_the_requests() -> None:
    clock = Clock()
    pacer = Pacer(10.0, clock=clock)
    delays = [pacer.delay() for _ in range(5)]  # five requests asked for at one instant
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    for _ in range(1000):
        pacer.succeeded()
    assert pacer.rate == 10.0  # successes never raise it past the ceiling


def test_a_rate_limit_holds_everyone_then_halves_the_rate_and_successes_raise_it_again() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    for _ in range(50):  # sending at about 100 requests a second
        pacer.delay()
        clock.now += 0.01
    held_until = pacer.limited(2.0)
    assert pacer.rate is not None and pacer.rate == pytest.approx(100 * C.PACING_DECREASE, rel=0.05)
    assert pacer.delay() == pytest.approx(2.0)  # another request waits out the hold ...
    # ... and the one that met the limit, which slept through the hold itself, waits only for its place in the pace
    assert pacer.delay(unless_until=held_until) == pytest.approx(2.0 + 1 / pacer.rate)
    slowed: float = pacer.rate
    for _ in range(5):  # the other 429s of the same burst: one decrease
        pacer.limited(2.0)
    assert pacer.rate == slowed and pacer.holds == 6
    clock.now += 10
    for _ in range(int(slowed)):  # about a second of answers at that rate, at half the limit: + PACING_GROWTH
        pacer.succeeded()
    grown = slowed * (1 + C.PACING_GROWTH)
    assert pacer.rate == pytest.approx(grown, rel=0.05)
    clock.now += C.PACING_DECREASE_EVERY
    pacer.limited(1.0)
    assert pacer.rate == pytest.approx(grown * C.PACING_DECREASE, rel=0.05)


def test_after_a_storm_the_rate_climbs_back_fast_and_a_quiet_minute_ends_the_pacing() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    for _ in range(600):  # 600 requests a second answered, then a storm of 429s lowers the rate four times
        pacer.delay()
        pacer.succeeded()
        clock.now += 1 / 600
    for _ in range(4):
        pacer.limited(1.0)
        clock.now += C.PACING_DECREASE_EVERY
    assert pacer.rate == pytest.approx(600 * C.PACING_DECREASE**4, rel=0.05)
    seconds = 0
    while pacer.rate is not None and pacer.rate < 0.9 * 600 and seconds < 60:  # a second of answers at a time
        for _ in range(int(pacer.rate)):
            pacer.succeeded()
        seconds += 1
    assert seconds <= 15  # doubling, then +25 % a second: not 500 s at +1/s
    clock.now += C.PACING_FORGET_AFTER
    pacer.succeeded()
    assert pacer.rate is None and pacer.delay() == 0.0


def test_one_burst_of_429s_is_one_decrease_and_a_429_sent_after_it_is_another() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    sent = []
    for _ in range(30):  # a burst sent at once, before any answer: its starts say nothing of the server's limit
        pacer.delay()
        sent.append(pacer.now())
        clock.now += 0.0001
    pacer.limited(0.05, sent_at=sent[0])
    first = pacer.rate
    assert first is not None
    for at in sent[1:]:  # the rest of the same burst, refused too: sent at the old rate, no new news
        pacer.limited(0.05, sent_at=at)
    assert pacer.rate == first and pacer.holds == 30
    clock.now += 0.05
    pacer.delay()
    again = pacer.now()  # sent at the lower rate, and refused still: lowered again, without waiting a second
    clock.now += 0.001
    pacer.limited(0.05, sent_at=again)
    assert pacer.rate == pytest.approx(first * C.PACING_DECREASE)


def test_first_limit_after_answers_is_measured_by_the_answers() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    for _ in range(200):  # 200 requests a second answered over a second ...
        pacer.delay()
        pacer.succeeded()
        clock.now += 1 / 200
    pacer.limited(1.0, sent_at=pacer.now())
    assert pacer.rate == pytest.approx(200 * C.PACING_DECREASE, rel=0.05)  # ... halved, AIMD's decrease


def test_a_place_given_up_before_sending_goes_back() -> None:
    clock = Clock()
    pacer = Pacer(10.0, clock=clock)
    assert pacer.delay() == 0.0
    waits = [pacer.delay() for _ in range(100)]  # a hundred callers queue up ...
    assert waits[-1] == pytest.approx(10.0)
    for wait in waits:  # ... and are cancelled before they send, the first in line first
        pacer.refund(clock.now + wait)
    assert pacer.delay() == pytest.approx(0.1)  # the next one waits its own place, not the abandoned ones'


def test_no_place_is_given_to_two_requests() -> None:
    clock = Clock()
    pacer = Pacer(10.0, clock=clock)
    places = [clock.now + pacer.delay() for _ in range(5)]  # 0.0, 0.1, ... 0.4
    pacer.refund(places[1])  # one in the middle of the line is cancelled: its place goes to the next caller
    later = [clock.now + pacer.delay() for _ in range(2)]
    assert later == [pytest.approx(places[0] + 0.1), pytest.approx(places[0] + 0.5)]
    assert len({round(place, 6) for place in [*places, *later]}) == len(places) + 1  # every live place apart
    clock.now += 1.0
    pacer.limited(1.0, sent_at=clock.now)  # a new burst of 429s voids the places reserved: nothing given back
    assert pacer.delay() == pytest.approx(1.0)  # the hold, then the slower pace from there
    assert pacer.delay() == pytest.approx(1.0 + 1 / pacer.rate)  # type: ignore[operator]


def test_the_rate_never_falls_below_its_floor() -> None:
    clock = Clock()
    pacer = Pacer(1.0, clock=clock)
    for _ in range(20):
        pacer.limited(0.0)
        clock.now += C.PACING_DECREASE_EVERY
    assert pacer.rate == C.PACING_MIN_RATE


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), True, "10"])
def test_max_requests_per_second_must_be_a_positive_number(value: object) -> None:
    for client in (AsyncGenStudio, AsyncGPUGeek):
        with pytest.raises(ConfigurationError, match="max_requests_per_second"):
            client("sk-pace-0123456789", base_url="https://x.test", max_requests_per_second=value)  # type: ignore[arg-type]


@pytest.mark.genstudio_emulator(workers=8, steps=1, step_seconds=0.001)
async def test_a_batch_against_a_rate_limit_completes_without_a_rate_limit_error(
    genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genstudio_async import _http

    parse_retry_after = _http.parse_retry_after

    def short_retry_after(headers: httpx.Headers) -> float | None:  # the emulator's Retry-After is whole seconds;
        seconds = parse_retry_after(headers)  # its bucket refills in 10 ms: a shorter hold keeps the test fast, and
        return None if seconds is None else min(seconds, 0.05)  # every sleep (hold, pace) stays real

    monkeypatch.setattr(_http, "parse_retry_after", short_retry_after)
    monkeypatch.setattr(_http, "sleep", asyncio.sleep)  # the suite's recorded sleep would skip the pace: a real one
    genstudio_emulator.set_faults(Faults(rate_limit=100.0, rate_limit_burst=5, endpoints=frozenset({"submit"})))
    jobs = [("wf-c73diz7kadp6ffgn", {"6": {"inputs": {"text": f"fox {n}"}}}) for n in range(60)]
    async with genstudio_emulator.client(use_websocket=False, poll_interval=0.02) as client:
        outcomes = [outcome async for outcome in client.run_many(jobs, concurrency=30, timeout=60)]
        pacer = client._http.pacer
    assert [outcome.error for outcome in outcomes if outcome.error is not None] == []
    assert genstudio_emulator.stats.submits == 60  # every job one task, none twice
    assert pacer.holds >= 1 and pacer.rate is not None  # the limit was met, and the client slowed down for it
    assert genstudio_emulator.stats.rate_limited < 60  # far fewer refusals than one per job
