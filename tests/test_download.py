"""Downloads of result files: against the emulator's signed-URL storage, and respx for broken bodies."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import respx

from genstudio_async import (
    APIConnectionError,
    AsyncGenStudio,
    GenStudioError,
    InvalidResponseError,
    NotFoundError,
    ResponseTooLargeError,
    TaskResult,
    _files,
)
from genstudio_async import _constants as C
from genstudio_async._files import fit_name, object_key, plan_downloads
from genstudio_async.emulator import Emulator
from tests.support import PNG_SIGNATURE, png_size

T2I = "wf-c73diz7kadp6ffgn"


def leftovers(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.name.endswith(".part")]


def files_in(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()]


async def test_download_saves_every_file_under_its_node(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    async with genstudio_emulator.client() as client:
        result = await client.run(T2I, {"5": {"inputs": {"width": 64, "height": 48, "batch_size": 2}}})
        paths = await client.download(result, tmp_path)
    assert len(paths) == 2
    assert all(path.parent == tmp_path / "9" and path.suffix == ".png" for path in paths)
    assert [png_size(path) for path in paths] == [(64, 48), (64, 48)]
    assert all("%2B" in url for url in result.outputs)  # signatures with '+': decoding would break them
    assert leftovers(tmp_path) == []
    assert genstudio_emulator.stats.storage_downloads == 2
    assert genstudio_emulator.stats.storage_requests_with_authorization == 0


async def test_the_api_key_never_reaches_the_storage_host_even_from_an_injected_client(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    key_header = {"Authorization": f"Bearer {genstudio_emulator.api_key}"}
    async with (
        httpx.AsyncClient(headers=key_header) as http_client,
        genstudio_emulator.client(http_client=http_client) as client,
    ):
        result = await client.run(T2I)
        paths = await client.download(result, tmp_path)
    assert paths and all(path.exists() for path in paths)
    assert genstudio_emulator.stats.storage_requests_with_authorization == 0


async def test_an_expired_url_is_refreshed_through_get_task_info(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    async with genstudio_emulator.client() as client:
        done = await client.run(T2I)
        info = await client.get_task(done.prompt_id, url_expire_period=60)
        genstudio_emulator.advance_clock(120)  # the storage host now sees those URLs as expired
        genstudio_emulator.stats.reset()
        paths = await client.download(TaskResult.from_info(info), tmp_path)
    assert paths and all(png_size(path) for path in paths)
    assert genstudio_emulator.stats.storage_requests_refused == 1  # one 403, then fresh URLs
    assert genstudio_emulator.stats.task_info_requests == 1  # one refresh served every file
    assert leftovers(tmp_path) == []


async def test_files_deleted_after_retention_are_not_found_and_nothing_is_left(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    async with genstudio_emulator.client() as client:
        result = await client.run(T2I)
        genstudio_emulator.advance_clock(4 * 24 * 3600)
        with pytest.raises(NotFoundError):
            await client.download(result, tmp_path)
    assert files_in(tmp_path) == []


# --- broken bodies (respx) ----------------------------------------------------------------------------------

STORAGE_URL = "https://bucket.oss.test/te-1%2Fac-1%2Fcft-1%2Fimage.png?Expires=9999999999&Signature=ab%2Bcd%3D"


class _BreaksAfter(httpx.AsyncByteStream):
    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._payload[:10]
        raise httpx.ReadError("connection reset by peer")


def _result() -> TaskResult:
    return TaskResult(prompt_id="cft-1", files={"9": [STORAGE_URL]})


async def test_an_interrupted_body_is_downloaded_again_whole(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    payload = PNG_SIGNATURE + b"x" * 5000
    route = api.get(STORAGE_URL).mock(
        side_effect=[httpx.Response(200, stream=_BreaksAfter(payload)), httpx.Response(200, content=payload)]
    )
    paths = await client.download(_result(), tmp_path)
    assert paths == [tmp_path / "9" / "image.png"]
    assert paths[0].read_bytes() == payload
    assert route.call_count == 2
    # Sent exactly as received: the signature's %2B and %3D were not decoded, and no key went along.
    assert str(route.calls[0].request.url) == STORAGE_URL
    assert "authorization" not in route.calls[0].request.headers


async def test_a_body_that_keeps_breaking_leaves_no_file(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    api.get(STORAGE_URL).mock(side_effect=lambda request: httpx.Response(200, stream=_BreaksAfter(b"y" * 100)))
    with pytest.raises(APIConnectionError, match="interrupted"):
        await client.download(_result(), tmp_path)
    assert files_in(tmp_path) == []


async def test_cancelling_a_download_while_its_file_opens_leaves_no_open_file(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import anyio


    api.get(STORAGE_URL).respond(200, content=PNG_SIGNATURE + b"x" * 100)
    entered, release = asyncio.Event(), asyncio.Event()
    opened: list[anyio.AsyncFile[bytes]] = []
    real_open = anyio.open_file

    async def slow_open(path: anyio.Path, mode: str) -> anyio.AsyncFile[bytes]:
        assert mode == "wb"
        entered.set()
        await release.wait()  # the worker thread is still opening when the download is cancelled
        handle = await real_open(path, "wb")
        opened.append(handle)
        return handle

    monkeypatch.setattr(anyio, "open_file", slow_open)  # as _files calls it: anyio.open_file(...)
    download = asyncio.create_task(client.download(_result(), tmp_path))
    await entered.wait()
    download.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await download
    assert len(opened) == 1 and opened[0].wrapped.closed  # the handle opened after the cancel was closed
    assert files_in(tmp_path) == []  # and the .part file removed


# --- planning: how many files, and their names ----------------------------------------------------------------


def _query_addressed(count: int, name: str = "get.png") -> list[str]:
    return [f"https://store.test/{name}?id={index}&Signature=s{index}" for index in range(count)]


def test_many_objects_of_one_name_are_numbered_without_rescanning_the_names(monkeypatch: pytest.MonkeyPatch) -> None:
    numbered: list[int] = []
    original = _files.numbered_name

    def counted(name: str, number: int) -> str:
        numbered.append(number)
        return original(name, number)

    monkeypatch.setattr(_files, "numbered_name", counted)
    count = 1000
    planned = plan_downloads(TaskResult(prompt_id="cft-1", files={"9": _query_addressed(count)}), Path("out"))
    assert [item.target.name for item in planned] == ["get.png"] + [f"get-{n}.png" for n in range(1, count)]
    # One name made per file: numbering from 1 for every file made 500,000 (r09: 8,000 files, 155 s).
    assert len(numbered) == count - 1


def test_numbering_steps_over_names_other_objects_hold_in_any_case() -> None:
    urls = [
        "https://store.test/a.png?id=1",
        "https://store.test/a-1.png?id=1",  # holds the first number a.png would take
        "https://store.test/a.png?id=2",
        "https://store.test/A.png?id=3",  # one file with a.png on macOS and Windows
        "https://store.test/a-1.png?id=2",
    ]
    planned = plan_downloads(TaskResult(prompt_id="cft-1", files={"9": urls}), Path("out"))
    assert [item.target.name for item in planned] == ["a.png", "a-1.png", "a-2.png", "A-3.png", "a-1-1.png"]


def test_a_result_naming_more_files_than_the_limit_is_refused() -> None:
    limit = 10_000
    urls = _query_addressed(limit + 1)
    # The same objects listed again (final_files repeats files) are not counted twice.
    within = TaskResult(prompt_id="cft-1", files={"9": urls[:limit]}, final_files=urls[:limit])
    assert len(plan_downloads(within, Path("out"))) == limit
    with pytest.raises(ResponseTooLargeError) as caught:
        plan_downloads(TaskResult(prompt_id="cft-1", files={"9": urls}), Path("out"))
    assert caught.value.limit == limit == C.MAX_RESULT_FILES
    assert "more than 10,000 files" in str(caught.value)


async def test_a_download_of_too_many_files_fetches_and_writes_nothing(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(C, "MAX_RESULT_FILES", 3, raising=False)
    urls = _query_addressed(4)
    routes = [api.get(url).respond(200, content=PNG_SIGNATURE) for url in urls]
    with pytest.raises(ResponseTooLargeError, match="more than 3 files"):
        await client.download(TaskResult(prompt_id="cft-1", files={"9": urls}), tmp_path / "out")
    assert sum(route.call_count for route in routes) == 0
    assert not (tmp_path / "out").exists()


# --- which object a URL names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        # OSS V1 and S3-style signatures differ on every answer: the object does not
        (STORAGE_URL, STORAGE_URL.replace("Expires=9999999999&Signature=ab%2Bcd%3D", "Expires=1&Signature=zz"), True),
        (
            "https://s3.test/b/x.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20260101T000000Z&X-Amz-Signature=aa",
            "https://s3.test/b/x.png?x-amz-date=20260102T000000Z&X-Amz-Signature=bb&X-Amz-Security-Token=t",
            True,
        ),
        ("https://oss.test/x.png?security-token=a&OSSAccessKeyId=k", "https://oss.test/x.png", True),
        # a query-addressed store: the query names the object
        ("https://store.test/get?id=1&Expires=1&Signature=a", "https://store.test/get?id=2&Signature=a", False),
        # an image post-process command makes another object; unknown parameters count too
        ("https://oss.test/x.png?x-oss-process=image/resize,w_64", "https://oss.test/x.png?Signature=a", False),
        ("https://oss.test/x.png?v=2&Signature=a", "https://oss.test/x.png?v=3&Signature=b", False),
        ("https://oss.test/x.png?a=1&b=2", "https://oss.test/x.png?b=2&a=1", True),
    ],
)
def test_object_key_names_the_object_without_its_signature(first: str, second: str, same: bool) -> None:
    assert (object_key(first) == object_key(second)) is same
    assert "Signature" not in object_key(first) and "X-Amz" not in object_key(first)


def test_object_key_of_a_url_that_does_not_parse_is_not_an_error() -> None:
    # The progress stream compares the keys of every snapshot: a broken URL in one must not crash it.
    assert object_key("http://[::1/x.png?Signature=a") == object_key("http://[::1/x.png?Signature=a")
    assert object_key("http://[::1/x.png") != object_key("http://[::2/x.png")


async def test_objects_that_differ_only_in_their_query_are_all_saved(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    first = "https://store.test/get?id=1&Expires=9999999999&Signature=a%2Bb"
    second = "https://store.test/get?id=2&Expires=9999999999&Signature=c%2Bd"
    api.get(first).respond(200, content=b"first object")
    api.get(second).respond(200, content=b"second object")
    paths = await client.download(TaskResult(prompt_id="cft-1", files={"9": [first, second]}), tmp_path)
    assert sorted(path.read_bytes() for path in paths) == [b"first object", b"second object"]
    assert len(set(paths)) == 2


async def test_each_query_addressed_object_gets_its_own_fresh_url(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    stale = ["https://store.test/get?id=1&Expires=9999999999&Signature=old1",
             "https://store.test/get?id=2&Expires=9999999999&Signature=old2"]
    fresh = [url.replace("old", "new") for url in stale]
    for url in stale:
        api.get(url).respond(403, content=b"<Error><Code>AccessDenied</Code></Error>")
    api.get(fresh[0]).respond(200, content=b"one")
    api.get(fresh[1]).respond(200, content=b"two")
    api.post("/api/maas/comfy_task_api/get_task_info").respond(
        json={"code": 0, "msg": "Success", "data": {"comfy_task_info": [
            {"comfy_task_id": "cft-1", "status": 3, "files": {"9": fresh}}
        ]}}
    )
    paths = await client.download(TaskResult(prompt_id="cft-1", files={"9": stale}), tmp_path)
    assert [path.read_bytes() for path in paths] == [b"one", b"two"]


async def test_a_result_url_that_does_not_parse_is_an_invalid_response(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    broken = "http://[::1/te-1%2Fimage.png?Expires=9999999999&OSSAccessKeyId=LTAI5t&Signature=SeCrEt%2BSiG%3D"
    api.get(STORAGE_URL).respond(200, content=PNG_SIGNATURE + b"fine")
    with pytest.raises(InvalidResponseError, match="cannot be used") as raised:
        await client.download(TaskResult(prompt_id="cft-1", files={"9": [broken, STORAGE_URL]}), tmp_path)
    assert "SeCrEt" not in str(raised.value) and "Signature" not in str(raised.value)
    assert "[::1" in str(raised.value)  # it says which URL
    assert [path.read_bytes() for path in files_in(tmp_path)] == [PNG_SIGNATURE + b"fine"]  # the others finish


@pytest.mark.parametrize(
    "url",
    [
        "ftp://oss.test/x.png?Signature=a",
        "https:///x.png",
        "http://oss.test:99999/x.png",
        "http://oss.test:port/x.png",
        "not a url at all",
    ],
)
async def test_other_unusable_result_urls_are_invalid_responses(
    client: AsyncGenStudio, tmp_path: Path, url: str
) -> None:
    with pytest.raises(InvalidResponseError, match="cannot be used"):
        await client.download(TaskResult(prompt_id="cft-1", files={"9": [url]}), tmp_path)
    assert files_in(tmp_path) == []


# --- local names: long, hostile, contained -------------------------------------------------------------------

NAME_MAX = 255


def storage_url(name: str) -> str:
    return f"https://bucket.oss.test/te-1%2Fcft-1%2F{quote(name, safe='')}?Expires=9999999999&Signature=ab%2Bcd%3D"


def test_a_long_name_is_cut_on_a_character_boundary_keeping_its_extension() -> None:
    cjk = "狐" * 90 + ".png"  # 274 UTF-8 bytes
    fitted = fit_name(cjk)
    assert len(fitted.encode()) <= NAME_MAX - len(".") - len(".0123abcd.part")  # its part file fits too
    assert fitted.endswith(".png") and fitted.startswith("狐" * 60)
    assert fitted.encode().decode("utf-8") == fitted  # no split character
    assert fit_name("a" * 300 + "x.png") != fit_name("a" * 300 + "y.png")  # same beginning, kept apart
    assert fit_name("short.png") == "short.png"


async def test_legal_long_names_from_the_service_are_downloaded(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    names = ["a" * 246 + ".png", "a" * 240 + "bbbbbb.png", "狐" * 90 + ".png", "b" * 250]
    urls = [storage_url(name) for name in names]
    for index, url in enumerate(urls):
        api.get(url).respond(200, content=PNG_SIGNATURE + bytes([index]))
    node_id = "n" * 300
    paths = await client.download(TaskResult(prompt_id="cft-1", files={node_id: urls}), tmp_path)
    assert [path.read_bytes()[-1] for path in paths] == [0, 1, 2, 3]  # each file, and each in its own place
    assert len({path.name for path in paths}) == 4
    for path in paths:
        assert all(len(part.encode()) <= NAME_MAX for part in path.relative_to(tmp_path).parts)
    assert [path.suffix for path in paths] == [".png", ".png", ".png", ""]
    assert paths[2].name.startswith("狐" * 60)


HOSTILE_NODE_IDS = [
    "..", "../..", "/abs", "a/../../b", "\x00", ".", "...", "   ", ". .", "CON", "nul.txt", "a\\..\\..\\b",
    "C:evil", "\u202eevil", "~", "$HOME",
]
HOSTILE_FILE_NAMES = [
    "..", "../../escape.png", "/etc/passwd", "\x00.png", "...", "   ", "CON.png", "aux", "a\\..\\b.png",
    "lpt1", ".hidden.png", "x.png.", "x.png ",
]


@pytest.mark.parametrize("node_id", HOSTILE_NODE_IDS)
async def test_no_node_id_places_a_file_outside_the_folder(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path, node_id: str
) -> None:
    api.get(STORAGE_URL).respond(200, content=PNG_SIGNATURE)
    out = tmp_path / "out"
    paths = await client.download(TaskResult(prompt_id="cft-1", files={node_id: [STORAGE_URL]}), out)
    assert_safely_inside(out, paths, tmp_path)


@pytest.mark.parametrize("name", HOSTILE_FILE_NAMES)
async def test_no_file_name_places_a_file_outside_the_folder(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path, name: str
) -> None:
    url = storage_url(name)
    api.get(url).respond(200, content=PNG_SIGNATURE)
    out = tmp_path / "out"
    paths = await client.download(TaskResult(prompt_id="cft-1", files={"9": [url]}), out)
    assert_safely_inside(out, paths, tmp_path)


def assert_safely_inside(out: Path, paths: list[Path], scratch: Path) -> None:
    assert len(paths) == 1 and paths[0].read_bytes() == PNG_SIGNATURE
    assert [path for path in scratch.iterdir() if path != out] == []  # nothing next to the folder
    for part in paths[0].relative_to(out).parts:
        assert part.strip(". ") == part and not part.startswith("~")  # no ".", "..", hidden or trailing dot
        assert not re.fullmatch(r"(?i)(con|prn|aux|nul|com\d|lpt\d)(\..*)?", part)  # no Windows device name
        assert re.fullmatch(r"[\w.\-]+", part)


async def test_the_last_guard_holds_even_when_the_name_rules_let_a_path_through(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_files, "safe_name", lambda text, fallback: text)  # a name rule gone wrong
    api.get(STORAGE_URL).respond(200, content=PNG_SIGNATURE)
    out = tmp_path / "out"
    with pytest.raises(InvalidResponseError, match="outside"):
        await client.download(TaskResult(prompt_id="cft-1", files={"../escaped": [STORAGE_URL]}), out)
    assert files_in(tmp_path) == []


async def test_a_symlinked_node_folder_pointing_elsewhere_is_not_written_through(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    api.get(STORAGE_URL).respond(200, content=PNG_SIGNATURE)
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "out"
    elsewhere.mkdir()
    out.mkdir()
    (out / "9").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(InvalidResponseError, match="outside"):
        await client.download(_result(), out)
    assert list(elsewhere.iterdir()) == []


# --- a file already at the target ------------------------------------------------------------------------------


async def test_a_different_file_at_the_target_is_kept_and_the_download_saved_next_to_it(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    api.get(STORAGE_URL).respond(200, content=PNG_SIGNATURE + b"downloaded")
    (tmp_path / "9").mkdir()
    (tmp_path / "9" / "image.png").write_bytes(b"the user's own picture")
    paths = await client.download(_result(), tmp_path)
    assert paths == [tmp_path / "9" / "image-1.png"]
    assert paths[0].read_bytes() == PNG_SIGNATURE + b"downloaded"
    assert (tmp_path / "9" / "image.png").read_bytes() == b"the user's own picture"


async def test_downloading_the_same_result_again_changes_nothing(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    api.get(STORAGE_URL).respond(200, content=PNG_SIGNATURE + b"same")
    first = await client.download(_result(), tmp_path)
    before = {path: path.stat().st_ino for path in files_in(tmp_path)}
    second = await client.download(_result(), tmp_path)
    assert second == first == [tmp_path / "9" / "image.png"]
    assert {path: path.stat().st_ino for path in files_in(tmp_path)} == before  # kept, not rewritten


async def test_a_link_or_folder_at_the_target_is_neither_followed_nor_replaced(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    payload = PNG_SIGNATURE + b"downloaded"
    api.get(STORAGE_URL).respond(200, content=payload)
    out, outside = tmp_path / "out", tmp_path / "outside.png"
    outside.write_bytes(payload)  # even the same bytes: a link is not the object
    (out / "9").mkdir(parents=True)
    (out / "9" / "image.png").symlink_to(outside)
    (out / "9" / "image-1.png").mkdir()
    paths = await client.download(_result(), out)
    assert paths == [out / "9" / "image-2.png"] and paths[0].read_bytes() == payload
    assert (out / "9" / "image.png").is_symlink() and (out / "9" / "image-1.png").is_dir()
    assert outside.read_bytes() == payload


async def test_files_of_one_call_never_take_each_others_names(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    urls = [storage_url("x.png").replace("cft-1", f"cft-{i}") for i in range(3)]  # three objects named x.png
    for index, url in enumerate(urls):
        api.get(url).respond(200, content=bytes([index]) * 3)
    (tmp_path / "9").mkdir()
    (tmp_path / "9" / "x.png").write_bytes(b"mine")
    paths = await client.download(TaskResult(prompt_id="cft-1", files={"9": urls}), tmp_path)
    assert len(set(paths)) == 3 and (tmp_path / "9" / "x.png") not in paths
    assert sorted(path.read_bytes() for path in paths) == [b"\x00" * 3, b"\x01" * 3, b"\x02" * 3]
    assert (tmp_path / "9" / "x.png").read_bytes() == b"mine"
    again = await client.download(TaskResult(prompt_id="cft-1", files={"9": urls}), tmp_path)
    assert sorted(again) == sorted(paths)  # and a rerun finds each of them again


# --- part files a crash left behind -------------------------------------------------------------------------


async def test_stale_part_files_are_removed_and_nothing_else_is(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    fcntl = pytest.importorskip("fcntl")
    api.get(STORAGE_URL).respond(200, content=PNG_SIGNATURE)
    folder = tmp_path / "9"
    folder.mkdir()
    stale = [folder / ".image.png.0123abcd.part", folder / ".other.webp.ffffffff.part"]  # a crash's leftovers
    live = folder / ".image.png.89abcdef.part"  # another download, still writing
    kept = [folder / name for name in ("notes.part", ".image.png.part", ".x.0123ABCD.part", "x.0123abcd.part")]
    for path in (*stale, live, *kept):
        path.write_bytes(b"partial")
    (folder / ".dir.png.0123abcd.part").mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not yours")
    (folder / ".link.png.0123abcd.part").symlink_to(outside)
    with live.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a live download holds its part file
        paths = await client.download(_result(), tmp_path)
    assert paths == [folder / "image.png"]
    assert not any(path.exists() for path in stale)
    assert live.exists() and all(path.read_bytes() == b"partial" for path in kept)
    assert (folder / ".dir.png.0123abcd.part").is_dir() and (folder / ".link.png.0123abcd.part").is_symlink()
    assert outside.read_bytes() == b"not yours"


async def test_a_live_download_keeps_its_part_file_from_another_downloads_clean_up(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    pytest.importorskip("fcntl")
    other = STORAGE_URL.replace("image.png", "other.png")
    started, release = asyncio.Event(), asyncio.Event()

    class _Waits(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield PNG_SIGNATURE
            started.set()
            await release.wait()  # its part file exists and is being written
            yield b"rest"

    api.get(STORAGE_URL).mock(return_value=httpx.Response(200, stream=_Waits()))
    api.get(other).respond(200, content=b"other")
    slow = asyncio.create_task(client.download(_result(), tmp_path))
    await started.wait()
    assert len(leftovers(tmp_path)) == 1
    await client.download(TaskResult(prompt_id="cft-1", files={"9": [other]}), tmp_path)  # cleans the folder
    assert len(leftovers(tmp_path)) == 1  # the live part file survived it
    release.set()
    assert [path.read_bytes() for path in await slow] == [PNG_SIGNATURE + b"rest"]
    assert leftovers(tmp_path) == []


# --- an error page where a file was expected ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html; charset=utf-8", b"<html><body>Please sign in to the Wi-Fi</body></html>"),
        ("application/json", b'{"code": "AccessDenied", "message": "expired"}'),
        ("application/xml", b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>'),
        ("application/xhtml+xml", b"<html/>"),
        (None, b"\xef\xbb\xbf\n  <!DOCTYPE html><title>Gateway</title>"),  # what the body says, when the type is silent
        ("image/png", b"<html><body>Sign in</body></html>"),  # or lies
        ("application/octet-stream", b'{"error": "not found"}'),
    ],
)
async def test_an_error_page_where_an_image_was_expected_is_an_invalid_response(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path, content_type: str | None, body: bytes
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    api.get(STORAGE_URL).respond(200, content=body, headers=headers)
    with pytest.raises(InvalidResponseError, match="image/png") as raised:
        await client.download(_result(), tmp_path)
    assert "9/image.png" in str(raised.value) and "nothing was saved" in str(raised.value)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "content_type", "body"),
    [
        ("result.json", "application/json", b'{"caption": "a red fox"}'),
        ("vector.svg", "image/svg+xml", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'),
        ("notes.txt", "text/plain", b"<b>bold</b> is fine in a text file"),
        ("scene.gltf", "model/gltf+json", b'{"asset": {"version": "2.0"}}'),
        ("page.html", "text/html", b"<html></html>"),
        ("data", "application/json", b'{"id": 1}'),  # no extension: only a web page is ruled out
        ("image.png", "application/octet-stream", PNG_SIGNATURE + b"{<html>"),
        ("image.png", "text/plain", PNG_SIGNATURE),  # a storage that mislabels its images still works
    ],
)
async def test_files_that_are_text_or_markup_by_their_name_are_saved(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path, name: str, content_type: str, body: bytes
) -> None:
    url = storage_url(name)
    api.get(url).respond(200, content=body, headers={"Content-Type": content_type})
    paths = await client.download(TaskResult(prompt_id="cft-1", files={"9": [url]}), tmp_path)
    assert [path.read_bytes() for path in paths] == [body]


async def test_a_web_page_for_a_file_without_an_extension_is_refused_too(
    api: respx.MockRouter, client: AsyncGenStudio, tmp_path: Path
) -> None:
    url = "https://store.test/get?id=1&Expires=9999999999&Signature=a%2Bb"
    api.get(url).respond(200, content=b"<!doctype html><p>Captive portal</p>", headers={"Content-Type": "text/html"})
    with pytest.raises(InvalidResponseError, match="text/html"):
        await client.download(TaskResult(prompt_id="cft-1", files={"9": [url]}), tmp_path)
    assert files_in(tmp_path) == []


async def test_what_a_broken_url_says_reaches_the_terminal_escaped(client: AsyncGenStudio, tmp_path: Path) -> None:
    url = "http://oss.test:\x1b[2J\x1b]0;pwned\x07/x.png?Signature=SeCrEt"
    with pytest.raises(InvalidResponseError, match="cannot be used") as raised:
        await client.download(TaskResult(prompt_id="cft-1", files={"9": [url]}), tmp_path)
    assert "\x1b" not in str(raised.value) and "\x07" not in str(raised.value)
    assert "SeCrEt" not in str(raised.value)


async def test_a_node_folder_that_is_a_symlink_loop_is_our_error(client: AsyncGenStudio, tmp_path: Path) -> None:
    (tmp_path / "9").symlink_to(tmp_path / "9")
    with pytest.raises(GenStudioError, match="9"):
        await client.download(_result(), tmp_path)
