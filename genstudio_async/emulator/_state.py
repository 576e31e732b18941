"""Tasks and the simulated queue: a FIFO of queued tasks, a pool of workers, and change notification.

A submitted task is queued (status 1) with a 1-based ``current_position``; a free worker takes the oldest,
runs it (status 2) through ``steps`` progress steps of ``step_seconds`` each, and finishes it: succeeded (3)
with result files, failed (4) if a fault says so, or left alone if it was cancelled (4) meanwhile.
``pause()`` stops workers from taking or advancing tasks until ``resume()``.

Anyone may ``watch`` a task (a progress WebSocket, ``wait_status``): a ``Watcher``'s event is set on every
change. A change of the queue (a task joins or leaves it) alters the position of every queued task, so
those notifications are coalesced: at most one round per ``queue_notify_interval``, and only for watched
tasks. A WebSocket frame is serialised once per change of a task (``frame``), however many sockets watch it.

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
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .._constants import DEFAULT_URL_EXPIRE_PERIOD
from ._clock import EmulatorClock
from ._objects import ObjectStore, random_id
from ._signing import UrlSigner
from ._wire import dumps
from ._workflows import RenderPlan


class Status(IntEnum):
    """The service's task statuses."""

    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    PERMISSION_DENIED = 5


TERMINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.PERMISSION_DENIED})

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
    workflow_id: str
    plan: RenderPlan
    fail_message: str | None
    status: Status = Status.QUEUED
    progress: int = 0
    error_message: str = ""
    queue_seq: int = 0
    results: dict[str, list[str]] = field(default_factory=dict)
    version: int = 0
    watchers: set[Watcher] = field(default_factory=set)
    frame_key: tuple[int, int] | None = None
    frame_text: str = ""
    changed_ns: int = 0  # time.monotonic_ns() of the last change of state
    finished_at: float | None = None  # emulator-clock time it reached a terminal status
    tutorial_shapes: bool = False  # snapshots shaped like the tutorial's examples (see Faults.tutorial_shapes)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


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
        stamp_snapshots: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError("an emulator needs at least one worker")
        self._clock = clock
        self._objects = objects
        self._worker_count = workers
        self._steps = steps
        self._step_seconds = step_seconds
        self._queue_notify_interval = queue_notify_interval
        self.stamp_snapshots = stamp_snapshots
        self.signer: UrlSigner | None = None
        self._tasks: dict[str, Task] = {}
        self._queued_seqs: list[int] = []
        self._queued_by_seq: dict[int, Task] = {}
        self._next_seq = 0
        self._queue_epoch = 0
        self._watched: set[Task] = set()
        self._broadcast_handle: asyncio.TimerHandle | None = None
        self._work_available = asyncio.Event()
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
        self._work_available.set()

    def set_timing(self, *, steps: int | None = None, step_seconds: float | None = None) -> None:
        """Change how tasks advance, for tasks that start from now on."""
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
    def step_seconds(self) -> float:
        return self._step_seconds

    # --- tasks ---------------------------------------------------------------------------------------------
    def create(
        self, *, workflow_id: str, plan: RenderPlan, fail_message: str | None, deny: bool, tutorial_shapes: bool = False
    ) -> Task:
        """A new task: queued, or at once status 5 when ``deny``."""
        task_id = f"cft-{random_id()}"
        while task_id in self._tasks:
            task_id = f"cft-{random_id()}"
        task = Task(
            task_id=task_id, workflow_id=workflow_id, plan=plan, fail_message=fail_message,
            changed_ns=time.monotonic_ns(), tutorial_shapes=tutorial_shapes,
        )
        self._tasks[task_id] = task
        self._release_expired()
        if deny:
            task.status = Status.PERMISSION_DENIED
            self._finish(task)
            return task
        self._next_seq += 1
        task.queue_seq = self._next_seq
        self._queued_seqs.append(task.queue_seq)
        self._queued_by_seq[task.queue_seq] = task
        self._work_available.set()
        self._queue_changed()
        return task

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def cancel(self, task: Task) -> bool:
        """Cancel a queued or running task (status 4). ``False`` if it had already ended."""
        if task.is_terminal:
            return False
        if task.status is Status.QUEUED:
            self._remove_from_queue(task)
        task.status = Status.FAILED
        task.error_message = ""
        self._finish(task)
        self._changed(task)
        self._queue_changed()
        return True

    @property
    def queue_size(self) -> int:
        """How many tasks are queued."""
        return len(self._queued_seqs)

    def position(self, task: Task) -> int:
        """1-based place of a queued task in the queue; 0 for any other task."""
        if task.status is not Status.QUEUED:
            return 0
        return bisect.bisect_left(self._queued_seqs, task.queue_seq) + 1

    # --- what clients see ----------------------------------------------------------------------------------
    def info(
        self, task: Task, *, expire_period: int = DEFAULT_URL_EXPIRE_PERIOD, process: str | None = None
    ) -> dict[str, Any]:
        """The task as the service reports it, with freshly signed result URLs."""
        status = task.status
        info: dict[str, Any] = {
            "comfy_task_id": task.task_id,
            "status": int(status),
            "queue_size": self.queue_size if status in (Status.QUEUED, Status.RUNNING) else 0,
            "current_position": self.position(task),
            "errMsg": task.error_message,
        }
        if self.stamp_snapshots:
            info[STAMP_FIELD] = task.changed_ns
        if status is Status.QUEUED:
            info["files"] = "None"
            if not task.tutorial_shapes:
                info["progress_num"] = 0
            return info
        if status is Status.SUCCEEDED and self.signer is not None:
            expires_at = int(self._clock.now()) + expire_period
            files = {
                node_id: [self.signer.sign_url(key, expires_at=expires_at, process=process) for key in keys]
                for node_id, keys in task.results.items()
            }
            if task.tutorial_shapes:
                info["files"] = {node_id: urls[0] for node_id, urls in files.items() if urls}
                return info
            info["files"] = files
            info["final_files"] = [url for urls in files.values() for url in urls]
        else:
            info["files"] = {}
            info["final_files"] = []
        info["progress_num"] = task.progress
        return info

    def frame(self, task: Task) -> str:
        """The WebSocket frame for the task's current state, serialised once per change.

        A queued or running task's frame also changes with the queue. A finished task's frame holds signed
        URLs, so it is signed afresh each minute: a socket opened long after the end still gets live URLs.
        """
        if task.is_terminal:
            key = (task.version, -1 - int(self._clock.now() // _TERMINAL_FRAME_SECONDS))
        else:
            key = (task.version, self._queue_epoch)
        if task.frame_key != key:
            info = self.info(task)
            if self.stamp_snapshots:
                info[SERIALISED_STAMP_FIELD] = time.monotonic_ns()
            task.frame_text = dumps({"comfy_task_info": info})
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

    async def wait_status(self, task_id: str, statuses: Collection[int], *, timeout: float) -> dict[str, Any]:
        """Wait until the task's status is one of ``statuses``; return its snapshot.

        Raises ``EmulatorError`` if the task is unknown or ends with another status, ``TimeoutError`` if the
        time runs out.
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
                        if int(task.status) in wanted:
                            return self.info(task)
                        if task.is_terminal:
                            raise EmulatorError(
                                f"task {task_id} ended with status {int(task.status)} "
                                f"(errMsg {task.error_message!r}) while waiting for {sorted(wanted)}"
                            )
                        await watcher.changed.wait()
            except TimeoutError:
                raise TimeoutError(
                    f"task {task_id} still has status {int(task.status)} after {timeout} s "
                    f"(waiting for {sorted(wanted)})"
                ) from None

    # --- internals -----------------------------------------------------------------------------------------
    def _changed(self, task: Task) -> None:
        task.version += 1
        task.changed_ns = time.monotonic_ns()
        for watcher in task.watchers:
            watcher.changed.set()

    def _queue_changed(self) -> None:
        self._queue_epoch += 1
        if self._broadcast_handle is None and self._watched:
            loop = asyncio.get_running_loop()
            self._broadcast_handle = loop.call_later(self._queue_notify_interval, self._broadcast_queue)

    def _broadcast_queue(self) -> None:
        self._broadcast_handle = None
        for task in self._watched:
            if task.status in (Status.QUEUED, Status.RUNNING):
                for watcher in task.watchers:
                    watcher.changed.set()

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
            self._work_available.clear()
            await self._work_available.wait()

    async def _worker_loop(self) -> None:
        while True:
            task = await self._next_task()
            await self._run(task)

    async def _run(self, task: Task) -> None:
        task.status = Status.RUNNING
        task.progress = 0
        self._changed(task)
        self._queue_changed()
        steps, step_seconds = self._steps, self._step_seconds
        fail_after = steps // 2 if task.fail_message is not None else None
        for step in range(1, steps + 1):
            await asyncio.sleep(step_seconds)
            await self._resumed.wait()
            if task.status is not Status.RUNNING:
                return
            if fail_after is not None and step > fail_after:
                break
            if step < steps:
                task.progress = step * 100 // steps
                self._changed(task)
        if task.status is not Status.RUNNING:
            return
        if task.fail_message is not None:
            task.status = Status.FAILED
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
        task.status = Status.SUCCEEDED
        task.progress = 100
        self._finish(task)
        self._changed(task)

    def _finish(self, task: Task) -> None:
        task.finished_at = self._clock.now()
        self._finished.append(task)

    def _release_expired(self) -> None:
        """Free what tasks finished longer than the retention period ago still hold: their result objects (the
        storage would answer 404 anyway), the prompt text of their plan, their cached frame. The task itself
        stays, so ``get_task_info`` answers as before."""
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
