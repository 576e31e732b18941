"""Which service a command talks to (``--service``, else ``GENSTUDIO_SERVICE``), and what the command must know
of each to speak and word things right.

A ``Profile`` is one service as the command sees it: the SDK's wire for it (``genstudio_async._services``: its
name, environment variables and default base URL, never retyped here), the client class, and the few things
the command does differently: the shape of a prompt (input overrides, or the whole API-format workflow), what
a workflow id looks like, whether progress comes as a percent, whether its status 4 may be a cancellation.

Importing this module imports neither httpx nor pydantic (``genstudio --help`` reads the names here).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._services import GenStudio, GPUGeek, Service
from ..emulator._defaults import DEFAULT_SERVICE, SERVICE_GENSTUDIO, SERVICE_GPUGEEK
from . import defaults as CD

if TYPE_CHECKING:  # the clients are imported when one is made
    from .._client import AsyncGenStudio, AsyncGPUGeek
    from .._services import Environment

    Client = AsyncGenStudio | AsyncGPUGeek


@dataclass(frozen=True)
class Profile:
    """One service, as the ``genstudio`` command talks to it and words what it says. What the service is and
    can do comes from its ``_services`` class; what is here is the command's own wording."""

    name: str
    """The ``--service`` value: ``genstudio`` or ``gpugeek``."""
    service: type[Service]
    """The SDK's wire for it: its name, environment variables, default base URL and what it can do."""
    prompt_id_example: str
    """What a task's prompt_id looks like, for help texts."""
    upload_answer: str
    """What an upload returns, the value of a ``LoadImage`` input: ``image_id`` or ``oss_url``."""

    @property
    def title(self) -> str:
        """The service's own name: ``GenStudio``, ``GPUGeek``."""
        return self.service.name

    @property
    def environment(self) -> Environment:
        """The variables its client reads: the API key's and the base URL's."""
        return self.service.environment

    @property
    def whole_workflow(self) -> bool:
        return self.service.whole_workflow

    @property
    def progress_socket(self) -> bool:
        return self.service.push_stream

    @property
    def percent(self) -> bool:
        return self.service.reports_percent

    @property
    def failed_may_be_cancelled(self) -> bool:
        return self.service.failure_may_be_cancel

    def workflow_id(self, value: object) -> str | int | None:
        """``value`` as a workflow id this service can have (GPUGeek's an int), or ``None`` when it cannot be one:
        the SDK's own rule, so a jobs file is checked in full before anything is sent."""
        from .._exceptions import InvalidInputError

        try:
            return self.service.workflow_id(value)
        except InvalidInputError:
            return None

    def client(
        self, api_key: str | None, *, base_url: str | None, poll_interval: float, use_websocket: bool
    ) -> Client:
        """This service's client (``api_key`` ``None``: from its environment variable, which errors then name)."""
        from .._client import AsyncGenStudio, AsyncGPUGeek

        if self.progress_socket:
            return AsyncGenStudio(
                api_key, base_url=base_url, use_websocket=use_websocket, poll_interval=poll_interval
            )
        return AsyncGPUGeek(api_key, base_url=base_url, poll_interval=poll_interval)  # nothing to turn off


GENSTUDIO = Profile(name=SERVICE_GENSTUDIO, service=GenStudio, prompt_id_example="cft-…", upload_answer="image_id")
GPUGEEK = Profile(name=SERVICE_GPUGEEK, service=GPUGeek, prompt_id_example="763289064770885", upload_answer="oss_url")
PROFILES: dict[str, Profile] = {profile.name: profile for profile in (GENSTUDIO, GPUGEEK)}


def service_name(text: str) -> str:
    """argparse ``type=`` of ``--service`` (and of its default, read from ``GENSTUDIO_SERVICE``)."""
    name = text.strip().lower()
    if name not in PROFILES:
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(PROFILES)} (from --service or ${CD.CLI_SERVICE_ENV}), got {text!r}"
        )
    return name


def add_service_choice(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str) -> None:
    """``--service {genstudio,gpugeek}``, its default from ``GENSTUDIO_SERVICE``. ``what``: what it chooses."""
    parser.add_argument(
        "--service",
        type=service_name,
        default=os.environ.get(CD.CLI_SERVICE_ENV) or DEFAULT_SERVICE,
        metavar="{" + ",".join(PROFILES) + "}",
        help=f"{what} (default: %(default)s, from ${CD.CLI_SERVICE_ENV} when it is set)",
    )


def profile_of(args: argparse.Namespace) -> Profile:
    """The profile of the service ``args`` chose (GenStudio when it chose none)."""
    return PROFILES[getattr(args, "service", None) or DEFAULT_SERVICE]
