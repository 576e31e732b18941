"""The emulator's server dependencies (the ``emulator`` extra), checked before anything imports them.

Only this package imports starlette, uvicorn and python-multipart, so the SDK itself never needs them.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "pip install 'genstudio-async[emulator]'"

# import name -> distribution name, for the error message
_REQUIRED = {"starlette": "starlette", "uvicorn": "uvicorn", "multipart": "python-multipart"}


class EmulatorDependencyError(ImportError):
    """The emulator's server dependencies are not installed."""


def missing_dependencies() -> list[str]:
    """The distributions of the ``emulator`` extra that cannot be imported."""
    return [dist for module, dist in _REQUIRED.items() if importlib.util.find_spec(module) is None]


def require_server_dependencies() -> None:
    """Raise ``EmulatorDependencyError`` naming what to install when any server dependency is missing."""
    missing = missing_dependencies()
    if missing:
        raise EmulatorDependencyError(
            f"the GenStudio emulator needs {', '.join(missing)}: install them with {INSTALL_HINT}"
        )
