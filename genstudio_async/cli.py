"""The ``genstudio`` command.

For now one subcommand, ``genstudio emulator``, runs a local GenStudio emulator (``python -m
genstudio_async.emulator`` takes the same flags). Each subcommand adds its arguments in its own
``add_*_arguments`` function and sets ``handler`` on the parsed namespace; ``main`` dispatches.
Subcommands import their heavy dependencies only when run, so ``genstudio --help`` always works.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ._constants import (
    EMULATOR_DEFAULT_API_KEY,
    EMULATOR_DEFAULT_HOST,
    EMULATOR_DEFAULT_PORT,
    EMULATOR_DEFAULT_STEP_SECONDS,
    EMULATOR_DEFAULT_STEPS,
    EMULATOR_DEFAULT_WORKERS,
    EMULATOR_TOKEN_TTL_SECONDS,
    RESULT_RETENTION_SECONDS,
)
from ._version import __version__

__all__ = ["add_emulator_arguments", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

EMULATOR_DESCRIPTION = (
    "Run a local GenStudio emulator: the HTTP API, the progress WebSocket (same port) and signed-URL result "
    "storage (another port), with fault injection. The first line printed is "
    "'GenStudio emulator listening on http://HOST:PORT'. Stop it with Ctrl-C or SIGTERM."
)


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's flags (shared by ``genstudio emulator`` and ``python -m genstudio_async.emulator``)."""
    parser.add_argument("--host", default=EMULATOR_DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=EMULATOR_DEFAULT_PORT, help="API port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--storage-port", type=int, default=0, help="result-storage port (default: a free one)"
    )
    parser.add_argument(
        "--api-key",
        default=EMULATOR_DEFAULT_API_KEY,
        help="the key clients must send as 'Authorization: Bearer KEY' (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=EMULATOR_DEFAULT_WORKERS, help="tasks run at once (default: %(default)s)"
    )
    parser.add_argument(
        "--steps", type=int, default=EMULATOR_DEFAULT_STEPS, help="progress steps per task (default: %(default)s)"
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
        help="register a workflow from a parameter-spec file ('入参范围' JSON); repeatable",
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
            "ws_silent, ws_close_after, ws_junk, http_error_rate, http_error_status, endpoints, rate_limit, "
            "rate_limit_burst, delay, seed, fail_tasks, deny_tasks"
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


def _run_emulator(args: argparse.Namespace) -> int:
    try:
        from .emulator._runner import run
    except ImportError as exc:  # the emulator extra is not installed
        print(f"genstudio emulator: {exc}", file=sys.stderr)
        return 1
    return run(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``genstudio`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="genstudio", description="GenStudio hosted ComfyUI workflows, from a shell.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    emulator = commands.add_parser(
        "emulator", help="run a local GenStudio emulator", description=EMULATOR_DESCRIPTION
    )
    add_emulator_arguments(emulator)
    emulator.set_defaults(handler=_run_emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``genstudio`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
