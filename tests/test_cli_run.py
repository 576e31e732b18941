"""``genstudio run``: the installed command in a subprocess, against the ``genstudio_emulator`` fixture."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from genstudio_async.emulator import Emulator, Faults
from genstudio_async.emulator._gpugeek import GPUGeekService
from genstudio_async.emulator._state import TaskState
from tests.cli_support import (
    EXPORTS,
    GPUGEEK_I2I,
    GPUGEEK_T2I,
    I2I,
    SPECS,
    T2I,
    Answer,
    command_env,
    envelope,
    event_lines,
    fake_service,
    files_under,
    finish,
    genstudio,
    one_error_line,
    pngs_under,
    started,
)
from tests.support import eventually, no_crash, png_size, tiny_png

T2I_SPEC = str(SPECS / f"{T2I}.json")
I2I_SPEC = str(SPECS / f"{I2I}.json")


GPUGeekEmulator = Emulator[GPUGeekService]


@pytest.fixture
def genstudio_emulator_options() -> dict[str, Any]:
    return {"workers": 2, "steps": 4, "step_seconds": 0.01}


@pytest.fixture
def gpugeek_emulator_options() -> dict[str, Any]:
    return {"workers": 2, "steps": 4, "step_seconds": 0.01}


async def test_run_types_set_values_by_the_spec_and_saves_the_result(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    done = await genstudio(
        "run", T2I, "--spec", T2I_SPEC,
        "--set", "KSampler.seed=42",                   # a class_type; INT
        "--set", "Empty Latent Image.width=64",        # a title
        "--set", "5.height=48",                        # an id
        "--set", "3.cfg=6.5",                          # FLOAT
        "--set", "6.text=123",                         # STRING: stays the text "123", not the number
        "--out", "out",
        cwd=tmp_path, emulator=genstudio_emulator,
    )
    assert done.returncode == 0, done.stderr
    [task] = list(genstudio_emulator.service.tasks)
    assert re.search(rf"^submitted {task.task_id}$", done.stdout, re.M)
    assert task.workflow_id == T2I and task.plan.seed == 42 and task.plan.text.splitlines()[0] == "123"
    progress = [int(p) for p in re.findall(r"^  running: +(\d+)%$", done.stdout, re.M)]
    assert progress == sorted(progress) and "  succeeded: 100%" in done.stdout
    [png] = pngs_under(tmp_path / "out")
    assert png.parent == tmp_path / "out" / "9" and png_size(png) == (64, 48)
    assert f"saved {png.relative_to(tmp_path)}" in done.stdout
    assert genstudio_emulator.stats.submits == 1
    no_crash(done.stderr)


async def test_run_lists_every_problem_and_sends_nothing(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    done = await genstudio(
        "run", I2I, "--spec", I2I_SPEC,
        "--set", "KSampler.steps=many",
        "--set", "KSampler.denoise=1.5",
        "--set", "KSampler.sampler_name=fastest",
        "--set", "KSampler.colour=red",
        "--set", "CLIP Text Encode (Prompt).text=a fox",
        "--set", "Upscaler.scale=2",
        "--image", "LoadImage=missing.png",
        cwd=tmp_path, emulator=genstudio_emulator, env=command_env(genstudio_emulator, dev_mode=False),
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == "genstudio: error: the prompt has 7 problems; nothing was sent:"
    problems = "\n".join(lines[1:])
    assert len(lines) == 8 and all(line.startswith("  - ") for line in lines[1:])
    assert "node '3' (KSampler) input 'steps': expected an integer, got str 'many'" in problems
    assert "input 'denoise': 1.5 is above the maximum 1" in problems
    assert "input 'sampler_name': 'fastest' is not one of the allowed choices" in problems
    assert "input 'colour': unknown input (allowed: seed, steps, cfg, sampler_name, scheduler, denoise)" in problems
    assert "'CLIP Text Encode (Prompt)' names several nodes (6, 7): use a node id" in problems
    assert "no node is called 'Upscaler'" in problems
    assert "node '10' input 'image': no such file: 'missing.png'" in problems
    stats = genstudio_emulator.stats
    assert stats.submits == 0 and stats.uploads == 0 and stats.requests["submit"] == 0


async def test_run_uploads_an_image_and_prints_json(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "bottle.png").write_bytes(tiny_png(40, 24))
    done = await genstudio(
        "run", I2I, "--spec", I2I_SPEC, "--image", "LoadImage=bottle.png", "--set", "3.denoise=0.5", "--json",
        cwd=tmp_path, emulator=genstudio_emulator,
    )
    assert done.returncode == 0, done.stderr
    document = done.json()  # stdout is the JSON object and nothing else
    [task] = list(genstudio_emulator.service.tasks)
    assert document["prompt_id"] == task.task_id and document["status"] == "succeeded"
    assert list(document["files"]) == ["9"] and len(document["files"]["9"]) == 1
    [path] = document["paths"]
    assert Path(path) == Path("genstudio-output") / task.task_id / "9" / Path(path).name
    # The emulator draws an image-to-image result at the size of the image its LoadImage node was given.
    assert png_size(tmp_path / path) == (40, 24)
    assert genstudio_emulator.stats.uploads == 1 and genstudio_emulator.stats.submits == 1
    no_crash(done.stderr)


async def test_run_without_a_spec_parses_json_literals_and_polls_without_websocket(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "prompt.json").write_text('{"7": {"inputs": {"text": "blurry"}}}', encoding="utf-8")
    done = await genstudio(
        "run", T2I, "--prompt", "prompt.json", "--set", "5.width=32", "--set", "5.height=16",
        "--set", '6.text="a fox"', "--set", "3.seed=7", "--no-websocket", "--poll-interval", "0.05", "--out", "out",
        cwd=tmp_path, env=command_env(genstudio_emulator, FORCE_COLOR="1", COLUMNS="100"),  # rich draws the bar
    )
    assert done.returncode == 0, done.stderr
    [png] = pngs_under(tmp_path / "out")
    assert png_size(png) == (32, 16)
    [task] = list(genstudio_emulator.service.tasks)
    assert task.plan.seed == 7 and task.plan.text == "a fox\nblurry"
    assert genstudio_emulator.stats.ws_connections_opened == 0  # followed by polling only
    assert "succeeded: 100%" in done.stdout and f"saved {png.relative_to(tmp_path)}" in done.stdout
    no_crash(done.stderr)


@pytest.mark.genstudio_emulator(faults=Faults(fail_tasks="CUDA out of memory"))
async def test_a_failed_task_exits_1_with_one_line(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    env = command_env(genstudio_emulator, dev_mode=False)
    plain, as_json = (
        await genstudio("run", T2I, cwd=tmp_path, env=env),
        await genstudio("run", T2I, "--json", cwd=tmp_path, env=env),
    )
    assert plain.returncode == 1 and as_json.returncode == 1
    assert re.fullmatch(r"task cft-\S+ failed: CUDA out of memory", one_error_line(plain.stderr))
    document = as_json.json()
    assert document["status"] == "failed" and document["paths"] == [] and "CUDA out of memory" in document["error"]
    assert not (tmp_path / "genstudio-output").exists()


async def test_timeout_and_ctrl_c_leave_the_task_running(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    genstudio_emulator.pause()  # tasks stay queued
    env = command_env(genstudio_emulator, dev_mode=False)
    timed_out = await genstudio("run", T2I, "--timeout", "0.3", cwd=tmp_path, env=env)
    assert timed_out.returncode == 1
    [first] = genstudio_emulator.task_ids()
    assert one_error_line(timed_out.stderr) == (
        f"task {first} did not finish within 0.3 s (the task goes on: 'genstudio watch {first}')"
    )

    async with started("run", T2I, cwd=tmp_path, env=env) as process:
        await eventually(
            lambda: len(genstudio_emulator.task_ids()) == 2, what="the second submit", timeout=20.0, interval=0.02
        )
        assert process.stdout is not None
        assert (await process.stdout.readline()).decode().startswith("submitted cft-")
        process.send_signal(signal.SIGINT)
        interrupted = await finish(process)
    assert interrupted.returncode == 130
    second = genstudio_emulator.task_ids()[1]
    assert f"interrupted: task {second} goes on on the service" in interrupted.stderr
    no_crash(interrupted.stderr)
    stats = genstudio_emulator.stats
    assert stats.cancels == 0 and stats.submits == 2
    assert all((genstudio_emulator.task_info(task) or {}).get("status") == 1 for task in (first, second))


async def test_cancel_on_timeout_cancels_the_task_on_the_service_and_says_so(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    genstudio_emulator.pause()  # the task stays queued: the timeout comes first
    env = command_env(genstudio_emulator, dev_mode=False)
    plain, as_json = await asyncio.gather(
        genstudio("run", T2I, "--timeout", "0.3", "--cancel-on-timeout", cwd=tmp_path, env=env),
        genstudio("run", T2I, "--timeout", "0.3", "--cancel-on-timeout", "--json", cwd=tmp_path, env=env),
    )
    assert plain.returncode == 1 and as_json.returncode == 1
    document = as_json.json()
    assert document["status"] == "timeout" and document["cancelled"] is True
    first = next(task for task in genstudio_emulator.task_ids() if task != document["prompt_id"])
    assert one_error_line(plain.stderr) == f"task {first} did not finish within 0.3 s; it was cancelled on the service"
    assert genstudio_emulator.stats.cancels == 2
    assert {task.state for task in genstudio_emulator.service.tasks} == {TaskState.CANCELLED}


@pytest.mark.parametrize("hostile_id", ["../../x", "ABSOLUTE", "..", "x/../../../y", "a" * 250])  # longer ids: refused
async def test_a_prompt_id_never_places_a_file_outside_the_output_folder(tmp_path: Path, hostile_id: str) -> None:
    """The default folder is genstudio-output/<prompt_id>/: the id comes from the server and may be a path."""
    work = tmp_path / "work"
    work.mkdir()
    prompt_id = str(tmp_path / "elsewhere") if hostile_id == "ABSOLUTE" else hostile_id
    service: dict[str, str] = {}

    def respond(method: str, path: str, body: bytes) -> Answer:
        if path.endswith("/prompt"):
            return envelope({"prompt_id": prompt_id, "prompt_token": "not-a-jwt"})
        if path.endswith("/get_task_info"):
            files = {"9": [f"{service['url']}/bucket/result.png?Expires=4102444800&Signature=x%2By"]}
            return envelope({"comfy_task_info": [
                {"comfy_task_id": prompt_id, "status": 3, "progress_num": 100, "files": files, "final_files": []}
            ]})
        if path.startswith("/bucket/result.png"):
            return 200, "image/png", tiny_png(4, 4)
        return 404, "text/plain", b"no"

    async with fake_service(respond) as service["url"]:
        env = command_env(GENSTUDIO_API_KEY="sk-test-0123456789", GENSTUDIO_BASE_URL=service["url"])
        done = await genstudio("run", "wf-x", "--no-websocket", "--poll-interval", "0.05", cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    [png] = files_under(tmp_path)  # the whole test's folder: nothing was written anywhere else in it
    assert png.is_relative_to(work / "genstudio-output") and png.parent.name == "9"
    folder = png.parent.parent
    assert folder.parent == work / "genstudio-output" and len(folder.name.encode()) <= 64
    assert f"saved {png.relative_to(work)}" in done.stdout


async def test_the_docs_workflows_take_node_names_without_a_spec(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    """The README's `run wf-… --image LoadImage=fox.png` and `run --help`'s `--set KSampler.steps=30`: the
    built-in spec of the docs' example workflows resolves the names when no --spec is given."""
    (tmp_path / "fox.png").write_bytes(tiny_png(40, 24))
    env = command_env(genstudio_emulator)
    image, names = (
        await genstudio("run", I2I, "--image", "LoadImage=fox.png", "--out", "i2i", cwd=tmp_path, env=env),
        await genstudio(
            "run", T2I, "--set", "KSampler.steps=30", "--set", "KSampler.seed=42", "--set",
            "Empty Latent Image.width=64", "--set", "EmptyLatentImage.height=48", "--set", '6.text="a red fox"',
            "--out", "t2i", cwd=tmp_path, env=env,
        ),
    )
    assert image.returncode == 0, image.stderr
    [png] = pngs_under(tmp_path / "i2i")
    assert png_size(png) == (40, 24)  # the emulator drew at the size of the image node 10 was given
    assert names.returncode == 0, names.stderr
    [png] = pngs_under(tmp_path / "t2i")
    assert png_size(png) == (64, 48)
    i2i_task, t2i_task = genstudio_emulator.service.tasks
    assert (i2i_task.workflow_id, t2i_task.workflow_id) == (I2I, T2I)
    assert t2i_task.plan.seed == 42 and t2i_task.plan.text.startswith("a red fox\n")  # the quotes are JSON's
    assert genstudio_emulator.stats.uploads == 1 and genstudio_emulator.stats.submits == 2
    no_crash(image.stderr + names.stderr)


async def test_a_node_name_without_a_spec_is_refused_before_anything_is_sent(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "prompt.json").write_text('{"6": {"inputs": {"text": "a fox"}}}', encoding="utf-8")
    (tmp_path / "fox.png").write_bytes(tiny_png(8, 8))
    done = await genstudio(
        "run", "wf-my-own", "--prompt", "prompt.json", "--set", "KSampler.steps=30", "--set", "3.cfg=7",
        "--image", "Load Image=fox.png",
        cwd=tmp_path, env=command_env(genstudio_emulator, dev_mode=False),
    )
    assert done.returncode == 2
    header, *problems = done.stderr.splitlines()
    assert header == "genstudio: error: the prompt has 2 problems; nothing was sent:"
    needs = "not a node id, and a name (a class_type or a title) needs --spec SPEC.json"
    assert problems == [
        f"  - node 'KSampler' input 'steps': {needs}, the workflow's parameter spec ('入参范围'), to find its id; "
        "this prompt's node ids: 3, 6",
        f"  - node 'Load Image' input 'image': {needs}, the workflow's parameter spec ('入参范围'), to find its id; "
        "this prompt's node ids: 3, 6",
    ]
    stats = genstudio_emulator.stats
    assert stats.requests["submit"] == 0 and stats.uploads == 0


# --- GPUGeek: the prompt is the whole workflow ---------------------------------------------------------------------


async def test_run_on_gpugeek_changes_the_builtin_export_and_saves_the_png(
    gpugeek_emulator: GPUGeekEmulator, tmp_path: Path
) -> None:
    done = await genstudio(
        "run", "--service", "gpugeek", str(GPUGEEK_T2I),
        "--set", "KSampler.steps=5",                   # a class_type; typed like the export's 20: a number
        "--set", "KSampler.seed=42",
        "--set", "Empty Latent Image.width=64",        # a title
        "--set", "5.height=48",                        # an id
        "--set", "6.text=123",                         # the export holds text here: stays the text "123"
        "--out", "out", "--poll-interval", "0.05",
        cwd=tmp_path, emulator=gpugeek_emulator,
    )
    assert done.returncode == 0, done.stderr
    [task] = list(gpugeek_emulator.service.tasks)
    assert task.workflow_id == str(GPUGEEK_T2I) and task.plan.seed == 42 and task.plan.text.splitlines()[0] == "123"
    assert re.search(rf"^submitted {task.task_id}$", done.stdout, re.M)
    # Polled, and no percent on this service (the demo's test sees "running" too: its tasks run long enough).
    assert "  succeeded\n" in done.stdout and "%" not in done.stdout
    [png] = pngs_under(tmp_path / "out")
    assert png.parent == tmp_path / "out" / "9" and png_size(png) == (64, 48)
    assert f"saved {png.relative_to(tmp_path)}" in done.stdout
    assert gpugeek_emulator.stats.submits == 1
    no_crash(done.stderr)


async def test_genstudio_service_picks_gpugeek_and_an_image_is_uploaded_with_the_submit(
    gpugeek_emulator: GPUGeekEmulator, tmp_path: Path
) -> None:
    (tmp_path / "bottle.png").write_bytes(tiny_png(40, 24))
    env = command_env(gpugeek_emulator, GENSTUDIO_SERVICE="gpugeek")  # as --service gpugeek
    done = await genstudio(
        "run", str(GPUGEEK_I2I), "--image", "LoadImage=bottle.png", "--set", "KSampler.denoise=0.5",
        "--no-websocket", "--poll-interval", "0.05", "--json",  # --no-websocket: accepted, changes nothing here
        cwd=tmp_path, env=env,
    )
    assert done.returncode == 0, done.stderr
    document = done.json()
    [task] = list(gpugeek_emulator.service.tasks)
    assert document["prompt_id"] == task.task_id and document["status"] == "succeeded"
    [path] = document["paths"]
    assert png_size(tmp_path / path) == (40, 24)  # drawn at the size of the uploaded image
    stats = gpugeek_emulator.stats
    assert stats.commits == 1 and stats.submits == 1  # presigned, PUT, committed: then submitted
    assert stats.storage_requests_with_authorization == 0  # the key never went to the object store
    no_crash(done.stderr)


async def test_run_on_gpugeek_takes_any_workflow_as_an_export_or_a_whole_prompt(
    gpugeek_emulator: GPUGeekEmulator, tmp_path: Path
) -> None:
    export = json.loads((EXPORTS / "t2i_workflow_api.json").read_text(encoding="utf-8"))
    gpugeek_emulator.register_workflow(4242, export)  # one of the user's own, not built in
    (tmp_path / "mine_api.json").write_text(json.dumps(export), encoding="utf-8")
    env = command_env(gpugeek_emulator)
    run = ("run", "--service", "gpugeek", "4242", "--poll-interval", "0.05")
    from_export, from_stdin = await asyncio.gather(
        genstudio(*run, "--workflow-json", "mine_api.json", "--set", "KSampler.seed=7", "--out", "a",
                  cwd=tmp_path, env=env),
        genstudio(*run, "--prompt", "-", "--out", "b", cwd=tmp_path, env=env, stdin=json.dumps(export).encode()),
    )
    assert from_export.returncode == 0, from_export.stderr
    assert from_stdin.returncode == 0, from_stdin.stderr
    tasks = {task.plan.seed: task for task in gpugeek_emulator.service.tasks}
    assert sorted(tasks) == sorted([7, export["3"]["inputs"]["seed"]])  # the second sent as it is
    assert {task.workflow_id for task in tasks.values()} == {"4242"}
    assert len(pngs_under(tmp_path / "a")) == len(pngs_under(tmp_path / "b")) == 1
    no_crash(from_export.stderr + from_stdin.stderr)


async def test_run_on_gpugeek_lists_every_problem_of_the_changes_and_sends_nothing(
    gpugeek_emulator: GPUGeekEmulator, tmp_path: Path
) -> None:
    done = await genstudio(
        "run", "--service", "gpugeek", str(GPUGEEK_I2I),
        "--set", "KSampler.steps=many",
        "--set", "KSampler.colour=red",
        "--set", "KSampler.model=sdxl",
        "--set", "CLIP Text Encode (Prompt).text=a fox",
        "--set", "Upscaler.scale=2",
        "--image", "LoadImage=missing.png",
        cwd=tmp_path, env=command_env(gpugeek_emulator, dev_mode=False),
    )
    assert done.returncode == 2
    header, *problems = done.stderr.splitlines()
    assert header == "genstudio: error: the prompt has 6 problems; nothing was sent:"
    assert problems == [
        "  - node '3' (KSampler) input 'steps': expected a number, got 'many' (allowed: a number, like the "
        "workflow's 22)",
        "  - node '3' (KSampler) input 'colour': the workflow's node has no such input (allowed: seed, steps, cfg, "
        "sampler_name, scheduler, denoise, model, positive, negative, latent_image)",
        "  - node '3' (KSampler) input 'model': links to the output of node '4': a connection, not a value to set",
        "  - node 'CLIP Text Encode (Prompt)' input 'text': 'CLIP Text Encode (Prompt)' names several nodes (6, 7): "
        "use a node id",
        "  - node 'Upscaler' input 'scale': no node is called 'Upscaler'; known nodes: 10, 11, 3, 4, 6, 7, 8, 9",
        "  - node '10' (Load Image) input 'image': no such file: 'missing.png' (allowed: an image file)",
    ]
    assert sum(gpugeek_emulator.stats.requests.values()) == 0  # not one request: no presign, no submit


async def test_each_service_refuses_what_belongs_to_the_other(
    gpugeek_emulator: GPUGeekEmulator, tmp_path: Path
) -> None:
    (tmp_path / "spec.json").write_text((SPECS / f"{T2I}.json").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "t2i_api.json").write_text((EXPORTS / "t2i_workflow_api.json").read_text(encoding="utf-8"))
    gpugeek = command_env(gpugeek_emulator, dev_mode=False)
    spec, unknown, genstudio_id, export_on_genstudio, bad_service = await asyncio.gather(
        genstudio("run", "--service", "gpugeek", str(GPUGEEK_T2I), "--spec", "spec.json", cwd=tmp_path, env=gpugeek),
        genstudio("run", "--service", "gpugeek", "4242", cwd=tmp_path, env=gpugeek),
        genstudio("run", "--service", "gpugeek", T2I, cwd=tmp_path, env=gpugeek),
        genstudio("run", T2I, "--workflow-json", "t2i_api.json", cwd=tmp_path, env=gpugeek),
        genstudio("run", str(GPUGEEK_T2I), cwd=tmp_path, env={**gpugeek, "GENSTUDIO_SERVICE": "gpu-geek"}),
    )
    for finished in (spec, unknown, genstudio_id, export_on_genstudio):
        assert finished.returncode == 2, finished.stderr
    assert one_error_line(spec.stderr).startswith("--spec is a GenStudio parameter spec ('入参范围'); on GPUGeek")
    assert one_error_line(unknown.stderr).startswith(
        "GPUGeek runs the workflow it is sent, and 4242 is not a built-in one (763311996779461, 763311996779525): "
        "give its ComfyUI API-format export with --workflow-json"
    )
    assert one_error_line(genstudio_id.stderr) == (
        f"a GPUGeek workflow id is an integer such as 763311996779461, got {T2I!r}"
    )
    assert one_error_line(export_on_genstudio.stderr).startswith("--workflow-json is GPUGeek's")
    assert bad_service.returncode == 2
    assert "argument --service: expected genstudio or gpugeek (from --service or $GENSTUDIO_SERVICE), got 'gpu-geek'" \
        in bad_service.stderr
    assert sum(gpugeek_emulator.stats.requests.values()) == 0


async def test_run_reports_a_submit_answered_200_with_a_cut_body_as_unanswered(tmp_path: Path) -> None:
    """An HTTP 200 whose body is cut: the service took the submit, so it is not "never submitted"."""

    def respond(method: str, path: str, body: bytes) -> Answer:
        if path.endswith("/prompt"):
            return 200, "application/json", b'{"code": 0, "msg": "Success", "data": {"prompt_i'
        return 404, "text/plain", b"no"

    async with fake_service(respond) as url:
        env = command_env(GENSTUDIO_API_KEY="sk-test-0123456789abcdef", GENSTUDIO_BASE_URL=url)
        done = await genstudio("run", T2I, "--events", cwd=tmp_path, env=env)
    assert done.returncode != 0
    [outcome] = [event for event in event_lines(done.stdout) if event["type"] == "outcome"]
    assert outcome["status"] == "submit_unanswered", outcome
