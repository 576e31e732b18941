"""A web app: type a prompt in the browser, watch the generation's progress live, see the image.

Starlette served by uvicorn, one ``AsyncGenStudio`` for the app's lifetime (opened and closed by the lifespan).
``POST /generate`` builds and submits the prompt (checked against the workflow's spec first); the page then
opens ``GET /tasks/{id}/events``, a Server-Sent Events stream that relays each ``client.stream(...)`` event the
moment it arrives and ends with ``done`` (the image URLs) or ``failed``. Images are downloaded by the SDK and
served by the app at ``/tasks/{id}/images/{n}``: the browser never sees a signed storage URL::

    python examples/web_app.py [--port 8000] [--host 127.0.0.1]

then open the URL it prints (``--port 0`` picks a free port). With no ``GENSTUDIO_API_KEY`` it runs against the
built-in emulator; see ``_support.py`` for the other set-ups. Needs starlette and uvicorn
(``pip install 'genstudio-async[emulator]'`` brings both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# The examples share a little set-up code in examples/_support.py: make it importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._support import TEXT_TO_IMAGE, Workflow, add_workflow_arguments, describe, load_workflow, open_client
from genstudio_async import (
    AsyncGenStudio,
    GenStudioError,
    PromptValidationError,
    Submission,
    TaskInfo,
    TaskStatus,
)

MAX_PROMPT_CHARS = 2000
NEGATIVE_PROMPT = "ugly, deformed, blurry, watermark"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>GenStudio text to image</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: .5rem; }
  input { flex: 1; padding: .4rem; }
  progress { width: 100%; margin-top: 1rem; }
  img { max-width: 100%; margin-top: 1rem; border-radius: .3rem; }
</style>
</head>
<body>
<h1>Text to image</h1>
<form id="form">
  <input id="prompt" name="prompt" required maxlength="2000" placeholder="a red fox in fresh snow, cinematic">
  <button id="go">Generate</button>
</form>
<progress id="bar" max="100" value="0" hidden></progress>
<p id="status"></p>
<div id="images"></div>
<script>
const form = document.getElementById("form"), go = document.getElementById("go");
const bar = document.getElementById("bar"), status = document.getElementById("status");
const images = document.getElementById("images");

function finish(text) { status.textContent = text; go.disabled = false; }

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  go.disabled = true; images.replaceChildren(); bar.hidden = true; status.textContent = "submitting…";
  let body;
  try {
    const response = await fetch("/generate", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({prompt: document.getElementById("prompt").value}),
    });
    body = await response.json();
    if (!response.ok) return finish(body.error);
  } catch (error) { return finish(`could not submit: ${error}`); }

  bar.hidden = false; bar.value = 0;
  const events = new EventSource(body.events);  // progress, pushed by the server as it happens
  events.addEventListener("progress", (e) => {
    const update = JSON.parse(e.data);
    bar.value = update.progress; status.textContent = update.text;
  });
  events.addEventListener("done", (e) => {
    events.close();
    for (const url of JSON.parse(e.data).images) {
      const img = document.createElement("img"); img.src = url; img.alt = "generated image"; images.append(img);
    }
    finish("done");
  });
  events.addEventListener("failed", (e) => { events.close(); bar.hidden = true; finish(JSON.parse(e.data).error); });
});
</script>
</body>
</html>
"""


def sse(event: str, data: dict[str, Any]) -> str:
    """One Server-Sent Event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


class TextToImageApp:
    """The app's state and its routes: the client, the tasks it started and their downloaded images."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self._client: AsyncGenStudio | None = None
        self._files_dir = Path()
        # What this process started, by prompt_id. The Submission keeps the prompt_token, which the progress
        # WebSocket needs. (A real app would keep these per user, and forget them after a while.)
        self._tasks: dict[str, Submission] = {}
        self._images: dict[str, list[Path]] = {}
        self._downloading: dict[str, asyncio.Lock] = {}

    @property
    def client(self) -> AsyncGenStudio:
        assert self._client is not None, "the lifespan has not started"
        return self._client

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """One client for the app's lifetime; downloaded images live in a temporary directory until shutdown."""
        with tempfile.TemporaryDirectory(prefix="genstudio-web-") as files_dir:
            async with open_client() as client:
                self._client, self._files_dir = client, Path(files_dir)
                try:
                    yield
                finally:
                    self._client = None

    def starlette(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self.page),
                Route("/generate", self.generate, methods=["POST"]),
                Route("/tasks/{task_id}/events", self.events),
                Route("/tasks/{task_id}/images/{number:int}", self.image),
            ],
            lifespan=self.lifespan,
        )

    # --- routes ------------------------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def generate(self, request: Request) -> Response:
        """``{"prompt": "..."}`` → 202 ``{"task_id", "events"}``; 400/422 for a bad prompt, 502 if the service fails."""
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "send JSON: {\"prompt\": \"...\"}"}, status_code=400)
        text = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_PROMPT_CHARS:
            return JSONResponse({"error": f"type a prompt (1 to {MAX_PROMPT_CHARS} characters)"}, status_code=400)

        prompt = self.workflow.builder().positive(text.strip()).negative(NEGATIVE_PROMPT).randomize_seeds().build()
        try:
            submission = await self.client.submit(self.workflow.workflow_id, prompt, spec=self.workflow.spec)
        except PromptValidationError as error:
            return JSONResponse({"error": str(error)}, status_code=422)
        except GenStudioError as error:
            return JSONResponse({"error": f"the service refused the task: {error}"}, status_code=502)
        self._tasks[submission.prompt_id] = submission
        return JSONResponse(
            {"task_id": submission.prompt_id, "events": f"/tasks/{submission.prompt_id}/events"}, status_code=202
        )

    async def events(self, request: Request) -> Response:
        """The task's progress as Server-Sent Events: ``progress``... then ``done`` or ``failed``."""
        submission = self._tasks.get(request.path_params["task_id"])
        if submission is None:
            return JSONResponse({"error": "no such task"}, status_code=404)

        async def relay() -> AsyncIterator[str]:
            last: TaskInfo | None = None
            try:
                # `async with`: if the browser goes away, Starlette cancels this generator and the socket closes.
                async with self.client.stream(submission) as events:
                    async for last in events:
                        yield sse("progress", {"status": last.status.name.lower(), "progress": last.progress,
                                               "text": describe(last)})
                if last is None or last.status is not TaskStatus.SUCCEEDED:
                    yield sse("failed", {"error": describe(last) if last else "no news from the service"})
                    return
                paths = await self._download(submission.prompt_id, last)
            except GenStudioError as error:
                yield sse("failed", {"error": str(error)})
                return
            urls = [f"/tasks/{submission.prompt_id}/images/{n}" for n in range(len(paths))]
            yield sse("done", {"images": urls})

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no buffering by proxies
        return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)

    async def image(self, request: Request) -> Response:
        """A result image, downloaded once by the SDK (signed URL used as received, refreshed if expired)."""
        task_id: str = request.path_params["task_id"]
        number: int = request.path_params["number"]
        if task_id not in self._tasks:
            return JSONResponse({"error": "no such task"}, status_code=404)
        try:
            paths = await self._download(task_id)
        except GenStudioError as error:
            return JSONResponse({"error": str(error)}, status_code=502)
        if not 0 <= number < len(paths):
            return JSONResponse({"error": "no such image (yet)"}, status_code=404)
        return FileResponse(paths[number], headers={"Cache-Control": "private, max-age=3600"})

    async def _download(self, task_id: str, info: TaskInfo | None = None) -> list[Path]:
        """The task's images on disk, downloaded on first use; none while it is not finished."""
        async with self._downloading.setdefault(task_id, asyncio.Lock()):
            if task_id not in self._images:
                info = info or await self.client.get_task(task_id)
                if info.status is not TaskStatus.SUCCEEDED:
                    return []
                self._images[task_id] = await self.client.download(info, self._files_dir / task_id)
            return self._images[task_id]


async def serve(app: Starlette, host: str, port: int) -> None:
    """Run uvicorn; print the URL once the app (and its client) is ready. Ctrl-C stops it gracefully."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():  # it could not start (port taken, lifespan failed): show why
            await serving
            return
        await asyncio.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]  # the real one, when --port 0
    print(f"serving on http://{host}:{bound_port}/  (Ctrl-C to stop)", flush=True)
    await serving


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (default: %(default)s)")
    add_workflow_arguments(parser, TEXT_TO_IMAGE)
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    app = TextToImageApp(load_workflow(args, TEXT_TO_IMAGE)).starlette()
    try:
        asyncio.run(serve(app, args.host, args.port))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
