"""Run the benchmarks of genstudio_async, print a table, and (with ``--write``) update ``benchmarks/RESULTS.md``.

    python benchmarks/run.py                 # all five benchmarks and the httpcore probe, about 2 minutes
    python benchmarks/run.py --only 1 5      # some of them ("probe" names the probe)
    python benchmarks/run.py --only scale    # the scale curve (issue 12), about 25 minutes: only when named
    python benchmarks/run.py --only ratelimit  # 2,000 jobs under a rate limit (issue 12), ~2 minutes: when named
    python benchmarks/run.py --quick         # smaller runs: a smoke test, never written to RESULTS.md
    python benchmarks/run.py --write         # also store the reports and regenerate RESULTS.md

Each benchmark is its own script (also runnable alone, see its docstring) and runs in its own process, which starts
its own emulator process (``python -m genstudio_async.emulator --port 0``) on 127.0.0.1: the client's CPU and
memory are never mixed with the emulator's or another benchmark's. Every load is bounded in count and time, and
every process stops by itself.

What each measures (the goals are the project's, from issue 4):

1. server push → yielded event latency of ``client.stream`` (p50 < 1 ms, p99 < 5 ms);
2. 1,000 tasks streamed at once: all complete, client peak RSS (< 150 MB), client CPU per event (< 100 µs);
3. polling mode: ``get_task_info`` requests per poll interval for N = 10 / 100 / 1,000 (⌈N/50⌉);
4. completion → caller knows: the WebSocket stream vs the tutorial's 5 s polling loop (≥ 100× sooner);
5. per-request overhead of ``client.get_task`` vs raw httpx (≤ 1.2×), and the SDK-only cost;

and, only when named (issue 12's goals):

scale. N = 100 / 1,000 / 3,000 / 10,000 tasks streamed at once by the SDK, a bare httpx + websockets client, a bare
   aiohttp client and the SDK with ``AioHttpClient``, under ``ulimit -n 1024`` and a raised limit; the SDK on
   uvloop; a cProfile of the SDK; the emulator's CPU and frames/s beside each cell.
ratelimit. a batch of 2,000 jobs (``run_many``, WebSocket and polled) against the emulator's ``rate_limit`` fault
   on submits: all complete, no ``RateLimitError``, submit requests counted ≤ 1.2× one per job; a bare httpx client
   retrying each 429 after its ``Retry-After`` beside it.

``--write`` keeps the latest report of each benchmark in ``benchmarks/results.json`` (so ``--only`` updates just
those) and regenerates ``benchmarks/RESULTS.md`` from it, keeping the hand-written analysis between the
``<!-- analysis:start -->`` and ``<!-- analysis:end -->`` markers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._support import Report, format_value, load_average, machine_info, script_parser, shown_command

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "RESULTS.md"
ANALYSIS_START, ANALYSIS_END = "<!-- analysis:start -->", "<!-- analysis:end -->"
#: Report numbers shown by their key in the summary table (bench_scale.py's, bench_rate_limit.py's).
NAMED_NUMBERS = {6: "scale", 7: "ratelimit"}


@dataclass(frozen=True)
class Benchmark:
    key: str
    script: str
    options: tuple[str, ...] = ()
    #: Bound on the whole script, seconds (``--timeout`` overrides it when larger).
    timeout: float = 300.0
    #: Whether a run that names no benchmark runs it.
    default: bool = True


BENCHMARKS = [
    Benchmark("1", "bench_push_latency.py"),
    Benchmark("2", "bench_many_tasks.py", ("--profile",)),
    Benchmark("3", "bench_polling.py"),
    Benchmark("4", "bench_completion_delay.py"),
    Benchmark("5", "bench_request_overhead.py"),
    Benchmark("probe", "probe_http_hotspots.py"),
    # 34 cells of up to 10,000 tasks, each with its own deadline (bench_scale.py --help): about 25 minutes.
    Benchmark("scale", "bench_scale.py", timeout=3 * 3600.0, default=False),
    # Three batches of 2,000 jobs, each at least 20 s under the limit: about 2 minutes.
    Benchmark("ratelimit", "bench_rate_limit.py", timeout=900.0, default=False),
]


def run_one(benchmark: Benchmark, quick: bool, timeout: float) -> Report | None:
    """Run one benchmark script in its own process; its report, or None if it failed."""
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "report.json"
        command = [sys.executable, str(HERE / benchmark.script), *benchmark.options, *(["--quick"] if quick else [])]
        print(f"\n$ {shown_command(command)}", flush=True)
        try:
            bound = max(timeout, benchmark.timeout)
            done = subprocess.run([*command, "--json", str(report_path)], timeout=bound, check=False)
        except subprocess.TimeoutExpired:
            print(f"!! {benchmark.script} did not finish within {bound:g} s")
            return None
        if done.returncode != 0 or not report_path.exists():
            print(f"!! {benchmark.script} failed (exit status {done.returncode})")
            return None
        report = Report.from_json(json.loads(report_path.read_text(encoding="utf-8")))
        report.command = shown_command(command)  # without the scratch --json path
        return report


def table(reports: list[Report]) -> list[str]:
    """The summary table, as Markdown rows."""
    rows = ["| # | figure | value | goal | verdict |", "|---|---|---|---|---|"]
    for report in reports:
        label = str(report.number) if report.number else "probe"
        label = NAMED_NUMBERS.get(report.number, label)
        for figure in report.figures:
            verdict = "" if figure.met is None else ("**met**" if figure.met else "**missed**")
            if figure.margin and figure.met is not None:
                verdict += f" ({figure.margin})"
            unit = f" {figure.unit}" if figure.unit else ""
            rows.append(f"| {label} | {figure.name} | {format_value(figure.value)}{unit} | {figure.goal or ''} | "
                        f"{verdict} |")
    return rows


def load_stored() -> dict[str, Report]:
    if not RESULTS_JSON.exists():
        return {}
    stored = json.loads(RESULTS_JSON.read_text(encoding="utf-8"))
    return {key: Report.from_json(value) for key, value in stored.items()}


def store(reports: dict[str, Report]) -> None:
    ordered = {key: reports[key].to_json() for key in sorted(reports, key=order)}
    RESULTS_JSON.write_text(json.dumps(ordered, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def order(key: str) -> tuple[int, str]:
    """Sections and rows in the order of ``BENCHMARKS`` (a key no longer listed goes last)."""
    keys = [benchmark.key for benchmark in BENCHMARKS]
    return (keys.index(key), key) if key in keys else (len(keys), key)


def machine_line(machine: dict[str, object]) -> str:
    """The hardware and software a report ran on (the SDK's own commit is given per section)."""
    versions = machine.get("versions")
    shown = ", ".join(f"{name} {version}" for name, version in versions.items()) if isinstance(versions, dict) else ""
    return (f"nproc {machine.get('nproc')} ({machine.get('cpu') or 'unknown CPU'}), {machine.get('memory_gib')} GiB, "
            f"{machine.get('implementation')} {machine.get('python')}, {machine.get('os')}; {shown}")


def render(reports: dict[str, Report], analysis: str) -> str:
    ordered = [reports[key] for key in sorted(reports, key=order)]
    machines = {machine_line(report.machine) for report in ordered}
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python benchmarks/run.py --write` from `benchmarks/results.json` (the latest report of each "
        "benchmark); each section gives the exact command that produced it. Every benchmark runs the client in its "
        "own process against the emulator in another (`python -m genstudio_async.emulator --port 0`), on "
        "127.0.0.1.",
        "",
        "Machine: " + ("; ".join(sorted(machines)) if len(machines) > 1 else next(iter(machines), "unknown")) + ".",
        "",
        "## Summary",
        "",
        *table(ordered),
        "",
        "## Analysis",
        "",
        ANALYSIS_START,
        analysis.strip("\n"),
        ANALYSIS_END,
        "",
    ]
    for report in ordered:
        title = f"{report.number}. {report.title}" if report.number else report.title
        lines += [
            f"## {title}",
            "",
            f"- Command: `{report.command}`",
            f"- Date: {report.date}; wall time {report.seconds:g} s; SDK at {report.machine.get('sdk_tree')}",
            f"- Machine: {machine_line(report.machine)}",
            "",
        ]
        for figure in report.figures:
            goal = f" (goal {figure.goal}: {'met' if figure.met else 'missed'}; {figure.margin})" if figure.goal else ""
            unit = f" {figure.unit}" if figure.unit else ""
            lines.append(f"- **{figure.name}: {format_value(figure.value)}{unit}**{goal}")
        lines.append("")
        for block in report.tables:
            lines += [*block, ""]
        lines += [f"- {note}" for note in report.notes]
        lines.append("")
    return "\n".join(lines)


def existing_analysis() -> str:
    if not RESULTS_MD.exists():
        return "(Write the analysis of the figures here; it is kept when the file is regenerated.)"
    text = RESULTS_MD.read_text(encoding="utf-8")
    if ANALYSIS_START in text and ANALYSIS_END in text:
        return text.split(ANALYSIS_START, 1)[1].split(ANALYSIS_END, 1)[0]
    return ""


def main() -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--only", nargs="+", choices=[b.key for b in BENCHMARKS], help="run only these benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test; never written)")
    parser.add_argument("--write", action="store_true", help="store the reports and regenerate RESULTS.md")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on each benchmark, seconds")
    args = parser.parse_args()
    if args.quick and args.write:
        parser.error("--quick runs are smoke tests: they are not written to RESULTS.md")

    selected = [b for b in BENCHMARKS if (b.default if args.only is None else b.key in args.only)]
    machine = machine_info()
    print(f"genstudio_async benchmarks: {', '.join(b.key for b in selected)}; nproc {machine['nproc']}, Python "
          f"{machine['python']}, SDK at {machine['sdk_tree']}; load average {load_average()}")
    started = time.perf_counter()
    reports: dict[str, Report] = {}
    failed = []
    for benchmark in selected:
        report = run_one(benchmark, args.quick, args.timeout)
        if report is None:
            failed.append(benchmark.key)
        else:
            reports[benchmark.key] = report

    print(f"\n== Summary ({time.perf_counter() - started:.0f} s{', quick' if args.quick else ''})\n")
    print("\n".join(table([reports[key] for key in sorted(reports, key=order)])))
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
    if args.write and reports:
        stored = load_stored()
        stored.update(reports)
        store(stored)
        RESULTS_MD.write_text(render(stored, existing_analysis()), encoding="utf-8")
        print(f"\nWrote {RESULTS_MD.relative_to(HERE.parent)} and {RESULTS_JSON.relative_to(HERE.parent)}")
    missed = any(figure.met is False for report in reports.values() for figure in report.figures)
    return 1 if failed else (2 if missed and os.environ.get("GENSTUDIO_BENCH_STRICT") else 0)


if __name__ == "__main__":
    sys.exit(main())
