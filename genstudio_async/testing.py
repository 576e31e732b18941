"""pytest fixtures that run a local GenStudio (or GPUGeek) emulator, for your own tests. No key, no network.

Turn the plugin on in your top-level ``conftest.py`` (it never loads by itself)::

    pytest_plugins = ["genstudio_async.testing"]

and ask for ``genstudio_emulator`` in an async test (needs pytest-asyncio and
``pip install 'genstudio-async[testing]'``; an ``async def`` test that uses the fixture is marked
``@pytest.mark.asyncio`` by the plugin, so pytest-asyncio's default strict mode needs no configuration)::

    import pytest
    from genstudio_async.emulator import Faults

    async def test_generates_an_image(genstudio_emulator):
        async with genstudio_emulator.client() as client:
            result = await client.run("wf-c73diz7kadp6ffgn", {"6": {"inputs": {"text": "a red fox"}}})
        assert result.outputs
        assert genstudio_emulator.stats.submits == 1

    @pytest.mark.genstudio_emulator(workers=1, faults=Faults(ws_drop_after=2))
    async def test_survives_a_dropped_socket(genstudio_emulator):
        ...

The fixture yields a running ``genstudio_async.emulator.Emulator``: ``base_url``, ``ws_url``, ``api_key``,
``client(**kwargs)`` (an ``AsyncGenStudio`` pointed at it), ``set_faults``/``set_workflow_faults``, ``pause``/
``resume``, ``wait_status``, ``advance_clock``, ``register_workflow`` and ``stats``.

Options (``Emulator`` keyword arguments) come from the ``genstudio_emulator`` marker, on top of the
``genstudio_emulator_options`` fixture, which you may override for a module or a directory. Code under test
that builds ``AsyncGenStudio()`` from the environment can use ``genstudio_emulator_env``, which sets
``GENSTUDIO_API_KEY`` and ``GENSTUDIO_BASE_URL`` to the emulator's.

GPUGeek: ``@pytest.mark.genstudio_emulator(service="gpugeek")`` makes ``genstudio_emulator`` a GPUGeek one, or
ask for ``gpugeek_emulator`` (options from the ``gpugeek_emulator`` marker on top of
``gpugeek_emulator_options``; ``client()`` is then an ``AsyncGPUGeek``), and ``gpugeek_emulator_env`` for
``GPUGEEK_API_KEY``/``GPUGEEK_BASE_URL``::

    async def test_polls_to_the_end(gpugeek_emulator):
        async with gpugeek_emulator.client() as client:
            result = await client.run(763311996779461, ApiWorkflow.load("workflow_api.json").builder().build())
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from ._services.genstudio import ENV_API_KEY, ENV_BASE_URL, ENV_WS_URL

if TYPE_CHECKING:
    from .emulator import Emulator
    from .emulator._gpugeek import GPUGeekService

__all__ = [
    "genstudio_emulator",
    "genstudio_emulator_env",
    "genstudio_emulator_options",
    "gpugeek_emulator",
    "gpugeek_emulator_env",
    "gpugeek_emulator_options",
]

MARKER = "genstudio_emulator"
GPUGEEK_MARKER = "gpugeek_emulator"


# Fixtures of this plugin; an ``async def`` test that uses one runs on pytest-asyncio's loop in any mode.
FIXTURES = frozenset({"genstudio_emulator", "genstudio_emulator_env", "gpugeek_emulator", "gpugeek_emulator_env"})


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, None]:
    """Mark ``async def`` tests that use this plugin's fixtures with ``@pytest.mark.asyncio``.

    In pytest-asyncio's default *strict* mode an unmarked ``async def`` test is not run ("async def functions are
    not natively supported"); with this, a test that asks for ``genstudio_emulator`` works in strict and auto
    mode alike. ``trylast``: this wrapper sits inside pytest-asyncio's own, so the mark is there when it looks.
    """
    outcome = yield
    try:
        result = outcome.get_result()
    except BaseException:  # noqa: BLE001 - collection errors are pytest's to report, untouched
        return
    for item in result if isinstance(result, list) else [result]:
        if (
            isinstance(item, pytest.Function)
            and inspect.iscoroutinefunction(item.obj)
            and FIXTURES & set(item.fixturenames)
            and item.get_closest_marker("asyncio") is None
        ):
            item.add_marker(pytest.mark.asyncio)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(**options): Emulator keyword arguments for the genstudio_emulator fixture"
    )
    config.addinivalue_line(
        "markers", f"{GPUGEEK_MARKER}(**options): Emulator keyword arguments for the gpugeek_emulator fixture"
    )


@asynccontextmanager
async def _running(
    request: pytest.FixtureRequest, defaults: dict[str, Any], marker_name: str, **forced: Any
) -> AsyncIterator[Any]:
    """An emulator started with ``defaults``, the keyword arguments of the test's closest ``marker_name`` marker
    on top, then ``forced``; stopped on leaving."""
    from .emulator import Emulator

    options = dict(defaults)
    marker = request.node.get_closest_marker(marker_name)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{marker_name} takes keyword arguments only")
        options.update(marker.kwargs)
    async with Emulator(**options, **forced) as emulator:
        yield emulator


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    """Default ``Emulator`` keyword arguments for ``genstudio_emulator``; override this fixture to change them."""
    return {}


@pytest_asyncio.fixture
async def genstudio_emulator(
    request: pytest.FixtureRequest, genstudio_emulator_options: dict[str, Any]
) -> AsyncIterator[Emulator]:
    """A running emulator on 127.0.0.1 (free ports), stopped after the test."""
    async with _running(request, genstudio_emulator_options, MARKER) as emulator:
        yield emulator


@pytest.fixture
def genstudio_emulator_env(genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """``genstudio_emulator``, with ``GENSTUDIO_API_KEY``/``GENSTUDIO_BASE_URL`` set to it for the test."""
    monkeypatch.setenv(ENV_API_KEY, genstudio_emulator.api_key)
    monkeypatch.setenv(ENV_BASE_URL, genstudio_emulator.base_url)
    monkeypatch.delenv(ENV_WS_URL, raising=False)
    return genstudio_emulator


@pytest.fixture
def gpugeek_emulator_options() -> dict[str, Any]:
    """Default ``Emulator`` keyword arguments for ``gpugeek_emulator``; override this fixture to change them."""
    return {}


@pytest_asyncio.fixture
async def gpugeek_emulator(
    request: pytest.FixtureRequest, gpugeek_emulator_options: dict[str, Any]
) -> AsyncIterator[Emulator[GPUGeekService]]:
    """A running GPUGeek emulator on 127.0.0.1 (free ports), stopped after the test."""
    async with _running(request, gpugeek_emulator_options, GPUGEEK_MARKER, service="gpugeek") as emulator:
        yield emulator


@pytest.fixture
def gpugeek_emulator_env(
    gpugeek_emulator: Emulator[GPUGeekService], monkeypatch: pytest.MonkeyPatch
) -> Emulator[GPUGeekService]:
    """``gpugeek_emulator``, with ``GPUGEEK_API_KEY``/``GPUGEEK_BASE_URL`` set to it for the test."""
    from ._services.gpugeek import ENVIRONMENT

    monkeypatch.setenv(ENVIRONMENT.api_key, gpugeek_emulator.api_key)
    monkeypatch.setenv(ENVIRONMENT.base_url, gpugeek_emulator.base_url)
    return gpugeek_emulator
