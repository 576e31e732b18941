"""The ``genstudio`` command: GenStudio hosted ComfyUI workflows from a shell.

::

    genstudio demo                      # the whole thing end to end against an in-process emulator
    genstudio run WORKFLOW_ID --set KSampler.steps=30 --spec spec.json
    genstudio batch jobs.jsonl --concurrency 8 --out results/
    genstudio status ID... | cancel ID... | upload FILE
    genstudio emulator --port 8188      # a local GenStudio (same flags as python -m genstudio_async.emulator)

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
    from ._cli.errors import Service

__all__ = ["add_emulator_arguments", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]
Command = Callable[[argparse.Namespace, "Console"], Coroutine[Any, Any, int]]

EMULATOR_DESCRIPTION = (
    "Run a local GenStudio emulator: the HTTP API, the progress WebSocket (same port) and signed-URL result "
    "storage (another port), with fault injection. The first line printed is "
    "'GenStudio emulator listening on http://HOST:PORT'. Stop it with Ctrl-C or SIGTERM."
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
    parser.add_argument(
        "--service",
        default="genstudio",
        choices=["genstudio", "gpugeek"],  # the names Emulator(service=...) takes; checked there too
        help="which service to emulate: GenStudio (HTTP + progress WebSocket) or GPUGeek (/api/v1/..., polled; "
        "its first line then reads 'GPUGeek emulator listening on ...') (default: %(default)s)",
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

    def error(self, message: str) -> NoReturn:
        from ._redact import mask

        for secret in self.secrets:
            message = message.replace(secret, mask(secret))
        super().error(message)


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

DESCRIPTION = "GenStudio hosted ComfyUI workflows, from a shell."

EPILOG_TOP = """\
environment:
  GENSTUDIO_API_KEY    the API key (--api-key works too, but other users can see process arguments)
  GENSTUDIO_BASE_URL   the API base URL (default https://cloud.infini-ai.com); --base-url overrides it
  GENSTUDIO_LOG        the SDK's log level on stderr (debug, info, ...)

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
    """``--timeout``, ``--no-websocket`` and ``--poll-interval``: how a task is followed."""
    parser.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="give up waiting for a task after S seconds (it goes on)"
    )
    parser.add_argument(
        "--no-websocket", action="store_true", help="follow progress by polling instead of the progress WebSocket"
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_float,
        metavar="S",
        help=f"seconds between status polls when polling (default: {DEFAULT_POLL_INTERVAL})",
    )


def _add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout, and nothing else there")


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
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
    from .workflows import builtin_workflow_ids

    parser.add_argument("workflow_id", metavar="WORKFLOW_ID", help="the workflow to run (e.g. wf-c73diz7kadp6ffgn)")
    parser.add_argument(
        "--prompt", metavar="FILE.json", help='input overrides {node_id: {"inputs": {...}}} from a file (- for stdin)'
    )
    parser.add_argument(
        "--set",
        dest="set",
        type=parse_set,
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="set one input; NODE is an id, a class_type or a title (names need a spec); VALUE is typed by the "
        "spec (INT, FLOAT, BOOLEAN, else a string; \"quoted\" is the string inside), or without one parsed as a "
        "JSON literal if it is one; repeatable",
    )
    parser.add_argument(
        "--spec",
        metavar="SPEC.json",
        help="the workflow's parameter spec ('入参范围' JSON): resolves NODE names, types the --set values and "
        "checks the prompt before anything is sent (default: the built-in spec of "
        f"{', '.join(builtin_workflow_ids())})",
    )
    parser.add_argument(
        "--image",
        type=parse_image,
        action="append",
        default=[],
        metavar="NODE=PATH",
        help="set a LoadImage node's 'image' to a local file, uploaded at submit time; repeatable",
    )
    parser.add_argument(
        "--out", metavar="DIR", help=f"where to save the files (default: {CLI_RUN_OUTPUT_DIR}/<prompt_id>/)"
    )
    _add_follow_arguments(parser)
    _add_json_argument(parser, "the outcome (prompt_id, status, files, paths)")


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "jobs",
        metavar="JOBS.jsonl",
        help='one job a line: {"workflow_id": "wf-…", "prompt": {...}, "id": "optional stable name"}',
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
        help=f"the resume journal (default: JOBS.jsonl{CLI_JOURNAL_SUFFIX}); it holds prompt tokens: mode 0600",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="submit again the jobs whose task failed in an earlier run (by default a rerun resumes each "
        "journaled task as it is and submits no job twice)",
    )
    _add_follow_arguments(parser)
    _add_json_argument(parser, "the summary")


def add_ids_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("prompt_ids", nargs="+", metavar="PROMPT_ID", help=what)


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

        loaded = importlib.import_module(f"._cli.{module}", __package__)
        command: Command = getattr(loaded, name)
        if getattr(args, "debug", False):
            enable_debug_logging()
        prepare = getattr(loaded, "prepare", None)
        if prepare is not None:
            prepare(args)  # blocking local reads (files, stdin) before the event loop exists
        console = Console(quiet=bool(getattr(args, "json", False)))
        return asyncio.run(command(args, console))

    return handler


def build_parser() -> argparse.ArgumentParser:
    """The ``genstudio`` argument parser with every subcommand."""
    from ._cli.client import add_debug_argument
    from ._cli.errors import EXIT_CODES_HELP

    parser = _Parser(
        prog="genstudio",
        description=DESCRIPTION,
        epilog=EPILOG_TOP + EXIT_CODES_HELP,
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
        "Start a GenStudio emulator in this process and run a text-to-image generation, then an image-to-image "
        "generation of its result (uploaded from its local path), with live progress: the queue position, then "
        "the percent. Saves real PNGs and prints how long each phase took (submit, generate, download).",
    )
    add_demo_arguments(demo)
    add_debug_argument(demo)
    demo.set_defaults(handler=_async_command("demo", "demo_command"))

    run = command(
        "run",
        "submit one task, follow it, download its files",
        "Submit one task of WORKFLOW_ID, show its progress and download its files. With a spec (--spec, or the "
        "built-in one of the docs' example workflows), the prompt is checked before anything is sent and every "
        "problem is listed (exit 2).",
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
        "files are already downloaded. Ctrl-C does not cancel the tasks on the service. The one window no client "
        "can close: a submit whose answer never arrived (the process died while it was in flight) may have "
        "created a task that nothing recorded; a rerun submits that job again.",
    )
    add_batch_arguments(batch)
    _add_service_arguments(batch)
    batch.set_defaults(handler=_async_command("batch", "batch_command"))

    status = command("status", "show tasks' status", "Show the status of tasks (one request for all of them).")
    add_ids_arguments(status, "a task's prompt_id (cft-…); several are asked in one request")
    _add_json_argument(status, "a list of the tasks")
    _add_service_arguments(status)
    status.set_defaults(handler=_async_command("tasks", "status_command"))

    cancel = command(
        "cancel",
        "cancel tasks",
        "Ask the service to cancel tasks (their status becomes 4). Their status is asked first, in one request: a "
        "task that has already ended is reported ('already succeeded: not cancelled', exit 1) and left alone.",
    )
    add_ids_arguments(cancel, "a task's prompt_id (cft-…)")
    _add_json_argument(cancel, "what was cancelled")
    _add_service_arguments(cancel)
    cancel.set_defaults(handler=_async_command("tasks", "cancel_command"))

    upload = command(
        "upload", "upload an image, print its image_id", "Upload an image; print the image_id for a LoadImage input."
    )
    upload.add_argument("file", metavar="FILE", help="the image to upload")
    _add_json_argument(upload, "the image_id")
    _add_service_arguments(upload)
    upload.set_defaults(handler=_async_command("tasks", "upload_command"))

    emulator = commands.add_parser("emulator", help="run a local GenStudio emulator", description=EMULATOR_DESCRIPTION)
    add_emulator_arguments(emulator)
    emulator.set_defaults(handler=_run_emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``genstudio`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit code."""
    parser = build_parser()
    _Parser.secrets = _api_key_arguments(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("genstudio: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout was closed early (``genstudio status ... | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as error:  # noqa: BLE001 - every error ends as one line and an exit code
        from ._cli.client import service_of

        debug = bool(getattr(args, "debug", False))
        return _report(error, debug=debug, secrets=_secrets_of(args), service=service_of(args))


def _secrets_of(args: argparse.Namespace) -> list[str]:
    """Every key this command may hold: ``--api-key`` and each service's key variable."""
    from ._services import GenStudio, GPUGeek

    candidates = [getattr(args, "api_key", None)]
    candidates += [os.environ.get(service.environment.api_key) for service in (GenStudio, GPUGeek)]
    return [key.strip() for key in candidates if key and key.strip()]


def _report(error: Exception, *, debug: bool, secrets: Sequence[str] = (), service: Service | None = None) -> int:
    """``error`` as one line on stderr (a prompt's problems: one line each), the traceback first with --debug.
    ``service``: what the command talked to (see ``describe_error``).

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
        print(shown(f"genstudio: error: {describe_error(error, service)}"), file=sys.stderr)
    else:
        hint = "" if debug else " (run with --debug for the traceback)"
        print(shown(f"genstudio: internal error: {type(error).__name__}: {error}{hint}"), file=sys.stderr)
    return int(exit_code_for(error))


if __name__ == "__main__":
    sys.exit(main())
