"""The sync twins ``GenStudio`` and ``GPUGeek``: every method against the emulator, leaving early, Ctrl-C, a loop
already running in the caller's thread (a Jupyter cell, a real kernel too), and the errors.

The emulator is served by the test's event loop, so each piece of a user's blocking code runs in a thread of its
own (``blocking``) while the test awaits it: the test's loop, and the emulator on it, go on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import pydoc
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from genstudio_async import (
    ApiWorkflow,
    AsyncGenStudio,
    AsyncGPUGeek,
    ConfigurationError,
    EventLoopError,
    GenStudio,
    GenStudioError,
    GPUGeek,
    InvalidInputError,
    JobOutcome,
    NotFoundError,
    ProgressEvent,
    Submission,
    TaskCancelledError,
    TaskStatus,
    TaskTimeoutError,
    _http,
)
from genstudio_async import _constants as C
from genstudio_async._sync import BlockingIterator
from genstudio_async.emulator import Emulator, Faults
from tests.cli_support import command_env, spawn
from tests.support import PNG_SIGNATURE, eventually, tiny_png

T = TypeVar("T")

T2I = "wf-c73diz7kadp6ffgn"
PROMPT = {"6": {"inputs": {"text": "a red fox"}}}
GPUGEEK_T2I = 763311996779461
EXPORTS = Path(__file__).resolve().parent.parent / "examples" / "workflows"
# A failure bound only: a blocking call that has not returned by then has hung.
CALL_TIMEOUT = 30.0
FAST = {"steps": 3, "step_seconds": 0.01, "workers": 4}


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    return dict(FAST)


@pytest.fixture
def gpugeek_emulator_options() -> dict[str, Any]:
    return dict(FAST)


async def blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a thread of its own, as a user's script would call it; awaited here."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if outcome.done():
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(value)

    def target() -> None:
        value, error = None, None
        try:
            value = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which raises it
            error = exc
        with contextlib.suppress(RuntimeError):  # RuntimeError: the test has already failed and its loop is gone
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name="user-script", daemon=True).start()
    async with asyncio.timeout(CALL_TIMEOUT):
        return await outcome


@pytest.fixture
async def genstudio(genstudio_emulator: Emulator) -> AsyncIterator[GenStudio]:
    client = GenStudio(genstudio_emulator.api_key, base_url=genstudio_emulator.base_url, poll_interval=0.02)
    yield client
    await blocking(client.close)


@pytest.fixture
async def gpugeek(gpugeek_emulator: Emulator) -> AsyncIterator[GPUGeek]:
    client = GPUGeek(gpugeek_emulator.api_key, base_url=gpugeek_emulator.base_url, poll_interval=0.02)
    yield client
    await blocking(client.close)


def helper_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name == C.SYNC_THREAD_NAME]


# --- the surface: derived from the async clients -----------------------------------------------------------------


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name != "aclose"  # aclose's twin is close
    }


@pytest.mark.parametrize(("async_type", "sync_type"), [(AsyncGenStudio, GenStudio), (AsyncGPUGeek, GPUGeek)])
def test_every_public_method_of_the_async_client_has_a_sync_twin(async_type: type, sync_type: Any) -> None:
    methods = public_methods(async_type)
    assert {"submit", "wait", "run", "stream", "run_many", "download"} <= set(methods)
    missing = sorted(set(methods) - set(public_methods(sync_type)))
    assert not missing, f"{sync_type.__name__} has no twin of {missing}: add it to _SyncClient's table"
    for name, method in methods.items():
        twin = getattr(sync_type, name)
        ours, theirs = inspect.signature(twin), inspect.signature(method)
        assert list(ours.parameters.values()) == list(theirs.parameters.values()), name  # same arguments
        assert (twin.__doc__ or "").startswith(inspect.getdoc(method) or "?"), name  # help() says the same
    assert inspect.signature(sync_type.stream).return_annotation == BlockingIterator[ProgressEvent]
    assert inspect.signature(sync_type.run_many).return_annotation == BlockingIterator[JobOutcome]
    assert callable(sync_type.close) and hasattr(sync_type, "__enter__") and hasattr(sync_type, "__exit__")


@pytest.mark.parametrize(("async_type", "sync_type"), [(AsyncGenStudio, GenStudio), (AsyncGPUGeek, GPUGeek)])
def test_the_constructor_takes_the_async_clients_arguments(async_type: type, sync_type: Any) -> None:
    assert inspect.signature(sync_type).parameters == inspect.signature(async_type).parameters
    text = pydoc.plain(pydoc.render_doc(sync_type.run))
    assert "``submit`` then ``wait``: one generation, start to finish." in text
    assert "on_progress: 'ProgressCallback | None' = None" in text


def test_a_client_that_cannot_be_built_raises_the_async_error_and_leaves_no_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GENSTUDIO_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="GENSTUDIO_API_KEY"):
        GenStudio()
    assert helper_threads() == []


# --- every method, against the emulator ---------------------------------------------------------------------------


async def test_genstudio_every_method_against_the_emulator(
    genstudio_emulator: Emulator, genstudio: GenStudio, tmp_path: Path
) -> None:
    emulator = genstudio_emulator
    assert repr(genstudio).startswith("GenStudio(base_url=") and emulator.api_key not in repr(genstudio)
    assert genstudio.base_url == emulator.base_url

    image_id = await blocking(genstudio.upload_image, tiny_png(8, 8), filename="fox.png")
    assert isinstance(image_id, str) and image_id.endswith(".png") and emulator.stats.uploads == 1

    sub = await blocking(genstudio.submit, T2I, PROMPT)
    assert isinstance(sub, Submission) and sub.prompt_token
    events = await blocking(lambda: list(genstudio.stream(sub)))
    assert events[-1].status is TaskStatus.SUCCEEDED and all(not event.is_terminal for event in events[:-1])
    assert {event.source for event in events} == {"websocket"}  # the progress came over the socket
    assert [event.progress for event in events] == sorted(event.progress for event in events)

    result = await blocking(genstudio.wait, sub, timeout=CALL_TIMEOUT)
    assert result.status is TaskStatus.SUCCEEDED and result.outputs
    [info] = await blocking(genstudio.get_tasks, [sub, sub.prompt_id])  # one id, asked twice
    assert info.prompt_id == sub.prompt_id and info.status is TaskStatus.SUCCEEDED
    assert (await blocking(genstudio.get_task, sub.prompt_id)).status is TaskStatus.SUCCEEDED
    with pytest.raises(NotFoundError):
        await blocking(genstudio.get_task, "cft-nobody-knows")

    paths = await blocking(genstudio.download, result, tmp_path / "out")
    assert paths and all(path.parent.name == "9" for path in paths)
    assert all(path.read_bytes().startswith(PNG_SIGNATURE) for path in paths)

    seen: list[tuple[str, str]] = []  # (the thread each callback ran in, the event's status)
    ran = await blocking(
        genstudio.run, T2I, PROMPT, on_progress=lambda e: seen.append((threading.current_thread().name, e.status.name))
    )
    assert ran.status is TaskStatus.SUCCEEDED
    assert seen and {name for name, _ in seen} == {"user-script"}  # a plain callback runs in the caller's thread
    assert seen[-1][1] == "SUCCEEDED"

    job_events: list[tuple[int, str]] = []
    outcomes = await blocking(
        lambda: list(
            genstudio.run_many(
                [(T2I, PROMPT)] * 3,
                concurrency=2,
                on_progress=lambda index, e: job_events.append((index, threading.current_thread().name)),
            )
        )
    )
    assert sorted(outcome.index for outcome in outcomes) == [0, 1, 2]
    assert all(outcome.result is not None and outcome.error is None for outcome in outcomes)
    assert {index for index, _ in job_events} == {0, 1, 2}
    # run_many's plain callback runs in its iterator's own thread (not the iterating one: no job waits for it).
    assert {name for _, name in job_events} == {C.SYNC_CALLBACK_THREAD_NAME}

    emulator.pause()
    queued = await blocking(genstudio.submit, T2I, PROMPT)
    await blocking(genstudio.cancel, queued)
    assert await blocking(genstudio.was_cancelled, queued) and not await blocking(genstudio.was_cancelled, sub)
    with pytest.raises(TaskCancelledError):  # the same error as the async client's
        await blocking(genstudio.wait, queued, timeout=CALL_TIMEOUT)
    assert (emulator.task_info(queued.prompt_id) or {})["status"] == 4 and emulator.stats.cancels == 1
    await eventually(lambda: emulator.stats.ws_connections_open == 0, what="every progress socket closed")


async def test_gpugeek_every_method_against_the_emulator(
    gpugeek_emulator: Emulator, gpugeek: GPUGeek, tmp_path: Path
) -> None:
    emulator = gpugeek_emulator
    prompt = ApiWorkflow.load(EXPORTS / "t2i_workflow_api.json").builder().positive("a red fox").build()
    url = await blocking(gpugeek.upload_image, tiny_png(8, 8), filename="fox.png")
    assert url.startswith(emulator.storage_url) and emulator.stats.commits == 1

    sub = await blocking(gpugeek.submit, GPUGEEK_T2I, prompt)
    events = await blocking(lambda: list(gpugeek.stream(sub)))
    assert events[-1].status is TaskStatus.SUCCEEDED and {event.source for event in events} == {"poll"}
    result = await blocking(gpugeek.wait, sub)
    [info] = await blocking(gpugeek.get_tasks, [sub])
    assert info.status is TaskStatus.SUCCEEDED and info.run_duration is not None  # GPUGeek's own typed fields
    assert (await blocking(gpugeek.get_task, sub)).prompt_id == sub.prompt_id
    paths = await blocking(gpugeek.download, result, tmp_path / "out")
    assert paths and all(path.read_bytes().startswith(PNG_SIGNATURE) for path in paths)

    seen: list[str] = []
    ran = await blocking(gpugeek.run, GPUGEEK_T2I, prompt, on_progress=lambda e: seen.append(e.status.name))
    assert ran.status is TaskStatus.SUCCEEDED and seen[-1] == "SUCCEEDED"
    outcomes = await blocking(lambda: list(gpugeek.run_many([(GPUGEEK_T2I, prompt)] * 2)))
    assert sorted(outcome.index for outcome in outcomes) == [0, 1] and all(outcome.result for outcome in outcomes)

    emulator.pause()
    queued = await blocking(gpugeek.submit, GPUGEEK_T2I, prompt)
    await blocking(gpugeek.cancel, queued)
    assert await blocking(gpugeek.was_cancelled, queued)
    with pytest.raises(TaskCancelledError):
        await blocking(gpugeek.wait, queued)
    assert (emulator.task_info(queued.prompt_id) or {})["status"] == 5  # GPUGeek's "cancelled"


# --- leaving early ---------------------------------------------------------------------------------------------------


def leave_stream(client: GenStudio, sub: Submission, how: str) -> str:
    """Take the first event of ``sub``'s stream, then leave the stream ``how``; the first event's status."""
    if how == "break":
        for event in client.stream(sub):  # noqa: B007 - left at once, by break
            break
        return event.status.name
    if how == "exception":
        try:
            for event in client.stream(sub):
                raise LookupError(event.status.name)
        except LookupError as error:
            return str(error)
    if how == "close":
        events = client.stream(sub)
        first = next(events)
        events.close()
        return first.status.name
    if how == "with":
        with client.stream(sub) as events:
            return next(events).status.name
    if how == "dropped":
        held = [client.stream(sub)]
        first = next(held[0])
        held.clear()  # the last reference: the iterator is finalised here, and closed
        gc.collect()
        return first.status.name
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["break", "exception", "close", "with", "dropped"])
async def test_a_stream_left_early_closes_its_socket(
    genstudio_emulator: Emulator, genstudio: GenStudio, how: str
) -> None:
    genstudio_emulator.pause()  # queued for ever: only leaving the loop ends the stream
    sub = await blocking(genstudio.submit, T2I, PROMPT)
    events = genstudio.stream(sub)
    first = await blocking(next, events)
    assert first.status is TaskStatus.QUEUED and genstudio_emulator.stats.ws_connections_open == 1
    await blocking(events.close)
    assert await blocking(leave_stream, genstudio, sub, how) == "QUEUED"
    await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="the socket closed")
    assert genstudio_emulator.stats.ws_connections_opened == 2
    assert (await blocking(genstudio.get_task, sub)).status is TaskStatus.QUEUED  # the client is still usable
    assert genstudio_emulator.stats.cancels == 0  # and the task goes on


@pytest.mark.parametrize("how", ["break", "close"])
async def test_run_many_left_early_cancels_its_jobs_on_the_service(
    genstudio_emulator: Emulator, genstudio: GenStudio, how: str
) -> None:
    genstudio_emulator.pause()  # the two real jobs stay queued; the bad one is an outcome at once
    jobs: list[Any] = [None, (T2I, PROMPT), (T2I, PROMPT)]

    def leave_early() -> JobOutcome:
        if how == "break":
            for outcome in genstudio.run_many(jobs, concurrency=3):  # noqa: B007 - left at once, by break
                break
            return outcome
        outcomes = genstudio.run_many(jobs, concurrency=3)
        first = next(outcomes)
        outcomes.close()
        return first

    first = await blocking(leave_early)
    assert first.index == 0 and isinstance(first.error, InvalidInputError)
    # Leaving returned only once the jobs it had submitted were cancelled on the service.
    stats = genstudio_emulator.stats
    assert stats.submits == 2 and stats.cancels == 2
    assert [(genstudio_emulator.task_info(task) or {})["status"] for task in genstudio_emulator.task_ids()] == [4, 4]


async def test_closing_the_client_closes_the_iterators_still_open(
    genstudio_emulator: Emulator, genstudio: GenStudio
) -> None:
    genstudio_emulator.pause()
    sub = await blocking(genstudio.submit, T2I, PROMPT)
    events = genstudio.stream(sub)
    outcomes = genstudio.run_many([(T2I, PROMPT)])
    await blocking(next, events)
    # run_many's first job is submitted before it can yield: wait for it in the emulator, then close.
    pending = asyncio.ensure_future(blocking(next, outcomes))
    await eventually(lambda: genstudio_emulator.stats.submits == 2, what="run_many's submit")
    await blocking(genstudio.close)
    with pytest.raises(GenStudioError, match="closed"):
        await pending  # the run_many next() that was waiting: a GenStudioError, not a portal's RuntimeError
    assert genstudio_emulator.stats.cancels == 1  # run_many's job, cancelled as it was left
    await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="the stream's socket closed")
    assert helper_threads() == []
    with pytest.raises(GenStudioError, match="closed: create a new GenStudio"):
        await blocking(genstudio.get_task, sub)
    with pytest.raises(StopIteration):
        next(events)  # closed: it ends


def statuses_on_the_service(emulator: Emulator) -> list[int]:
    return [(emulator.task_info(task) or {})["status"] for task in emulator.task_ids()]


async def test_closing_the_client_lets_a_run_many_finish_cancelling_its_tasks(
    genstudio_emulator: Emulator, genstudio: GenStudio, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    genstudio_emulator.pause()
    outcomes = genstudio.run_many([(T2I, PROMPT)] * 2)
    pending = asyncio.ensure_future(blocking(next, outcomes))  # another thread iterates, and waits
    await eventually(lambda: genstudio_emulator.stats.submits == 2, what="run_many's submits")
    # The service answers the second cancel 429; the request loop's back-off before it asks again lasts until the
    # test lets it end: cancelling takes as long as the test likes.
    genstudio_emulator.set_faults(Faults(rate_limit=2, endpoints=frozenset({"cancel"})))
    backing_off, back_off_over = threading.Event(), threading.Event()

    async def held_back_off(seconds: float) -> None:
        backing_off.set()
        await asyncio.to_thread(back_off_over.wait, CALL_TIMEOUT)  # the test sets it, from its own loop

    monkeypatch.setattr(_http, "sleep", held_back_off)
    closing = asyncio.ensure_future(blocking(genstudio.close))
    notice = "GenStudio.run_many(): waiting until its unfinished tasks are cancelled on the service"
    await eventually(
        lambda: closing.done() or notice in caplog.text, what="close() to wait, saying so", timeout=CALL_TIMEOUT
    )
    assert backing_off.is_set() and not closing.done()  # close() waits for the clean-up under way, and says so
    genstudio_emulator.set_faults(Faults())
    back_off_over.set()
    await closing
    with pytest.raises(GenStudioError, match="closed"):
        await pending
    # Nothing is left running (and billing) on the service.
    assert statuses_on_the_service(genstudio_emulator) == [4, 4] and genstudio_emulator.stats.cancels == 2
    assert helper_threads() == []


async def test_an_iterator_used_from_two_threads_at_once_raises_a_genstudio_error(
    genstudio_emulator: Emulator, genstudio: GenStudio
) -> None:
    genstudio_emulator.pause()  # queued: a next() waits until the task moves
    sub = await blocking(genstudio.submit, T2I, PROMPT)
    events = genstudio.stream(sub)
    assert (await blocking(next, events)).status is TaskStatus.QUEUED
    first, second = (asyncio.ensure_future(blocking(next, events)) for _ in range(2))  # a thread each
    done, _ = await asyncio.wait([first, second], return_when=asyncio.FIRST_COMPLETED)
    [refused] = done
    with pytest.raises(GenStudioError, match="one thread at a time"):
        await refused
    genstudio_emulator.resume()
    moved = await (second if refused is first else first)  # the other thread's next() was not disturbed
    rest = await blocking(lambda: list(events))
    assert moved.status is not TaskStatus.QUEUED and [moved, *rest][-1].status is TaskStatus.SUCCEEDED


# --- errors and callbacks ------------------------------------------------------------------------------------------


async def test_errors_are_the_async_clients_own(genstudio_emulator: Emulator, genstudio: GenStudio) -> None:
    genstudio_emulator.pause()
    sub = await blocking(genstudio.submit, T2I, PROMPT)
    with pytest.raises(TaskTimeoutError) as timed_out:
        await blocking(genstudio.wait, sub, timeout=0.05)
    assert timed_out.value.prompt_id == sub.prompt_id
    with pytest.raises(InvalidInputError, match="timeout must be > 0"):
        await blocking(genstudio.wait, sub, timeout=0)
    with pytest.raises(TypeError):  # a wrong call is refused in the caller's thread, as Python does
        await blocking(genstudio.wait, sub, 5)  # timeout is keyword-only
    genstudio_emulator.resume()

    def refuse(event: ProgressEvent) -> None:
        raise LookupError(f"the callback refused {event.status.name}")

    with pytest.raises(LookupError, match="the callback refused"):  # the callback's own error, as async raises it
        await blocking(genstudio.wait, sub, on_progress=refuse)
    assert (await blocking(genstudio.wait, sub)).status is TaskStatus.SUCCEEDED  # still usable


async def test_a_coroutine_callback_runs_on_the_clients_loop_and_cannot_call_the_client_back(
    genstudio_emulator: Emulator, genstudio: GenStudio
) -> None:
    threads: list[str] = []

    async def on_progress(event: ProgressEvent) -> None:
        threads.append(threading.current_thread().name)

    result = await blocking(genstudio.run, T2I, PROMPT, on_progress=on_progress)
    assert result.status is TaskStatus.SUCCEEDED and set(threads) == {C.SYNC_THREAD_NAME}

    async def calls_back(event: ProgressEvent) -> None:
        genstudio.get_task(event.prompt_id)  # would wait for its own loop for ever

    with pytest.raises(EventLoopError, match="own loop"):
        await blocking(genstudio.run, T2I, PROMPT, on_progress=calls_back)


async def test_a_plain_callback_may_call_the_client(genstudio_emulator: Emulator, genstudio: GenStudio) -> None:
    statuses: list[TaskStatus] = []

    def on_progress(event: ProgressEvent) -> None:
        statuses.append(genstudio.get_task(event.prompt_id).status)  # runs in the caller's thread: allowed

    assert (await blocking(genstudio.run, T2I, PROMPT, on_progress=on_progress)).status is TaskStatus.SUCCEEDED
    assert statuses and statuses[-1] is TaskStatus.SUCCEEDED


def callback_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name == C.SYNC_CALLBACK_THREAD_NAME]


async def test_run_manys_jobs_and_callbacks_go_on_while_the_caller_is_busy_with_an_outcome(
    genstudio_emulator: Emulator, genstudio: GenStudio
) -> None:
    """The caller spends a while on the first outcome (downloading it, say): the other jobs go on meanwhile, their
    plain callbacks included, and none of them spends its timeout waiting for the caller."""
    jobs = 4
    finished: set[int] = set()  # the jobs whose callback has seen SUCCEEDED
    threads: set[tuple[int, str]] = set()
    every_job_finished = threading.Event()

    def on_progress(index: int, event: ProgressEvent) -> None:
        threads.add((threading.get_ident(), threading.current_thread().name))
        if event.status is TaskStatus.SUCCEEDED:
            finished.add(index)
            if len(finished) == jobs:
                every_job_finished.set()

    def consume() -> tuple[list[tuple[JobOutcome, bool]], bool]:
        seen: list[tuple[JobOutcome, bool]] = []
        others_went_on = False
        outcomes = genstudio.run_many(
            [(T2I, PROMPT)] * jobs, concurrency=jobs, timeout=CALL_TIMEOUT / 6, on_progress=on_progress
        )
        for outcome in outcomes:
            seen.append((outcome, outcome.index in finished))  # its callbacks had run before it was yielded
            if len(seen) == 1:  # busy with the first outcome until every job is done (or a failure bound)
                others_went_on = every_job_finished.wait(CALL_TIMEOUT / 3)
        return seen, others_went_on

    seen, others_went_on = await blocking(consume)
    assert others_went_on, "the other jobs waited for the caller to come back to next()"
    assert sorted(outcome.index for outcome, _ in seen) == list(range(jobs))
    assert [outcome.error for outcome, _ in seen] == [None] * jobs  # every job succeeded: no TaskTimeoutError
    assert all(callbacks_done for _, callbacks_done in seen)
    [(_, name)] = threads  # one thread ran them all, one at a time; neither the caller's nor the loop's
    assert name == C.SYNC_CALLBACK_THREAD_NAME
    assert callback_threads() == []  # it ended with the iterator


async def test_a_run_many_callback_may_call_the_client_and_its_error_is_its_jobs(
    genstudio_emulator: Emulator, genstudio: GenStudio
) -> None:
    statuses: list[TaskStatus] = []

    def on_progress(index: int, event: ProgressEvent) -> None:
        if index == 1:
            raise LookupError("the callback refused job 1")
        statuses.append(genstudio.get_task(event.prompt_id).status)  # from the callback's thread: allowed

    outcomes = await blocking(lambda: list(genstudio.run_many([(T2I, PROMPT)] * 2, on_progress=on_progress)))
    by_index = {outcome.index: outcome for outcome in outcomes}
    assert by_index[0].result is not None and statuses[-1] is TaskStatus.SUCCEEDED
    assert isinstance(by_index[1].error, LookupError)  # as the async run_many reports it: that job's outcome
    assert callback_threads() == []


async def test_closing_the_client_from_another_thread_ends_a_call_with_a_genstudio_error(
    genstudio_emulator: Emulator, genstudio: GenStudio
) -> None:
    genstudio_emulator.pause()
    sub = await blocking(genstudio.submit, T2I, PROMPT)
    waiting = asyncio.ensure_future(blocking(genstudio.wait, sub))
    await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 1, what="wait() to be streaming")
    await blocking(genstudio.close)
    with pytest.raises(GenStudioError):
        await waiting
    assert helper_threads() == []


# --- a loop already running in the caller's thread ---------------------------------------------------------------


async def test_a_sync_call_works_inside_a_running_event_loop(genstudio_emulator: Emulator) -> None:
    """As in a Jupyter cell: the caller's thread runs an event loop, and a coroutine on it calls the sync client."""
    seen: list[int] = []

    def notebook() -> tuple[int, TaskStatus]:
        async def cell() -> TaskStatus:
            asyncio.get_running_loop()  # the cell's own loop runs
            with GenStudio(genstudio_emulator.api_key, base_url=genstudio_emulator.base_url) as client:
                result = client.run(T2I, PROMPT, on_progress=lambda event: seen.append(threading.get_ident()))
                list(client.stream(client.submit(T2I, PROMPT)))
            return result.status

        return threading.get_ident(), asyncio.run(cell())

    cell_thread, status = await blocking(notebook)
    assert status is TaskStatus.SUCCEEDED
    assert seen and set(seen) == {cell_thread}  # the callback ran in the cell's thread


async def test_a_jupyter_cell_uses_the_sync_client(genstudio_emulator_env: Emulator, tmp_path: Path) -> None:
    """A real kernel (its own loop runs in its main thread) executes a cell against the emulator."""
    import nbclient
    import nbformat

    cell = "\n".join(
        [
            "import asyncio",
            "from genstudio_async import GenStudio",
            "asyncio.get_running_loop()  # a loop runs where the cell does: asyncio.run() would be refused here",
            "with GenStudio() as client:  # GENSTUDIO_API_KEY and GENSTUDIO_BASE_URL: the emulator's",
            f"    result = client.run({T2I!r}, {PROMPT!r}, on_progress=lambda e: print('progress', e.status.name))",
            "print('result', result.status.name, len(result.outputs))",
        ]
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])  # type: ignore[no-untyped-call]
    runner = nbclient.NotebookClient(
        notebook, timeout=int(CALL_TIMEOUT), kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    await runner.async_execute()
    outputs = notebook.cells[0].outputs
    assert [output.get("output_type") for output in outputs if output.get("output_type") == "error"] == []
    text = "".join(output.get("text", "") for output in outputs if output.get("output_type") == "stream")
    assert "result SUCCEEDED 1" in text
    assert "progress SUCCEEDED" in text  # the callback printed into the cell's output
    assert genstudio_emulator_env.stats.submits == 1


# --- Ctrl-C ------------------------------------------------------------------------------------------------------

INTERRUPTED_SCRIPT = """
import sys
from genstudio_async import GenStudio

how = sys.argv[1]
if how == "unclosed":  # no with, nothing caught: the interpreter must still exit
    client = GenStudio(poll_interval=0.05)
    print("submitted", client.submit("wf-c73diz7kadp6ffgn").prompt_id, flush=True)
    client.wait(client.submit("wf-c73diz7kadp6ffgn"))
with GenStudio(poll_interval=0.05) as client:
    sub = client.submit("wf-c73diz7kadp6ffgn")
    print("submitted", sub.prompt_id, flush=True)
    try:
        if how == "wait":
            client.wait(sub)
        elif how == "run":
            client.run("wf-c73diz7kadp6ffgn")
        elif how == "run_many":
            for outcome in client.run_many([("wf-c73diz7kadp6ffgn", None)] * 2):
                print("outcome", outcome, flush=True)
        else:
            for event in client.stream(sub):
                print("event", event.status.name, flush=True)
    except KeyboardInterrupt:
        print("interrupted: the task is still", client.get_task(sub).status.name, flush=True)
        raise
"""


@pytest.mark.parametrize("how", ["wait", "run", "stream", "run_many", "unclosed"])
async def test_ctrl_c_interrupts_a_sync_call_and_leaves_the_task_running(
    genstudio_emulator: Emulator, tmp_path: Path, how: str
) -> None:
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_SCRIPT, encoding="utf-8")
    genstudio_emulator.pause()  # queued for ever: only Ctrl-C ends the wait
    stats = genstudio_emulator.stats
    env = command_env(genstudio_emulator)
    async with spawn(sys.executable, str(script), how, cwd=tmp_path, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.timeout(CALL_TIMEOUT):
            assert (await process.stdout.readline()).startswith(b"submitted ")
        tasks = {"wait": 1, "stream": 1, "run": 2, "unclosed": 2, "run_many": 3}[how]
        # Interrupted while it waits: its sockets are open (and its own tasks submitted, for run and run_many).
        await eventually(
            lambda: stats.ws_connections_open == (2 if how == "run_many" else 1) and stats.submits == tasks,
            what="the script to be waiting", timeout=CALL_TIMEOUT,
        )
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(CALL_TIMEOUT):  # a failure bound: the script must exit, not hang
            stdout, stderr = await process.communicate()
    assert process.returncode == -signal.SIGINT  # an uncaught KeyboardInterrupt: Python exits by SIGINT
    errors = stderr.decode()
    assert errors.rstrip().endswith("KeyboardInterrupt"), errors
    for sign in ("ResourceWarning", "Unclosed", "Task was destroyed", "never retrieved", "Exception in thread"):
        assert sign not in errors, errors
    if how != "unclosed":
        assert "interrupted: the task is still QUEUED" in stdout.decode()  # the client was still usable
    statuses = [(genstudio_emulator.task_info(task) or {})["status"] for task in genstudio_emulator.task_ids()]
    if how == "run_many":  # as when its async for is left: the batch's own jobs are cancelled, the rest goes on
        assert statuses == [1, 4, 4] and stats.cancels == 2
    else:
        assert set(statuses) == {1} and stats.cancels == 0  # the task goes on on the service
    await eventually(lambda: stats.ws_connections_open == 0, what="the script's socket closed")


RUN_MANY_SCRIPT = """
from genstudio_async import GenStudio

client = GenStudio(poll_interval=0.05)  # not closed: the interpreter's exit closes it
for outcome in client.run_many([("wf-c73diz7kadp6ffgn", None)] * 2):
    print("outcome", outcome, flush=True)
"""
WAITING = "GenStudio.run_many(): waiting until its unfinished tasks are cancelled on the service"


async def interrupt_run_many(emulator: Emulator, tmp_path: Path, cancel_rate: float, *, twice: bool) -> str:
    """Run ``RUN_MANY_SCRIPT`` until its two jobs are queued, make the service answer all but the first cancel 429
    (``Retry-After`` about ``1 / cancel_rate`` s), press Ctrl-C (``twice``: again once the script says it waits);
    the script's stderr, after checking it ended by that Ctrl-C and cleanly."""
    script = tmp_path / "run_many.py"
    script.write_text(RUN_MANY_SCRIPT, encoding="utf-8")
    emulator.pause()  # queued for ever: only Ctrl-C ends the batch
    async with spawn(sys.executable, str(script), cwd=tmp_path, env=command_env(emulator)) as process:
        assert process.stderr is not None
        await eventually(
            lambda: emulator.stats.submits == 2 and emulator.stats.ws_connections_open == 2,
            what="the script to be waiting", timeout=CALL_TIMEOUT,
        )
        emulator.set_faults(Faults(rate_limit=cancel_rate, endpoints=frozenset({"cancel"})))
        process.send_signal(signal.SIGINT)
        said = b""
        if twice:
            async with asyncio.timeout(CALL_TIMEOUT):  # a failure bound: the script must say it waits, or end
                while WAITING.encode() not in said and (line := await process.stderr.readline()):
                    said += line
            assert WAITING.encode() in said and b"press Ctrl-C again to stop waiting" in said, said.decode()
            process.send_signal(signal.SIGINT)
        async with asyncio.timeout(CALL_TIMEOUT):  # a failure bound: the script must exit, not hang
            _, stderr = await process.communicate()
    assert process.returncode == -signal.SIGINT  # an uncaught KeyboardInterrupt: Python exits by SIGINT
    errors = said.decode() + stderr.decode()
    assert errors.rstrip().endswith("KeyboardInterrupt"), errors
    for sign in ("ResourceWarning", "Unclosed", "Task was destroyed", "never retrieved", "Exception in thread"):
        assert sign not in errors, errors
    return errors


async def test_ctrl_c_during_run_many_waits_until_its_tasks_are_cancelled(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    # The second cancel is answered 429 (Retry-After: 1 s): cancelling takes longer than SYNC_INTERRUPT_GRACE.
    await interrupt_run_many(genstudio_emulator, tmp_path, cancel_rate=2, twice=False)
    # As when its async for is interrupted: every task it started was cancelled before the script ended.
    assert statuses_on_the_service(genstudio_emulator) == [4, 4] and genstudio_emulator.stats.cancels == 2


async def test_a_second_ctrl_c_stops_waiting_for_run_manys_cancels_and_says_so(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    # The second cancel is answered 429 with Retry-After: 10 s; the user will not wait that long.
    errors = await interrupt_run_many(genstudio_emulator, tmp_path, cancel_rate=0.1, twice=True)
    assert "GenStudio.run_many(): stopped waiting; the tasks it had not cancelled yet may go on running" in errors
    assert sorted(statuses_on_the_service(genstudio_emulator)) == [1, 4]  # as it said: one goes on
    await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="the script's sockets closed")
