"""The ``AsyncGenStudio`` a command talks through, and the options every service command shares.

The key comes from ``GENSTUDIO_API_KEY``. ``--api-key`` works too, with a warning: a process's arguments are
visible to every user of the machine (``ps``). The base URL comes from ``--base-url`` or ``GENSTUDIO_BASE_URL``.
Neither the key nor any prompt token is ever printed whole.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from .. import _constants as C
from .._services import genstudio as GS
from .console import Console
from .errors import KEY_FROM_FLAG, CLIError, ExitCode, Service

if TYPE_CHECKING:  # imported when a client is made: building the parser must not import httpx or pydantic
    from .._client import AsyncGenStudio

API_KEY_WARNING = (
    "--api-key puts the key in the process list, where other users of this machine can see it; "
    f"prefer the {GS.ENV_API_KEY} environment variable"
)


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """``--api-key``, ``--base-url`` and ``--debug`` for a subcommand that talks to the service."""
    group = parser.add_argument_group("service")
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=None,
        help=f"the API key (default: ${GS.ENV_API_KEY}; prefer the variable: arguments are visible to other users)",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=None,
        help=f"the API base URL (default: ${GS.ENV_BASE_URL} or {GS.DEFAULT_BASE_URL})",
    )
    add_debug_argument(group)


def add_debug_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and the SDK's debug log (secrets stay redacted)",
    )


def enable_debug_logging() -> None:
    """The SDK's log at DEBUG on stderr (it redacts keys and tokens itself), escaped for the terminal."""
    from .._logs import enable_stderr

    enable_stderr(logging.DEBUG)


def make_client(args: argparse.Namespace, console: Console) -> AsyncGenStudio:
    """An ``AsyncGenStudio`` for ``args`` (``--api-key``, ``--base-url``, ``--no-websocket``, ``--poll-interval``).

    Records what it talks to as ``args.service`` (a ``Service``: the base URL, where the key came from), for
    the command's error messages.
    """
    api_key: str | None = getattr(args, "api_key", None)
    key_source = KEY_FROM_FLAG if api_key is not None else GS.ENV_API_KEY
    if api_key is not None:
        console.warn(API_KEY_WARNING)
    else:
        api_key = os.environ.get(GS.ENV_API_KEY)
    if not api_key or not api_key.strip():
        raise CLIError(f"no API key: set {GS.ENV_API_KEY} (or pass --api-key)", ExitCode.USAGE)
    poll_interval: float | None = getattr(args, "poll_interval", None)
    from .._client import AsyncGenStudio

    client = AsyncGenStudio(
        api_key if key_source == KEY_FROM_FLAG else None,  # from the environment: errors name the variable
        base_url=getattr(args, "base_url", None),
        use_websocket=not getattr(args, "no_websocket", False),
        poll_interval=C.DEFAULT_POLL_INTERVAL if poll_interval is None else poll_interval,
    )
    args.service = Service(client.base_url, key_source)
    return client


def service_of(args: argparse.Namespace) -> Service | None:
    """The ``Service`` ``make_client`` recorded on ``args``, if it got that far."""
    service = getattr(args, "service", None)
    return service if isinstance(service, Service) else None
