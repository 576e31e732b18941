"""Live progress: of one task (``run``, ``demo``) and of a batch (one row per running job, an overall bar).

Each display has a rich form (drawn when the console is pretty) and a plain form that prints a line when
something changes: readable in a log file, and what the tests read. With ``--json`` nothing is shown. Every text
shown goes through ``console.printable`` (the plain form through the ``Console`` itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..types import TaskInfo, TaskStatus
from .console import Console
from .services import GENSTUDIO, Profile

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def _escaped(console: Console, text: str) -> str:
    """``text`` safe to show in a rich column that reads markup: no secret and no control characters
    (``console.printable``), and brackets shown as brackets (job names and errors may hold ``[red]``)."""
    from rich.markup import escape

    return escape(console.printable(text))


def describe(info: TaskInfo, profile: Profile = GENSTUDIO) -> str:
    """A task's state in a few words: ``queued: position 2 of 3``, ``running:  40%``, ``succeeded: 100%``
    (on a service that gives no percent, GPUGeek: ``running``, ``succeeded``)."""
    if info.status is TaskStatus.QUEUED:
        if info.queue_position:
            return f"queued: position {info.queue_position} of {max(info.queue_size, info.queue_position)}"
        return "queued"
    if info.status is TaskStatus.FAILED:  # GenStudio's 4 means failed, and cancelled too
        if info.error_message:
            return f"failed: {info.error_message}"
        return "failed or cancelled" if profile.failed_may_be_cancelled else "failed"
    if info.status is TaskStatus.CANCELLED:
        return "cancelled"
    if info.status is TaskStatus.PERMISSION_DENIED:
        return "permission denied"
    if not profile.percent:  # 0 until it succeeds, then 100: a percent would only mislead
        return info.status.name.lower()
    return f"{info.status.name.lower()}: {info.progress:3d}%"


def shown_paths(paths: Sequence[Path]) -> str:
    return ", ".join(str(path) for path in paths) or "(no files)"


# --- one task ----------------------------------------------------------------------------------------------


class TaskProgress:
    """The progress of one task (``run``, ``demo``), or of several (``watch``: one row each): a rich bar per task,
    or a plain line per change. Use as a context manager.

    ``label``: the task's row (its prompt_id), or a list of them (each ``update`` names its row: ``label``). With
    one task a plain line is ``  running:  40%``; with several ``cft-…: running:  40%``.
    """

    def __init__(self, console: Console, label: str | Sequence[str], profile: Profile = GENSTUDIO) -> None:
        self._console = console
        self._labels = [label] if isinstance(label, str) else list(label)
        self._profile = profile
        self._last: dict[str, str] = {}
        self._progress: Progress | None = None
        self._rows: dict[str, TaskID] = {}

    def __enter__(self) -> TaskProgress:
        if self._console.pretty and not self._console.quiet:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[state]}"),
                TimeElapsedColumn(),
                console=self._console.rich,
            )
            for label in self._labels:
                self._rows[label] = self._progress.add_task(
                    _escaped(self._console, label), total=100, state="waiting"
                )
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, info: TaskInfo, label: str | None = None) -> None:
        """Show ``info`` (called with every progress event) in the row ``label`` (default: the first row).

        The row is the caller's, never ``info.prompt_id``: what the server says a task is called picks no row.
        """
        label = self._labels[0] if label is None else label
        text = describe(info, self._profile)
        if self._last.get(label) == text:
            return
        self._last[label] = text
        row = self._rows.get(label)
        if self._progress is not None and row is not None:
            self._progress.update(row, completed=info.progress, state=_escaped(self._console, text))
        elif len(self._labels) == 1:
            self._console.line(f"  {text}")
        else:
            self._console.line(f"{label}: {text}")


# --- a batch -----------------------------------------------------------------------------------------------


class BatchProgress:
    """A batch's progress: an overall bar and a row per running job (rich), or a line per change (plain)."""

    def __init__(self, console: Console, total: int, *, done_before: int = 0, profile: Profile = GENSTUDIO) -> None:
        self._console = console
        self._profile = profile
        self.total = total
        self.finished = done_before
        self.done = done_before
        self.failed = 0
        self._states: dict[str, str] = {}
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._rows: dict[str, TaskID] = {}

    def __enter__(self) -> BatchProgress:
        if self._console.pretty and not self._console.quiet:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[state]}"),
                TimeElapsedColumn(),
                console=self._console.rich,
            )
            self._overall = self._progress.add_task(
                "[bold]batch[/]", total=self.total, completed=self.finished, state=self._counts()
            )
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def say(self, text: str) -> None:
        """A line of its own, above the bars when they are drawn."""
        if self._progress is not None:
            self._progress.console.print(self._console.printable(text), markup=False, highlight=False, soft_wrap=True)
        else:
            self._console.line(text)

    def started(self, job: str, what: str) -> None:
        """A job begins: ``what`` says how (``submitting``, ``resuming cft-…``)."""
        if self._progress is not None:
            self._rows[job] = self._progress.add_task(
                _escaped(self._console, job), total=100, state=_escaped(self._console, what)
            )
        elif what.startswith("resuming"):
            self.say(f"{job}: {what}")

    def submitted(self, job: str, prompt_id: str) -> None:
        if self._progress is not None and job in self._rows:
            self._progress.update(self._rows[job], state=_escaped(self._console, f"submitted {prompt_id}"))
        else:
            self.say(f"{job}: submitted {prompt_id}")

    def update(self, job: str, info: TaskInfo) -> None:
        """A progress event of a job's task. Plain lines show only a change of status, not every percent."""
        text = describe(info, self._profile)
        if self._progress is not None:
            if job in self._rows:
                self._progress.update(self._rows[job], completed=info.progress, state=_escaped(self._console, text))
            return
        status = info.status.name.lower()
        if self._states.get(job) != status and not info.is_terminal:
            self._states[job] = status
            self.say(f"{job}: {text}")

    def downloading(self, job: str) -> None:
        if self._progress is not None and job in self._rows:
            self._progress.update(self._rows[job], state="downloading")

    def succeeded(self, job: str, paths: Sequence[Path]) -> None:
        self.finished += 1
        self.done += 1
        self._end(job, f"[{self.finished}/{self.total}] done {job}: {shown_paths(paths)}")

    def failed_job(self, job: str, message: str) -> None:
        self.finished += 1
        self.failed += 1
        self._end(job, f"[{self.finished}/{self.total}] FAILED {job}: {message}")

    def _end(self, job: str, text: str) -> None:
        self._states.pop(job, None)
        if self._progress is not None:
            row = self._rows.pop(job, None)
            if row is not None:
                self._progress.remove_task(row)
            if self._overall is not None:
                self._progress.update(self._overall, completed=self.finished, state=self._counts())
        self.say(text)

    def _counts(self) -> str:
        return f"{self.finished}/{self.total}  [green]{self.done} done[/]  [red]{self.failed} failed[/]"
