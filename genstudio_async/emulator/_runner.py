"""Running the emulator from a shell until Ctrl-C or SIGTERM (``genstudio emulator``, ``python -m …``).

The first line on stdout is exactly ``GenStudio emulator listening on http://HOST:PORT`` (``GPUGeek emulator
listening on …`` with ``--service gpugeek``; the real port when ``--port 0``), flushed at once, so a script can
start the emulator and read where it is. SIGINT and SIGTERM stop it cleanly with exit code 0; bad flags exit
with 2, a port that cannot be bound with 1.

A process of its own, the emulator may serve thousands of sockets at once (benchmarks/bench_scale.py opens
10,000): it raises its own open-file soft limit to the hard limit, and runs on uvloop when uvloop is installed
(about twice the frames per CPU second of asyncio's loop; ``GENSTUDIO_EMULATOR_LOOP=asyncio`` keeps asyncio's).
Neither is done by an emulator run inside another program (``Emulator`` in a test): that process's limits and
event loop are its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import TextIO

from .._constants import SECRET_VISIBLE_PREFIX
from .._exceptions import InvalidInputError
from .._services.genstudio import PROGRESS_WS_PATH
from ._defaults import EMULATOR_ADMIN_PATH_PREFIX, EMULATOR_DEFAULT_API_KEY, EMULATOR_LOOP_ENV
from ._faults import Faults
from ._server import Emulator


def _say(line: str, *, stream: TextIO | None = None) -> None:
    """Write a line and flush it at once (a script may be waiting for it)."""
    out = stream if stream is not None else sys.stdout
    out.write(line + "\n")
    out.flush()


def _workflow_argument(value: str) -> tuple[str, str]:
    workflow_id, sep, path = value.partition("=")
    if not sep or not workflow_id.strip() or not path.strip():
        raise InvalidInputError(f"--workflow takes ID=FILE.json, got {value!r}")
    return workflow_id.strip(), path.strip()


def _emulator(args: argparse.Namespace) -> Emulator:
    """The emulator the flags describe, its workflows and faults in place (``ValueError``/``InvalidInputError``
    for a flag it cannot take)."""
    faults, per_workflow = Faults.from_assignments(args.fault)
    emulator: Emulator = Emulator(
        args.api_key,
        service=args.service,
        host=args.host,
        port=args.port,
        storage_port=args.storage_port,
        workers=args.workers,
        steps=args.steps,
        step_seconds=args.step_seconds,
        token_ttl=args.token_ttl,
        retention=args.retention,
        faults=faults,
        builtin_workflows=not args.no_builtin_workflows,
        stamp_snapshots=args.stamp_snapshots,
    )
    layer = emulator.service
    for value in args.workflow:
        workflow_id, path = _workflow_argument(value)
        layer.register_workflow(layer.parse_workflow_id(workflow_id), path)
    for workflow_id, workflow_faults in per_workflow.items():
        emulator.set_workflow_faults(layer.parse_workflow_id(workflow_id), workflow_faults)
    return emulator


def _shown_key(api_key: str) -> str:
    if api_key == EMULATOR_DEFAULT_API_KEY:
        return api_key
    return api_key[:SECRET_VISIBLE_PREFIX] + "… (as given by --api-key)"


async def _serve(emulator: Emulator) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    name = emulator.service_name
    try:
        async with emulator as emu:
            _say(f"{name} emulator listening on {emu.base_url}")
            if emu.service.push_stream:
                _say(f"  progress WebSocket  {emu.ws_url}{PROGRESS_WS_PATH}?authorization=<prompt_token>")
            _say(f"  result storage      {emu.storage_url}")
            _say(f"  API key             {_shown_key(emu.api_key)}")
            _say(f"  workflows           {', '.join(map(str, emu.workflow_ids)) or '(none)'}")
            _say(f"  admin               {emu.base_url}{EMULATOR_ADMIN_PATH_PREFIX}/stats (same key)")
            _say("Press Ctrl-C to stop.")
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    _say(f"{name} emulator stopped.")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the emulator described by parsed ``args`` (see ``genstudio_async.cli.add_emulator_arguments``)."""
    try:
        emulator = _emulator(args)
    except (ValueError, InvalidInputError) as exc:  # FaultError is a ValueError
        _say(f"error: {exc}", stream=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    raise_open_file_limit()
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(_serve(emulator))
    except OSError as exc:
        _say(f"error: cannot listen on {args.host}:{args.port}: {exc}", stream=sys.stderr)
        return 1
    except KeyboardInterrupt:  # only where signal handlers cannot be installed (Windows)
        return 0


def raise_open_file_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit (one descriptor per socket); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= soft:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # a container may refuse: the emulator still runs, on fewer sockets
        logging.getLogger("genstudio_async.emulator").debug("open-file limit left at %d: %s", soft, exc)
        return soft
    return hard


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when uvloop is installed and ``GENSTUDIO_EMULATOR_LOOP`` does not say ``asyncio``; else
    ``None`` (asyncio's own)."""
    if os.environ.get(EMULATOR_LOOP_ENV, "").strip().lower() == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")  # optional: not a dependency, so not imported by name
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
