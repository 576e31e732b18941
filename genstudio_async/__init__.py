"""genstudio_async: an asyncio-native SDK for GenStudio's hosted ComfyUI workflow API.

```python
from genstudio_async import AsyncGenStudio

async with AsyncGenStudio() as client:                 # api_key from GENSTUDIO_API_KEY
    sub = await client.submit("wf-…", {"6": {"inputs": {"text": "a red fox"}}})
    info = await client.get_task(sub)
```

Without asyncio (scripts, notebooks), the sync twins ``GenStudio`` and ``GPUGeek`` have the same methods::

    with GenStudio() as client:
        result = client.run("wf-…", {"6": {"inputs": {"text": "a red fox"}}})

The public names are loaded on first use (PEP 562): ``import genstudio_async`` alone imports neither httpx nor
pydantic, so the ``genstudio`` command answers ``--version`` and ``--help`` without them. Each public exception's
``__module__`` is ``"genstudio_async"``, so a traceback says ``genstudio_async.TaskFailedError``.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported by __getattr__ on first use
    from ._client import AsyncGenStudio, AsyncGPUGeek
    from ._exceptions import (
        APIConnectionError,
        APIError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConfigurationError,
        EventLoopError,
        GenStudioError,
        InternalServerError,
        InvalidInputError,
        InvalidResponseError,
        NotFoundError,
        PermissionDeniedError,
        PromptProblem,
        PromptValidationError,
        RateLimitError,
        ResponseTooLargeError,
        TaskCancelledError,
        TaskError,
        TaskFailedError,
        TaskPermissionError,
        TaskTimeoutError,
    )
    from ._sync import GenStudio, GPUGeek
    from ._transports import AioHttpClient
    from .types import (
        ImagePostProcess,
        JobOutcome,
        ProgressEvent,
        Submission,
        TaskInfo,
        TaskResult,
        TaskStatus,
    )
    from .workflow import ApiWorkflow, LocalImage, PromptBuilder, WorkflowSpec

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AioHttpClient",
    "ApiWorkflow",
    "AsyncGPUGeek",
    "AsyncGenStudio",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "EventLoopError",
    "GPUGeek",
    "GenStudio",
    "GenStudioError",
    "ImagePostProcess",
    "InternalServerError",
    "InvalidInputError",
    "InvalidResponseError",
    "JobOutcome",
    "LocalImage",
    "NotFoundError",
    "PermissionDeniedError",
    "ProgressEvent",
    "PromptBuilder",
    "PromptProblem",
    "PromptValidationError",
    "RateLimitError",
    "ResponseTooLargeError",
    "Submission",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskInfo",
    "TaskPermissionError",
    "TaskResult",
    "TaskStatus",
    "TaskTimeoutError",
    "WorkflowSpec",
    "__version__",
]

# Where each public name lives (relative to this package). Keep it in step with the imports above and __all__
# (tests/test_exported_members.py checks all three).
_EXPORTS: dict[str, str] = {
    "AsyncGenStudio": "._client",
    "AsyncGPUGeek": "._client",
    "GenStudio": "._sync",
    "GPUGeek": "._sync",
    "AioHttpClient": "._transports",
    **dict.fromkeys(
        (
            "APIConnectionError",
            "APIError",
            "APIStatusError",
            "APITimeoutError",
            "AuthenticationError",
            "BadRequestError",
            "ConfigurationError",
            "EventLoopError",
            "GenStudioError",
            "InternalServerError",
            "InvalidInputError",
            "InvalidResponseError",
            "NotFoundError",
            "PermissionDeniedError",
            "PromptProblem",
            "PromptValidationError",
            "RateLimitError",
            "ResponseTooLargeError",
            "TaskCancelledError",
            "TaskError",
            "TaskFailedError",
            "TaskPermissionError",
            "TaskTimeoutError",
        ),
        "._exceptions",
    ),
    **dict.fromkeys(
        ("ImagePostProcess", "JobOutcome", "ProgressEvent", "Submission", "TaskInfo", "TaskResult", "TaskStatus"),
        ".types",
    ),
    **dict.fromkeys(("ApiWorkflow", "LocalImage", "PromptBuilder", "WorkflowSpec"), ".workflow"),
}
# Public submodules, reachable as attributes (``genstudio_async.types``) as when this file imported them.
_SUBMODULES = frozenset({"types", "workflow"})


if not TYPE_CHECKING:  # hidden from type checkers, which would otherwise accept any attribute of the package

    def __getattr__(name: str) -> Any:
        """Import a public name's module on first use, and hand out (and cache) the name."""
        module_name = _EXPORTS.get(name)
        if module_name is None:
            if name in _SUBMODULES:
                return importlib.import_module(f".{name}", __name__)
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name, __name__), name)
        _adopt_loaded_names()
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__) | _SUBMODULES)


def _adopt_loaded_names() -> None:
    """Set ``__module__`` to this package on every public exception whose module is loaded by now (as httpx's
    ``__init__`` does), so a traceback says ``genstudio_async.TaskFailedError``. Only exceptions (and the
    ``TaskStatus`` enum, which repr shows): models and dataclasses resolve their string annotations in the
    module ``__module__`` names, which ``typing.get_type_hints`` and pydantic need to stay their own."""
    for name, module_name in _EXPORTS.items():
        module = sys.modules.get(f"{__name__}{module_name}")
        if module is not None:
            value = getattr(module, name)
            adopt = isinstance(value, type) and (issubclass(value, BaseException) or name == "TaskStatus")
            if adopt and value.__module__ != __name__:
                value.__module__ = __name__
