"""The shared pace of a client's requests: one pause and a slower rate for a rate limit (AIMD), a ceiling when the
user gives one, nothing at all otherwise. Pure arithmetic on a fake clock: nothing sleeps."""

from __future__ import annotations

import asyncio

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
    for _ in range(int(slowed)):  # about a second of answers at that rate: + PACING_INCREASE requests/s
        pacer.succeeded()
    assert pacer.rate == pytest.approx(slowed + C.PACING_INCREASE, rel=0.05)
    clock.now += C.PACING_DECREASE_EVERY
    pacer.limited(1.0)
    assert pacer.rate == pytest.approx((slowed + C.PACING_INCREASE) * C.PACING_DECREASE, rel=0.05)


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

    async def short_sleep(seconds: float) -> None:  # the emulator's Retry-After is whole seconds; its bucket refills
        await asyncio.sleep(min(seconds, 0.05))  # in 10 ms: a shorter hold keeps the test fast, the pace is real

    monkeypatch.setattr(_http, "sleep", short_sleep)
    genstudio_emulator.set_faults(Faults(rate_limit=100.0, rate_limit_burst=5, endpoints=frozenset({"submit"})))
    jobs = [("wf-c73diz7kadp6ffgn", {"6": {"inputs": {"text": f"fox {n}"}}}) for n in range(60)]
    async with genstudio_emulator.client(use_websocket=False, poll_interval=0.02) as client:
        outcomes = [outcome async for outcome in client.run_many(jobs, concurrency=30, timeout=60)]
        pacer = client._http.pacer
    assert [outcome.error for outcome in outcomes if outcome.error is not None] == []
    assert genstudio_emulator.stats.submits == 60  # every job one task, none twice
    assert pacer.holds >= 1 and pacer.rate is not None  # the limit was met, and the client slowed down for it
    assert genstudio_emulator.stats.rate_limited < 60  # far fewer refusals than one per job
