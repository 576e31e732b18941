"""pytest fixtures that run a local GenStudio emulator, for your own tests. No key, no network.

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
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from ._constants import ENV_API_KEY, ENV_BASE_URL, ENV_WS_URL

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["genstudio_emulator", "genstudio_emulator_env", "genstudio_emulator_options"]

MARKER = "genstudio_emulator"


# Fixtures of this plugin; an ``async def`` test that uses one runs on pytest-asyncio's loop in any mode.
FIXTURES = frozenset({"genstudio_emulator", "genstudio_emulator_env"})


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


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    """Default ``Emulator`` keyword arguments for ``genstudio_emulator``; override this fixture to change them."""
    return {}


@pytest_asyncio.fixture
async def genstudio_emulator(
    request: pytest.FixtureRequest, genstudio_emulator_options: dict[str, Any]
) -> AsyncIterator[Emulator]:
    """A running emulator on 127.0.0.1 (free ports), stopped after the test."""
    from .emulator import Emulator

    options = dict(genstudio_emulator_options)
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
        options.update(marker.kwargs)
    async with Emulator(**options) as emulator:
        yield emulator


@pytest.fixture
def genstudio_emulator_env(genstudio_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """``genstudio_emulator``, with ``GENSTUDIO_API_KEY``/``GENSTUDIO_BASE_URL`` set to it for the test."""
    monkeypatch.setenv(ENV_API_KEY, genstudio_emulator.api_key)
    monkeypatch.setenv(ENV_BASE_URL, genstudio_emulator.base_url)
    monkeypatch.delenv(ENV_WS_URL, raising=False)
    return genstudio_emulator
