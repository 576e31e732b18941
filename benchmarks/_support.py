"""What every benchmark shares: an emulator in its own process, its admin routes, statistics, profile tallies, the
command line (``--quick``, ``--json``) and the report.

Each benchmark script measures one thing against ``python -m genstudio_async.emulator`` run as a *separate*
process on 127.0.0.1 (so the emulator's CPU and memory are never the client's), prints what it saw, and with
``--json PATH`` writes a :class:`Report` that ``benchmarks/run.py`` turns into ``benchmarks/RESULTS.md``.

This module imports nothing the SDK does not import already (no starlette, no uvicorn): benchmark 2 reads the
client process's peak RSS, which must not include the emulator's dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import math
import os
import platform
import pstats
import resource
import shlex
import signal
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import _defaults as ED

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-benchmark"
T2I = "wf-c73diz7kadp6ffgn"  # the docs' text-to-image workflow, built into the emulator
TUTORIAL_WORKFLOW = "wf-c72qozydy6suxesa"  # the Python tutorial's workflow
#: Fields ``--stamp-snapshots`` adds: ``time.monotonic_ns()`` of the task's last change (every snapshot), and of
#: the moment a WebSocket frame was serialised, just before it was sent (frames only).
STAMP_FIELD = "_emulator_changed_ns"
SERIALISED_STAMP_FIELD = "_emulator_serialised_ns"

Comparison = Literal["<", "<=", ">", ">=", "=="]


# --- statistics ----------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0-1) by linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def cpu_seconds() -> float:
    """User + system CPU seconds this process has used (all threads; children excluded)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (``ru_maxrss``, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds another process has used so far (from /proc); 0 where /proc is missing."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return 0.0
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mib(pid: int) -> float:
    """Another process's peak RSS (VmHWM), in MiB; 0 where /proc is missing."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return 0.0
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine shows up as noise)."""
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def raise_file_limit(needed: int) -> int:
    """Raise the open-file soft limit toward ``needed`` (the emulator child inherits it); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, needed))
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


# --- profiles ------------------------------------------------------------------------------------------------


def own_times(profiler: cProfile.Profile) -> Iterator[tuple[str, int, str, Any]]:
    """(file, line, function name, own seconds) of every function ``profiler`` saw.

    The seconds are typed ``Any``, as pstats has them: the summaries add them up in a ``Counter``, typed for ints.
    """
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, line, name), (_, _, own, _, _) in stats.items():
        yield str(filename), line, name, own


def package_of(path: str, *, stdlib_modules: bool = True) -> str:
    """What a profiled function's file belongs to: ``genstudio_async``, a site-packages distribution,
    ``builtins/frozen``, then ``stdlib <module>`` or ``other`` (without ``stdlib_modules``: all the rest "stdlib")."""
    if "genstudio_async" in path:
        return "genstudio_async"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith(("~", "<")):
        return "builtins/frozen"
    if not stdlib_modules:
        return "stdlib"
    if "/lib/python3" in path:
        return "stdlib " + path.rsplit("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
    return "other"


def short_name(path: str) -> str:
    """A profiled function's file as a reader knows it: ``httpcore/_async/connection_pool.py``,
    ``genstudio_async/_stream.py``, ``asyncio/selector_events.py``."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "genstudio_async/" in path:
        return "genstudio_async/" + path.split("genstudio_async/", 1)[1]
    if "/lib/python3" in path:
        return path.rsplit("/lib/python3", 1)[1].split("/", 1)[1]
    return path


def profile_summary(
    profiler: cProfile.Profile,
    events: int,
    top: int = 12,
    *,
    by_sdk_module: bool = False,
    entry_points: dict[str, tuple[str, str]] | None = None,
) -> list[str]:
    """Own time by package, and the functions with the most own time, per event (µs, under cProfile).

    ``epoll.poll`` is left out: under cProfile it counts the time the loop sat waiting, which is not CPU. With
    ``by_sdk_module`` the SDK's share is also split by its modules; ``entry_points`` (label → (file suffix,
    function name)) adds the cumulative share of those functions (a coroutine's cumulative time is what its
    resumptions cost, callees included: CPU, not waiting).
    """
    by_package: Counter[str] = Counter()
    by_module: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    cumulative: Counter[str] = Counter()
    for (path, line, name), (_, _, own, cum, _) in stats.items():
        path = str(path)
        if "select.epoll" in name:
            continue
        by_package[package_of(path)] += own
        if "genstudio_async" in path:
            by_module[short_name(path)] += own
        by_function[f"{short_name(path)}:{line}({name})"] += own
        for label, (suffix, function) in (entry_points or {}).items():
            if path.endswith(suffix) and name == function:
                cumulative[label] += cum
    total = sum(by_package.values())
    lines = [
        "Own time by package under cProfile, waiting in epoll left out (µs per event; the profiler inflates "
        "everything, read the shares): "
        + ", ".join(f"{package} {own / events * 1e6:.0f} ({own / total:.0%})"
                    for package, own in by_package.most_common(10))
        + "."
    ]
    if by_sdk_module and by_module:
        lines.append("The SDK's own time by module: " + ", ".join(
            f"`{module}` {own / total:.1%}" for module, own in by_module.most_common(8)) + ".")
    if cumulative:
        lines.append("Cumulative time (callees included) as a share of all profiled CPU: " + ", ".join(
            f"{label} {cum / total:.0%}" for label, cum in cumulative.items())
            + "; the rest runs in event-loop callbacks (socket reads, websockets' frame parsing) and timers.")
    lines.append("Top functions by own time (µs per event): " + "; ".join(
        f"`{name}` {own / events * 1e6:.1f}" for name, own in by_function.most_common(top)) + ".")
    return lines


def stub_sniffio() -> None:
    """Make ``import sniffio`` succeed, as installing it would (asyncio only: that is all the SDK runs on)."""
    module = types.ModuleType("sniffio")
    module.current_async_library = lambda: "asyncio"  # type: ignore[attr-defined]
    sys.modules["sniffio"] = module


# --- the report ----------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured value, and the goal it is held to (if any)."""

    name: str
    value: float
    unit: str
    goal: str | None = None
    met: bool | None = None
    #: How far from the goal, in words ("2.7× under the limit", "1.36× the limit (missed)").
    margin: str | None = None


def judged(name: str, value: float, unit: str, comparison: Comparison, limit: float) -> Figure:
    """A figure with its goal ``value <comparison> limit`` decided, and the margin either way."""
    met = {
        "<": value < limit,
        "<=": value <= limit,
        ">": value > limit,
        ">=": value >= limit,
        "==": value == limit,
    }[comparison]
    if comparison == "==":
        margin = "exactly" if met else f"{value:g} instead of {limit:g}"
    elif value == 0 or limit == 0 or math.isnan(value):
        margin = None
    elif comparison in ("<", "<="):
        margin = f"{limit / value:.1f}× under the limit" if met else f"{value / limit:.2f}× over the limit"
    else:
        margin = f"{value / limit:.1f}× the goal" if met else f"only {value / limit:.2f}× the goal"
    return Figure(name=name, value=value, unit=unit, goal=f"{comparison} {limit:g} {unit}".strip(), met=met,
                  margin=margin)


@dataclass
class Report:
    """What one benchmark run found: its figures, notes (how to read them, evidence) and where it ran."""

    number: int
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ""
    date: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: Blocks of Markdown lines (a table with its heading) shown after the figures, before the notes.
    tables: list[list[str]] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def note(self, text: str) -> None:
        print(f"  {text}")
        self.notes.append(text)

    @property
    def goals_met(self) -> bool:
        return all(figure.met is not False for figure in self.figures)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        figures = [Figure(**figure) for figure in data.get("figures", [])]
        return cls(**{**data, "figures": figures})


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory, OS and the versions that matter, for the results file."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / 1024 / 1024
                break
    versions = {}
    for package in ("genstudio-async", "httpx", "websockets", "pydantic", "uvicorn", "starlette"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "nproc": os.cpu_count(),
        "sdk_tree": sdk_tree(),
        "cpu": cpu_model,
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }


def sdk_tree() -> str:
    """The commit the SDK was measured at, and whether ``genstudio_async/`` had uncommitted changes."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "genstudio_async"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} + uncommitted changes in genstudio_async/" if dirty else commit


def shown_command(argv: Sequence[str]) -> str:
    """``argv`` as a shell command, with paths under the repository made relative to it."""
    shown = []
    for arg in argv:
        path = Path(arg)
        if path.is_absolute():
            with contextlib.suppress(ValueError):
                arg = str(path.relative_to(ROOT))
        shown.append(arg)
    return shlex.join(shown)


def script_parser(description: str | None) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows the script's docstring as written."""
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def base_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` and ``--json PATH``."""
    parser = script_parser(description)
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run (a smoke test, not a result)")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON to this file")
    return parser


def parse_args(parser: argparse.ArgumentParser, **quick: Any) -> argparse.Namespace:
    """The command line; with ``--quick``, the options named in ``quick`` take the smaller run's values."""
    args = parser.parse_args()
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value)
    return args


#: A benchmark's body: measures against the emulator, adding figures and notes to the report.
Run = Callable[[argparse.Namespace, Report], Coroutine[Any, Any, None]]


def run_benchmark(run: Run, args: argparse.Namespace, report: Report) -> int:
    """Note the load average, run ``run(args, report)`` in a new event loop, then :func:`finish` the report."""
    started = time.perf_counter()
    report.note(f"Load average before the run: {load_average()}.")
    asyncio.run(run(args, report))
    return finish(report, args, started)


def finish(report: Report, args: argparse.Namespace, started: float) -> int:
    """Stamp the report with the command, date and machine; print its figures; write it if asked. Exit status."""
    report.command = shown_command([sys.executable, *sys.argv])
    report.date = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    report.machine = machine_info()
    report.seconds = round(time.perf_counter() - started, 1)
    print(f"== {report.number}. {report.title} ({report.seconds} s)")
    for figure in report.figures:
        verdict = "" if figure.met is None else ("  MET" if figure.met else "  MISSED")
        goal = f"  (goal {figure.goal}; {figure.margin})" if figure.goal else ""
        print(f"  {figure.name}: {format_value(figure.value)} {figure.unit}{goal}{verdict}")
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def format_value(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


# --- the emulator, in its own process ----------------------------------------------------------------------


class EmulatorProcess:
    """``python -m genstudio_async.emulator --port 0 ...`` as a child process, with its admin routes.

    ``async with EmulatorProcess(workers=8, steps=100, step_seconds=0.01) as emu:`` starts it, reads the first
    line for its address, and stops it with SIGINT on the way out (SIGKILL if it does not stop in 20 s). Before it
    starts, the open-file soft limit is raised toward ``open_files`` (the child inherits it; ``file_limit`` is
    the limit then in force).
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        steps: int = 10,
        step_seconds: float = 0.03,
        stamp_snapshots: bool = True,
        extra: Sequence[str] = (),
        open_files: int = 4096,
        service: str = "genstudio",
    ) -> None:
        self.argv = [
            sys.executable, "-m", "genstudio_async.emulator", "--service", service, "--host", "127.0.0.1",
            "--port", "0", "--api-key", API_KEY, "--workers", str(workers), "--steps", str(steps),
            "--step-seconds", str(step_seconds), *(["--stamp-snapshots"] if stamp_snapshots else []), *extra,
        ]
        self.service = service
        self.base_url = ""
        self.open_files = open_files
        self.file_limit = 0
        self._process: asyncio.subprocess.Process | None = None
        self._admin: httpx.AsyncClient | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    @property
    def returncode(self) -> int | None:
        """The emulator's exit status once it has stopped; None while it runs (or before it starts)."""
        return None if self._process is None else self._process.returncode

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + GS.PROGRESS_WS_PATH

    def progress_url(self, prompt_token: str) -> str:
        """The progress WebSocket of one task, as a plain client connects to it."""
        return progress_url(self.base_url, prompt_token)

    async def __aenter__(self) -> Self:
        self.file_limit = raise_file_limit(self.open_files)
        self._process = await asyncio.create_subprocess_exec(
            *self.argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        try:
            assert self._process.stdout is not None
            line = (await asyncio.wait_for(self._process.stdout.readline(), 30)).decode().strip()
            prefix = f"{'GPUGeek' if self.service == 'gpugeek' else 'GenStudio'} emulator listening on "
            if not line.startswith(prefix):
                raise RuntimeError(f"the emulator did not start: {line!r}")
            self.base_url = line.removeprefix(prefix)
            self._admin = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, trust_env=False,
                                            timeout=30)
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self._admin is not None:
            await self._admin.aclose()
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.communicate(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def _admin_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self._admin is not None
        response = await self._admin.request(method, f"{ED.EMULATOR_ADMIN_PATH_PREFIX}{path}", json=body)
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    async def pause(self) -> None:
        await self._admin_call("POST", "/pause")

    async def resume(self) -> None:
        await self._admin_call("POST", "/resume")

    async def stats(self) -> dict[str, Any]:
        return await self._admin_call("GET", "/stats")

    async def reset_stats(self) -> dict[str, Any]:
        return await self._admin_call("POST", "/stats/reset")

    async def timing(
        self, *, steps: int | None = None, step_seconds: float | None = None,
        queue_notify_interval: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if queue_notify_interval is not None:
            body["queue_notify_interval"] = queue_notify_interval
        if steps is not None:
            body["steps"] = steps
        if step_seconds is not None:
            body["step_seconds"] = step_seconds
        return await self._admin_call("POST", "/timing", body)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def peak_rss_mib(self) -> float:
        return proc_peak_rss_mib(self.pid)


def progress_url(base_url: str, prompt_token: str) -> str:
    """The progress WebSocket of one task of the emulator at ``base_url``, as a plain client connects to it."""
    return f"ws{base_url.removeprefix('http')}{GS.PROGRESS_WS_PATH}?{GS.PROGRESS_WS_TOKEN_PARAM}={prompt_token}"


async def bare_submit(api: httpx.AsyncClient, workflow_id: str = T2I) -> dict[str, str]:
    """Submit a task with a plain ``httpx`` client (no SDK), as the bare baselines do; the response's ``data``."""
    response = await api.post(GS.SUBMIT_PATH, json={"workflow_id": workflow_id})
    data: dict[str, str] = response.json()["data"]
    return data
