"""Files in and out: reading an image to upload, and downloading results from signed URLs.

Nothing here blocks the event loop: paths are read through ``anyio.Path``, file objects and writes in worker
threads. Downloads are streamed to a locked temporary file in the target directory, flushed to disk and linked
into place, so a reader never sees half a file and a file already there is never replaced. Signed URLs are used
exactly as the service sent them (decoding ``%2B`` into ``+`` would break the signature) and never carry the API
key.

Storage is not trusted: every name it gives is made safe and kept inside the caller's folder, and every body is
checked as it arrives (size cap, deadline, an error page where an image was expected). Each file's transfer runs
under anyio's cancellation (``_in_scoped_task``), so a cancel never cuts the clean-up of sockets and files short.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import mimetypes
import os
import re
import secrets
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeAlias, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

try:
    import fcntl
except ImportError:  # Windows: no flock, so part files are neither locked nor cleaned up
    fcntl = None  # type: ignore[assignment]

import anyio
import anyio.to_thread
import httpx
from anyio import AsyncFile

from . import _constants as C
from . import _http
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    GenStudioError,
    InvalidInputError,
    InvalidResponseError,
    ResponseTooLargeError,
)
from ._gather import gather
from ._http import HTTPCore, RetryPolicy, retry_delay
from ._prompt import LocalImage, is_local_image
from .types import TaskInfo, TaskResult

log = logging.getLogger("genstudio_async")

_T = TypeVar("_T")

UploadSource: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
"""What ``upload_image`` accepts: a path, raw bytes, or a binary file object opened for reading."""


async def read_upload(source: UploadSource, filename: str | None = None) -> tuple[str, bytes, str]:
    """``(filename, content, content_type)`` for a multipart upload of ``source``.

    Raises ``InvalidInputError`` naming the problem for a missing path, a directory, a text-mode file object,
    or empty content.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        content = bytes(source)
        name = filename or C.DEFAULT_UPLOAD_FILENAME
    elif isinstance(source, str | os.PathLike):
        path = anyio.Path(Path(source))
        if not await path.exists():
            raise InvalidInputError(f"upload_image: no such file: {os.fspath(source)!r}")
        if not await path.is_file():
            raise InvalidInputError(f"upload_image: not a regular file: {os.fspath(source)!r}")
        try:
            content = await path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"upload_image: cannot read {os.fspath(source)!r}: {exc.strerror or exc}") from exc
        name = filename or path.name
    elif hasattr(source, "read"):
        try:
            data = await anyio.to_thread.run_sync(source.read)
        except (OSError, ValueError) as exc:  # unreadable, or already closed
            raise InvalidInputError(f"upload_image: cannot read the file object: {exc}") from exc
        if not isinstance(data, bytes | bytearray):
            raise InvalidInputError(
                "upload_image: the file object must be opened in binary mode ('rb'), "
                f"its read() returned {type(data).__name__}"
            )
        content = bytes(data)
        raw_name = getattr(source, "name", None)
        name = filename or (Path(raw_name).name if isinstance(raw_name, str) else C.DEFAULT_UPLOAD_FILENAME)
    else:
        raise InvalidInputError(
            f"upload_image: expected a path, bytes or a binary file object, got {type(source).__name__}"
        )
    if not content:
        raise InvalidInputError(f"upload_image: {name!r} is empty")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, content, content_type


class ImageUploader:
    """Uploads the local images of prompts (``Path`` or ``LocalImage`` values), each distinct content once.

    One per client: the same bytes, from the same or another prompt, reuse the first upload's ``image_id``;
    concurrent submits of the same image share one upload.
    """

    def __init__(self, upload: Callable[[UploadSource, str | None], Awaitable[str]]) -> None:
        self._upload = upload
        self._ids: dict[str, asyncio.Future[str]] = {}

    async def substitute(self, prompt: dict[str, Any]) -> dict[str, Any]:
        """``prompt`` with every local image replaced by its ``image_id`` (a new dict when anything changed)."""
        local = [
            (node_id, name, value)
            for node_id, node in prompt.items()
            for name, value in node["inputs"].items()
            if is_local_image(value)
        ]
        if not local:
            return prompt
        ids = await gather(*(self.image_id(value) for _node_id, _name, value in local))  # one fails: none goes on
        substituted = {node_id: {**node, "inputs": dict(node["inputs"])} for node_id, node in prompt.items()}
        for (node_id, name, _value), image_id in zip(local, ids, strict=True):
            substituted[node_id]["inputs"][name] = image_id
        return substituted

    async def image_id(self, image: Path | LocalImage) -> str:
        """The ``image_id`` of ``image``, uploading it only if these bytes were never uploaded by this client."""
        if isinstance(image, LocalImage):
            name, content, _content_type = await read_upload(bytes(image.data), image.filename)
        else:
            name, content, _content_type = await read_upload(image)
        digest = hashlib.sha256(content).hexdigest()
        while (known := self._ids.get(digest)) is not None:
            try:
                return await asyncio.shield(known)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not known.cancelled() or (current is not None and current.cancelling()):
                    raise
                # The submit that was uploading these bytes was cancelled, not this one: upload them here.
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._ids[digest] = future
        try:
            image_id = await self._upload(content, name)
        except asyncio.CancelledError:
            del self._ids[digest]
            future.cancel()  # the others sharing this upload see it was abandoned, and upload themselves
            raise
        except Exception as error:
            del self._ids[digest]  # a failed upload is not remembered: the next submit tries again
            future.set_exception(error)
            future.exception()  # retrieved here, so a future nobody else awaits does not warn
            raise
        future.set_result(image_id)
        log.debug("uploaded local image %s (%d bytes) as %s", name, len(content), image_id)
        return image_id


# --- downloads ---------------------------------------------------------------------------------------------

FetchTask = Callable[[str], Awaitable[TaskInfo]]

_UNSAFE_NAME_CHARS = re.compile(r"[^\w.\-]+")
# Names Windows gives to devices, with or without an extension: "CON", "nul.txt", "COM1.png".
_WINDOWS_DEVICE_NAME = re.compile(r"(?i)(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?")
FINAL_FILES_DIRECTORY = "final"
"""Where a ``final_files`` URL that no ``files`` node lists is saved (``directory/final/<name>``)."""


@dataclass(frozen=True)
class PlannedFile:
    """One file to fetch: the node that produced it, its signed URL and where it goes."""

    node_id: str
    url: str
    target: Path


def object_key(url: str) -> str:
    """What a result URL names: host, path and query without the signature parameters. Stable across refreshes.

    Only ``C.SIGNED_URL_PARAMS`` (and ``X-Amz-*``) are dropped: any other parameter may select the object (a
    query-addressed store's ``?id=1``, OSS's ``x-oss-process``) and so is kept, raw (never decoded) and sorted.
    A URL that does not parse is its own key (the download reports it; the progress stream only compares keys).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    identity = sorted(pair for pair in parts.query.split("&") if pair and not _is_signature_param(pair))
    key = f"{parts.netloc.lower()}{parts.path}"
    return f"{key}?{'&'.join(identity)}" if identity else key


def _is_signature_param(pair: str) -> bool:
    name = unquote(pair.partition("=")[0]).lower()  # the name only, for comparing: the URL is never decoded
    return name in C.SIGNED_URL_PARAMS or name.startswith(C.SIGNED_URL_PARAM_PREFIXES)


def safe_name(text: str, fallback: str) -> str:
    """``text`` (a node id or a file name from the service) as one local name that is safe everywhere.

    Only letters, digits, ``_``, ``.`` and ``-`` are kept (a separator, NUL, a control or Windows-reserved
    character becomes ``_``); leading and trailing dots and underscores go, so no name is ``.``, ``..``, hidden or
    empty (``fallback`` then); a Windows device name gets a ``_`` in front; and the result fits ``fit_name``.
    """
    cleaned = _UNSAFE_NAME_CHARS.sub("_", text).strip("._") or fallback
    if _WINDOWS_DEVICE_NAME.fullmatch(cleaned):
        cleaned = f"_{cleaned}"
    return fit_name(cleaned)


def _split_extension(name: str) -> tuple[str, str]:
    """``(stem, ".ext")``, or ``(name, "")`` when there is no short extension to keep."""
    stem, dot, extension = name.rpartition(".")
    if dot and stem and 0 < len(extension.encode()) <= C.DOWNLOAD_MAX_EXTENSION_BYTES:
        return stem, f".{extension}"
    return name, ""


def fit_name(name: str) -> str:
    """``name``, or when it is longer than ``C.DOWNLOAD_MAX_NAME_BYTES`` UTF-8 bytes, a shortened form of it.

    A long name keeps its extension, is cut on a character boundary (never inside a UTF-8 sequence), and ends
    with ``~`` and a short hash of the whole name, so two long names that share a beginning stay apart.
    """
    encoded = name.encode()
    if len(encoded) <= C.DOWNLOAD_MAX_NAME_BYTES:
        return name
    stem, extension = _split_extension(name)
    tag = "~" + hashlib.sha256(encoded).hexdigest()[: C.DOWNLOAD_NAME_HASH_CHARS]
    room = C.DOWNLOAD_MAX_NAME_BYTES - len(tag) - len(extension.encode())
    return stem.encode()[:room].decode("utf-8", "ignore") + tag + extension


def numbered_name(name: str, number: int) -> str:
    """The ``number``-th alternative to ``name``: ``x.png`` → ``x-1.png``, still within the length limit."""
    stem, extension = _split_extension(name)
    return fit_name(f"{stem}-{number}{extension}")


def check_contained(directory: Path, target: Path) -> None:
    """The last guard: ``target`` lands inside ``directory``, whatever the name rules made of the service's names.

    The folder is resolved (``..``, symlinks) and must be ``directory`` or below it; the name must be one plain
    component. Blocking (it asks the file system): call it in a worker thread.
    """
    name = target.name
    plain = name not in ("", ".", "..") and "\0" not in name and os.sep not in name
    if os.altsep:
        plain = plain and os.altsep not in name
    if not plain:
        raise InvalidResponseError(f"download: refusing to write {str(target)!r}: {name!r} is not a plain name")
    check_folder_contained(directory, target.parent)


def check_folder_contained(directory: Path, folder: Path) -> None:
    """``folder``, resolved, is ``directory`` or inside it; else ``InvalidResponseError``. Blocking."""
    try:
        resolved, root = folder.resolve(), directory.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
        raise GenStudioError(f"download: cannot resolve {str(folder)!r}: {exc}") from exc
    if not resolved.is_relative_to(root):
        raise InvalidResponseError(
            f"download: refusing to write in {str(folder)!r}: it lies outside {str(directory)!r} "
            f"(it resolves to {str(resolved)!r})"
        )


def local_file_name(url: str, fallback: str) -> str:
    """The object's own file name (the last segment of its key), safe to use as a local name.

    The key is percent-decoded here only to name the local file; the URL itself is never decoded.
    """
    try:
        key = unquote(urlsplit(url).path)
    except ValueError:  # not a URL: the download reports it, under the fallback name
        return fallback
    return safe_name(key.rsplit("/", 1)[-1], fallback)


def shown_url(url: str) -> str:
    """``url`` as an error message may show it: without its query (which holds the signature), cut short."""
    head, mark, _query = url.partition("?")
    head = head.partition("#")[0]
    text = head[: C.SHOWN_URL_CHARS] + ("…" if len(head) > C.SHOWN_URL_CHARS else "")
    return repr(text + ("?…" if mark else ""))


def check_result_url(url: str, what: str) -> None:
    """Raise ``InvalidResponseError`` when the service's URL for ``what`` cannot be fetched as it stands."""
    problem = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        if parts.scheme.lower() not in ("http", "https"):
            problem = f"the scheme is {parts.scheme!r}, not http or https" if parts.scheme else "it has no scheme"
        elif not parts.hostname:
            problem = "it names no host"
        else:
            httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        problem = str(exc) or type(exc).__name__
        query = url.partition("?")[2]
        if query:
            problem = problem.replace(query, "…")
    if problem is not None:
        shown = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in problem[:200])
        raise InvalidResponseError(f"download of {what}: the service's URL {shown_url(url)} cannot be used: {shown}")


def plan_downloads(result: TaskResult, directory: Path) -> list[PlannedFile]:
    """Every file of ``result`` and its target ``directory/<node_id>/<name>``; each object once.

    Objects that share a name are numbered (``x.png``, ``x-1.png``, ``x-2.png``...) in time proportional to
    their count: the next number to try is remembered per name, not searched for from 1 each time (8,000
    query-addressed objects named ``get.png`` took 155 s of the event loop). A result naming more than
    ``C.MAX_RESULT_FILES`` objects is ``ResponseTooLargeError``, raised before anything is fetched or written.
    """
    planned: list[PlannedFile] = []
    seen_keys: set[str] = set()
    taken: set[str] = set()  # case-folded: "A.png" and "a.png" are one file on macOS and Windows
    next_number: dict[str, int] = {}  # a name's case-folded path -> the first number not yet tried for it

    def add(folder: Path, node_id: str, url: str) -> None:
        key = object_key(url)
        if key in seen_keys:
            return
        if len(planned) >= C.MAX_RESULT_FILES:
            raise ResponseTooLargeError(
                f"download: the result names more than {C.MAX_RESULT_FILES:,} files, the limit; nothing was "
                "fetched or saved",
                limit=C.MAX_RESULT_FILES,
                what="the result's files",
            )
        seen_keys.add(key)
        name = local_file_name(url, f"file-{len(planned) + 1}")
        target = folder / name
        wanted = str(target).casefold()
        number = next_number.get(wanted, 1)
        while str(target).casefold() in taken:
            target = folder / numbered_name(name, number)
            number += 1
        next_number[wanted] = number
        taken.add(str(target).casefold())
        planned.append(PlannedFile(node_id=node_id, url=url, target=target))

    for node_id, urls in result.files.items():
        folder = directory / safe_name(node_id, "node")
        for url in urls:
            add(folder, node_id, url)
    final_folder = directory / safe_name(FINAL_FILES_DIRECTORY, "node")
    for url in result.final_files:
        add(final_folder, FINAL_FILES_DIRECTORY, url)
    return planned


def url_expired(url: str, *, margin: float = 5.0) -> bool:
    """True when the signed URL's ``Expires`` (Unix seconds) is already, or nearly, past."""
    try:
        values = parse_qs(urlsplit(url).query).get("Expires")
    except ValueError:  # not a URL: check_result_url says why
        return False
    if not values:
        return False
    try:
        return float(values[0]) <= time.time() + margin
    except ValueError:
        return False


class _BodyInterrupted(Exception):
    """The connection broke while the file's body was arriving."""


class _UrlRefresher:
    """Fresh signed URLs for a task's files, fetched at most once per download call however many need it."""

    def __init__(self, prompt_id: str, fetch_task: FetchTask) -> None:
        self._prompt_id = prompt_id
        self._fetch_task = fetch_task
        self._lock = asyncio.Lock()
        self._fresh: dict[str, str] | None = None

    async def fresh_url(self, url: str) -> str | None:
        async with self._lock:
            if self._fresh is None:
                info = await self._fetch_task(self._prompt_id)
                urls = [u for node_urls in info.files.values() for u in node_urls] + list(info.final_files)
                self._fresh = {object_key(u): u for u in urls}
        return self._fresh.get(object_key(url))


@dataclass
class _Download:
    """What the files of one ``download_result`` call share."""

    http: HTTPCore
    directory: Path
    refresher: _UrlRefresher
    policy: RetryPolicy
    max_bytes: int | None
    deadline: float | None
    # Case-folded paths that files of this call were planned to or did take: no other file of it may take them.
    claimed: set[str]


async def download_result(
    result: TaskResult,
    directory: str | os.PathLike[str],
    *,
    http: HTTPCore,
    fetch_task: FetchTask,
    concurrency: int = C.DEFAULT_DOWNLOAD_CONCURRENCY,
    retry_policy: RetryPolicy | None = None,
    max_bytes: int | None = C.DEFAULT_MAX_DOWNLOAD_BYTES,
    deadline: float | None = C.DEFAULT_DOWNLOAD_DEADLINE,
) -> list[Path]:
    """Download every file of ``result`` under ``directory``; the paths, in the order of ``plan_downloads``.

    Each file is complete or absent: if any file fails, the others still finish, then the first error is raised.
    A file larger than ``max_bytes`` (announced, or as it arrives, decoded) is ``ResponseTooLargeError``; one
    whose whole transfer, retries included, takes more than ``deadline`` seconds is ``APITimeoutError``
    (``None``: no limit). An HTML, XML or JSON page where a media file was expected is ``InvalidResponseError``.
    Part files that crashed downloads left in those folders (nobody holds their lock) are removed first.
    A file already at a target path is never replaced: if it holds the same bytes it is kept and its path
    returned (downloading the same result twice is a no-op); if not, the download is saved next to it under the
    first free numbered name (``x-1.png``, ``x-2.png``...), and the path returned says which.
    """
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
        raise InvalidInputError(f"download: max_bytes must be a positive whole number of bytes, got {max_bytes!r}")
    if deadline is not None and not deadline > 0:  # also NaN
        raise InvalidInputError(f"download: deadline must be > 0 seconds, got {deadline!r}")
    root = Path(directory)
    planned = plan_downloads(result, root)
    job = _Download(
        http=http,
        directory=root,
        refresher=_UrlRefresher(result.prompt_id, fetch_task),
        policy=retry_policy or RetryPolicy(),
        max_bytes=max_bytes,
        deadline=deadline,
        claimed={str(item.target).casefold() for item in planned},
    )
    for folder in dict.fromkeys(item.target.parent for item in planned):
        removed = await anyio.to_thread.run_sync(remove_stale_part_files, root, folder)
        if removed:
            log.debug("download: removed %d part file(s) that crashed downloads left in %s", removed, folder)
    limit = asyncio.Semaphore(concurrency)

    async def fetch(item: PlannedFile) -> Path:
        async with limit:
            return await _in_scoped_task(lambda: _download_in_time(item, job))

    outcomes = await asyncio.gather(*(fetch(item) for item in planned), return_exceptions=True)
    paths: list[Path] = []
    errors: list[BaseException] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            errors.append(outcome)
        else:
            paths.append(outcome)
    if errors:
        for error in errors:
            if not isinstance(error, Exception):
                raise error  # cancellation and the like: not a download failure
        first = errors[0]
        log.debug("download of %s: %d of %d files failed", result.prompt_id, len(errors), len(planned))
        if isinstance(first, GenStudioError):
            raise first
        if isinstance(first, OSError):  # the local disk, not the network: retrying the download will not help
            raise GenStudioError(f"download: cannot write under {os.fspath(directory)!r}: {first}") from first
        raise APIConnectionError(f"download failed: {type(first).__name__}: {first}") from first
    return paths


async def _download_in_time(item: PlannedFile, job: _Download) -> Path:
    """``_download_one``, cut off after ``job.deadline`` seconds: httpx's timeouts bound each read, not a body."""
    with anyio.move_on_after(job.deadline):
        return await _download_one(item, job)
    raise APITimeoutError(
        f"download of {_shown_target(item.target)} did not finish within {job.deadline:g} s, its deadline "
        "(the client's download_timeout argument); nothing was saved"
    )


def _shown_target(target: Path) -> str:
    return f"{target.parent.name}/{target.name}"


async def _download_one(item: PlannedFile, job: _Download) -> Path:
    url = item.url
    refreshed = False
    interruptions = 0
    if url_expired(url):
        url = await job.refresher.fresh_url(url) or url
        refreshed = True
    while True:
        try:
            return await _stream_to_file(job, url, item.target)
        except APIStatusError as error:
            # OSS answers 403 for an expired or otherwise refused signature: mint a fresh URL once.
            if error.status_code != 403 or refreshed:
                raise
            fresh = await job.refresher.fresh_url(url)
            refreshed = True
            if fresh is None:
                raise
            log.debug("download: signed URL refused (403); retrying with a fresh one")
            url = fresh
        except _BodyInterrupted as interrupted:
            if interruptions >= job.policy.max_retries:
                raise APIConnectionError(f"download interrupted {interruptions + 1} times: {interrupted}") from None
            await _http.sleep(retry_delay(interruptions, job.policy))
            interruptions += 1


async def _in_scoped_task(work: Callable[[], Awaitable[_T]]) -> _T:
    """``await work()``, run in a child task that only anyio cancels, so that clean-up shields hold.

    httpcore and anyio guard their clean-up with shielded cancel scopes (httpcore closing the pool's surplus or
    dropped connections, anyio closing a file in a worker thread), but asyncio's own ``Task.cancel()`` goes
    through such a shield: a download cancelled while one of them ran left sockets and the part file open
    (``ResourceWarning: unclosed transport``, ``unclosed file``). Here the caller's cancellation becomes a
    cancel of the child's scope, which anyio delivers only outside shielded scopes; the caller's
    ``CancelledError`` goes on once the child has finished cleaning up.
    """
    outcome: list[_T] = []
    failure: list[Exception] = []

    async def child() -> None:
        try:
            outcome.append(await work())
        except Exception as error:  # noqa: BLE001 - re-raised by the caller as it is, not in an ExceptionGroup
            failure.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(child)
    if failure:
        raise failure[0]
    return outcome[0]


async def _open_for_writing(path: anyio.Path) -> AsyncFile[bytes]:
    """``path`` opened for writing in a worker thread. A cancel while the thread opens it does not lose the
    handle: the open is shielded, and what it opened is closed before the cancellation goes on."""
    opening = asyncio.ensure_future(anyio.open_file(path, "wb"))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        # Shielded: under anyio a cancelled scope cancels every await in it, this one too.
        with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
            opened = await opening
            await opened.aclose()
        raise


async def _stream_to_file(job: _Download, url: str, target: Path) -> Path:
    """Fetch ``url`` into a part file next to ``target``, then give it its final name; that name's path."""
    what = _shown_target(target)
    check_result_url(url, what)
    await anyio.to_thread.run_sync(check_contained, job.directory, target)
    await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
    async with job.http.stream_get(url, timeout=C.DEFAULT_DOWNLOAD_TIMEOUT) as response:
        body = _BodyCheck(what, response, max_bytes=job.max_bytes)
        # Storage is asked for the stored bytes; a single gzip it sends anyway is undone, in bounded steps.
        chunks = _http.decoded_body(response, what=f"download of {what}", chunk_size=C.DOWNLOAD_CHUNK_SIZE)
        async with contextlib.aclosing(chunks):
            partial, file = await _open_part_file(target)
            try:
                async with file:  # closed on every path, and only after the part file is gone: it stays locked
                    try:
                        async for chunk in chunks:
                            body.feed(chunk)
                            await file.write(chunk)
                    except httpx.HTTPError as exc:
                        raise _BodyInterrupted(type(exc).__name__) from None
                    body.finish()
                    await file.flush()
                    await anyio.to_thread.run_sync(os.fsync, file.wrapped.fileno())
                    placed = await _place(partial, target, job.claimed)
                    await anyio.Path(partial).unlink(missing_ok=True)
                    return placed
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.Path(partial).unlink(missing_ok=True)


# --- what a body may be --------------------------------------------------------------------------------------

# The types of a file's name, from Python's own table (not the system's, so every machine decides alike) and
# the result types it lacks.
_FILE_TYPES = mimetypes.MimeTypes(filenames=())
for _extension, _media_type in {
    ".webp": "image/webp", ".exr": "image/x-exr", ".flac": "audio/flac", ".ogg": "audio/ogg", ".m4a": "audio/mp4",
    ".mkv": "video/x-matroska", ".glb": "model/gltf-binary", ".gltf": "model/gltf+json", ".obj": "model/obj",
    ".stl": "model/stl", ".ply": "model/ply", ".fbx": "model/fbx", ".md": "text/markdown",
}.items():
    _FILE_TYPES.add_type(_media_type, _extension)

_MEDIA = frozenset({"image", "video", "audio", "model", "font"})


def _page_kind(media_type: str) -> str | None:
    """``"html"``, ``"xml"`` or ``"json"`` for the types an error or sign-in page comes as, else ``None``."""
    if media_type in ("text/html", "application/xhtml+xml"):
        return "html"
    if media_type in ("text/xml", "application/xml") or media_type.endswith("+xml"):
        return "xml"
    if media_type in ("application/json", "text/json") or media_type.endswith("+json"):
        return "json"
    return None


def _body_kind(head: bytes) -> str | None:
    """What the first bytes of a body read like: ``"html"``, ``"xml"``, ``"json"`` or ``None`` (anything else)."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    if re.match(rb"<[?!a-z]", text):
        return "xml"
    if re.match(rb"\{\s*(\"|\})", text):
        return "json"
    return None


def _refused_kinds(expected: str | None) -> frozenset[str]:
    """The page kinds that cannot be a file whose name says it is of type ``expected``."""
    if expected is None:  # no telling from the name; but no result file is a web page
        return frozenset({"html"})
    kind = _page_kind(expected)
    if kind is not None or expected.startswith("text/"):
        return frozenset({"html", "xml", "json"} - {kind}) if kind in ("xml", "json") else frozenset()
    if expected.partition("/")[0] in _MEDIA:
        return frozenset({"html", "xml", "json"})
    return frozenset({"html"})


class _BodyCheck:
    """Checks one answer as it arrives: its announced and actual size against the cap, and that it is not an
    HTML, XML or JSON page (a captive portal, an error page) where a media file was expected."""

    def __init__(self, what: str, response: httpx.Response, *, max_bytes: int | None) -> None:
        self._what = what
        self._max_bytes = max_bytes
        self._received = 0
        self._head = b""
        self._expected = _FILE_TYPES.guess_type(what, strict=False)[0]
        self._refused = _refused_kinds(self._expected)
        self._status = response.status_code
        announced = response.headers.get("content-length", "")
        size = int(announced) if announced.isascii() and announced.isdigit() else None  # h11 vetted the syntax
        if max_bytes is not None and size is not None and size > max_bytes:
            raise self._too_large(f"; the storage announced {size:,} bytes")
        content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        kind = _page_kind(content_type)
        if kind in self._refused and content_type != self._expected:
            raise self._not_the_file(f"Content-Type {content_type[:80]!r}")

    def feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._max_bytes is not None and self._received > self._max_bytes:
            raise self._too_large("")
        if self._refused and len(self._head) < C.DOWNLOAD_SNIFF_BYTES:
            self._head += chunk[: C.DOWNLOAD_SNIFF_BYTES - len(self._head)]
            if len(self._head) >= C.DOWNLOAD_SNIFF_BYTES:
                self._sniff()

    def finish(self) -> None:
        if len(self._head) < C.DOWNLOAD_SNIFF_BYTES:
            self._sniff()

    def _sniff(self) -> None:
        kind = _body_kind(self._head)
        if kind in self._refused:
            raise self._not_the_file(f"a body that reads like {kind.upper()}")

    def _too_large(self, detail: str) -> ResponseTooLargeError:
        assert self._max_bytes is not None
        return ResponseTooLargeError(
            f"download of {self._what}: the file is larger than {self._max_bytes:,} bytes, the limit (the "
            f"client's max_download_bytes argument){detail}; nothing was saved",
            limit=self._max_bytes,
            what=self._what,
        )

    def _not_the_file(self, found: str) -> InvalidResponseError:
        expected = f"a {self._expected} file" if self._expected else "a result file"
        return InvalidResponseError(
            f"download of {self._what}: the storage answered HTTP {self._status} with {found} where {expected} "
            "was expected (an error or sign-in page?); nothing was saved"
        )


# --- part files ----------------------------------------------------------------------------------------------
#
# A download is written to ".<name>.<8 hex>.part" next to its target, and holds an exclusive flock on it for as
# long as the file exists. The kernel drops the lock when the process dies, however it dies: a part file that
# nobody holds was left by a crash (kill -9, a power cut), and the next download into that folder removes it.

_PART_FILE_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.part")


def part_file_name(name: str) -> str:
    """A fresh name for the part file of ``name`` (``fit_name`` leaves room for what is added here)."""
    return f".{name}.{secrets.token_hex(4)}.part"


async def _open_part_file(target: Path) -> tuple[Path, AsyncFile[bytes]]:
    """A new part file next to ``target``, open for writing and locked. The caller closes it."""
    for _attempt in range(C.DOWNLOAD_PART_FILE_ATTEMPTS):
        partial = target.with_name(part_file_name(target.name))
        try:
            file = await _open_for_writing(anyio.Path(partial))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.Path(partial).unlink(missing_ok=True)
            raise
        try:
            locked = await anyio.to_thread.run_sync(_lock_part_file, file.wrapped.fileno(), partial)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await file.aclose()
                await anyio.Path(partial).unlink(missing_ok=True)
            raise
        if locked:
            return partial, file
        # A clean-up of another process took it for a stale one in the instant before the lock: start afresh.
        with anyio.CancelScope(shield=True):
            await file.aclose()
        log.debug("download: part file %s was taken by a clean-up; making another", partial.name)
    raise GenStudioError(f"download: cannot keep a part file in {str(target.parent)!r}: something removes them")


def _lock_part_file(descriptor: int, partial: Path) -> bool:
    """Lock our new part file; ``False`` if a clean-up holds it or already removed it. Blocking (a thread)."""
    if fcntl is None:  # no flock on this platform (Windows): nothing removes part files there either
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:  # a file system without locks (some network shares): the clean-up skips it too
        log.debug("download: cannot lock %s (%s); writing it unlocked", partial.name, error)
        return True
    try:
        # Still the file at that name? A clean-up that locked it first has unlinked it by the time we get here.
        return os.path.samestat(os.fstat(descriptor), os.stat(partial))
    except FileNotFoundError:
        return False


def remove_stale_part_files(directory: Path, folder: Path) -> int:
    """Remove the part files in ``folder`` that no download holds; how many. Blocking: runs in a worker thread.

    Only regular files named like our part files are looked at, and one is removed only when its lock can be
    taken (no live download has it) and it is still the same file once locked. ``folder`` must lie inside
    ``directory`` (``check_contained``) before anything in it is touched.
    """
    if fcntl is None:
        return 0
    check_folder_contained(directory, folder)
    try:
        entries = [entry for entry in os.scandir(folder) if _PART_FILE_NAME.fullmatch(entry.name)]
    except FileNotFoundError:
        return 0
    except OSError as error:  # unreadable: the download itself will say what is wrong with the folder
        log.debug("download: cannot look for stale part files in %s: %s", folder, error)
        return 0
    removed = 0
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            descriptor = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as error:
            log.debug("download: kept part file %s (%s)", entry.name, type(error).__name__)
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(descriptor), os.lstat(entry.path)):
                os.unlink(entry.path)
                removed += 1
        except OSError as error:  # BlockingIOError: a download is writing it
            log.debug("download: kept part file %s (%s)", entry.name, type(error).__name__)
        finally:
            os.close(descriptor)
    return removed


async def _place(partial: Path, target: Path, claimed: set[str]) -> Path:
    """Give the finished ``partial`` its name: ``target``, else the first free ``numbered_name`` of it.

    A file already at a name is never replaced. One with the same bytes is the same object: it is kept and its
    path returned. Numbered names that another file of the same call holds (``claimed``) are skipped.
    """
    for number in range(C.DOWNLOAD_MAX_NUMBERED_NAMES + 1):
        candidate = target if number == 0 else target.with_name(numbered_name(target.name, number))
        key = str(candidate).casefold()
        if number:
            if key in claimed:
                continue
            claimed.add(key)  # before the thread runs: two files of this call never race for one name
        if await anyio.to_thread.run_sync(_link_or_match, partial, candidate):
            return candidate
        if number:
            claimed.discard(key)
        log.debug("download: %s already holds another file; trying the next name", candidate.name)
    raise GenStudioError(
        f"download: {target.name!r} and {C.DOWNLOAD_MAX_NUMBERED_NAMES} numbered names after it are all taken "
        f"in {str(target.parent)!r} by other files"
    )


# errno values of a file system that cannot make hard links (FAT and exFAT say EPERM, some shares ENOTSUP).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK})


def _link_or_match(partial: Path, candidate: Path) -> bool:
    """Whether ``candidate`` now holds ``partial``'s bytes: linked there (atomically, never over a file that is
    there already), or already there. Blocking: runs in a worker thread."""
    try:
        os.link(partial, candidate)
        return True
    except FileExistsError:
        return _same_bytes(partial, candidate)
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
    # No hard links here: a rename, unless something is in the way (a file made in between would be replaced).
    if os.path.lexists(candidate):
        return _same_bytes(partial, candidate)
    os.rename(partial, candidate)
    return True


def _same_bytes(partial: Path, existing: Path) -> bool:
    """Whether ``existing`` is a regular file (not a link, not a folder) holding exactly ``partial``'s bytes."""
    try:
        found = os.lstat(existing)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(found.st_mode) or found.st_size != os.stat(partial).st_size:
        return False
    with open(partial, "rb") as ours, open(existing, "rb") as theirs:
        while True:
            block = ours.read(C.DOWNLOAD_CHUNK_SIZE)
            if block != theirs.read(C.DOWNLOAD_CHUNK_SIZE):
                return False
            if not block:
                return True
