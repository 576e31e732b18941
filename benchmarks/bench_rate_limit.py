"""Benchmark 7 (``ratelimit``): a batch of 2,000 jobs against the emulator's ``rate_limit`` fault on submits, by the
SDK's ``run_many`` (its defaults: WebSocket streams; and polled) and by a bare httpx client beside it.

    python benchmarks/bench_rate_limit.py [--jobs 2000] [--rate 100] [--burst 10] [--concurrency 200]
    python benchmarks/run.py --only ratelimit --write     # the same, written to RESULTS.md

Issue 12's "shared rate control" done-when: every job completes, the emulator counts at most 1.2× the minimum
number of requests the limit allows (one submit per job: 2,000), and no job fails with ``RateLimitError``.

Each variant gets a fresh emulator in its own process (``EmulatorProcess``), started with ``--fault
rate_limit=R --fault rate_limit_burst=B --fault endpoints=submit``: a token bucket of B tokens refilled at R a
second in front of the submit endpoint; a submit over it is answered 429 with ``Retry-After`` (whole seconds, at
least 1, as the emulator rounds up). The emulator has one worker per job in flight and short tasks (``--steps`` ×
``--step-seconds``), so the only thing that holds the batch back is the limit: ``--concurrency`` jobs in flight
would submit far faster than R a second.

- ``sdk``: ``AsyncGenStudio`` with its defaults, ``client.run_many(jobs, concurrency=...)``, every outcome counted;
- ``sdk-poll``: the same with ``use_websocket=False`` (the shared poller; ``get_task_info`` is not limited);
- ``bare``: a plain ``httpx.AsyncClient`` and ``websockets``, the same number of workers, each submit retried
  after its 429's ``Retry-After`` (no shared pacing, no jitter), then one socket per task to its terminal status.
  It has a deadline (``--bare-deadline-factor`` × the floor): what it completed by then is what it completed.

Per variant: jobs completed, errors by type, the submit requests the emulator counted (its ``requests["submit"]``,
every answer) and how many it refused (``rate_limited``), their ratio to the minimum (one per job), the wall time
against the floor the limit allows ((jobs - burst) / rate), and for the SDK the pacer's rate over the run (sampled
every ``--sample-interval`` s from ``client._http.pacer``, a private attribute: the benchmark reads it, nothing
else does) and at the end. The emulator's counters are sampled at the same moments, so the notes give the refused
submits second by second: where the extra requests went.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from websockets.asyncio.client import connect

from benchmarks._support import (
    API_KEY,
    T2I,
    EmulatorProcess,
    Figure,
    Report,
    base_parser,
    cpu_seconds,
    judged,
    parse_args,
    progress_url,
    run_benchmark,
)
from genstudio_async import AsyncGenStudio, RateLimitError
from genstudio_async import _constants as C
from genstudio_async._services import genstudio as GS

TERMINAL = frozenset({3, 4, 5})
SUCCEEDED = 3
VARIANTS = {
    "sdk": "SDK run_many (WebSocket)",
    "sdk-poll": "SDK run_many (polled)",
    "bare": "bare httpx, each 429 retried after Retry-After",
}
#: The done-when's bound on submit requests counted / the minimum.
GOAL_RATIO = 1.2


@dataclass
class Sample:
    """One look at the run: seconds since it started, the emulator's counters, the SDK pacer's state."""

    at: float
    submit_requests: int
    rate_limited: int
    pacer_rate: float | None = None
    pacer_holds: int = 0


@dataclass
class Variant:
    """What one variant measured."""

    key: str
    jobs: int
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    submit_requests: int = 0
    rate_limited: int = 0
    accepted_submits: int = 0
    deadline_hit: bool = False
    pacer_rate: float | None = None
    pacer_holds: int = 0
    samples: list[Sample] = field(default_factory=list)
    trace: PacerTrace | None = None

    @property
    def label(self) -> str:
        return VARIANTS[self.key]

    @property
    def ratio(self) -> float:
        return self.submit_requests / self.jobs if self.jobs else math.nan


@dataclass
class Refusal:
    """One 429 as the SDK's pacer saw it (its clock): when it came, when its request was sent, the rate before
    and after, and the end of the hold."""

    at: float
    sent_at: float | None
    rate_before: float | None
    rate_after: float | None
    hold_until: float


@dataclass
class PacerTrace:
    """What the SDK's pacer did, recorded by wrapping two of its methods on the client's instance: each request's
    send time (``now()``, read just before a request is sent) and each 429 (``limited``)."""

    started: float
    sends: list[float] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    #: The start of every place in the pace handed out (``delay()``'s answer, when it made a request wait).
    places: list[float] = field(default_factory=list)

    @classmethod
    def install(cls, pace: Any) -> PacerTrace:
        trace = cls(started=pace.now())
        now, limited, delay = pace.now, pace.limited, pace.delay

        def traced_delay(**kwargs: float) -> float:
            wait: float = delay(**kwargs)
            if wait > 0:
                trace.places.append(round(now() + wait, 6))
            return wait

        def traced_now() -> float:
            moment: float = now()
            trace.sends.append(moment)
            return moment

        def traced_limited(hold_seconds: float, *, sent_at: float | None = None) -> float:
            before = pace.rate
            at = now()
            until: float = limited(hold_seconds, sent_at=sent_at)
            trace.refusals.append(Refusal(at, sent_at, before, pace.rate, until))
            return until

        setattr(pace, "now", traced_now)  # noqa: B010 - an instance attribute over the method, for the probe
        setattr(pace, "limited", traced_limited)  # noqa: B010
        setattr(pace, "delay", traced_delay)  # noqa: B010
        return trace

    def summary(self, limit: float) -> str:
        """Where the extra requests went: 429s while the rate was still coming down from the first measure, 429s
        of requests sent at a rate above the limit later on, and those sent at or below it; the decreases; the time
        held; the busiest 1 s of sends."""
        refusals = self.refusals
        decreases = [r for r in refusals if r.rate_after != r.rate_before]
        first_below = next((r.at for r in decreases if r.rate_after is not None and r.rate_after <= limit), None)
        descent = [r for r in refusals if first_below is None or r.at <= first_below]
        later = [r for r in refusals if first_below is not None and r.at > first_below]
        above = [r for r in later if r.rate_before is not None and r.rate_before > limit]
        held = 0.0
        until = -math.inf
        for r in refusals:  # the union of the holds
            start = max(r.at, until)
            if r.hold_until > start:
                held += r.hold_until - start
                until = r.hold_until
        busiest, start = 0, 0
        for end in range(len(self.sends)):
            while self.sends[end] - self.sends[start] > 1.0:
                start += 1
            busiest = max(busiest, end - start + 1)
        low = min((r.rate_after for r in decreases[1:] if r.rate_after is not None), default=math.nan)
        steps = " → ".join(f"{r.rate_after:.0f}" for r in decreases if r.rate_after is not None)
        when = "" if first_below is None else f" (at {first_below - self.started:.1f} s)"
        shared = Counter(self.places)
        crowded = sorted((count for count in shared.values() if count > 1), reverse=True)
        return (f"{len(self.sends):,} submits sent, {len(refusals):,} refused; {len(descent)} of the 429s came while "
                f"the rate came down from its first measure to the limit{when}, {len(later)} after it ({len(above)} of "
                f"requests sent at a rate above {limit:g}/s, {len(later) - len(above)} at or below it); "
                f"{len(decreases)} decreases ({steps}), the lowest after the first {low:.1f}/s; held (no request "
                f"sent) {held:.1f} s in all; the busiest second sent {busiest} submits; {sum(crowded)} of "
                f"{len(self.places):,} places in the pace handed to more than one request (the most crowded: "
                f"{', '.join(map(str, crowded[:5])) or 'none'} requests on one place)")


def floor_seconds(args: argparse.Namespace) -> float:
    """The shortest wall time the limit allows for ``--jobs`` submits: the burst at once, the rest at the rate."""
    return float(max(args.jobs - args.burst, 0) / args.rate)


@contextlib.asynccontextmanager
async def limited_emulator(args: argparse.Namespace) -> AsyncIterator[EmulatorProcess]:
    faults = [f"rate_limit={args.rate:g}", f"rate_limit_burst={args.burst}", "endpoints=submit"]
    extra = [part for fault in faults for part in ("--fault", fault)]
    async with EmulatorProcess(workers=args.concurrency, steps=args.steps, step_seconds=args.step_seconds,
                               stamp_snapshots=False, extra=extra) as emulator:
        yield emulator


async def sample(emulator: EmulatorProcess, started: float, interval: float, samples: list[Sample],
                 pacer: Callable[[], tuple[float | None, int]] | None) -> None:
    """Every ``interval`` s: the emulator's submit counters and (SDK) the pacer's rate and holds."""
    while True:
        stats = await emulator.stats()
        rate, holds = pacer() if pacer is not None else (None, 0)
        samples.append(Sample(at=time.perf_counter() - started, submit_requests=int(stats["requests"].get("submit", 0)),
                              rate_limited=int(stats["rate_limited"]), pacer_rate=rate, pacer_holds=holds))
        await asyncio.sleep(interval)


async def measured(variant: Variant, emulator: EmulatorProcess, args: argparse.Namespace,
                   body: Callable[[], Awaitable[None]], pacer: Callable[[], tuple[float | None, int]] | None,
                   deadline: float | None = None) -> None:
    """Run ``body`` (the variant's whole batch) with the sampler beside it, then read the emulator's counters."""
    started = time.perf_counter()
    cpu_started = cpu_seconds()
    sampler = asyncio.create_task(sample(emulator, started, args.sample_interval, variant.samples, pacer))
    try:
        if deadline is None:
            await body()
        else:
            try:
                await asyncio.wait_for(body(), deadline)
            except TimeoutError:
                variant.deadline_hit = True
    finally:
        variant.wall_s = time.perf_counter() - started
        variant.cpu_s = cpu_seconds() - cpu_started
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    stats = await emulator.stats()
    variant.submit_requests = int(stats["requests"].get("submit", 0))
    variant.rate_limited = int(stats["rate_limited"])
    variant.accepted_submits = int(stats["submits"])
    if pacer is not None:
        variant.pacer_rate, variant.pacer_holds = pacer()
    variant.samples.append(Sample(at=variant.wall_s, submit_requests=variant.submit_requests,
                                  rate_limited=variant.rate_limited, pacer_rate=variant.pacer_rate,
                                  pacer_holds=variant.pacer_holds))


async def run_sdk(args: argparse.Namespace, *, use_websocket: bool) -> Variant:
    variant = Variant(key="sdk" if use_websocket else "sdk-poll", jobs=args.jobs)
    errors: Counter[str] = Counter()
    async with limited_emulator(args) as emulator, AsyncGenStudio(
        api_key=API_KEY, base_url=emulator.base_url, use_websocket=use_websocket
    ) as client:
        pace = client._http.pacer  # private: read for the figures only
        variant.trace = PacerTrace.install(pace)

        def pacer() -> tuple[float | None, int]:
            return pace.rate, pace.holds

        async def batch() -> None:
            jobs = [(T2I, None)] * args.jobs
            async for outcome in client.run_many(jobs, concurrency=args.concurrency):
                if outcome.error is None and outcome.result is not None and outcome.result.status == SUCCEEDED:
                    variant.completed += 1
                else:
                    errors[type(outcome.error).__name__ if outcome.error is not None else "not succeeded"] += 1

        await measured(variant, emulator, args, batch, pacer, deadline=args.sdk_deadline)
    variant.errors = dict(errors)
    return variant


async def run_bare(args: argparse.Namespace) -> Variant:
    variant = Variant(key="bare", jobs=args.jobs)
    errors: Counter[str] = Counter()
    async with limited_emulator(args) as emulator, httpx.AsyncClient(
        base_url=emulator.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60, trust_env=False
    ) as api:
        pending = iter(range(args.jobs))

        async def submit() -> dict[str, str]:
            while True:
                response = await api.post(GS.SUBMIT_PATH, json={"workflow_id": T2I})
                if response.status_code == 429:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                response.raise_for_status()
                data: dict[str, str] = response.json()["data"]
                return data

        async def follow(task: dict[str, str]) -> int:
            async with connect(progress_url(emulator.base_url, task["prompt_token"]), proxy=None,
                               compression=None) as ws:
                async for frame in ws:
                    status = int(json.loads(frame)["comfy_task_info"]["status"])
                    if status in TERMINAL:
                        return status
            return 0

        async def worker() -> None:
            for _ in pending:
                try:
                    status = await follow(await submit())
                except Exception as exc:  # noqa: BLE001 - a benchmark counts what each job met
                    errors[type(exc).__name__] += 1
                    continue
                if status == SUCCEEDED:
                    variant.completed += 1
                else:
                    errors[f"status {status}"] += 1

        async def batch() -> None:
            workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
            try:
                await asyncio.gather(*workers)
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

        await measured(variant, emulator, args, batch, None, deadline=args.bare_deadline_factor * floor_seconds(args))
    unfinished = args.jobs - variant.completed - sum(errors.values())
    if unfinished:
        errors["not finished by the deadline"] += unfinished
    variant.errors = dict(errors)
    return variant


def per_second(variant: Variant) -> list[tuple[int, int, int, float | None]]:
    """Second by second: (second, submits the emulator answered 2xx, answered 429, the pacer's rate at its end)."""
    rows = []
    samples = variant.samples
    second = 1
    previous = Sample(at=0.0, submit_requests=0, rate_limited=0)
    for index, current in enumerate(samples):
        last = index == len(samples) - 1
        if current.at < second and not last:
            continue
        requests = current.submit_requests - previous.submit_requests
        refused = current.rate_limited - previous.rate_limited
        rows.append((second, requests - refused, refused, current.pacer_rate))
        previous = current
        second = math.floor(current.at) + 1
    return rows


def timeline(variant: Variant) -> str:
    """The per-second counts as one line: ``accepted/refused`` (and ``@rate``) per second."""
    parts = []
    for second, accepted, refused, rate in per_second(variant):
        shown = f"{second}: {accepted}/{refused}"
        if rate is not None:
            shown += f" @{rate:.0f}"
        parts.append(shown)
    return "; ".join(parts)


def show(variant: Variant, floor: float) -> str:
    errors = ", ".join(f"{kind} ×{count}" for kind, count in sorted(variant.errors.items())) or "none"
    pacer = "" if variant.key == "bare" else (
        f"; pacer rate at the end {variant.pacer_rate:.1f}/s" if variant.pacer_rate is not None else
        "; pacer not pacing at the end")
    return (f"  {variant.label}: {variant.completed}/{variant.jobs} in {variant.wall_s:.1f} s "
            f"({variant.wall_s / floor:.2f}× the floor); submits counted {variant.submit_requests} "
            f"({variant.ratio:.2f}× the minimum), "
            f"{variant.rate_limited} refused (429); errors: {errors}{pacer}")


def results_table(variants: list[Variant], floor: float) -> list[str]:
    rows = [
        "| client | completed | errors | submit requests counted | of them 429 | / minimum | wall s | / floor | "
        "client CPU s | pacer rate at the end, /s | pacer holds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        errors = "; ".join(f"{kind} ×{count}" for kind, count in sorted(v.errors.items())) or "none"
        rate = "n/a" if v.key == "bare" else ("not pacing" if v.pacer_rate is None else f"{v.pacer_rate:.1f}")
        holds = "n/a" if v.key == "bare" else str(v.pacer_holds)
        rows.append(f"| {v.label} | {v.completed:,}/{v.jobs:,} | {errors} | {v.submit_requests:,} | "
                    f"{v.rate_limited:,} | {v.ratio:.2f}× | {v.wall_s:.1f} | {v.wall_s / floor:.2f}× | "
                    f"{v.cpu_s:.1f} | {rate} | {holds} |")
    return rows


def judge(report: Report, variant: Variant) -> None:
    name = variant.label
    report.add(judged(f"{name}: jobs completed", variant.completed, f"of {variant.jobs}", ">=", variant.jobs))
    report.add(judged(f"{name}: jobs failed with RateLimitError", variant.errors.get(RateLimitError.__name__, 0), "",
                      "==", 0))
    report.add(judged(f"{name}: submit requests counted / minimum", round(variant.ratio, 3), "×", "<=", GOAL_RATIO))


async def run(args: argparse.Namespace, report: Report) -> None:
    floor = floor_seconds(args)
    variants: list[Variant] = []
    for key in args.variants:
        variant = await (run_bare(args) if key == "bare" else run_sdk(args, use_websocket=key == "sdk"))
        print(show(variant, floor), flush=True)
        variants.append(variant)
    for variant in variants:
        if variant.key != "bare":
            judge(report, variant)
    for variant in variants:
        report.add(Figure(name=f"{variant.label}: wall time / the floor the limit allows",
                          value=round(variant.wall_s / floor, 2), unit="×"))
    report.tables.append(["### The batch, by client", "", *results_table(variants, floor)])
    report.note(
        f"{args.jobs:,} jobs of the docs' text-to-image workflow, {args.concurrency} in flight at once (run_many's "
        f"concurrency, and the bare client's workers); the emulator's rate_limit fault on the submit endpoint only: "
        f"{args.rate:g} requests/s, a burst of {args.burst} (Retry-After in whole seconds, at least 1); "
        f"{args.concurrency} emulator workers, {args.steps} steps of {args.step_seconds:g} s per task, so "
        f"{args.concurrency} jobs in flight could submit about "
        f"{args.concurrency / (args.steps * args.step_seconds):,.0f} a second, far above the limit. The floor: "
        f"({args.jobs:,} - {args.burst}) / {args.rate:g} = {floor:.1f} s. The minimum number of submit requests is "
        f"one per job ({args.jobs:,}). A fresh emulator per client; the SDK with its defaults (max_retries "
        f"{C.DEFAULT_MAX_RETRIES}, a 429 retried up to {C.RATE_LIMIT_MAX_RETRIES} times apart from them, no "
        f"max_requests_per_second); the bare client stops at {args.bare_deadline_factor:g}× the floor."
    )
    for variant in variants:
        report.note(f"{variant.label}, second by second (submits accepted/refused by the emulator"
                    + ("" if variant.key == "bare" else ", @ the SDK pacer's rate at the end of that second")
                    + f"): {timeline(variant)}.")
        if variant.trace is not None:
            report.note(f"{variant.label}, the SDK pacer's trace: {variant.trace.summary(args.rate)}.")


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs in the batch (default %(default)s)")
    parser.add_argument("--rate", type=float, default=100.0, help="the limit, submits/s (default %(default)s)")
    parser.add_argument("--burst", type=int, default=10, help="the limit's bucket size (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=200, help="jobs in flight (default %(default)s)")
    parser.add_argument("--steps", type=int, default=4, help="progress steps per task (default %(default)s)")
    parser.add_argument("--step-seconds", type=float, default=0.05, help="seconds per step (default %(default)s)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--sample-interval", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("--sdk-deadline", type=float, default=240.0, help="bound on each SDK batch, s")
    parser.add_argument("--bare-deadline-factor", type=float, default=3.0,
                        help="the bare client's deadline, as a multiple of the floor (default %(default)s)")
    args = parse_args(parser, jobs=300)
    return run_benchmark(run, args, Report(7, "Rate limit: a batch of 2,000 under the emulator's rate_limit fault"))


if __name__ == "__main__":
    sys.exit(main())
