"""The examples run, as a user would run them, against the built-in emulator: they cannot rot."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from genstudio_async import ApiWorkflow, WorkflowSpec
from genstudio_async.emulator import Emulator, Faults, builtin_workflows
from genstudio_async.emulator._gpugeek import GPUGeekService
from tests.cli_support import default_sigint, spawn
from tests.support import PNG_SIGNATURE, eventually, no_crash, png_size, tiny_png

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GENSTUDIO_", "GPUGEEK_"))}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False, preexec_fn=default_sigint,
    )


def test_quickstart_generates_and_saves_a_png(tmp_path: Path) -> None:
    done = run_example("quickstart.py", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "using the built-in emulator" in done.stdout
    assert "succeeded: 100%" in done.stdout
    pngs = list((tmp_path / "out").rglob("*.png"))
    assert len(pngs) == 1 and pngs[0].parent.name == "9"
    assert pngs[0].read_bytes().startswith(PNG_SIGNATURE)
    assert str(pngs[0].relative_to(tmp_path)) in done.stdout


def test_gpugeek_runs_offline_against_its_emulator_without_a_key(tmp_path: Path) -> None:
    done = run_example("gpugeek.py", "out", "--prompt", "a lighthouse at dusk", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "GPUGEEK_API_KEY is not set: using the built-in GPUGeek emulator" in done.stdout
    assert done.stdout.count("  succeeded\n") == 2 and "%" not in done.stdout  # polled: no percent
    first, second = pngs_under(tmp_path / "out" / "text-to-image"), pngs_under(tmp_path / "out" / "image-to-image")
    assert len(first) == len(second) == 1 and first[0].parent.name == second[0].parent.name == "9"
    assert f"2. image to image (763311996779525) of {first[0].relative_to(tmp_path)}" in done.stdout


# --- the other examples, each run as a subprocess pointed at the `genstudio_emulator` fixture -----------------------
#
# The emulator is served by the test's event loop, so the example runs under asyncio.create_subprocess_exec while
# the test awaits it. The example finds the emulator as a user would point it at any service: GENSTUDIO_BASE_URL
# and GENSTUDIO_API_KEY in its environment.

EXAMPLE_TIMEOUT = 60.0


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    """Emulators for this module: enough workers for every batch to run at once, a few quick progress steps."""
    return {"workers": 4, "steps": 5, "step_seconds": 0.02}


@pytest.fixture
def gpugeek_emulator_options() -> dict[str, Any]:
    return {"workers": 4, "steps": 5, "step_seconds": 0.02}


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def example_env(emulator: Emulator[Any]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GENSTUDIO_", "GPUGEEK_"))}
    if emulator.service_name == "GPUGeek":
        env.update(GPUGEEK_BASE_URL=emulator.base_url, GPUGEEK_API_KEY=emulator.api_key)
    else:
        env.update(GENSTUDIO_BASE_URL=emulator.base_url, GENSTUDIO_API_KEY=emulator.api_key)
    # Unbuffered, so the test sees each line as it is printed; warnings are errors and asyncio runs in debug mode
    # (dev mode), so a leaked task or an unclosed resource in an example shows up on its stderr.
    env.update(PYTHONUNBUFFERED="1", PYTHONWARNINGS="error", PYTHONDEVMODE="1")
    return env


@asynccontextmanager
async def started(
    emulator: Emulator[Any], name: str, *args: str, cwd: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The example running against ``emulator``; killed (if still running) and reaped when the block ends."""
    async with spawn(sys.executable, str(EXAMPLES / name), *args, cwd=cwd, env=example_env(emulator)) as process:
        yield process


async def finish(process: asyncio.subprocess.Process) -> Finished:
    async with asyncio.timeout(EXAMPLE_TIMEOUT):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


async def run_against(emulator: Emulator[Any], name: str, *args: str, cwd: Path) -> Finished:
    async with started(emulator, name, *args, cwd=cwd) as process:
        return await finish(process)


async def read_lines_with(process: asyncio.subprocess.Process, *texts: str) -> list[str]:
    """Read the example's stdout until each of ``texts`` has appeared; return the line each first appeared in."""
    assert process.stdout is not None
    found: dict[str, str] = {}
    async with asyncio.timeout(EXAMPLE_TIMEOUT):
        while len(found) < len(texts) and (line := (await process.stdout.readline()).decode()):
            found.update({text: line for text in texts if text in line and text not in found})
    missing = [text for text in texts if text not in found]
    if missing:
        pytest.fail(f"the example ended without printing {missing}")
    return [found[text] for text in texts]


def pngs_under(directory: Path) -> list[Path]:
    found = sorted(directory.rglob("*.png"))
    for path in found:
        assert path.read_bytes().startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    return found


# --- every example ---------------------------------------------------------------------------------------------------


async def test_every_example_answers_help_and_runs_nothing(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    names = sorted(path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))
    assert "quickstart.py" in names and len(names) >= 6
    folders = {name: tmp_path / name.removesuffix(".py") for name in names}
    for folder in folders.values():
        folder.mkdir()
    done = await asyncio.gather(
        *(run_against(genstudio_emulator, name, "--help", cwd=folders[name]) for name in names)
    )
    for name, finished in zip(names, done, strict=True):
        assert finished.returncode == 0, (name, finished.stderr)
        assert finished.stdout.startswith(f"usage: {name}"), (name, finished.stdout)
        assert list(folders[name].iterdir()) == [], name  # no output folder named "--help", nothing written
    assert sum(genstudio_emulator.stats.requests.values()) == 0  # nothing was sent


# --- text_to_image.py ----------------------------------------------------------------------------------------------


async def test_text_to_image_submits_the_built_prompt_and_saves_the_png(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    done = await run_against(
        genstudio_emulator, "text_to_image.py", "out", "--prompt", "a red fox", "--steps", "12", "--seed", "42",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "using the built-in emulator" not in done.stdout  # the key in the environment wins
    assert re.search(r"^submitted cft-\S+ \(seed 42\)$", done.stdout, re.M)
    progress = re.findall(r"^  running: +(\d+)%$", done.stdout, re.M)
    assert progress and [int(p) for p in progress] == sorted(int(p) for p in progress)  # live, forward only
    assert "  succeeded: 100%" in done.stdout
    [png] = pngs_under(tmp_path / "out")
    assert png.parent == tmp_path / "out" / "9"
    assert f"saved {png.relative_to(tmp_path)}" in done.stdout
    # What reached the service: the builder put the texts on the nodes the exported workflow links.
    [task] = list(genstudio_emulator.service.tasks)
    assert task.workflow_id == "wf-c73diz7kadp6ffgn"
    assert task.plan.seed == 42 and task.plan.text.startswith("a red fox") and "ugly, deformed" in task.plan.text
    assert genstudio_emulator.stats.submits == 1
    no_crash(done.stderr)


async def test_text_to_image_refuses_a_bad_prompt_before_sending_it(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    done = await run_against(
        genstudio_emulator, "text_to_image.py", "out", "--steps", "0", "--cfg", "250", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "not submitted" in done.stderr
    assert "input 'steps': 0 is below the minimum 1" in done.stderr
    assert "input 'cfg': 250.0 is above the maximum 100" in done.stderr
    assert genstudio_emulator.stats.submits == 0 and not (tmp_path / "out").exists()


# --- image_to_image.py ---------------------------------------------------------------------------------------------


async def test_image_to_image_uploads_the_given_image_at_submit_time(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "bottle.png").write_bytes(tiny_png(40, 24))
    done = await run_against(genstudio_emulator, "image_to_image.py", "bottle.png", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^uploaded bottle\.png and submitted cft-\S+$", done.stdout, re.M)
    assert "  succeeded: 100%" in done.stdout
    [png] = pngs_under(tmp_path / "out")
    assert png.parent == tmp_path / "out" / "9"
    # The emulator draws an image-to-image result at the size of the image its LoadImage node was given.
    assert png_size(png.read_bytes()) == (40, 24)
    assert genstudio_emulator.stats.uploads == 1 and genstudio_emulator.stats.submits == 1
    [task] = list(genstudio_emulator.service.tasks)
    assert task.workflow_id == "wf-c73epllu4i3bxvzr"
    no_crash(done.stderr)


async def test_image_to_image_generates_its_input_when_none_is_given(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    done = await run_against(genstudio_emulator, "image_to_image.py", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no input image given: generating one with text-to-image first" in done.stdout
    [source] = pngs_under(tmp_path / "out" / "input")
    assert f"generated {source.relative_to(tmp_path)}" in done.stdout
    assert f"uploaded {source.name} and submitted" in done.stdout
    results = [path for path in pngs_under(tmp_path / "out") if path != source]
    assert [path.parent for path in results] == [tmp_path / "out" / "9"]
    assert genstudio_emulator.stats.uploads == 1  # the generated image, uploaded once
    workflows = [task.workflow_id for task in genstudio_emulator.service.tasks]
    assert workflows == ["wf-c73diz7kadp6ffgn", "wf-c73epllu4i3bxvzr"]  # text-to-image, then image-to-image


# --- batch.py ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("display", ["lines", "bars"])
async def test_batch_runs_every_prompt_and_downloads_each_result(
    genstudio_emulator: Emulator, tmp_path: Path, display: str
) -> None:
    done = await run_against(
        genstudio_emulator, "batch.py", "5", "--concurrency", "3", "--display", display, "-o", "out", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^5 jobs: 5 done, 0 failed in \d+\.\d s$", done.stdout, re.M)
    pngs = pngs_under(tmp_path / "out")
    assert sorted(path.parent.parent.name[:2] for path in pngs) == ["00", "01", "02", "03", "04"]
    assert all(path.parent.name == "9" for path in pngs)
    if display == "lines":
        assert len(re.findall(r"^\[\d/5\] done    #\d ", done.stdout, re.M)) == 5
    else:
        assert done.stdout.count("✓ #") == 5
    assert genstudio_emulator.stats.submits == 5
    assert len({task.plan.seed for task in genstudio_emulator.service.tasks}) == 5  # a fresh seed each
    no_crash(done.stderr)


@pytest.mark.genstudio_emulator(faults=Faults(fail_tasks="CUDA out of memory"))
async def test_batch_reports_failures_and_goes_on(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    done = await run_against(
        genstudio_emulator, "batch.py", "3", "--concurrency", "1", "--display", "lines", "-o", "out", cwd=tmp_path
    )
    assert done.returncode == 1
    failures = re.findall(r"^\[\d/3\] FAILED  #\d .*: task cft-\S+ failed: CUDA out of memory$", done.stdout, re.M)
    assert len(failures) == 3
    assert re.search(r"^3 jobs: 0 done, 3 failed in ", done.stdout, re.M)
    # One job at a time: each job after the first was submitted after a failure, so none stopped the batch.
    assert genstudio_emulator.stats.submits == 3
    assert pngs_under(tmp_path) == []
    no_crash(done.stderr)


# --- worker.py -----------------------------------------------------------------------------------------------------


async def test_worker_pool_streams_every_job_and_shuts_down_when_drained(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    done = await run_against(genstudio_emulator, "worker.py", "5", "--workers", "2", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for job in range(5):
        assert re.search(rf"^\[worker-\d\] job {job}: succeeded: 100%$", done.stdout, re.M)
        [png] = pngs_under(tmp_path / "out" / f"job-{job}")
        assert f"job {job}: saved {png.relative_to(tmp_path)}" in done.stdout
    assert "[worker-1] no more jobs" in done.stdout and "[worker-2] no more jobs" in done.stdout
    assert done.stdout.rstrip().endswith("all 5 jobs handled by 2 workers")
    stats = genstudio_emulator.stats
    assert stats.submits == 5
    assert stats.ws_connections_opened >= 5  # the progress came over the WebSocket
    await eventually(lambda: stats.ws_connections_open == 0, what="every progress socket closed")
    no_crash(done.stderr)


async def test_worker_pool_on_ctrl_c_cancels_what_it_had_in_flight(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    genstudio_emulator.pause()  # tasks stay queued: the interrupt comes while both workers are streaming
    async with started(genstudio_emulator, "worker.py", "4", "--workers", "2", "-o", "out", cwd=tmp_path) as process:
        await read_lines_with(process, "job 0: queued: position", "job 1: queued: position")
        process.send_signal(signal.SIGINT)
        done = await finish(process)
    assert done.returncode == 130
    assert "interrupted: workers stopped, unfinished tasks cancelled" in done.stderr
    cancelled = re.findall(r"cancelled (cft-\S+)$", done.stdout, re.M)
    assert len(cancelled) == 2
    stats = genstudio_emulator.stats
    assert stats.submits == 2 and stats.cancels == 2
    assert sorted(cancelled) == sorted(genstudio_emulator.task_ids())
    assert all((genstudio_emulator.task_info(task_id) or {}).get("status") == 4 for task_id in cancelled)
    await eventually(lambda: stats.ws_connections_open == 0, what="every progress socket closed")
    assert pngs_under(tmp_path) == []
    no_crash(done.stderr)


# --- gpugeek.py ----------------------------------------------------------------------------------------------------


async def test_gpugeek_sends_whole_workflows_and_uploads_its_result_to_the_service_it_is_given(
    gpugeek_emulator: Emulator[GPUGeekService], tmp_path: Path
) -> None:
    done = await run_against(gpugeek_emulator, "gpugeek.py", "out", "--prompt", "a red fox", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "using the built-in" not in done.stdout  # the key in the environment wins
    assert len(re.findall(r"^submitted \d{15}$", done.stdout, re.M)) == 2
    t2i, i2i = gpugeek_emulator.service.tasks
    assert (t2i.workflow_id, i2i.workflow_id) == ("763311996779461", "763311996779525")
    assert t2i.plan.text.startswith("a red fox") and "ugly, deformed" in t2i.plan.text  # the export's links
    [picture] = pngs_under(tmp_path / "out" / "text-to-image")
    [result] = pngs_under(tmp_path / "out" / "image-to-image")
    assert png_size(result.read_bytes()) == png_size(picture.read_bytes())  # drawn at the uploaded image's size
    stats = gpugeek_emulator.stats
    assert stats.submits == 2 and stats.commits == 1 and stats.storage_requests_with_authorization == 0
    no_crash(done.stderr)




# --- notebook.py ---------------------------------------------------------------------------------------------------


async def test_notebook_runs_the_tutorials_job_with_the_sync_client(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    done = await run_against(genstudio_emulator, "notebook.py", "-o", "out", "--prompt", "a red fox", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "using the built-in emulator" not in done.stdout  # the key in the environment wins
    assert re.search(r"^submitted cft-\S+$", done.stdout, re.M)
    progress = re.findall(r"^  running: +(\d+)%$", done.stdout, re.M)
    assert progress and [int(p) for p in progress] == sorted(int(p) for p in progress)  # live, forward only
    assert "  succeeded: 100%" in done.stdout
    [png] = pngs_under(tmp_path / "out")
    assert png.parent == tmp_path / "out" / "9" and f"saved {png.relative_to(tmp_path)}" in done.stdout
    [task] = list(genstudio_emulator.service.tasks)
    assert task.workflow_id == "wf-c73diz7kadp6ffgn"
    assert task.plan.text.startswith("a red fox") and "ugly, deformed" in task.plan.text  # the tutorial's edits
    stats = genstudio_emulator.stats
    assert stats.submits == 1 and stats.ws_connections_opened >= 1  # progress over the WebSocket
    await eventually(lambda: stats.ws_connections_open == 0, what="the progress socket closed")
    no_crash(done.stderr)


def test_notebook_runs_offline_against_its_own_emulator(tmp_path: Path) -> None:
    done = run_example("notebook.py", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "using the built-in emulator" in done.stdout and "  succeeded: 100%" in done.stdout
    [png] = pngs_under(tmp_path / "out")
    assert f"saved {png.relative_to(tmp_path)}" in done.stdout
    no_crash(done.stderr)


async def test_notebook_cells_run_in_a_jupyter_kernel(
    genstudio_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ``# %%`` cell pasted into a real kernel's notebook (whose own loop runs where the cells do)."""
    import nbclient
    import nbformat

    source = (EXAMPLES / "notebook.py").read_text(encoding="utf-8")
    cells = [cell.strip() for cell in re.split(r"^# %%.*$", source, flags=re.M)[1:]]
    assert len(cells) >= 4
    shutil.copytree(EXAMPLES / "workflows", tmp_path / "workflows")  # a notebook has no __file__: found from here
    for name, value in example_env(genstudio_emulator).items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell) for cell in cells])  # type: ignore[no-untyped-call]
    runner = nbclient.NotebookClient(
        notebook, timeout=int(EXAMPLE_TIMEOUT), kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    await runner.async_execute()
    outputs = [output for cell in notebook.cells for output in cell.outputs]
    assert [output for output in outputs if output.get("output_type") == "error"] == []
    text = "".join(output.get("text", "") for output in outputs if output.get("output_type") == "stream")
    assert "  succeeded: 100%" in text, text
    [png] = pngs_under(tmp_path / "output")
    assert png.parent.name == "9" and f"saved {png.relative_to(tmp_path)}" in text
    assert genstudio_emulator.stats.submits == 1


# --- web_app.py ----------------------------------------------------------------------------------------------------


async def server_sent_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event, data = "message", []
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
        elif not line and data:
            yield event, json.loads("\n".join(data))
            event, data = "message", []


async def test_web_app_relays_live_progress_and_serves_the_image(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    async with started(genstudio_emulator, "web_app.py", "--port", "0", cwd=tmp_path) as process:
        [line] = await read_lines_with(process, "serving on ")
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        async with httpx.AsyncClient(base_url=url.group(0), trust_env=False, timeout=EXAMPLE_TIMEOUT) as browser:
            page = await browser.get("/")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "<form" in page.text and "EventSource" in page.text

            refused = await browser.post("/generate", json={"prompt": "   "})
            assert refused.status_code == 400 and "type a prompt" in refused.json()["error"]

            # Queued until the page is listening: a task that finished before the stream opened would show no
            # "running" (on a busy machine it does), and the test must not depend on how fast the machine is.
            genstudio_emulator.pause()
            started_task = await browser.post("/generate", json={"prompt": "a red fox in fresh snow"})
            assert started_task.status_code == 202, started_task.text
            task = started_task.json()

            received: list[tuple[str, dict[str, Any]]] = []
            async with browser.stream("GET", task["events"]) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                async for event in server_sent_events(stream):
                    received.append(event)
                    genstudio_emulator.resume()  # the first snapshot came through: the relay is live
                    if event[0] in ("done", "failed"):
                        break
            kinds = [kind for kind, _ in received]
            assert kinds[-1] == "done", received
            progress = [data for kind, data in received if kind == "progress"]
            assert any(update["status"] == "running" for update in progress)
            assert [update["progress"] for update in progress] == sorted(update["progress"] for update in progress)
            assert progress[-1] == {"status": "succeeded", "progress": 100, "text": "succeeded: 100%"}

            [image_url] = received[-1][1]["images"]
            assert image_url == f"/tasks/{task['task_id']}/images/0"  # served by the app, not a signed URL
            image = await browser.get(image_url)
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            assert image.content.startswith(PNG_SIGNATURE)
            assert (await browser.get(f"/tasks/{task['task_id']}/images/1")).status_code == 404

        process.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down, the lifespan closes the client
        done = await finish(process)
    assert done.returncode == 0, done.stderr
    stats = genstudio_emulator.stats
    assert stats.submits == 1 and stats.storage_downloads == 1
    assert genstudio_emulator.task_ids() == [task["task_id"]]
    no_crash(done.stderr)


def test_example_specs_are_the_docs_example_workflows() -> None:
    """The specs in examples/workflows/ are the docs' (as the emulator ships them), and each export links its
    sampler's positive and negative inputs to the spec's text nodes."""
    builtin = builtin_workflows()
    for name, workflow_id in (("t2i", "wf-c73diz7kadp6ffgn"), ("i2i", "wf-c73epllu4i3bxvzr")):
        spec = WorkflowSpec.load(EXAMPLES / "workflows" / f"{name}_spec.json")
        assert spec.to_dict() == builtin[workflow_id].to_dict()
        export = ApiWorkflow.load(EXAMPLES / "workflows" / f"{name}_workflow_api.json")
        assert (export.linked_node("positive"), export.linked_node("negative")) == ("6", "7")
        assert set(spec.nodes) <= set(export.nodes)
