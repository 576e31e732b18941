"""``GenStudio`` and ``GPUGeek``: the async clients' methods without ``await``, for scripts and notebooks.

A sync client is its async client running on an event loop of its own, in a helper thread (an anyio blocking
portal). Each public method is the async one, called there and waited for here: derived from it (its signature
and docstring carried over), never written twice. ``stream`` and ``run_many`` return plain iterators. The
caller's thread only waits, so a sync client works where that thread runs an event loop of its own (a Jupyter
cell, an async framework's thread), without nesting loops.

- Errors are the async client's own; nothing of the portal's (``RuntimeError``, ``concurrent.futures``) gets out.
- Callbacks (``on_progress``): a plain function runs in the caller's thread, while that thread waits on the call
  (for ``run_many``, while it waits in ``next()``); a coroutine function runs on the client's loop, in the helper
  thread, and must not block.
- Ctrl-C: the waiting caller gets ``KeyboardInterrupt`` at once; the call is cancelled on the loop, which closes
  its socket and leaves the poller (``SYNC_INTERRUPT_GRACE``). The task goes on on the service (``run_many``'s
  jobs are cancelled, as when its ``async for`` is left). The client stays usable.
- Leaving an iterator early (``break``, an exception, ``close()``, ``with``, dropping it) closes it on the loop,
  as leaving ``async for`` does. ``close()`` of the client closes the iterators still open, then the client.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import enum
import functools
import inspect
import queue
import textwrap
import threading
import typing
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Concatenate, ParamSpec, Self, TypeVar

from anyio.from_thread import start_blocking_portal

from . import _constants as C
from ._client import AsyncGenStudio, AsyncGPUGeek, _AsyncClient
from ._exceptions import EventLoopError, GenStudioError
from ._logs import log

__all__ = ["BlockingIterator", "GPUGeek", "GenStudio"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


# --- callbacks: run in the caller's thread ----------------------------------------------------------------------


@dataclass
class _CallbackCall:
    """One call of a plain-function callback that the loop hands to the caller's thread, and its answer."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    answer: asyncio.Future[Any]

    def run(self) -> None:
        """Call the callback here; its result or its error goes back to the loop (a KeyboardInterrupt goes on
        here: the caller then cancels the call)."""
        try:
            outcome = self.function(*self.args)
        except Exception as error:  # noqa: BLE001 - the callback's own error: the call raises it, as async does
            self._reply(self.answer.set_exception, error)
        else:
            self._reply(self.answer.set_result, outcome)

    def _reply(self, deliver: Callable[[Any], None], value: Any) -> None:
        def on_loop() -> None:
            if not self.answer.done():  # the call may have been cancelled meanwhile
                deliver(value)

        try:
            self.loop.call_soon_threadsafe(on_loop)
        except RuntimeError:  # the loop has ended: the client was closed and nobody waits for this answer
            log.debug("a callback finished after its client was closed")


class _Inbox:
    """Where the loop queues callback calls for one caller's thread, which runs them while it waits on the loop."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_CallbackCall | concurrent.futures.Future[Any]] = queue.SimpleQueue()

    def relay(self, callback: Callable[..., Any]) -> Callable[..., Awaitable[None]]:
        """A coroutine function for the loop that has ``callback`` called in the caller's thread and waits for it."""

        async def on_loop(*args: Any) -> None:
            loop = asyncio.get_running_loop()
            answer: asyncio.Future[Any] = loop.create_future()
            self._queue.put(_CallbackCall(callback, args, loop, answer))
            outcome = await answer
            if inspect.isawaitable(outcome):  # a plain function that returned an awaitable: awaited, as async
                await outcome

        return on_loop

    def serve(self, future: concurrent.futures.Future[T]) -> T:
        """Run the callbacks queued here until ``future`` is done, then return its result (or raise its error).

        The wait wakes every ``SYNC_SIGNAL_CHECK_INTERVAL`` s, so a Ctrl-C is acted on even where the signal does
        not interrupt a blocking wait.
        """
        future.add_done_callback(self._queue.put)
        while True:
            try:
                item = self._queue.get(timeout=C.SYNC_SIGNAL_CHECK_INTERVAL)
            except queue.Empty:
                continue
            if item is future:
                return future.result()
            if isinstance(item, _CallbackCall):
                item.run()
            # Else: the done marker of an earlier call served here (an iterator's previous ``next()``).


def _relay_callbacks(
    signature: inspect.Signature, callbacks: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any],
    inbox: _Inbox,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with each plain-function callback (an ``on_…`` argument) relayed to ``inbox``."""
    if not callbacks:
        return args, kwargs
    bound = signature.bind(None, *args, **kwargs)  # None stands for self; a wrong call raises TypeError here
    for name in callbacks:
        callback = bound.arguments.get(name)
        if callback is not None and not inspect.iscoroutinefunction(callback):
            bound.arguments[name] = inbox.relay(callback)
    return bound.args[1:], bound.kwargs


# --- the twins of the async methods -----------------------------------------------------------------------------


def _carry_over(twin: Callable[..., Any], method: Callable[..., Any], *, returns: Any, note: str) -> None:
    """Give ``twin`` the name, signature and docstring of the async ``method`` (its result type: ``returns``)."""
    signature = inspect.signature(method)
    if returns is not inspect.Signature.empty:
        signature = signature.replace(return_annotation=returns)
    twin.__name__ = method.__name__
    twin.__qualname__ = f"_SyncClient.{method.__name__}"
    twin.__doc__ = f"{inspect.getdoc(method) or ''}\n\n{textwrap.fill(note, width=112)}".strip()
    twin.__signature__ = signature  # type: ignore[attr-defined]


def _callback_names(method: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(method).parameters if name.startswith("on_"))


def _blocking(
    method: Callable[Concatenate[_AsyncClient, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[_SyncClient, P], R]:
    """The sync twin of an async client's coroutine method: the same arguments; the result, waited for."""
    return _waiting_twin(method, "Sync twin of the async client's method: it blocks until the result is there.")


def _plain(method: Callable[Concatenate[_AsyncClient, P], R]) -> Callable[Concatenate[_SyncClient, P], R]:
    """The sync twin of an async client's plain method: called on the client's loop, like every other one."""
    return _waiting_twin(method, "Sync twin of the async client's method.")


def _waiting_twin(method: Callable[..., Any], note: str) -> Callable[..., Any]:
    name = method.__name__
    signature = inspect.signature(method)
    callbacks = _callback_names(method)

    def twin(self: _SyncClient, /, *args: Any, **kwargs: Any) -> Any:
        inbox = _Inbox()
        relayed_args, relayed_kwargs = _relay_callbacks(signature, callbacks, args, kwargs, inbox)
        return self._call(name, relayed_args, relayed_kwargs, inbox)

    if callbacks:
        note += " A plain-function callback runs in the calling thread; a coroutine function on the client's loop."
    _carry_over(twin, method, returns=inspect.Signature.empty, note=note)
    return twin


def _iterating(
    method: Callable[Concatenate[_AsyncClient, P], AsyncIterator[T]],
) -> Callable[Concatenate[_SyncClient, P], BlockingIterator[T]]:
    """The sync twin of an async client's method that returns an async iterator: a plain iterator of the same."""
    name = method.__name__
    signature = inspect.signature(method)
    callbacks = _callback_names(method)

    def twin(self: _SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> BlockingIterator[T]:
        inbox = _Inbox()
        relayed_args, relayed_kwargs = _relay_callbacks(signature, callbacks, args, kwargs, inbox)
        source: AsyncIterator[T] = self._call(name, relayed_args, relayed_kwargs, inbox)
        return self._iterate(source, inbox)

    note = (
        "Sync twin of the async client's method: a plain iterator (use ``for``). Leaving it early (``break``, an "
        "exception, ``close()``, ``with``) closes it as leaving ``async for`` does."
    )
    if callbacks:
        note += " A plain-function callback runs in the iterating thread, while it waits in ``next()``."
    _carry_over(twin, method, returns=BlockingIterator[_item_type(method)], note=note)  # type: ignore[misc]
    return twin


def _item_type(method: Callable[..., Any]) -> Any:
    """What the async iterator that ``method`` returns yields (``AsyncGenerator[X, None]``, or a class such as
    ``TaskStream`` whose ``__anext__`` returns ``X``)."""
    returns = typing.get_type_hints(method)["return"]
    if typing.get_origin(returns) in (AsyncIterator, AsyncGenerator):
        return typing.get_args(returns)[0]
    return typing.get_type_hints(returns.__anext__)["return"]


def _arguments_of(
    async_type: Callable[P, _AsyncClient],
) -> Callable[[Callable[..., None]], Callable[Concatenate[Any, P], None]]:
    """Give a sync client's ``__init__`` the arguments of its async client's (for type checkers and ``help()``)."""

    def adopt(init: Callable[..., None]) -> Callable[Concatenate[Any, P], None]:
        signature = inspect.signature(async_type)
        self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        init.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[self_parameter, *signature.parameters.values()], return_annotation=None
        )
        return init

    return adopt


# --- the sync client ------------------------------------------------------------------------------------------


class _End(enum.Enum):
    END = enum.auto()


async def _next_or_end(source: AsyncIterator[T]) -> T | _End:
    try:
        return await source.__anext__()
    except StopAsyncIteration:
        return _End.END


def _loop_thread_setup() -> tuple[threading.Thread, asyncio.AbstractEventLoop]:
    """Runs first on the helper thread's loop: names the thread; returns it and the loop."""
    thread = threading.current_thread()
    thread.name = C.SYNC_THREAD_NAME
    return thread, asyncio.get_running_loop()


class _Call:
    """One call running on a sync client's loop for a thread that waits for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, function: Callable[[], Awaitable[Any]]) -> None:
        self._loop = loop
        self._function = function
        self._task: asyncio.Task[Any] | None = None
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.finished = threading.Event()  # set once the call has ended there, clean-up included

    async def run(self) -> Any:
        self._task = asyncio.current_task()
        try:
            return await self._function()
        finally:
            self.finished.set()

    def cancel(self) -> None:
        """Cancel it as asyncio cancels a task: once, so that a clean-up that awaits (``run_many`` cancelling its
        jobs on the service) still runs. (Cancelling the portal's future would cancel it anyio's way, again at
        every ``await``, and cut such a clean-up short.)"""
        task = self._task
        if task is None:  # not started yet: nothing to clean up
            self.future.cancel()
            return
        try:
            self._loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the loop has ended: so has the call
            log.debug("a cancelled call's loop had already ended")


class BlockingIterator(Iterator[T]):
    """A plain iterator over one of a sync client's async iterators (``stream``, ``run_many``).

    Leaving it early closes it on the client's loop, as leaving ``async for`` does (the socket is closed, the jobs
    still running are cancelled): at once with ``with`` or ``close()``; after ``break`` or an exception as soon as
    nothing refers to it any more (in CPython, right there, when the ``for`` loop held the only reference).
    """

    def __init__(self, items: Generator[T, None, None]) -> None:
        self._items = items

    def __next__(self) -> T:
        return next(self._items)

    def close(self) -> None:
        """Close it now (on the loop). Safe to call more than once."""
        try:
            self._items.close()
        except ValueError:  # "generator already executing": next() is running in another thread
            log.debug("an iterator was closed while another thread was in next(): its client's close() ends it")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _SyncClient:
    """What both sync clients are: an async client on a loop in a helper thread, its methods called there.

    The public methods are made from the async client's (``_blocking``, ``_iterating``); a subclass names its async
    client and takes its constructor arguments (``_arguments_of``).
    """

    _async_type: ClassVar[type[_AsyncClient]]
    _client: _AsyncClient

    # The async client's public methods, each made blocking. Every one has its twin: tests/test_sync.py fails
    # when one is left out.
    submit = _blocking(_AsyncClient.submit)
    get_tasks = _blocking(_AsyncClient.get_tasks)
    get_task = _blocking(_AsyncClient.get_task)
    cancel = _blocking(_AsyncClient.cancel)
    was_cancelled = _plain(_AsyncClient.was_cancelled)
    stream = _iterating(_AsyncClient.stream)
    wait = _blocking(_AsyncClient.wait)
    run = _blocking(_AsyncClient.run)
    run_many = _iterating(_AsyncClient.run_many)
    download = _blocking(_AsyncClient.download)
    upload_image = _blocking(_AsyncClient.upload_image)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Built here, before any thread is started (a bad argument leaves nothing behind); it binds itself to no
        # loop until it is first used, which is on the helper thread's.
        self._client = self._async_type(*args, **kwargs)
        self._closed = False
        self._iterators: weakref.WeakSet[BlockingIterator[Any]] = weakref.WeakSet()
        self._calls: set[_Call] = set()  # the calls running on the loop now, whichever thread waits for them
        self._resources = ExitStack()
        portal = self._resources.enter_context(start_blocking_portal())
        self._portal = portal
        try:
            self._loop_thread, self._loop = portal.call(_loop_thread_setup)
        except BaseException:
            self._stop_loop()
            raise
        _open_clients.add(self)

    def __repr__(self) -> str:
        shown = repr(self._client)  # the async client's repr, which masks the key
        return type(self).__name__ + shown.removeprefix(type(self._client).__name__)

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the iterators still open, release what the client holds, and stop its loop and thread. Safe to
        call more than once."""
        if self._closed:
            return
        self._check_thread("close")
        self._closed = True
        _open_clients.discard(self)
        try:
            for iterator in list(self._iterators):
                iterator.close()
            # Calls still running for other threads (one in an iterator's next(), say): ended as Ctrl-C ends them.
            calls = list(self._calls)
            for call in calls:
                call.cancel()
            for call in calls:
                call.finished.wait(C.SYNC_INTERRUPT_GRACE)
            self._wait(self._client.aclose, _Inbox())
        finally:
            self._stop_loop()

    # --- calling the async client ---------------------------------------------------------------------------------

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], inbox: _Inbox) -> Any:
        """The async client's method ``name`` called on the loop with these arguments, and awaited if it is a
        coroutine; its plain-function callbacks run here."""
        if self._closed:
            raise GenStudioError(f"the client is closed: create a new {type(self).__name__}")
        self._check_thread(name)
        method = getattr(self._client, name)

        async def call() -> Any:
            outcome = method(*args, **kwargs)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            return outcome

        return self._wait(call, inbox)

    def _wait(self, function: Callable[[], Awaitable[T]], inbox: _Inbox) -> T:
        """Run ``function()`` on the loop and wait for it here, running the callbacks it relays to ``inbox``.

        Interrupted here (Ctrl-C), the call is cancelled on the loop and given ``SYNC_INTERRUPT_GRACE`` s to
        clean up before the interrupt goes on.
        """
        call = _Call(self._loop, function)
        try:
            call.future = self._portal.start_task_soon(call.run)
        except RuntimeError:  # the portal has stopped: another thread closed the client
            raise GenStudioError(f"the client is closed: create a new {type(self).__name__}") from None
        self._calls.add(call)
        try:
            result: T = inbox.serve(call.future)
        except concurrent.futures.CancelledError:
            raise GenStudioError(f"the {type(self).__name__} was closed while this call was running") from None
        except BaseException:
            if not call.future.done():  # interrupted here (Ctrl-C) while the call runs there: stop it
                call.cancel()
                call.finished.wait(C.SYNC_INTERRUPT_GRACE)
            raise
        finally:
            self._calls.discard(call)
        return result

    def _iterate(self, source: AsyncIterator[T], inbox: _Inbox) -> BlockingIterator[T]:
        iterator = BlockingIterator(self._pull(source, inbox))
        self._iterators.add(iterator)
        return iterator

    def _pull(self, source: AsyncIterator[T], inbox: _Inbox) -> Generator[T, None, None]:
        try:
            while True:
                item = self._wait(functools.partial(_next_or_end, source), inbox)
                if item is _End.END:
                    return
                yield item
        finally:
            self._close_source(source, inbox)

    def _close_source(self, source: AsyncIterator[Any], inbox: _Inbox) -> None:
        """Close an async iterator left early, on the loop; an error doing so is logged, not raised."""
        if threading.current_thread() is self._loop_thread:
            # Dropped on the loop's own thread (the cyclic garbage collector runs on any thread): asyncio's own
            # finaliser of the async generator behind it closes it there, soon.
            log.debug("an iterator was dropped on its client's loop: asyncio closes it")
            return
        aclose: Callable[[], Awaitable[None]] | None = getattr(source, "aclose", None)
        if aclose is None:
            return
        try:
            self._wait(aclose, inbox)
        except Exception as error:  # noqa: BLE001 - leaving a loop must not raise; the reason is logged
            log.debug("closing an iterator left early failed: %s: %s", type(error).__name__, error)

    def _check_thread(self, name: str) -> None:
        if threading.current_thread() is self._loop_thread:
            raise EventLoopError(
                f"{type(self).__name__}.{name}() was called on the client's own loop, in its helper thread (from an "
                "async callback, which runs there): it would wait for itself for ever. Pass a plain function as "
                "the callback instead: it runs in your thread, where the client can be called"
            )

    def _stop_loop(self) -> None:
        try:
            self._portal.call(self._portal.stop, True)  # cancel what still runs there: nobody waits for it now
        except RuntimeError:  # already stopped
            log.debug("the sync client's loop had already stopped")
        self._resources.close()  # joins the helper thread


# The sync clients not closed yet. At interpreter exit, those left open are closed while their helper threads still
# run: once the interpreter is finalising, a thread can no longer run, and stopping its loop would wait for ever.
_open_clients: weakref.WeakSet[_SyncClient] = weakref.WeakSet()


@atexit.register
def _close_clients_left_open() -> None:
    for client in list(_open_clients):
        try:
            client.close()
        except Exception as error:  # noqa: BLE001 - exiting anyway; the reason is logged
            log.debug("closing a %s at exit failed: %s", type(client).__name__, error)


# --- the clients -------------------------------------------------------------------------------------------------


class GenStudio(_SyncClient):
    """A blocking client for GenStudio: every method of ``AsyncGenStudio``, without ``await``.

    For scripts and notebooks (Jupyter's own running loop is no obstacle). The arguments are ``AsyncGenStudio``'s
    (``help(AsyncGenStudio)``); ``stream`` and ``run_many`` return plain iterators. Use ``with GenStudio() as
    client:`` or call ``close()``. The client runs on an event loop in a helper thread of its own: a plain
    ``on_progress`` function runs in your thread, a coroutine function on that loop (it must not block).
    Ctrl-C interrupts a call at once and leaves the task running on the service.
    """

    _async_type = AsyncGenStudio

    @_arguments_of(AsyncGenStudio)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


class GPUGeek(_SyncClient):
    """A blocking client for GPUGeek: every method of ``AsyncGPUGeek``, without ``await``.

    The arguments are ``AsyncGPUGeek``'s; otherwise as ``GenStudio``: ``with`` / ``close()``, plain iterators from
    ``stream`` and ``run_many``, a plain ``on_progress`` function run in your thread.
    """

    _async_type = AsyncGPUGeek

    @_arguments_of(AsyncGPUGeek)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
