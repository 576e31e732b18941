"""A batch: N prompts through ``client.run_many``, a live progress display, every result downloaded, a summary.

``run_many`` runs the jobs at bounded concurrency and yields each outcome as it finishes; a failed job is an
outcome with ``error`` set, so one failure never stops the batch. The display is rich progress bars when
stdout is a terminal, plain lines otherwise (a log file, CI)::

    python examples/batch.py [N] [-o OUTPUT_DIR] [--concurrency K] [--display auto|bars|lines]

Job ``i`` saves to ``OUTPUT_DIR/<i>-<subject>/<node id>/`` (default ``batch-output/``). The exit code is 0 when
every job succeeded, 1 otherwise. With no ``GENSTUDIO_API_KEY`` it runs against the built-in emulator; see
``_support.py`` for the other set-ups.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any, Protocol

# The examples share a little set-up code in examples/_support.py: make it importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._support import TEXT_TO_IMAGE, add_workflow_arguments, load_workflow, open_client
from genstudio_async import GenStudioError

SUBJECTS = [
    "a red fox in fresh snow",
    "a lighthouse on a cliff at dusk",
    "a bowl of ramen, steam rising",
    "an astronaut riding a horse",
    "a cozy library with a fireplace",
    "a hummingbird next to a red flower",
    "a cyberpunk street market in the rain",
    "a sailing ship in a storm",
    "a snow leopard on a rocky ledge",
    "a treehouse village in a rainforest",
]


class Display(Protocol):
    """What the batch tells its display; two implementations below."""

    def __enter__(self) -> Display: ...
    def __exit__(self, *exc: object) -> None: ...
    def finished(self, index: int, subject: str, paths: list[Path]) -> None: ...
    def failed(self, index: int, subject: str, error: BaseException) -> None: ...


class LineDisplay:
    """One plain line per finished job: readable in a log file or a CI console."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0

    def __enter__(self) -> LineDisplay:
        print(f"running {self.total} jobs", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def finished(self, index: int, subject: str, paths: list[Path]) -> None:
        self.count += 1
        saved = ", ".join(str(path) for path in paths)
        print(f"[{self.count}/{self.total}] done    #{index} {subject} -> {saved}", flush=True)

    def failed(self, index: int, subject: str, error: BaseException) -> None:
        self.count += 1
        print(f"[{self.count}/{self.total}] FAILED  #{index} {subject}: {error}", flush=True)


class BarDisplay:
    """A rich progress bar (``pip install rich``, or ``genstudio-async[cli]``) over the batch, with a line per job."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]✓ {task.fields[done]}[/]  [red]✗ {task.fields[failed]}[/]"),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("batch", total=total, done=0, failed=0)
        self.done = self.failed_count = 0

    def __enter__(self) -> BarDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def finished(self, index: int, subject: str, paths: list[Path]) -> None:
        self.done += 1
        self.progress.update(self.task, advance=1, done=self.done)
        saved = ", ".join(str(path) for path in paths)
        self.progress.console.print(f"[green]✓[/] #{index} {subject} → {saved}", highlight=False)

    def failed(self, index: int, subject: str, error: BaseException) -> None:
        self.failed_count += 1
        self.progress.update(self.task, advance=1, failed=self.failed_count)
        self.progress.console.print(f"[red]✗[/] #{index} {subject}: {error}", highlight=False)


def make_display(choice: str, total: int) -> Display:
    if choice == "bars" or (choice == "auto" and sys.stdout.isatty()):
        try:
            return BarDisplay(total)
        except ImportError:
            if choice == "bars":
                raise
    return LineDisplay(total)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", nargs="?", type=int, default=8, help="how many images (default: %(default)s)")
    parser.add_argument("-o", "--output", type=Path, default=Path("batch-output"))
    parser.add_argument("--concurrency", type=int, default=4, help="tasks in flight at once (default: %(default)s)")
    parser.add_argument("--display", choices=["auto", "bars", "lines"], default="auto")
    add_workflow_arguments(parser, TEXT_TO_IMAGE)
    return parser.parse_args()


async def main(args: argparse.Namespace) -> int:
    workflow = load_workflow(args, TEXT_TO_IMAGE)
    subjects = [SUBJECTS[i % len(SUBJECTS)] for i in range(args.count)]

    # One base prompt, one variation per job: its subject and a fresh seed.
    base = workflow.builder().negative("ugly, deformed, blurry, watermark").set("KSampler", steps=25, cfg=7.5)
    prompts = [base.positive(f"{subject}, highly detailed").randomize_seeds().build() for subject in subjects]
    jobs: list[tuple[str, dict[str, Any]]] = [(workflow.workflow_id, prompt) for prompt in prompts]

    done = failed = 0
    started = time.perf_counter()
    async with open_client() as client:
        with make_display(args.display, len(jobs)) as display:
            # Outcomes come in the order the jobs finish; outcome.index is the job's place in `jobs`. With spec=,
            # a prompt that does not fit the workflow is that job's PromptValidationError, and is never sent.
            batch = client.run_many(jobs, concurrency=args.concurrency, timeout=600, spec=workflow.spec)
            async for outcome in batch:
                subject = subjects[outcome.index]
                if outcome.result is None:
                    assert outcome.error is not None
                    failed += 1
                    display.failed(outcome.index, subject, outcome.error)
                    continue
                try:
                    target = args.output / f"{outcome.index:02d}-{slug(subject)}"
                    paths = await client.download(outcome.result, target)
                except GenStudioError as error:  # a download can fail too: report it, keep going
                    failed += 1
                    display.failed(outcome.index, subject, error)
                else:
                    done += 1
                    display.finished(outcome.index, subject, paths)

    elapsed = time.perf_counter() - started
    print(f"{len(jobs)} jobs: {done} done, {failed} failed in {elapsed:.1f} s")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_args())))
    except GenStudioError as error:  # a prompt that does not fit the workflow, a refused key...
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
