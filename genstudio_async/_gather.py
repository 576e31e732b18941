"""Run awaitables together, all or nothing: on the first error the others are cancelled, then that error is raised.

``asyncio.gather`` leaves the others running after one fails (a failed ``get_tasks`` went on sending GETs; a
failed submit's sibling uploads went on uploading). ``asyncio.TaskGroup`` cancels them, but raises an
``ExceptionGroup``, which is not one of the SDK's errors: ``gather`` here raises the first error itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def gather(*coroutines: Coroutine[Any, Any, T]) -> list[T]:
    """The results of ``coroutines`` run together, in their order; on the first error the rest are cancelled and
    waited for, and that error is raised as it is."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except BaseExceptionGroup as errors:
        raise _first(errors) from None
    return [task.result() for task in tasks]


def _first(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a group, looking inside nested groups."""
    first = errors.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
