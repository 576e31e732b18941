"""The client a command talks through (``AsyncGenStudio`` or ``AsyncGPUGeek``), and the options every service
command shares.

``--service`` (or ``GENSTUDIO_SERVICE``) picks the service (``services``). The key comes from that service's
variable (``GENSTUDIO_API_KEY``, ``GPUGEEK_API_KEY``). ``--api-key`` works too, with a warning: a process's
arguments are visible to every user of the machine (``ps``). The base URL comes from ``--base-url`` or the
service's variable (``GENSTUDIO_BASE_URL``, ``GPUGEEK_BASE_URL``). Neither the key nor any prompt token is ever
printed whole.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from .. import _constants as C
from .console import Console
from .errors import KEY_FROM_FLAG, CLIError, Endpoint, ExitCode
from .services import GENSTUDIO, GPUGEEK, Profile, add_service_choice, profile_of

if TYPE_CHECKING:  # imported when a client is made: building the parser must not import httpx or pydantic
    from .services import Client


def api_key_warning(profile: Profile) -> str:
    return (
        "--api-key puts the key in the process list, where other users of this machine can see it; "
        f"prefer the {profile.environment.api_key} environment variable"
    )


def _variables(what: str) -> str:
    """``$GENSTUDIO_…`` and ``$GPUGEEK_…`` of ``what`` (``api_key``, ``base_url``) for a help text."""
    return " or ".join(
        f"${getattr(profile.environment, what)}{'' if profile is GENSTUDIO else f' with --service {profile.name}'}"
        for profile in (GENSTUDIO, GPUGEEK)
    )


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """``--service``, ``--api-key``, ``--base-url`` and ``--debug`` for a subcommand that talks to a service."""
    group = parser.add_argument_group("service")
    add_service_choice(group, "the service to talk to")
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=None,
        help=f"the API key (default: {_variables('api_key')}; prefer the variable: arguments are visible to "
        "other users)",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=None,
        help=f"the API base URL (default: {_variables('base_url')}, else {GENSTUDIO.service.default_base_url} "
        f"or {GPUGEEK.service.default_base_url})",
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


def make_client(args: argparse.Namespace, console: Console) -> Client:
    """The client of the service ``args`` chose (``--service``), with ``--api-key``, ``--base-url``,
    ``--no-websocket`` (GenStudio's: GPUGeek has no WebSocket) and ``--poll-interval``.

    Records where it talks to as ``args.endpoint`` (an ``Endpoint``: the base URL, where the key came from),
    for the command's error messages.
    """
    profile = profile_of(args)
    variable = profile.environment.api_key
    api_key: str | None = getattr(args, "api_key", None)
    key_source = KEY_FROM_FLAG if api_key is not None else variable
    if api_key is not None:
        console.warn(api_key_warning(profile))
    else:
        api_key = os.environ.get(variable)
    if not api_key or not api_key.strip():
        raise CLIError(f"no API key: set {variable} (or pass --api-key)", ExitCode.USAGE)
    poll_interval: float | None = getattr(args, "poll_interval", None)
    client = profile.client(
        api_key if key_source == KEY_FROM_FLAG else None,  # from the environment: errors name the variable
        base_url=getattr(args, "base_url", None),
        poll_interval=C.DEFAULT_POLL_INTERVAL if poll_interval is None else poll_interval,
        use_websocket=not getattr(args, "no_websocket", False),
    )
    args.endpoint = Endpoint(client.base_url, key_source)
    return client


def endpoint_of(args: argparse.Namespace) -> Endpoint | None:
    """The ``Endpoint`` ``make_client`` recorded on ``args``, if it got that far."""
    endpoint = getattr(args, "endpoint", None)
    return endpoint if isinstance(endpoint, Endpoint) else None
