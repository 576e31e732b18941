"""The package's public surface: ``__all__``, what is importable, and the ``__module__`` of each public name.

The names are loaded on first use (PEP 562 ``__getattr__`` in ``genstudio_async/__init__.py``): the test pins
that type checkers (the imports under ``if TYPE_CHECKING:``), the run-time table and ``__all__`` agree, and that
``import genstudio_async`` alone stays light.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import genstudio_async

INIT = Path(genstudio_async.__file__)
HEAVY = ("httpx", "httpcore", "pydantic", "pydantic_core", "websockets", "anyio", "rich", "starlette", "uvicorn")


def test_all_is_sorted_and_every_name_is_importable() -> None:
    public = genstudio_async.__all__
    assert public == sorted(public, key=lambda name: (name.startswith("__"), name))
    assert len(set(public)) == len(public)
    for name in public:
        assert getattr(genstudio_async, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from genstudio_async import *", namespace)  # the star import a user may write
    assert sorted(name for name in namespace if name != "__builtins__") == sorted(public)
    assert set(public) <= set(dir(genstudio_async))


def test_every_public_error_says_it_lives_in_the_package() -> None:
    for name in genstudio_async.__all__:
        value = getattr(genstudio_async, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert value.__module__ == "genstudio_async", name
    error = genstudio_async.TaskFailedError
    assert f"{error.__module__}.{error.__qualname__}" == "genstudio_async.TaskFailedError"  # as a traceback shows


def test_every_public_class_keeps_resolvable_type_hints() -> None:
    import typing

    for name in genstudio_async.__all__:
        value = getattr(genstudio_async, name)
        if isinstance(value, type):
            typing.get_type_hints(value)  # raises NameError when __module__ points at the wrong namespace


def test_every_public_error_survives_pickling() -> None:
    import pickle

    from genstudio_async import APIError, APITimeoutError, NotFoundError, PromptProblem, PromptValidationError

    errors: list[BaseException] = [
        APIError("refused", code=7, traceid="tr-1", body={"code": 7}),
        NotFoundError("gone", status_code=404, code=404),
        APITimeoutError("slow", request_sent=False),
        PromptValidationError([PromptProblem("6", "text", "too long")]),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))  # a process pool sends a worker's error back this way
        assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)


def test_type_checkers_see_the_names_the_package_exports() -> None:
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    [guard] = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    imports = [node for node in guard.body if isinstance(node, ast.ImportFrom)]
    typed = {alias.asname or alias.name for node in imports for alias in node.names}
    assert typed == set(genstudio_async.__all__) - {"__version__"}
    assert set(genstudio_async._EXPORTS) == typed  # the run-time table: where __getattr__ finds each name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = genstudio_async.NoSuchThing  # type: ignore[attr-defined]
    assert genstudio_async.types.TaskStatus is genstudio_async.TaskStatus  # public submodules stay reachable


def test_importing_the_package_imports_nothing_heavy() -> None:
    check = (
        "import sys, genstudio_async; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout
