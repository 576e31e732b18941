"""The ``genstudio`` command: hosted ComfyUI workflows (GenStudio's and GPUGeek's) from a shell.

::

    genstudio demo                      # the whole thing end to end against an in-process emulator
    genstudio run WORKFLOW_ID --set KSampler.steps=30 --spec spec.json
    genstudio batch jobs.jsonl --concurrency 8 --out results/
    genstudio run WORKFLOW_ID --events  # JSON lines on stdout, for programs
    genstudio watch ID... | status ID... | cancel ID... | upload FILE
    genstudio emulator --port 8188      # a local GenStudio (same flags as python -m genstudio_async.emulator)
    genstudio run --service gpugeek 763311996779461 --set KSampler.steps=5   # GPUGeek (or GENSTUDIO_SERVICE)

Each subcommand adds its arguments in its own ``add_*_arguments`` function and sets ``handler`` on the parsed
namespace; ``main`` dispatches, turns errors into one line on stderr and returns the exit code (``genstudio
--help`` lists them). The subcommands live in ``genstudio_async._cli``, one small module each, imported only
when run, so ``genstudio --help`` and ``genstudio emulator`` need neither rich nor the other subcommands, and
``--version`` and ``--help`` import neither asyncio nor httpx nor pydantic (tests/test_cli_startup.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from ._cli.defaults import (
    CLI_BATCH_CONCURRENCY,
    CLI_BATCH_OUTPUT_DIR,
    CLI_DEMO_OUTPUT_DIR,
    CLI_DEMO_STEP_SECONDS,
    CLI_EVENT_SCHEMA,
    CLI_JOURNAL_SUFFIX,
    CLI_RUN_OUTPUT_DIR,
)
from ._constants import DEFAULT_POLL_INTERVAL
from ._version import __version__
from .emulator._defaults import (
    EMULATOR_DEFAULT_API_KEY,
    EMULATOR_DEFAULT_HOST,
    EMULATOR_DEFAULT_PORT,
    EMULATOR_DEFAULT_STEP_SECONDS,
    EMULATOR_DEFAULT_STEPS,
    EMULATOR_DEFAULT_WORKERS,
    EMULATOR_TOKEN_TTL_SECONDS,
    RESULT_RETENTION_SECONDS,
)

if TYPE_CHECKING:
    from ._cli.console import Console
    from ._cli.errors import Endpoint
    from ._cli.events import EventLog

__all__ = ["add_emulator_arguments", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]
Command = Callable[[argparse.Namespace, "Console"], Coroutine[Any, Any, int]]

EMULATOR_DESCRIPTION = (
    "Run a local GenStudio emulator: the HTTP API, the progress WebSocket (same port) and signed-URL result "
    "storage (another port), with fault injection; or, with --service gpugeek, a local GPUGeek (HTTP only). The "
    "first line printed is 'GenStudio emulator listening on http://HOST:PORT'. Stop it with Ctrl-C or SIGTERM."
)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's flags (shared by ``genstudio emulator`` and ``python -m genstudio_async.emulator``)."""
    from ._cli.services import add_service_choice

    add_service_choice(  # the names Emulator(service=...) takes; checked there too
        parser,
        "which service to emulate: GenStudio (HTTP + progress WebSocket) or GPUGeek (/api/v1/..., polled; its "
        "first line then reads 'GPUGeek emulator listening on ...')",
    )
    parser.add_argument("--host", default=EMULATOR_DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=_port, default=EMULATOR_DEFAULT_PORT, help="API port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument("--storage-port", type=_port, default=0, help="result-storage port (default: a free one)")
    parser.add_argument(
        "--api-key",
        default=EMULATOR_DEFAULT_API_KEY,
        help="the key clients must send as 'Authorization: Bearer KEY' (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=EMULATOR_DEFAULT_WORKERS,
        help="tasks run at once (default: %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        default=EMULATOR_DEFAULT_STEPS,
        help="progress steps per task (default: %(default)s)",
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=EMULATOR_DEFAULT_STEP_SECONDS,
        help="seconds per progress step; 0.5 makes a watchable demo (default: %(default)s)",
    )
    parser.add_argument(
        "--token-ttl", type=float, default=EMULATOR_TOKEN_TTL_SECONDS, help="prompt_token lifetime, seconds"
    )
    parser.add_argument(
        "--retention", type=float, default=RESULT_RETENTION_SECONDS, help="how long result files live, seconds"
    )
    parser.add_argument(
        "--workflow",
        action="append",
        default=[],
        metavar="ID=SPEC.json",
        help="register a workflow from a parameter-spec file ('入参范围' JSON); with --service gpugeek, an integer "
        "ID and a ComfyUI API-format export; repeatable",
    )
    parser.add_argument(
        "--no-builtin-workflows", action="store_true", help="do not register the docs' example workflows"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="[WORKFLOW_ID:]NAME=VALUE",
        help=(
            "inject a fault, for every workflow or one; repeatable. Names: ws_refuse_status, ws_drop_after, "
            "ws_silent, ws_close_after, ws_junk, ws_linger, ws_skip_initial, http_error_rate, http_error_status, "
            "http_error_html, endpoints, rate_limit, rate_limit_burst, delay, seed, fail_tasks, deny_tasks, "
            "tutorial_shapes, presign_field (GPUGeek has no ws_*, deny_tasks or tutorial_shapes)"
        ),
    )
    parser.add_argument(
        "--stamp-snapshots",
        action="store_true",
        help="add '_emulator_changed_ns' (time.monotonic_ns() of the task's last change) to every snapshot, and "
        "'_emulator_serialised_ns' to WebSocket frames, for latency benchmarks; off by default so the wire stays "
        "the service's",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="server log level on stderr; 'info' shows each request (default: %(default)s)",
    )


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose error messages never show an API key given on the command line.

    argparse echoes what it could not use ("unrecognized arguments: --api-key=sk-…", "invalid choice: 'sk-…'"),
    e.g. for ``genstudio --api-key KEY status …`` (the option belongs after the subcommand).
    """

    secrets: tuple[str, ...] = ()
    events_argv: Sequence[str] | None = None  # the command line, when it asks for --events (--json-stream)

    def error(self, message: str) -> NoReturn:
        from ._redact import mask

        for secret in self.secrets:
            message = message.replace(secret, mask(secret))
        command = self.prog.rsplit(" ", 1)[-1]
        if _Parser.events_argv is not None and command in ("run", "batch", "watch"):
            _usage_error_events(command, message, _Parser.events_argv, self.secrets)
        super().error(message)


def _asks_for_events(argv: Sequence[str]) -> bool:
    """True when ``argv`` holds ``--events`` or ``--json-stream`` (or an abbreviation argparse would take)."""
    for arg in argv:
        if arg == "--":
            return False
        name = arg.partition("=")[0]
        if (len(name) >= 4 and "--events".startswith(name)) or (len(name) > 6 and "--json-stream".startswith(name)):
            return True
    return False


def _usage_error_events(command: str, message: str, argv: Sequence[str], secrets: Sequence[str]) -> None:
    """A command line argparse refused, that asked for ``--events``: its ``start``, ``error`` and ``end`` lines
    on stdout all the same (exit 2), so a reader of the stream always gets an ``end``. The service is the one
    the command line or ``GENSTUDIO_SERVICE`` names, if valid, else GenStudio."""
    from ._cli.defaults import CLI_SERVICE_ENV
    from ._cli.events import EventLog
    from ._redact import Redactor

    service = "genstudio"
    named = [os.environ.get(CLI_SERVICE_ENV, "")]
    for index, arg in enumerate(argv):
        if arg.startswith("--service="):
            named.append(arg.partition("=")[2])
        elif arg == "--service" and index + 1 < len(argv):
            named.append(argv[index + 1])
    for name in named:
        if name.strip().lower() in ("genstudio", "gpugeek"):
            service = name.strip().lower()
    events = EventLog(sys.stdout, Redactor(secrets))
    events.start(command, service)
    events.error(message, 2)
    events.end(2)


def _api_key_arguments(argv: Sequence[str]) -> tuple[str, ...]:
    """The values given to ``--api-key`` (or an abbreviation argparse accepts, ``--api``…) in ``argv``."""
    found: list[str] = []
    for index, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if len(name) >= 5 and "--api-key".startswith(name):
            if equals:
                found.append(value)
            elif index + 1 < len(argv):
                found.append(argv[index + 1])
    return tuple(secret for secret in found if secret)


def _run_emulator(args: argparse.Namespace) -> int:
    try:
        from .emulator._deps import require_server_dependencies

        require_server_dependencies()  # the install hint, before anything imports starlette
        from .emulator._runner import run
    except ImportError as exc:  # the emulator extra is not installed
        print(f"genstudio emulator: {exc}", file=sys.stderr)
        return 1
    return run(args)


# --- the other subcommands ----------------------------------------------------------------------------------

DESCRIPTION = "Hosted ComfyUI workflows, GenStudio's and GPUGeek's, from a shell."


def _epilog_top() -> str:
    """The top-level help's environment and output notes (the variables' names come from the services)."""
    from ._cli.defaults import CLI_SERVICE_ENV
    from ._services import GenStudio, GPUGeek

    genstudio, gpugeek = GenStudio.environment, GPUGeek.environment
    rows = [
        (CLI_SERVICE_ENV, "the service: genstudio (the default) or gpugeek; --service overrides it"),
        (genstudio.api_key, "GenStudio's API key (--api-key works too, but other users can see process arguments)"),
        (genstudio.base_url, f"its API base URL (default {GenStudio.default_base_url}); --base-url overrides it"),
        (gpugeek.api_key, "GPUGeek's API key, with --service gpugeek"),
        (gpugeek.base_url, f"its API base URL (default {GPUGeek.default_base_url})"),
        ("GENSTUDIO_LOG", "the SDK's log level on stderr (debug, info, ...)"),
    ]
    width = max(len(name) for name, _ in rows) + 2
    return "environment:\n" + "".join(f"  {name.ljust(width)} {text}\n" for name, text in rows) + _EPILOG_OUTPUT


_EPILOG_OUTPUT = """\

Output is drawn with rich (pip install 'genstudio-async[cli]') on a terminal and printed as plain lines
otherwise; --json prints one JSON document instead. Errors are one line on stderr (--debug adds the traceback).

"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _add_follow_arguments(parser: argparse.ArgumentParser) -> None:
    """``--timeout``, ``--cancel-on-timeout``, ``--no-websocket`` and ``--poll-interval``: how a task is followed."""
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="S",
        help="give up waiting for a task after S seconds (it goes on, unless --cancel-on-timeout)",
    )
    parser.add_argument(
        "--cancel-on-timeout",
        action="store_true",
        help="with --timeout: cancel a task on the service when its time is up, so nobody pays for a task nobody "
        "waits for (the outcome says it was cancelled)",
    )
    parser.add_argument(  # accepted with either service, so one script serves both (GENSTUDIO_SERVICE)
        "--no-websocket",
        action="store_true",
        help="follow progress by polling instead of GenStudio's progress WebSocket (GPUGeek has none and is always "
        "polled: there the flag changes nothing)",
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_float,
        metavar="S",
        help=f"seconds between status polls when polling (default: {DEFAULT_POLL_INTERVAL})",
    )


def _add_json_argument(
    parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, what: str
) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout, and nothing else there")


def _add_output_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json`` (one document at the end) or ``--events`` (JSON lines as it goes), not both."""
    group = parser.add_mutually_exclusive_group()
    _add_json_argument(group, what)
    group.add_argument(
        "--events",
        "--json-stream",
        dest="events",
        action="store_true",
        help=f"print one JSON object per line on stdout as things happen ({CLI_EVENT_SCHEMA}: start, submitted, "
        "following, progress, downloaded, outcome, error, end), and nothing else there; the JSON Schema ships in "
        "the package (genstudio_async/_cli/event.schema.json)",
    )


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from ._cli.services import add_service_choice

    add_service_choice(parser, "the service to emulate, in this process, and run the demo against")
    parser.add_argument(
        "--out", metavar="DIR", default=CLI_DEMO_OUTPUT_DIR, help="where to save the images (default: %(default)s)"
    )
    parser.add_argument(
        "--step-seconds",
        type=_positive_float,
        metavar="S",
        default=CLI_DEMO_STEP_SECONDS,
        help="seconds per emulated progress step, 10 steps a task (default: %(default)s)",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    from ._cli.prompt import parse_image, parse_set
    from .workflows import builtin_api_workflow_ids, builtin_workflow_ids

    gpugeek_ids = ", ".join(str(number) for number in builtin_api_workflow_ids())
    parser.add_argument(
        "workflow_id",
        metavar="WORKFLOW_ID",
        help="the workflow to run (GenStudio: e.g. wf-c73diz7kadp6ffgn; GPUGeek: an integer, e.g. 763311996779461)",
    )
    parser.add_argument(
        "--prompt",
        metavar="FILE.json",
        help='the prompt from a file (- for stdin): GenStudio\'s input overrides {node_id: {"inputs": {...}}}, '
        "GPUGeek's whole API-format workflow",
    )
    parser.add_argument(
        "--set",
        dest="set",
        type=parse_set,
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="set one input; NODE is an id, a class_type or a title (GenStudio: names need a spec); VALUE is typed "
        "by the spec (INT, FLOAT, BOOLEAN, else a string; \"quoted\" is the string inside), or without one parsed "
        "as a JSON literal if it is one (GPUGeek: typed like the workflow's value it replaces); repeatable",
    )
    parser.add_argument(
        "--spec",
        metavar="SPEC.json",
        help="GenStudio: the workflow's parameter spec ('入参范围' JSON): resolves NODE names, types the --set values "
        "and checks the prompt before anything is sent (default: the built-in spec of "
        f"{', '.join(builtin_workflow_ids())})",
    )
    parser.add_argument(
        "--workflow-json",
        metavar="FILE.json",
        help="GPUGeek: the workflow's ComfyUI API-format export ('Save (API Format)'), the prompt --set and --image "
        f"change (default: the built-in export of {gpugeek_ids})",
    )
    parser.add_argument(
        "--image",
        type=parse_image,
        action="append",
        default=[],
        metavar="NODE=PATH",
        help="set a LoadImage node's 'image' to a local file, uploaded at submit time (GPUGeek: presigned, PUT, "
        "committed); repeatable",
    )
    parser.add_argument(
        "--out", metavar="DIR", help=f"where to save the files (default: {CLI_RUN_OUTPUT_DIR}/<prompt_id>/)"
    )
    _add_follow_arguments(parser)
    _add_output_arguments(parser, "the outcome (prompt_id, status, files, paths)")


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "jobs",
        metavar="JOBS.jsonl",
        help='one job a line: {"workflow_id": "wf-…", "prompt": {...}, "id": "optional stable name"}; GPUGeek: '
        '{"workflow_id": 763311996779461, "set": {"KSampler": {"steps": 5}}}, with "prompt" (the whole workflow) '
        'or "workflow_json" (an export, relative to JOBS.jsonl) for any id; either service: "images": '
        '{"10": "fox.png"} sets LoadImage node 10\'s image to a local file beside JOBS.jsonl, uploaded once '
        "however many jobs use it",
    )
    parser.add_argument(
        "--spec",
        action="append",
        default=[],
        metavar="[WORKFLOW_ID=]SPEC.json",
        help="GenStudio: a workflow's parameter spec ('入参范围' JSON): every job's prompt is checked against it "
        "before anything is sent, every problem listed (exit 2); WORKFLOW_ID= gives the spec of one workflow's "
        "jobs; repeatable (default: the built-in spec of the docs' example workflows)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=CLI_BATCH_CONCURRENCY,
        metavar="N",
        help="tasks in flight at once (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=CLI_BATCH_OUTPUT_DIR,
        help="each job's files go to DIR/<job>/<node id>/ (default: %(default)s)",
    )
    parser.add_argument(
        "--journal",
        metavar="FILE",
        help=f"the resume journal (default: JOBS.jsonl{CLI_JOURNAL_SUFFIX}); it holds GenStudio's prompt tokens: "
        "mode 0600",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="submit again the jobs whose task failed in an earlier run, and those whose submit got no answer "
        "(the service may have made their task: see its task list first); by default a rerun resumes each "
        "journaled task as it is and submits no job twice",
    )
    _add_follow_arguments(parser)
    _add_output_arguments(parser, "the summary")


def add_ids_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("prompt_ids", nargs="+", metavar="PROMPT_ID", help=what)


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "tasks",
        nargs="+",
        metavar="ID",
        help="a task's prompt_id (GenStudio: cft-…; GPUGeek: digits), or a file holding a saved Submission, "
        '{"prompt_id": …, "prompt_token": …} (Submission.model_dump_json(), or a batch journal\'s "submitted" '
        "line): with a token, GenStudio's progress comes over its WebSocket",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help=f"where to save the files: DIR/<node id>/ for one task (as run --out), DIR/<prompt_id>/<node id>/ for "
        f"several (default: {CLI_RUN_OUTPUT_DIR}/<prompt_id>/, as run)",
    )
    parser.add_argument("--no-download", action="store_true", help="follow the tasks to their end, save nothing")
    _add_follow_arguments(parser)
    _add_output_arguments(parser, "a list of the outcomes (prompt_id, status, files, paths)")


def _add_service_arguments(parser: argparse.ArgumentParser) -> None:
    from ._cli.client import add_service_arguments

    add_service_arguments(parser)


def _async_command(module: str, name: str) -> Handler:
    """A handler that imports ``genstudio_async._cli.<module>`` and runs its ``name`` coroutine function."""

    def handler(args: argparse.Namespace) -> int:
        import asyncio
        import importlib

        from ._cli.client import enable_debug_logging
        from ._cli.console import Console
        from ._cli.errors import CLIError, ExitCode
        from ._cli.events import EventLog
        from ._cli.services import profile_of
        from ._redact import Redactor

        loaded = importlib.import_module(f"._cli.{module}", __package__)
        command: Command = getattr(loaded, name)
        if getattr(args, "debug", False):
            enable_debug_logging()
        events = bool(getattr(args, "events", False))
        # With --events stdout holds the event lines and nothing else: no human display (notes stay on stderr).
        console = Console(quiet=bool(getattr(args, "json", False)) or events)
        for secret in _secrets_of(args):
            console.redact.add(secret)
        args.event_log = EventLog(console.out if events else None, Redactor(_secrets_of(args)))
        args.event_log.start(args.command, profile_of(args).name)
        if getattr(args, "cancel_on_timeout", False) and getattr(args, "timeout", None) is None:
            raise CLIError("--cancel-on-timeout needs --timeout S (the time after which a task is cancelled)",
                           ExitCode.USAGE)
        prepare = getattr(loaded, "prepare", None)
        if prepare is not None:
            prepare(args)  # blocking local reads (files, stdin) before the event loop exists
            for secret in getattr(args, "prompt_tokens", []):  # read from files (watch): never shown whole
                console.redact.add(secret)
        return asyncio.run(command(args, console))

    return handler


def build_parser() -> argparse.ArgumentParser:
    """The ``genstudio`` argument parser with every subcommand."""
    from ._cli.client import add_debug_argument
    from ._cli.errors import EXIT_CODES_HELP

    parser = _Parser(
        prog="genstudio",
        description=DESCRIPTION,
        epilog=_epilog_top() + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and the SDK's debug log")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description, width=100),
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    demo = command(
        "demo",
        "text-to-image then image-to-image against an in-process emulator: no key, no network",
        "Start a GenStudio (or, with --service gpugeek, a GPUGeek) emulator in this process and run a text-to-image "
        "generation, then an image-to-image generation of its result (uploaded from its local path), with live "
        "progress: the queue position, then the percent (GPUGeek, polled: running), then done. Saves real PNGs and "
        "prints how long each phase took (submit, generate, download).",
    )
    add_demo_arguments(demo)
    add_debug_argument(demo)
    demo.set_defaults(handler=_async_command("demo", "demo_command"))

    run = command(
        "run",
        "submit one task, follow it, download its files",
        "Submit one task of WORKFLOW_ID, show its progress and download its files. With a spec (--spec, or the "
        "built-in one of the docs' example workflows), the prompt is checked before anything is sent and every "
        "problem is listed (exit 2). GPUGeek (--service gpugeek) runs the whole workflow it is sent: the built-in "
        "export of a built-in id, --workflow-json or --prompt, changed by --set and --image.",
    )
    add_run_arguments(run)
    _add_service_arguments(run)
    run.set_defaults(handler=_async_command("run", "run_command"))

    batch = command(
        "batch",
        "run a JSON-lines file of jobs; resumable, never submits a journaled job twice",
        "Run every job of JOBS.jsonl, at most --concurrency at once, and download each one's files. A journal "
        "records each task's prompt_id and prompt_token as soon as it is submitted: after Ctrl-C (exit 130) or a "
        "crash, the same command resumes those tasks instead of submitting them again, and skips the jobs whose "
        "files are already downloaded. Ctrl-C does not cancel the tasks on the service. A submit whose answer never "
        "arrived (no answer, or the process died while it was in flight) may have created a task that nothing "
        "recorded: a rerun holds that job ('submit unanswered') until --retry-failed.",
    )
    add_batch_arguments(batch)
    _add_service_arguments(batch)
    batch.set_defaults(handler=_async_command("batch", "batch_command"))

    watch = command(
        "watch",
        "follow tasks already submitted, then download their files",
        "Follow existing tasks, by prompt_id or from a saved Submission file (its token opens GenStudio's progress "
        "WebSocket), with the same live display as run (several tasks: one row each), then download their files "
        "(--no-download: only follow). A task that has already ended is reported at once (and its files saved). "
        "Ctrl-C stops watching and leaves the tasks running on the service (exit 130); --timeout with "
        "--cancel-on-timeout cancels those that are not done in time. The exit code is the worst of the tasks'.",
    )
    add_watch_arguments(watch)
    _add_service_arguments(watch)
    watch.set_defaults(handler=_async_command("watch", "watch_command"))

    status = command(
        "status",
        "show tasks' status",
        "Show the status of tasks (GenStudio: one request for all of them; GPUGeek: one request each). To follow "
        "tasks to their end and save their files: genstudio watch.",
    )
    add_ids_arguments(status, "a task's prompt_id (GenStudio: cft-…, asked together; GPUGeek: digits)")
    _add_json_argument(status, "a list of the tasks")
    _add_service_arguments(status)
    status.set_defaults(handler=_async_command("tasks", "status_command"))

    cancel = command(
        "cancel",
        "cancel tasks",
        "Ask the service to cancel tasks (their status becomes 4 on GenStudio, 5 on GPUGeek). Their status is asked "
        "first: a task that has already ended is reported ('already succeeded: not cancelled', exit 1) and left "
        "alone.",
    )
    add_ids_arguments(cancel, "a task's prompt_id (GenStudio: cft-…; GPUGeek: digits)")
    _add_json_argument(cancel, "what was cancelled")
    _add_service_arguments(cancel)
    cancel.set_defaults(handler=_async_command("tasks", "cancel_command"))

    upload = command(
        "upload",
        "upload an image, print what a LoadImage input takes",
        "Upload an image; print the value for a LoadImage input: GenStudio's image_id, or GPUGeek's committed "
        "oss_url (the file is PUT to a pre-signed URL, without the API key, then committed).",
    )
    upload.add_argument("file", metavar="FILE", help="the image to upload")
    _add_json_argument(upload, "the file and its image_id (GPUGeek: oss_url)")
    _add_service_arguments(upload)
    upload.set_defaults(handler=_async_command("tasks", "upload_command"))

    emulator = commands.add_parser(
        "emulator", help="run a local GenStudio (or GPUGeek) emulator", description=EMULATOR_DESCRIPTION
    )
    add_emulator_arguments(emulator)
    emulator.set_defaults(handler=_run_emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``genstudio`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit code."""
    parser = build_parser()
    _Parser.secrets = _api_key_arguments(sys.argv[1:] if argv is None else argv)
    _Parser.events_argv = given if _asks_for_events(given := sys.argv[1:] if argv is None else argv) else None
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = handler(args)
    except KeyboardInterrupt:
        print("genstudio: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # stdout was closed early (``genstudio status ... | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as error:  # noqa: BLE001 - every error ends as one line and an exit code
        from ._cli.client import endpoint_of

        debug = bool(getattr(args, "debug", False))
        code = _report(
            error, debug=debug, secrets=_secrets_of(args), endpoint=endpoint_of(args), events=_event_log(args)
        )
    events = _event_log(args)
    if events is not None:
        events.end(code)  # the last line of --events, whatever happened
    return code


def _event_log(args: argparse.Namespace) -> EventLog | None:
    """The ``--events`` stream the command's handler opened (``None`` before, or for the emulator)."""
    return getattr(args, "event_log", None)


def _secrets_of(args: argparse.Namespace) -> list[str]:
    """Every key this command may hold: ``--api-key`` and each service's key variable."""
    from ._services import GenStudio, GPUGeek

    candidates = [getattr(args, "api_key", None)]
    candidates += [os.environ.get(service.environment.api_key) for service in (GenStudio, GPUGeek)]
    candidates += getattr(args, "prompt_tokens", [])  # read from files (watch): credentials too
    return [key.strip() for key in candidates if key and key.strip()]


def _report(
    error: Exception,
    *,
    debug: bool,
    secrets: Sequence[str] = (),
    endpoint: Endpoint | None = None,
    events: EventLog | None = None,
) -> int:
    """``error`` as one line on stderr (a prompt's problems: one line each), the traceback first with --debug,
    and as an ``error`` event with ``--events``. ``endpoint``: where the command's requests went (see
    ``describe_error``).

    Everything goes through a redactor: a traceback shows the chained httpx/h11 exceptions, whose messages the
    SDK never saw (``Illegal header value b'Bearer <the whole key>'``).
    """
    import traceback

    from ._cli.errors import CLIError, describe_error, exit_code_for
    from ._exceptions import GenStudioError
    from ._redact import Redactor
    from ._text import printable

    redactor = Redactor(secrets)

    def shown(text: str) -> str:  # no secret, and no control character from a server acted on by the terminal
        return printable(redactor(text), newlines=True)

    if debug:
        print(shown("".join(traceback.format_exception(error))), end="", file=sys.stderr)
    if isinstance(error, GenStudioError | CLIError):
        message = describe_error(error, endpoint)
        print(shown(f"genstudio: error: {message}"), file=sys.stderr)
    else:
        hint = "" if debug else " (run with --debug for the traceback)"
        message = f"internal error: {type(error).__name__}: {error}"
        print(shown(f"genstudio: {message}{hint}"), file=sys.stderr)
    code = int(exit_code_for(error))
    if events is not None:
        events.error(redactor(message), code)  # escaped as JSON escapes it, not for a terminal
    return code


if __name__ == "__main__":
    sys.exit(main())
