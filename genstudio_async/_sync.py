"""``GenStudio`` and ``GPUGeek``: the async clients' methods without ``await``, for scripts and notebooks.

A sync client is its async client running on an event loop of its own, in a helper thread (an anyio blocking
portal). Each public method is the async one, called there and waited for here: derived from it (its signature
and docstring carried over), never written twice. ``stream`` and ``run_many`` return plain iterators. The
caller's thread only waits, so a sync client works where that thread runs an event loop of its own (a Jupyter
cell, an async framework's thread), without nesting loops.

- Errors are the async client's own; nothing of the portal's (``RuntimeError``, ``concurrent.futures``) gets out.
- Callbacks (``on_progress``): a plain function given to ``wait`` or ``run`` runs in the caller's thread, while that
  thread waits on the call. One given to ``run_many`` runs in a thread of that iterator's own
  (``SYNC_CALLBACK_THREAD_NAME``), one call at a time, alongside the caller's loop body: each job waits for its
  own callback (as an async job does), never for the code that consumes the iterator, so a caller busy with one
  outcome neither stalls the other jobs nor spends their ``timeout``. A job's callbacks have all run before its
  outcome is yielded. A coroutine function runs on the client's loop, in the helper thread, and must not block.
- Ctrl-C: the waiting caller gets ``KeyboardInterrupt`` at once; the call is cancelled on the loop, which closes
  its socket and leaves the poller (``SYNC_INTERRUPT_GRACE``). The task goes on on the service. An interrupted
  ``run_many`` cancels its unfinished jobs on the service, as leaving its ``async for`` does, and the interrupt
  waits until they are cancelled (past ``SYNC_INTERRUPT_GRACE`` it says so in the log; a second Ctrl-C stops
  waiting, saying that the tasks not cancelled yet may go on). The client stays usable.
- Leaving an iterator early (``break``, an exception, ``close()``, ``with``, dropping it) closes it on the loop,
  as leaving ``async for`` does. ``close()`` of the client closes the iterators still open, then the client; a
  clean-up that cancels tasks on the service (``run_many``'s) is let finish, by ``close()`` and at exit alike.
- An iterator is used from one thread at a time: ``next()`` while another thread is in it raises
  ``GenStudioError``.
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
import time
import typing
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Concatenate, ParamSpec, Protocol, Self, TypeVar

from anyio.from_thread import start_blocking_portal

from . import _constants as C
from ._client import AsyncGenStudio, AsyncGPUGeek, _AsyncClient
from ._exceptions import EventLoopError, GenStudioError
from ._logs import log

__all__ = ["BlockingIterator", "GPUGeek", "GenStudio"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


# --- callbacks: run in the caller's thread, or in an iterator's own ------------------------------------------


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

    def fail(self, error: Exception) -> None:
        """Answer the loop with ``error`` instead of running the callback (or after it ended abnormally)."""
        self._reply(self.answer.set_exception, error)

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


class _CallbackThread:
    """Where one iterator's plain-function callbacks run: a thread of its own, started at the first callback, that
    runs them one at a time in the order they come. The job that made a call waits for it (its result or its
    error, as an async job awaits its callback), never for whoever consumes the iterator."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_CallbackCall | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()  # the start (on the loop) and the close (in the iterating thread) never cross

    def relay(self, callback: Callable[..., Any]) -> Callable[..., Awaitable[None]]:
        """A coroutine function for the loop that has ``callback`` called in this thread and waits for it."""

        async def on_loop(*args: Any) -> None:
            loop = asyncio.get_running_loop()
            answer: asyncio.Future[Any] = loop.create_future()
            if not self._put(_CallbackCall(callback, args, loop, answer)):
                log.debug("a callback came after its iterator had ended: not run")
                return
            outcome = await answer
            if inspect.isawaitable(outcome):  # a plain function that returned an awaitable: awaited, as async
                await outcome

        return on_loop

    def _put(self, call: _CallbackCall) -> bool:
        with self._lock:
            if self._closed:
                return False
            if self._thread is None:
                # A daemon: a callback that never returns must not keep the interpreter from exiting.
                self._thread = threading.Thread(target=self._serve, name=C.SYNC_CALLBACK_THREAD_NAME, daemon=True)
                self._thread.start()
            self._queue.put(call)
            return True

    def _serve(self) -> None:
        while (call := self._queue.get()) is not None:
            try:
                call.run()
            except BaseException as error:  # noqa: BLE001 - SystemExit, say: nothing in this thread can act on it
                log.debug("an iterator's callback raised %s", type(error).__name__)
                failure = GenStudioError(f"the callback raised {type(error).__name__} in its thread")
                failure.__cause__ = error
                call.fail(failure)

    def close(self, *, join: bool) -> None:
        """No callback starts after those already queued; the thread ends once it has run them. ``join``: wait for
        that here (not on the client's loop, which a callback may be calling). Safe to call more than once."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        if join and thread is not threading.current_thread():
            thread.join()


class _Relay(Protocol):
    def relay(self, callback: Callable[..., Any]) -> Callable[..., Awaitable[None]]: ...


def _relay_callbacks(
    signature: inspect.Signature, callbacks: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any],
    relay: _Relay,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with each plain-function callback (an ``on_…`` argument) relayed to ``relay`` (the
    caller's ``_Inbox``, or an iterator's ``_CallbackThread``)."""
    if not callbacks:
        return args, kwargs
    bound = signature.bind(None, *args, **kwargs)  # None stands for self; a wrong call raises TypeError here
    for name in callbacks:
        callback = bound.arguments.get(name)
        if callback is not None and not inspect.iscoroutinefunction(callback):
            bound.arguments[name] = relay.relay(callback)
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
    method: Callable[Concatenate[_AsyncClient, P], AsyncIterator[T]], *, cancels_on_leave: bool = False
) -> Callable[Concatenate[_SyncClient, P], BlockingIterator[T]]:
    """The sync twin of an async client's method that returns an async iterator: a plain iterator of the same.

    ``cancels_on_leave``: leaving the iterator early cancels work on the service (``run_many``'s jobs); an
    interrupted ``next()`` and the client's ``close()`` then wait for that clean-up to end instead of cutting it
    short.
    """
    name = method.__name__
    signature = inspect.signature(method)
    callbacks = _callback_names(method)

    def twin(self: _SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> BlockingIterator[T]:
        callback_thread = _CallbackThread()
        relayed_args, relayed_kwargs = _relay_callbacks(signature, callbacks, args, kwargs, callback_thread)
        inbox = _Inbox()
        source: AsyncIterator[T] = self._call(name, relayed_args, relayed_kwargs, inbox)
        return self._iterate(source, inbox, callback_thread, name=name, cancels_on_leave=cancels_on_leave)

    note = (
        "Sync twin of the async client's method: a plain iterator (use ``for``), used from one thread at a time. "
        "Leaving it early (``break``, an exception, ``close()``, ``with``) closes it as leaving ``async for`` does."
    )
    if cancels_on_leave:
        note += " Interrupted (Ctrl-C), it waits until its unfinished tasks are cancelled; a second Ctrl-C stops that."
    if callbacks:
        note += (
            " A plain-function callback runs in a thread of the iterator's own, one call at a time (no job waits"
            " for your loop's body); a coroutine function on the client's loop."
        )
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


class _Ending(enum.Enum):
    """What stopping a call early (Ctrl-C in its caller, the client's ``close()``) does to it."""

    CANCEL = enum.auto()  # cancelled; given SYNC_INTERRUPT_GRACE to close its socket and leave the poller
    CANCEL_AND_WAIT = enum.auto()  # cancelled; its clean-up cancels tasks on the service: waited for to its end
    WAIT = enum.auto()  # it is such a clean-up itself (closing a run_many): never cancelled, waited for to its end


class _Call:
    """One call running on a sync client's loop for a thread that waits for it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, function: Callable[[], Awaitable[Any]], ending: _Ending, label: str
    ) -> None:
        self._loop = loop
        self._function = function
        self.ending = ending
        self.label = label  # what it is, for the log: "GenStudio.run_many()"
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False  # on the loop: cancelled once already (a second cancel would cut a clean-up short)
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.finished = threading.Event()  # set once the call has ended there, clean-up included
        self.abandoned = False  # a second Ctrl-C stopped the wait for its clean-up: nobody waits for it any more

    async def run(self) -> Any:
        self._task = asyncio.current_task()
        try:
            if self._cancelled:  # cancelled before it started: it does nothing, so there is nothing to clean up
                raise asyncio.CancelledError
            return await self._function()
        finally:
            self.finished.set()

    def cancel(self) -> None:
        """Cancel it as asyncio cancels a task: once, so that a clean-up that awaits (``run_many`` cancelling its
        jobs on the service) still runs. (Cancelling the portal's future would cancel it anyio's way, again at
        every ``await``, and cut such a clean-up short.) Safe to call more than once, from any thread."""
        try:
            self._loop.call_soon_threadsafe(self._cancel_on_loop)
        except RuntimeError:  # the loop has ended: so has the call
            log.debug("a cancelled call's loop had already ended")

    def _cancel_on_loop(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()


class BlockingIterator(Iterator[T]):
    """A plain iterator over one of a sync client's async iterators (``stream``, ``run_many``).

    Leaving it early closes it on the client's loop, as leaving ``async for`` does (the socket is closed, the jobs
    still running are cancelled): at once with ``with`` or ``close()``; after ``break`` or an exception as soon as
    nothing refers to it any more (in CPython, right there, when the ``for`` loop held the only reference).
    """

    def __init__(self, items: Generator[T, None, None]) -> None:
        self._items = items
        self._in_use = threading.Lock()  # held by the thread in next() or close()

    def __next__(self) -> T:
        if not self._in_use.acquire(blocking=False):
            raise GenStudioError(
                "this iterator is in next() in another thread already: use an iterator from one thread at a time "
                "(give each thread a stream() or run_many() of its own)"
            )
        try:
            return next(self._items)
        finally:
            self._in_use.release()

    def close(self) -> None:
        """Close it now (on the loop). Safe to call more than once."""
        if not self._in_use.acquire(blocking=False):
            log.debug("an iterator was closed while another thread was in next(): its client's close() ends it")
            return
        try:
            self._items.close()
        except ValueError:  # "generator already executing": its own clean-up runs in another thread (a drop)
            log.debug("an iterator was closed while it was being closed in another thread")
        finally:
            self._in_use.release()

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
    run_many = _iterating(_AsyncClient.run_many, cancels_on_leave=True)  # leaving it cancels its jobs on the service
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
        """Close the iterators still open, release what the client holds, and stop its loop and thread. A clean-up
        that cancels tasks on the service (a ``run_many`` left or interrupted) is let finish first; Ctrl-C here
        stops waiting for it. Safe to call more than once."""
        if self._closed:
            return
        self._check_thread("close")
        self._closed = True
        _open_clients.discard(self)
        interrupted = False
        try:
            for iterator in list(self._iterators):
                iterator.close()
            # Calls still running for other threads (one in an iterator's next(), say): ended as Ctrl-C ends them;
            # a clean-up already under way is not cancelled but waited for.
            calls = list(self._calls)
            for call in calls:
                if call.ending is not _Ending.WAIT:
                    call.cancel()
            for call in calls:
                if call.abandoned or interrupted:
                    continue
                if call.ending is _Ending.CANCEL:
                    call.finished.wait(C.SYNC_INTERRUPT_GRACE)
                elif not self._await_clean_up(call):
                    interrupted = True  # Ctrl-C: stop waiting for any of them
            self._wait(self._client.aclose, _Inbox())
        finally:
            self._stop_loop()
        if interrupted:
            raise KeyboardInterrupt

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

    def _wait(
        self, function: Callable[[], Awaitable[T]], inbox: _Inbox, ending: _Ending = _Ending.CANCEL, label: str = ""
    ) -> T:
        """Run ``function()`` on the loop and wait for it here, running the callbacks it relays to ``inbox``.

        Interrupted here (Ctrl-C), the call is stopped as ``ending`` says (``_stop``) before the interrupt goes on.
        """
        result: T = self._serve(self._start(function, ending, label), inbox)
        return result

    def _start(self, function: Callable[[], Awaitable[Any]], ending: _Ending, label: str) -> _Call:
        call = _Call(self._loop, function, ending, label)
        try:
            call.future = self._portal.start_task_soon(call.run)
        except RuntimeError:  # the portal has stopped: another thread closed the client
            raise GenStudioError(f"the client is closed: create a new {type(self).__name__}") from None
        self._calls.add(call)
        return call

    def _serve(self, call: _Call, inbox: _Inbox) -> Any:
        try:
            return inbox.serve(call.future)
        except concurrent.futures.CancelledError:
            raise GenStudioError(f"the {type(self).__name__} was closed while this call was running") from None
        except BaseException:
            if not call.future.done():  # interrupted here (Ctrl-C) while the call runs there: stop it
                self._stop(call)
            raise
        finally:
            self._calls.discard(call)

    def _stop(self, call: _Call) -> None:
        """Stop a call whose waiting caller was interrupted: cancel it there (unless it is a clean-up itself), then
        give it ``SYNC_INTERRUPT_GRACE`` s, or, when its clean-up cancels tasks on the service, all it takes."""
        if call.ending is not _Ending.WAIT:
            call.cancel()
        if call.ending is _Ending.CANCEL:
            call.finished.wait(C.SYNC_INTERRUPT_GRACE)
        else:
            self._await_clean_up(call)

    def _await_clean_up(self, call: _Call) -> bool:
        """Wait until ``call`` has ended on the loop, its clean-up included (each request it makes is bounded by its
        own timeout and retries); past ``SYNC_INTERRUPT_GRACE`` s, say so. True once it has ended; False if a
        Ctrl-C here abandoned it (said so too)."""
        notice_at = time.monotonic() + C.SYNC_INTERRUPT_GRACE
        noticed = False
        try:
            while not call.finished.wait(C.SYNC_SIGNAL_CHECK_INTERVAL):
                if not self._loop_thread.is_alive():
                    return True  # the loop has ended, and the call with it
                if not noticed and time.monotonic() >= notice_at:
                    noticed = True
                    log.warning(
                        "%s: waiting until its unfinished tasks are cancelled on the service "
                        "(press Ctrl-C again to stop waiting)", call.label,
                    )
        except KeyboardInterrupt:
            call.abandoned = True
            log.warning(
                "%s: stopped waiting; the tasks it had not cancelled yet may go on running on the service "
                "(and be billed)", call.label,
            )
            return False
        return True

    def _iterate(
        self, source: AsyncIterator[T], inbox: _Inbox, callback_thread: _CallbackThread, *, name: str,
        cancels_on_leave: bool,
    ) -> BlockingIterator[T]:
        label = f"{type(self).__name__}.{name}()"
        iterator = BlockingIterator(self._pull(source, inbox, callback_thread, label, cancels_on_leave))
        self._iterators.add(iterator)
        return iterator

    def _pull(
        self, source: AsyncIterator[T], inbox: _Inbox, callback_thread: _CallbackThread, label: str,
        cancels_on_leave: bool,
    ) -> Generator[T, None, None]:
        call: _Call | None = None
        try:
            while True:
                ending = _Ending.CANCEL_AND_WAIT if cancels_on_leave else _Ending.CANCEL
                call = self._start(functools.partial(_next_or_end, source), ending, label)
                item = self._serve(call, inbox)
                if item is _End.END:
                    return
                yield item
        finally:
            try:
                if call is not None and call.abandoned:  # its own clean-up still runs there: nothing to close
                    log.debug("%s was left to its clean-up, still under way", label)
                else:
                    self._close_source(source, inbox, _Ending.WAIT if cancels_on_leave else _Ending.CANCEL, label)
            finally:
                callback_thread.close(join=threading.current_thread() is not self._loop_thread)

    def _close_source(self, source: AsyncIterator[Any], inbox: _Inbox, ending: _Ending, label: str) -> None:
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
            self._wait(aclose, inbox, ending, label)
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
        except KeyboardInterrupt:  # Ctrl-C while a clean-up was waited for: close() said so, and stopped
            log.debug("closing a %s at exit was interrupted", type(client).__name__)
        except Exception as error:  # noqa: BLE001 - exiting anyway; the reason is logged
            log.debug("closing a %s at exit failed: %s", type(client).__name__, error)


# --- the clients -------------------------------------------------------------------------------------------------


class GenStudio(_SyncClient):
    """A blocking client for GenStudio: every method of ``AsyncGenStudio``, without ``await``.

    For scripts and notebooks (Jupyter's own running loop is no obstacle). The arguments are ``AsyncGenStudio``'s
    (``help(AsyncGenStudio)``); ``stream`` and ``run_many`` return plain iterators. Use ``with GenStudio() as
    client:`` or call ``close()``. The client runs on an event loop in a helper thread of its own: a plain
    ``on_progress`` function runs in your thread (``run_many``'s: in a thread of the iterator's own, one call at a
    time), a coroutine function on that loop (it must not block). Ctrl-C interrupts a call at once and leaves the
    task running on the service (``run_many`` first cancels its unfinished jobs, as leaving it does).
    """

    _async_type = AsyncGenStudio

    @_arguments_of(AsyncGenStudio)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


class GPUGeek(_SyncClient):
    """A blocking client for GPUGeek: every method of ``AsyncGPUGeek``, without ``await``.

    The arguments are ``AsyncGPUGeek``'s; otherwise as ``GenStudio``: ``with`` / ``close()``, plain iterators from
    ``stream`` and ``run_many``, a plain ``on_progress`` function run in your thread (``run_many``'s in its own).
    """

    _async_type = AsyncGPUGeek

    @_arguments_of(AsyncGPUGeek)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
