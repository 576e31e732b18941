"""Tasks and the simulated queue, the same for every service: a FIFO of queued tasks, a pool of workers, and
change notification.

A task's ``state`` is a neutral ``TaskState``; each service layer numbers the states its own way (GenStudio
reports a cancel as 4 and a denial as 5, GPUGeek a cancel as 5) and shapes its own snapshots. A submitted task
is queued with a 1-based position; a free worker takes the oldest, runs it through ``steps`` progress steps of
``step_seconds`` each, and finishes it: succeeded with result files, failed if a fault says so, or left alone if
it was cancelled meanwhile. ``pause()`` stops workers from taking or advancing tasks until ``resume()``. When a
task was submitted, started and finished is kept on the emulator clock (GPUGeek reports the durations).

Anyone may ``watch`` a task (a progress WebSocket, ``wait_status``): a ``Watcher``'s event is set on every
change. A change of the queue (a task joins or leaves it) alters the position of every queued task, so
those notifications are coalesced: at most one round per ``queue_notify_interval``, and only for watched
tasks. ``frame`` serialises a snapshot once per change of a task, however many sockets watch it.

With ``stamp_snapshots`` (off by default, so the wire stays the service's), every snapshot, HTTP and WebSocket
alike, carries an extra field ``"_emulator_changed_ns"``: ``time.monotonic_ns()`` when the task's state last
changed (submitted, started, progressed, finished, cancelled). A WebSocket frame also carries
``"_emulator_serialised_ns"``: when that frame was serialised, just before it is sent (once per change, however
many sockets). CLOCK_MONOTONIC is system-wide, so a client in another process can subtract either from its own
``time.monotonic_ns()`` to measure push latency (benchmarks/).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._clock import EmulatorClock
from ._objects import ObjectStore
from ._plan import RenderPlan
from ._wire import dumps


class TaskState(Enum):
    """Where a task is, whatever service reports it (each numbers these its own way)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DENIED = "denied"  # refused at once (GenStudio's "permission denied")


TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.DENIED})
ACTIVE_STATES = frozenset({TaskState.QUEUED, TaskState.RUNNING})

#: The extra snapshot fields written when ``stamp_snapshots`` is on (see the module docstring).
STAMP_FIELD = "_emulator_changed_ns"
SERIALISED_STAMP_FIELD = "_emulator_serialised_ns"

# How long a finished task's WebSocket frame (and the signed URLs in it) is reused before being signed again.
_TERMINAL_FRAME_SECONDS = 60


class EmulatorError(RuntimeError):
    """A test helper of the emulator could not do what it was asked (unknown task, a task that ended otherwise)."""


class Watcher:
    """One party interested in one task's changes; ``changed`` is set on each change."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()


@dataclass(eq=False)
class Task:
    """A task as the emulator keeps it."""

    task_id: str
    workflow_id: str  # the service's workflow id, as a string (GPUGeek's integers in decimal)
    plan: RenderPlan
    fail_message: str | None
    state: TaskState = TaskState.QUEUED
    progress: int = 0
    error_message: str = ""
    queue_seq: int = 0
    results: dict[str, list[str]] = field(default_factory=dict)
    version: int = 0
    watchers: set[Watcher] = field(default_factory=set)
    frame_key: tuple[int, int, int] | None = None
    frame_text: str = ""
    changed_ns: int = 0  # time.monotonic_ns() of the last change of state
    submitted_at: float = 0.0  # emulator-clock time it was submitted
    started_at: float | None = None  # emulator-clock time a worker took it
    finished_at: float | None = None  # emulator-clock time it reached a terminal state
    flags: frozenset[str] = frozenset()  # how a service layer was told to shape this task's snapshots

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class TaskStore:
    """Every task of one emulator, the queue, and the workers that run it."""

    def __init__(
        self,
        *,
        clock: EmulatorClock,
        objects: ObjectStore,
        workers: int,
        steps: int,
        step_seconds: float,
        queue_notify_interval: float,
        new_task_id: Callable[[], str],
    ) -> None:
        if workers < 1:
            raise ValueError("an emulator needs at least one worker")
        self._clock = clock
        self._objects = objects
        self._worker_count = workers
        self._steps = steps
        self._step_seconds = step_seconds
        self._queue_notify_interval = queue_notify_interval
        self._new_task_id = new_task_id
        self._tasks: dict[str, Task] = {}
        self._queued_seqs: list[int] = []
        self._queued_by_seq: dict[int, Task] = {}
        self._next_seq = 0
        self._watched: set[Task] = set()
        self._broadcast_handle: asyncio.TimerHandle | None = None
        # Idle workers, each waiting on its own future: a new task wakes one of them, not all (with a worker per
        # task, waking every idle worker on each submit made submitting N tasks cost O(N²)).
        self._idle_workers: deque[asyncio.Future[None]] = deque()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._workers: list[asyncio.Task[None]] = []
        self._finished: deque[Task] = deque()  # in the order they ended (the emulator clock never goes back)

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers (on the running loop)."""
        self._workers = [
            asyncio.create_task(self._worker_loop(), name=f"genstudio-emulator-worker-{index}")
            for index in range(self._worker_count)
        ]

    async def stop(self) -> None:
        """Stop the workers and the pending notification round; tasks keep the state they reached."""
        if self._broadcast_handle is not None:
            self._broadcast_handle.cancel()
            self._broadcast_handle = None
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []

    # --- settings ------------------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def pause(self) -> None:
        """Stop workers from taking or advancing tasks."""
        self._resumed.clear()

    def resume(self) -> None:
        """Let workers go on."""
        self._resumed.set()
        self._wake_workers(len(self._queued_seqs))

    def set_timing(
        self, *, steps: int | None = None, step_seconds: float | None = None,
        queue_notify_interval: float | None = None,
    ) -> None:
        """Change how tasks advance, for tasks that start from now on; and how often queue changes are pushed
        (from the next round on; a benchmark with thousands of running tasks pushes them seldom, or never)."""
        if queue_notify_interval is not None:
            if not queue_notify_interval > 0:
                raise ValueError("queue_notify_interval must be above 0")
            self._queue_notify_interval = queue_notify_interval
        if steps is not None:
            if steps < 0:
                raise ValueError("steps must be 0 or more")
            self._steps = steps
        if step_seconds is not None:
            if step_seconds < 0:
                raise ValueError("step_seconds must be 0 or more")
            self._step_seconds = step_seconds

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def queue_notify_interval(self) -> float:
        return self._queue_notify_interval

    @property
    def step_seconds(self) -> float:
        return self._step_seconds

    # --- tasks ---------------------------------------------------------------------------------------------
    def create(
        self, *, workflow_id: str, plan: RenderPlan, fail_message: str | None, deny: bool = False,
        flags: frozenset[str] = frozenset(),
    ) -> Task:
        """A new task with a fresh id: queued, or at once denied when ``deny``."""
        task_id = self._new_task_id()
        while task_id in self._tasks:
            task_id = self._new_task_id()
        task = Task(
            task_id=task_id, workflow_id=workflow_id, plan=plan, fail_message=fail_message,
            changed_ns=time.monotonic_ns(), submitted_at=self._clock.now(), flags=flags,
        )
        self._tasks[task_id] = task
        self._release_expired()
        if deny:
            task.state = TaskState.DENIED
            self._finish(task)
            return task
        self._next_seq += 1
        task.queue_seq = self._next_seq
        self._queued_seqs.append(task.queue_seq)
        self._queued_by_seq[task.queue_seq] = task
        self._wake_workers(1)
        self._queue_changed()
        return task

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def cancel(self, task: Task) -> bool:
        """Cancel a queued or running task. ``False`` if it had already ended."""
        if task.is_terminal:
            return False
        if task.state is TaskState.QUEUED:
            self._remove_from_queue(task)
        task.state = TaskState.CANCELLED
        task.error_message = ""
        self._finish(task)
        self._changed(task)
        self._queue_changed()
        return True

    @property
    def queue_size(self) -> int:
        """How many tasks are queued."""
        return len(self._queued_seqs)

    def queue_size_for(self, task: Task) -> int:
        """The queue size a task's snapshot reports: the queue's while it waits or runs, 0 once it ended."""
        return self.queue_size if task.state in ACTIVE_STATES else 0

    def position(self, task: Task) -> int:
        """1-based place of a queued task in the queue; 0 for any other task."""
        if task.state is not TaskState.QUEUED:
            return 0
        return bisect.bisect_left(self._queued_seqs, task.queue_seq) + 1

    # --- what clients see ----------------------------------------------------------------------------------
    def frame(self, task: Task, payload: Callable[[Task], Any]) -> str:
        """``payload(task)`` serialised, once per change of the task however many sockets send it.

        A queued or running task's frame also changes with what it shows of the queue (its size, the task's
        place), and only then: a change of the queue that leaves both as they were is not a new frame (nor, with
        ``stamp_snapshots``, a new serialisation stamp). A finished task's frame may hold signed URLs, so it is
        made afresh each minute: a socket opened long after the end still gets live URLs.
        """
        key = self._frame_key(task)
        if task.frame_key != key:
            task.frame_text = dumps(payload(task))
            task.frame_key = key
        return task.frame_text

    # --- watching ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def watch(self, task: Task) -> Iterator[Watcher]:
        """Be told of the task's changes for the duration of the ``with`` block."""
        watcher = Watcher()
        task.watchers.add(watcher)
        self._watched.add(task)
        try:
            yield watcher
        finally:
            task.watchers.discard(watcher)
            if not task.watchers:
                self._watched.discard(task)

    async def wait_status(
        self,
        task_id: str,
        statuses: Collection[int],
        *,
        status_of: Callable[[Task], int],
        error_field: str,
        timeout: float,
    ) -> Task:
        """Wait until the task's status (numbered by ``status_of``, the service's numbering) is one of
        ``statuses``; return the task.

        Raises ``EmulatorError`` if the task is unknown or ends with another status (the message quotes its
        ``error_field``), ``TimeoutError`` if the time runs out.
        """
        task = self._tasks.get(task_id)
        if task is None:
            raise EmulatorError(f"unknown task {task_id!r}")
        wanted = {int(status) for status in statuses}
        with self.watch(task) as watcher:
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        watcher.changed.clear()
                        if status_of(task) in wanted:
                            return task
                        if task.is_terminal:
                            raise EmulatorError(
                                f"task {task_id} ended with status {status_of(task)} "
                                f"({error_field} {task.error_message!r}) while waiting for {sorted(wanted)}"
                            )
                        await watcher.changed.wait()
            except TimeoutError:
                raise TimeoutError(
                    f"task {task_id} still has status {status_of(task)} after {timeout} s "
                    f"(waiting for {sorted(wanted)})"
                ) from None

    # --- internals -----------------------------------------------------------------------------------------
    def _changed(self, task: Task) -> None:
        task.version += 1
        task.changed_ns = time.monotonic_ns()
        for watcher in task.watchers:
            watcher.changed.set()

    def _queue_changed(self) -> None:
        if self._broadcast_handle is None and self._watched:
            loop = asyncio.get_running_loop()
            self._broadcast_handle = loop.call_later(self._queue_notify_interval, self._broadcast_queue)

    def _frame_key(self, task: Task) -> tuple[int, int, int]:
        """What a task's frame depends on besides the task itself: the queue as the task sees it, or the minute
        its signed URLs were made in once it has ended."""
        if task.is_terminal:
            return (task.version, -1 - int(self._clock.now() // _TERMINAL_FRAME_SECONDS), 0)
        return (task.version, self.queue_size_for(task), self.position(task))

    def _broadcast_queue(self) -> None:
        """Wake the watchers of each active task whose frame the queue's changes altered (and only those)."""
        self._broadcast_handle = None
        for task in self._watched:
            if task.state in ACTIVE_STATES and self._frame_key(task) != task.frame_key:
                for watcher in task.watchers:
                    watcher.changed.set()

    def _wake_workers(self, count: int) -> None:
        """Wake up to ``count`` idle workers (each then takes a task if one is still queued)."""
        while count > 0 and self._idle_workers:
            waiter = self._idle_workers.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    def _remove_from_queue(self, task: Task) -> None:
        index = bisect.bisect_left(self._queued_seqs, task.queue_seq)
        if index < len(self._queued_seqs) and self._queued_seqs[index] == task.queue_seq:
            del self._queued_seqs[index]
        self._queued_by_seq.pop(task.queue_seq, None)

    async def _next_task(self) -> Task:
        while True:
            if self._resumed.is_set() and self._queued_seqs:
                seq = self._queued_seqs.pop(0)
                return self._queued_by_seq.pop(seq)
            waiter = asyncio.get_running_loop().create_future()
            self._idle_workers.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():  # cancelled while idle (the emulator stops): nobody may wake it now
                    waiter.cancel()

    async def _worker_loop(self) -> None:
        while True:
            task = await self._next_task()
            await self._run(task)

    async def _run(self, task: Task) -> None:
        task.state = TaskState.RUNNING
        task.started_at = self._clock.now()
        task.progress = 0
        self._changed(task)
        self._queue_changed()
        steps, step_seconds = self._steps, self._step_seconds
        fail_after = steps // 2 if task.fail_message is not None else None
        for step in range(1, steps + 1):
            await asyncio.sleep(step_seconds)
            await self._resumed.wait()
            if task.state is not TaskState.RUNNING:
                return
            if fail_after is not None and step > fail_after:
                break
            if step < steps:
                task.progress = step * 100 // steps
                self._changed(task)
        if task.state is not TaskState.RUNNING:
            return
        if task.fail_message is not None:
            task.state = TaskState.FAILED
            task.error_message = task.fail_message
            self._finish(task)
            self._changed(task)
            return
        plan = task.plan
        now = self._clock.now()
        for node_id in plan.output_nodes:
            task.results[node_id] = [
                self._objects.add_result(
                    task_id=task.task_id, node_id=node_id, width=plan.width, height=plan.height,
                    seed=plan.seed + index, text=plan.text, now=now,
                ).key
                for index in range(plan.batch_size)
            ]
        task.state = TaskState.SUCCEEDED
        task.progress = 100
        self._finish(task)
        self._changed(task)

    def _finish(self, task: Task) -> None:
        task.finished_at = self._clock.now()
        self._finished.append(task)

    def _release_expired(self) -> None:
        """Free what tasks finished longer than the retention period ago still hold: their result objects (the
        storage would answer 404 anyway), the prompt text of their plan, their cached frame. The task itself
        stays, so a status request answers as before."""
        horizon = self._clock.now() - self._objects.retention_seconds
        if not self._finished or (self._finished[0].finished_at or 0.0) >= horizon:
            return
        expired_keys: list[str] = []
        while self._finished and (self._finished[0].finished_at or 0.0) < horizon:
            task = self._finished.popleft()
            expired_keys += [key for keys in task.results.values() for key in keys]
            task.plan = dataclasses.replace(task.plan, text="")
            task.frame_key, task.frame_text = None, ""
        self._objects.release(result_keys=expired_keys, upload_horizon=horizon)
