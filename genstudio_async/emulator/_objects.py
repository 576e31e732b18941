"""What the emulator stores: uploaded images, and the result objects its storage origin serves.

Uploads are kept by id: GenStudio's ``image_id`` (``upload/image`` makes one up), or, for GPUGeek, the object
key a pre-signed PUT wrote (``comfy/input/<name>``), which counts as an upload once it is committed.

Result images are not drawn when a task finishes but on their first download (in a worker thread), and a
few recent ones are kept in memory (``EMULATOR_RENDER_CACHE_SIZE``). An object older than the retention
period (3 days by default, judged on the emulator clock) is gone: the storage answers 404.
"""

from __future__ import annotations

import dataclasses
import secrets
import string
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from ._defaults import EMULATOR_ACCOUNT_ID, EMULATOR_RENDER_CACHE_SIZE, EMULATOR_TENANT_ID
from ._png import png_size, render_image

_ID_ALPHABET = string.ascii_lowercase + string.digits


def random_id(length: int = 16) -> str:
    """``length`` random lowercase letters and digits, as in the service's ids (``cft-…``, ``sui-…``)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class UploadedImage:
    """An image received by GenStudio's ``upload/image`` or a GPUGeek pre-signed PUT."""

    image_id: str
    data: bytes
    filename: str | None
    content_type: str | None
    size: tuple[int, int] | None
    is_image: bool = True
    created_at: float = 0.0
    committed: bool = True  # a GPUGeek PUT is an upload only once committed


@dataclass(frozen=True)
class ResultObject:
    """One result image of a task: where it lives and what to draw."""

    key: str
    task_id: str
    node_id: str
    width: int
    height: int
    seed: int
    text: str
    created_at: float


_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like an image PIL (ComfyUI's ``LoadImage``) can open: PNG, JPEG, GIF, BMP, TIFF, WebP."""
    return data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _extension(filename: str | None, data: bytes) -> str:
    if filename and "." in filename.rsplit("/", 1)[-1]:
        suffix = filename.rsplit(".", 1)[-1].lower()
        if suffix and suffix.isalnum() and len(suffix) <= 8:
            return "." + suffix
    if png_size(data) is not None:
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    return ""


class ObjectStore:
    """Uploads by image id and result objects by key."""

    def __init__(self, *, retention_seconds: float) -> None:
        self.retention_seconds = retention_seconds
        self._uploads: dict[str, UploadedImage] = {}
        self._results: dict[str, ResultObject] = {}
        self._rendered: OrderedDict[str, bytes] = OrderedDict()

    # --- uploads -------------------------------------------------------------------------------------------
    def add_upload(
        self, data: bytes, *, filename: str | None, content_type: str | None, now: float = 0.0
    ) -> UploadedImage:
        """Store an upload; its id keeps the original extension (or one guessed from the bytes)."""
        image_id = f"{EMULATOR_TENANT_ID}/{EMULATOR_ACCOUNT_ID}/sui-{random_id()}{_extension(filename, data)}"
        return self._store(image_id, data, filename=filename, content_type=content_type, now=now, committed=True)

    def put_upload(self, key: str, data: bytes, *, content_type: str | None, now: float) -> UploadedImage:
        """Store what a pre-signed PUT sent to ``key`` (replacing what was there), not yet committed."""
        return self._store(key, data, filename=key.rsplit("/", 1)[-1], content_type=content_type, now=now,
                           committed=False)

    def commit(self, key: str) -> bool:
        """Mark the object a PUT wrote at ``key`` as an upload; ``False`` if nothing was PUT there."""
        upload = self._uploads.get(key)
        if upload is None:
            return False
        if not upload.committed:
            self._uploads[key] = dataclasses.replace(upload, committed=True)
        return True

    def _store(
        self, image_id: str, data: bytes, *, filename: str | None, content_type: str | None, now: float,
        committed: bool,
    ) -> UploadedImage:
        upload = UploadedImage(
            image_id=image_id, data=data, filename=filename, content_type=content_type, size=png_size(data),
            is_image=looks_like_image(data), created_at=now, committed=committed,
        )
        self._uploads[image_id] = upload
        return upload

    def upload(self, image_id: str) -> UploadedImage | None:
        """The upload with this id, committed or not."""
        return self._uploads.get(image_id)

    def has_upload(self, image_id: str) -> bool:
        """Whether ``image_id`` names an upload a prompt may use (a GPUGeek one once committed)."""
        upload = self._uploads.get(image_id)
        return upload is not None and upload.committed

    def is_unreadable_upload(self, image_id: str) -> bool:
        """Whether ``image_id`` names an upload whose bytes are not an image (``LoadImage`` would fail on it)."""
        upload = self._uploads.get(image_id)
        return upload is not None and not upload.is_image

    def release(self, *, result_keys: Iterable[str], upload_horizon: float) -> None:
        """Free memory past retention: forget these result objects, and drop the bytes of uploads made before
        ``upload_horizon`` (their ids, sizes and kinds stay known, so prompts naming them behave as before)."""
        for key in result_keys:
            self._results.pop(key, None)
            self._rendered.pop(key, None)
        for image_id, upload in list(self._uploads.items()):
            if upload.data and upload.created_at < upload_horizon:
                self._uploads[image_id] = dataclasses.replace(upload, data=b"")

    def upload_size(self, image_id: str) -> tuple[int, int] | None:
        """The pixel size of an uploaded PNG, or ``None`` (not uploaded, or not a PNG)."""
        upload = self._uploads.get(image_id)
        return upload.size if upload is not None else None

    # --- results -------------------------------------------------------------------------------------------
    def add_result(
        self, *, task_id: str, node_id: str, width: int, height: int, seed: int, text: str, now: float
    ) -> ResultObject:
        """Register a result image (drawn later, on download)."""
        key = f"{EMULATOR_TENANT_ID}/{EMULATOR_ACCOUNT_ID}/{task_id}/{uuid.uuid4()}.png"
        result = ResultObject(
            key=key, task_id=task_id, node_id=node_id, width=width, height=height, seed=seed, text=text,
            created_at=now,
        )
        self._results[key] = result
        return result

    def result(self, key: str, *, now: float) -> ResultObject | None:
        """The object at ``key``, or ``None`` if there is none or it is past retention (then it is deleted)."""
        result = self._results.get(key)
        if result is None:
            return None
        if now - result.created_at > self.retention_seconds:
            del self._results[key]
            self._rendered.pop(key, None)
            return None
        return result

    async def render(self, result: ResultObject) -> bytes:
        """The PNG bytes of a result, drawn in a worker thread the first time and cached for a while."""
        cached = self._rendered.get(result.key)
        if cached is not None:
            self._rendered.move_to_end(result.key)
            return cached
        data = await run_in_threadpool(render_image, result.width, result.height, result.seed, result.text)
        self._rendered[result.key] = data
        while len(self._rendered) > EMULATOR_RENDER_CACHE_SIZE:
            self._rendered.popitem(last=False)
        return data
