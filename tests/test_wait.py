"""wait, run, run_many and the shared poller, against a real emulator on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from genstudio_async import (
    APIError,
    InvalidInputError,
    ProgressEvent,
    TaskCancelledError,
    TaskFailedError,
    TaskInfo,
    TaskPermissionError,
    TaskResult,
    TaskStatus,
    TaskTimeoutError,
)
from genstudio_async._poller import TaskPoller
from genstudio_async.emulator import Emulator

from .support import eventually

T2I = "wf-c73diz7kadp6ffgn"

# --- the shared poller --------------------------------------------------------------------------------------


@pytest.mark.genstudio_emulator(workers=20)
async def test_twenty_polling_tasks_cost_one_request_per_interval(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client(use_websocket=False, poll_interval=0.02) as client:
        subs = [await client.submit(T2I) for _ in range(20)]
        waits = [asyncio.create_task(client.wait(sub)) for sub in subs]
        await eventually(lambda: len(client._poller.polling) == 20, what="20 tasks polling")
        await eventually(lambda: genstudio_emulator.stats.task_info_requests >= 2, what="two polls")
        genstudio_emulator.stats.reset()
        await eventually(lambda: genstudio_emulator.stats.task_info_requests >= 5, what="five more polls")
        stats = genstudio_emulator.stats
        # Every request asked for all 20 ids: one request per interval, not one per task.
        assert stats.task_ids_requested == 20 * stats.task_info_requests
        genstudio_emulator.resume()
        results = await asyncio.gather(*waits)
    assert all(result.status is TaskStatus.SUCCEEDED for result in results)
    assert not client._poller.polling


async def test_the_poller_chunks_large_batches() -> None:
    asked: list[list[str]] = []
    round_done = asyncio.Event()

    async def fetch(ids: Sequence[str]) -> list[TaskInfo]:
        asked.append(list(ids))
        if sum(len(chunk) for chunk in asked) >= 120:
            round_done.set()
        return [TaskInfo(prompt_id=prompt_id, status=TaskStatus.RUNNING) for prompt_id in ids]

    poller = TaskPoller(fetch, interval=3600.0, chunk_size=50)
    ids = [f"cft-{n}" for n in range(120)]

    async def watch(prompt_id: str) -> TaskInfo:
        async with poller.watch(prompt_id) as waiter:
            return await waiter.next()

    infos = await asyncio.gather(*(watch(prompt_id) for prompt_id in ids))
    await poller.aclose()
    assert sorted(len(chunk) for chunk in asked) == [20, 50, 50]
    assert [info.prompt_id for info in infos] == ids


async def test_a_task_the_service_never_reports_ends_as_not_found() -> None:
    async def fetch(ids: Sequence[str]) -> list[TaskInfo]:
        return []

    poller = TaskPoller(fetch, interval=0.001, missing_limit=3)
    from genstudio_async import NotFoundError

    with pytest.raises(NotFoundError, match="cft-ghost"):
        async with poller.watch("cft-ghost") as waiter:
            await waiter.next()
    await poller.aclose()


# --- wait and run ------------------------------------------------------------------------------------------


async def test_wait_returns_the_result_and_reports_progress_to_sync_and_async_callbacks(
    genstudio_emulator: Emulator,
) -> None:
    seen_sync: list[ProgressEvent] = []
    seen_async: list[ProgressEvent] = []

    async def on_progress_async(event: ProgressEvent) -> None:
        await asyncio.sleep(0)
        seen_async.append(event)

    async with genstudio_emulator.client() as client:
        sub = await client.submit(T2I)
        result = await client.wait(sub, timeout=30, on_progress=seen_sync.append)
        again = await client.run(T2I, timeout=30, on_progress=on_progress_async)
    assert isinstance(result, TaskResult)
    assert result.status is TaskStatus.SUCCEEDED and result.prompt_id == sub.prompt_id
    assert result.outputs and all(url.startswith(genstudio_emulator.storage_url) for url in result.outputs)
    assert seen_sync[-1].status is TaskStatus.SUCCEEDED and len(seen_sync) >= 3
    assert seen_async[-1].status is TaskStatus.SUCCEEDED and again.outputs


async def test_wait_raises_task_failed_with_the_servers_message(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.set_faults(fail_tasks="CUDA out of memory")
    async with genstudio_emulator.client() as client:
        with pytest.raises(TaskFailedError, match="CUDA out of memory") as caught:
            await client.run(T2I)
    assert caught.value.info.status is TaskStatus.FAILED
    assert caught.value.info.error_message == "CUDA out of memory"


async def test_wait_raises_task_permission_error_for_status_5(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.set_faults(deny_tasks=True)
    async with genstudio_emulator.client() as client:
        with pytest.raises(TaskPermissionError):
            await client.run(T2I)


async def test_wait_raises_task_cancelled_when_this_client_cancelled(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client() as client:
        sub = await client.submit(T2I)
        waiting = asyncio.create_task(client.wait(sub, timeout=30))
        await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 1, what="the stream")
        await client.cancel(sub)
        with pytest.raises(TaskCancelledError) as caught:
            await waiting
    assert caught.value.info.status is TaskStatus.FAILED
    assert genstudio_emulator.stats.cancels == 1


async def test_wait_times_out_without_cancelling_the_task(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client() as client:
        sub = await client.submit(T2I)
        with pytest.raises(TaskTimeoutError) as caught:
            await client.wait(sub, timeout=0.2)
        assert caught.value.prompt_id == sub.prompt_id
        assert caught.value.last_info is not None and caught.value.last_info.status is TaskStatus.QUEUED
        await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="the socket to close")
        genstudio_emulator.resume()
        result = await client.wait(sub, timeout=30)  # the task went on: it can still be waited for
    assert result.status is TaskStatus.SUCCEEDED
    assert genstudio_emulator.stats.cancels == 0


# --- run_many ----------------------------------------------------------------------------------------------


@pytest.mark.genstudio_emulator(workers=10)
async def test_run_many_yields_every_outcome_and_one_failure_never_stops_the_batch(
    genstudio_emulator: Emulator,
) -> None:
    genstudio_emulator.register_workflow("wf-always-fails", genstudio_emulator.workflow(T2I))
    genstudio_emulator.set_workflow_faults("wf-always-fails", fail_tasks="bad node")
    jobs: list[tuple[str, dict[str, dict[str, dict[str, object]]] | None]] = [
        (T2I, {"6": {"inputs": {"text": f"a fox number {n}"}}}) for n in range(8)
    ]
    jobs.insert(2, ("wf-always-fails", None))
    jobs.insert(5, (T2I, {"3": {"inputs": {"steps": 0}}}))  # out of range: refused at submit
    async with genstudio_emulator.client() as client:
        outcomes = [outcome async for outcome in client.run_many(jobs, concurrency=3)]
    assert sorted(outcome.index for outcome in outcomes) == list(range(10))
    by_index = {outcome.index: outcome for outcome in outcomes}
    assert isinstance(by_index[2].error, TaskFailedError)
    assert isinstance(by_index[5].error, APIError) and "steps" in str(by_index[5].error)
    assert all(by_index[n].ok and by_index[n].result is not None for n in range(10) if n not in (2, 5))
    assert by_index[0].job == jobs[0]


@pytest.mark.genstudio_emulator(workers=10)
async def test_run_many_keeps_at_most_concurrency_jobs_in_flight(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client() as client:
        batch = client.run_many([(T2I, None)] * 10, concurrency=3)
        first = asyncio.create_task(anext(batch))
        await eventually(lambda: genstudio_emulator.stats.submits == 3, what="three submits")
        await asyncio.sleep(0.1)
        assert genstudio_emulator.stats.submits == 3  # the fourth waits for a free slot
        genstudio_emulator.resume()
        outcomes = [await first] + [outcome async for outcome in batch]
    assert len(outcomes) == 10 and all(outcome.ok for outcome in outcomes)
    assert genstudio_emulator.stats.submits == 10


async def test_leaving_run_many_early_cancels_what_it_started(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client() as client:
        batch = client.run_many([(T2I, None)] * 6, concurrency=3)
        first = asyncio.create_task(anext(batch))
        await eventually(lambda: genstudio_emulator.stats.submits == 3, what="three submits")
        started = list(genstudio_emulator.task_ids())
        await client.cancel(started[0])  # lets one job finish (as cancelled)
        outcome = await first
        assert isinstance(outcome.error, TaskCancelledError)
        await batch.aclose()
        statuses = {task_id: genstudio_emulator.task_info(task_id)["status"] for task_id in started}  # type: ignore[index]
        assert genstudio_emulator.stats.submits in (3, 4)  # the freed slot may have taken one more job
        remaining = [task_id for task_id in genstudio_emulator.task_ids() if task_id != started[0]]
        assert all(genstudio_emulator.task_info(task_id)["status"] == 4 for task_id in remaining)  # type: ignore[index]
        assert statuses[started[0]] == 4
        assert not client._poller.polling
    await eventually(lambda: genstudio_emulator.stats.ws_connections_open == 0, what="sockets to close")


async def test_run_many_reports_a_malformed_job_as_its_outcome(genstudio_emulator: Emulator) -> None:
    async with genstudio_emulator.client() as client:
        outcomes = [o async for o in client.run_many([(T2I, None), 42, ("", None)])]  # type: ignore[list-item]
    by_index = {outcome.index: outcome for outcome in outcomes}
    assert by_index[0].ok
    assert isinstance(by_index[1].error, InvalidInputError)
    assert isinstance(by_index[2].error, InvalidInputError)


async def test_run_many_rejects_a_bad_concurrency(genstudio_emulator: Emulator) -> None:
    async with genstudio_emulator.client() as client:
        with pytest.raises(InvalidInputError, match="concurrency"):
            await anext(client.run_many([(T2I, None)], concurrency=0))


async def test_run_many_reports_each_jobs_progress_and_validates_with_a_spec(genstudio_emulator: Emulator) -> None:
    from genstudio_async import PromptValidationError

    seen: dict[int, list[ProgressEvent]] = {}

    async def on_progress(index: int, event: ProgressEvent) -> None:
        seen.setdefault(index, []).append(event)

    jobs = [(T2I, None), (T2I, {"3": {"inputs": {"steps": 0}}}), (T2I, None)]
    async with genstudio_emulator.client() as client:
        outcomes = {
            outcome.index: outcome
            async for outcome in client.run_many(
                jobs, spec=genstudio_emulator.workflow(T2I), on_progress=on_progress
            )
        }
    assert isinstance(outcomes[1].error, PromptValidationError)
    assert genstudio_emulator.stats.submits == 2  # the bad prompt was never sent
    assert set(seen) == {0, 2}
    assert all(events[-1].status is TaskStatus.SUCCEEDED for events in seen.values())


# --- cancel on timeout -------------------------------------------------------------------------------------------


async def test_a_wait_that_times_out_can_cancel_the_task_on_the_service(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client(poll_interval=0.02) as client:
        kept, dropped = await client.submit(T2I), await client.submit(T2I)
        with pytest.raises(TaskTimeoutError) as plain:
            await client.wait(kept, timeout=0.2)
        with pytest.raises(TaskTimeoutError) as cancelling:
            await client.wait(dropped, timeout=0.2, cancel_on_timeout=True)
    assert not plain.value.cancelled and "cancelled" not in str(plain.value)
    assert cancelling.value.cancelled and "it was cancelled on the service" in str(cancelling.value)
    assert genstudio_emulator.task_info(kept.prompt_id)["status"] == 1  # type: ignore[index]  # still queued
    assert genstudio_emulator.task_info(dropped.prompt_id)["status"] == 4  # type: ignore[index]  # GenStudio's cancel
    assert genstudio_emulator.stats.cancels == 1


async def test_run_and_run_many_pass_cancel_on_timeout_on(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    async with genstudio_emulator.client(poll_interval=0.02) as client:
        with pytest.raises(TaskTimeoutError) as caught:
            await client.run(T2I, timeout=0.2, cancel_on_timeout=True)
        outcomes = [o async for o in client.run_many([(T2I, None)] * 2, timeout=0.2, cancel_on_timeout=True)]
    assert caught.value.cancelled
    assert all(isinstance(o.error, TaskTimeoutError) and o.error.cancelled for o in outcomes)
    assert genstudio_emulator.stats.cancels == 3


async def test_a_refused_cancel_on_timeout_still_raises_the_timeout_and_says_so(genstudio_emulator: Emulator) -> None:
    genstudio_emulator.pause()
    genstudio_emulator.set_faults(http_error_rate=1.0, http_error_status=500, endpoints=frozenset({"cancel"}))
    async with genstudio_emulator.client(poll_interval=0.02, max_retries=0) as client:
        sub = await client.submit(T2I)
        with pytest.raises(TaskTimeoutError) as caught:
            await client.wait(sub, timeout=0.2, cancel_on_timeout=True)
    assert not caught.value.cancelled and "cancelling it failed" in str(caught.value)


@pytest.mark.parametrize("error_type", ["InvalidInputError", "EventLoopError", "ConfigurationError"])
async def test_an_error_polling_again_cannot_cure_ends_the_wait_instead_of_polling_for_ever(error_type: str) -> None:
    import genstudio_async

    error = getattr(genstudio_async, error_type)("no use asking again")

    async def fetch(ids: Sequence[str]) -> list[TaskInfo]:
        raise error

    poller = TaskPoller(fetch, interval=0.001)
    with pytest.raises(type(error), match="no use asking again"):
        async with poller.watch("cft-1") as waiter:
            await asyncio.wait_for(waiter.next(), timeout=5)
    await poller.aclose()


async def test_a_connection_error_is_polled_through() -> None:
    from genstudio_async import APIConnectionError

    calls = 0

    async def fetch(ids: Sequence[str]) -> list[TaskInfo]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise APIConnectionError("reset")
        return [TaskInfo(prompt_id="cft-1", status=TaskStatus.SUCCEEDED)]

    poller = TaskPoller(fetch, interval=0.001)
    async with poller.watch("cft-1") as waiter:
        info = await asyncio.wait_for(waiter.next(), timeout=5)
    await poller.aclose()
    assert info.status is TaskStatus.SUCCEEDED and calls == 3
