"""``AioHttpClient``: the SDK over aiohttp's connection pool, passed as ``http_client=``.

Everything the SDK does over HTTP is run through it: against the emulator (submit, stream, wait, upload, a signed
download), and against tiny raw servers of our own on 127.0.0.1 for what a hostile or broken server does (a
hang-up after the request, silence, a drip, an oversized answer). The rules are the SDK's, whatever the
transport: a submit the server may have taken is never sent twice, every error is one of ours, a signed URL
travels byte for byte, the caps and deadlines hold, no secret shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import genstudio_async
from genstudio_async import (
    AioHttpClient,
    APIConnectionError,
    APITimeoutError,
    AsyncGenStudio,
    AuthenticationError,
    ConfigurationError,
    ResponseTooLargeError,
    TaskStatus,
)
from genstudio_async._services import genstudio as GS
from genstudio_async.emulator import Emulator
from tests.support import PNG_SIGNATURE
from tests.test_download_hostile import files_in, ok_head, raw_server, resource_warnings, result_of

API_KEY = "sk-transport-test-5d1c9e0b7a3f2468"
T2I = "wf-c73diz7kadp6ffgn"
PAYLOAD = PNG_SIGNATURE + b"\x01" * 2048


@pytest.fixture
async def http_client() -> AsyncIterator[AioHttpClient]:
    async with AioHttpClient() as client:
        yield client


def answer(body: bytes, status: str = "200 OK", content_type: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body)


# --- the whole job, against the emulator -----------------------------------------------------------------------


async def test_a_task_runs_end_to_end_over_aiohttp(
    genstudio_emulator: Emulator, http_client: AioHttpClient, tmp_path: Path
) -> None:
    emu = genstudio_emulator
    async with AsyncGenStudio(emu.api_key, base_url=emu.base_url, http_client=http_client) as client:
        image_id = await client.upload_image(PAYLOAD, filename="fox.png")  # multipart, through aiohttp
        submission = await client.submit(T2I)
        events = [event async for event in client.stream(submission)]
        result = await client.wait(submission, timeout=30)
        paths = await client.download(result, tmp_path)
        infos = await client.get_tasks([submission, submission.prompt_id])
    assert image_id and emu.stats.uploads == 1
    assert events[-1].status is TaskStatus.SUCCEEDED and result.outputs
    assert [info.status for info in infos] == [TaskStatus.SUCCEEDED]
    # Each signed URL reached the storage exactly as the service wrote it (a re-quoted one fails its signature).
    assert len(paths) == len(result.outputs) and all(path.read_bytes().startswith(PNG_SIGNATURE) for path in paths)
    assert emu.stats.storage_downloads == len(paths) and emu.stats.storage_requests_refused == 0
    assert emu.stats.storage_requests_with_authorization == 0  # the storage host never gets the key
    assert not http_client.is_closed  # an http_client passed in stays the caller's


async def test_closing_the_client_closes_aiohttps_session_and_sockets(genstudio_emulator: Emulator) -> None:
    emu = genstudio_emulator
    with resource_warnings() as leaked:
        http_client = AioHttpClient()
        async with http_client, AsyncGenStudio(emu.api_key, base_url=emu.base_url, http_client=http_client) as client:
            await asyncio.gather(*(client.submit(T2I) for _ in range(5)))
        assert http_client.is_closed
    assert leaked == []


# --- the submit-safety rule ---------------------------------------------------------------------------------------


async def test_a_submit_the_server_read_and_hung_up_on_is_never_sent_again(http_client: AioHttpClient) -> None:
    # httpx-aiohttp's own error map calls this hang-up a ConnectTimeout ("never sent"): the SDK would resubmit.
    async def read_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        return False

    async with (
        raw_server(read_then_hang_up) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client, max_retries=2) as client,
    ):
        with pytest.raises(APIConnectionError) as raised:
            await client.submit(T2I)
    assert raised.value.request_sent is True
    assert [head.split(b" ")[1] for head in server.requests] == [GS.SUBMIT_PATH.encode()]  # sent once


async def test_a_status_call_the_server_hung_up_on_is_retried(http_client: AioHttpClient) -> None:
    async def hang_up_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        if len(server.requests) == 1:
            return False
        await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
        writer.write(answer(b'{"code": 0, "msg": "Success", "data": {"comfy_task_info": []}}'))
        await writer.drain()
        return True

    async with (
        raw_server(hang_up_then_answer) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client, max_retries=2) as client,
    ):
        assert await client.get_tasks(["cft-1"]) == []
    assert len(server.requests) == 2  # get_task_info is idempotent: sent again


async def test_a_refused_connection_is_our_error_and_a_submit_is_retried(http_client: AioHttpClient) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        raise AssertionError("nothing listens")

    async with raw_server(never) as server:
        origin = server.origin
    # The port is free again: every connect is refused, which proves the submit never left (retried, then ours).
    async with AsyncGenStudio(API_KEY, base_url=origin, http_client=http_client, max_retries=2) as client:
        with pytest.raises(APIConnectionError) as raised:
            await client.submit(T2I)
    assert raised.value.request_sent is False
    assert type(raised.value.__cause__).__module__.startswith("httpx")  # aiohttp's error was mapped, not leaked
    assert API_KEY not in str(raised.value)


# --- the environment: proxies once, no netrc, no thread per request -----------------------------------------

SUBMITTED = b'{"code": 0, "msg": "Success", "data": {"prompt_id": "cft-1", "prompt_token": "tok-1"}}'


async def answer_submits(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
    await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
    writer.write(answer(SUBMITTED))
    await writer.drain()
    return True


@pytest.fixture
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return monkeypatch


async def test_an_http_proxy_from_the_environment_carries_the_api_calls(
    clean_proxy_environment: pytest.MonkeyPatch,
) -> None:
    async with raw_server(answer_submits) as proxy:
        clean_proxy_environment.setenv("HTTP_PROXY", proxy.origin)
        async with (
            AioHttpClient() as http_client,
            AsyncGenStudio(API_KEY, base_url="http://genstudio.invalid", http_client=http_client) as client,
        ):
            assert (await client.submit(T2I)).prompt_id == "cft-1"
            assert (await client.submit(T2I)).prompt_id == "cft-1"
    absolute = f"http://genstudio.invalid{GS.SUBMIT_PATH}".encode()
    assert [head.split(b" ")[1] for head in proxy.requests] == [absolute] * 2


async def test_no_proxy_sends_the_api_calls_straight_to_the_host(clean_proxy_environment: pytest.MonkeyPatch) -> None:
    async with raw_server(answer_submits) as server:
        clean_proxy_environment.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        clean_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
        async with (
            AioHttpClient() as http_client,
            AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client) as client,
        ):
            assert (await client.submit(T2I)).prompt_id == "cft-1"
    assert [head.split(b" ")[1] for head in server.requests] == [GS.SUBMIT_PATH.encode()]


async def test_a_netrc_entry_for_the_api_host_neither_breaks_nor_joins_the_call(
    clean_proxy_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # aiohttp's trust_env read ~/.netrc for every request: beside the SDK's Authorization header its password
    # made a raw ValueError ("Cannot combine AUTHORIZATION header with AUTH argument").
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-secret\n", encoding="utf-8")
    netrc.chmod(0o600)
    clean_proxy_environment.setenv("NETRC", str(netrc))
    async with (
        raw_server(answer_submits) as server,
        AioHttpClient() as http_client,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client) as client,
    ):
        assert (await client.submit(T2I)).prompt_id == "cft-1"
    (head,) = server.requests
    assert f"authorization: Bearer {API_KEY}".encode() in head.lower().replace(b"bearer", b"Bearer")
    assert b"basic" not in head.lower()


@pytest.mark.parametrize(
    ("proxy", "netrc_line"),
    [
        ("http://[proxy.invalid", ""),  # not a URL (yarl: ValueError)
        ("http://proxy.invalid:99999", ""),  # a port out of range
        ("http://proxy.invalid:3128", "machine proxy.invalid login some:one password p"),  # a ':' in the login
        ("http://so%3Ame:p@proxy.invalid:3128", ""),  # the same in the URL's credentials
    ],
)
async def test_a_proxy_environment_aiohttp_cannot_read_is_a_configuration_error(
    clean_proxy_environment: pytest.MonkeyPatch, tmp_path: Path, proxy: str, netrc_line: str
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(netrc_line + "\n", encoding="utf-8")
    netrc.chmod(0o600)
    clean_proxy_environment.setenv("NETRC", str(netrc))
    clean_proxy_environment.setenv("HTTP_PROXY", proxy)
    async with raw_server(answer_submits) as server:
        with pytest.raises(ConfigurationError, match="proxy"):
            async with (
                AioHttpClient() as http_client,
                AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client, max_retries=0) as client,
            ):
                await client.submit(T2I)
    assert server.requests == []


async def test_a_request_takes_no_worker_thread(
    clean_proxy_environment: pytest.MonkeyPatch, http_client: AioHttpClient
) -> None:
    # aiohttp's trust_env looked up the proxy and netrc in a thread per request: two thread hops per submit.
    loop = asyncio.get_running_loop()
    hops: list[object] = []
    original = loop.run_in_executor

    def counted(executor: object, func: object, *args: object) -> asyncio.Future[object]:
        hops.append(func)
        return original(executor, func, *args)  # type: ignore[arg-type]

    clean_proxy_environment.setattr(loop, "run_in_executor", counted)
    async with (
        raw_server(answer_submits) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client) as client,
    ):
        for _ in range(3):
            await client.submit(T2I)
    assert hops == []


# --- timeouts, deadlines, caps --------------------------------------------------------------------------------


async def test_a_server_that_never_answers_times_out_as_ours(http_client: AioHttpClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        await asyncio.Event().wait()
        return False

    async with (
        raw_server(silent) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client, timeout=0.2) as client,
    ):
        with pytest.raises(APITimeoutError) as raised:
            await client.submit(T2I)
    assert raised.value.request_sent is True and len(server.requests) == 1  # a read timeout: not resubmitted


async def test_an_answer_dripped_within_each_read_timeout_is_cut_off_at_the_deadline(
    http_client: AioHttpClient,
) -> None:
    body = b'{"code": 0, "msg": "Success", "data": {"comfy_task_info": []}}'

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(answer(body)[: -len(body)])
        for byte in body:  # each byte well inside the per-read timeout; the whole far past the deadline
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
        return True

    async with (
        raw_server(drip) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client, timeout=0.3, max_retries=0) as client,
    ):
        with pytest.raises(APITimeoutError, match="overall deadline"):
            await client.get_tasks(["cft-1"])


async def test_an_oversized_api_answer_is_refused(http_client: AioHttpClient) -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(answer(b"[" + b"0," * 100_000 + b"0]"))
        await writer.drain()
        return True

    async with (
        raw_server(huge) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client, max_response_bytes=1024) as client,
    ):
        with pytest.raises(ResponseTooLargeError, match="max_response_bytes"):
            await client.get_tasks(["cft-1"])


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_an_endless_api_answer_of_no_declared_size_is_cut_off_at_the_cap(transport: str) -> None:
    # No Content-Length to refuse up front: the body is counted as it is read, its connection dropped (never given
    # back to the pool with the rest unread), and the next call goes out on a fresh one.
    async def endless_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
        if len(server.requests) > 1:
            writer.write(answer(b'{"code": 0, "msg": "Success", "data": {"comfy_task_info": []}}'))
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:  # until the client hangs up
            writer.write(b"4000\r\n" + b"0," * 8192 + b"\r\n")
            await writer.drain()

    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(raw_server(endless_then_answer))
        given = await stack.enter_async_context(AioHttpClient()) if transport == "aiohttp" else None
        client = await stack.enter_async_context(
            AsyncGenStudio(API_KEY, base_url=server.origin, http_client=given, max_response_bytes=65536)
        )
        async with asyncio.timeout(10):
            with pytest.raises(ResponseTooLargeError, match="max_response_bytes"):
                await client.get_tasks(["cft-1"])
            assert await client.get_tasks(["cft-1"]) == []
    assert len(server.requests) == 2 and len(server.writers) == 2


async def test_an_answer_cut_short_is_our_error_and_a_submit_is_not_sent_again(http_client: AioHttpClient) -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        body = b'{"code": 0, "msg": "Success", "data": {"prompt_id": "cft-1", "prompt_token": "tok"}}'
        writer.write(answer(body)[:-10])  # Content-Length says ten bytes more than come
        await writer.drain()
        return False

    async with (
        raw_server(cut_short) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client, max_retries=2) as client,
    ):
        with pytest.raises(APIConnectionError) as raised:
            await client.submit(T2I)
    assert raised.value.request_sent is True and len(server.requests) == 1
    cause = raised.value.__cause__
    assert isinstance(cause, httpx.TransportError) and cause.request.url.path == GS.SUBMIT_PATH


async def test_a_gzipped_api_answer_is_inflated_over_aiohttp(http_client: AioHttpClient) -> None:
    body = gzip.compress(b'{"code": 0, "msg": "Success", "data": {"comfy_task_info": []}}')

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        return True

    async with (
        raw_server(gzipped) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client) as client,
    ):
        assert await client.get_tasks(["cft-1"]) == []


async def test_an_endless_download_is_cut_off_at_the_cap_and_leaves_nothing(
    http_client: AioHttpClient, tmp_path: Path
) -> None:
    block = PNG_SIGNATURE + b"\x00" * (64 * 1024 - len(PNG_SIGNATURE))

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(ok_head(None, extra="Connection: close\r\n"))
        while True:  # until the client hangs up
            writer.write(block)
            await writer.drain()

    async with (
        raw_server(endless) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client,
                       max_download_bytes=256 * 1024) as client,
    ):
        with pytest.raises(ResponseTooLargeError, match="max_download_bytes"):
            await client.download(result_of(server.url("image.png")), tmp_path)
    assert files_in(tmp_path) == []


# --- the wire: signed URLs, credentials -------------------------------------------------------------------------


async def test_a_signed_url_goes_out_byte_for_byte_and_without_the_key(
    http_client: AioHttpClient, tmp_path: Path
) -> None:
    async def store(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(ok_head(len(PAYLOAD)) + PAYLOAD)
        await writer.drain()
        return True

    query = "Expires=9999999999&OSSAccessKeyId=LTAI5t&Signature=ab%2Bc%2Fd%3D&x-oss-process=a%7Eb"
    async with (
        raw_server(store) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client) as client,
    ):
        url = server.url("image.png", query)
        target = url.removeprefix(server.origin)
        paths = await client.download(result_of(url), tmp_path)
    assert [path.read_bytes() for path in paths] == [PAYLOAD]
    request_line = server.requests[0].split(b"\r\n")[0].decode()
    assert request_line == f"GET {target} HTTP/1.1"  # %2F, %2B, %7E as they were
    assert b"authorization" not in server.requests[0].lower()


async def test_an_error_answer_that_echoes_the_key_is_redacted(http_client: AioHttpClient) -> None:
    async def echo_key(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        writer.write(answer(f'{{"code": 401, "msg": "bad key {API_KEY}"}}'.encode(), status="401 Unauthorized"))
        await writer.drain()
        return True

    async with (
        raw_server(echo_key) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client) as client,
    ):
        with pytest.raises(AuthenticationError) as raised:
            await client.submit(T2I)
    assert API_KEY not in str(raised.value) and API_KEY not in repr(raised.value.body)
    assert f"Bearer {API_KEY}".encode() in server.requests[0]  # the key did go, to the API


# --- the helper itself ------------------------------------------------------------------------------------------


async def test_the_helper_keeps_the_sdks_pool_and_timeouts_and_follows_no_redirect() -> None:
    async with AioHttpClient() as client:
        assert client.timeout == httpx.Timeout(30.0, connect=10.0)
        assert client.follow_redirects is False
    async with AioHttpClient(timeout=5.0, headers={"X-Tenant": "t1"}) as client:
        assert client.timeout == httpx.Timeout(5.0) and client.headers["X-Tenant"] == "t1"


def test_without_the_extra_the_helper_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "genstudio_async._aiohttp_transport", raising=False)
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # what `import aiohttp` does when it is not installed
    assert genstudio_async.AioHttpClient is AioHttpClient  # importing the name needs no extra; using it does
    with pytest.raises(ImportError, match=r"pip install 'genstudio-async\[aiohttp\]'"):
        AioHttpClient()


def test_the_helper_loads_what_the_sdks_back_off_needs_before_descriptors_run_out() -> None:
    # Under ulimit -n 1024 with thousands of sockets, anyio's lazy import of its backend at the first back-off
    # failed with a raw OSError (EMFILE): over httpx the first request imports it, over aiohttp nothing did.
    probe = (
        "import sys\n"
        "from genstudio_async import AioHttpClient\n"
        "AioHttpClient()\n"
        "print('anyio._backends._asyncio' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "True"


# --- the SDK's own httpx client ----------------------------------------------------------------------------------


async def test_the_sdks_own_pool_checks_idle_connections_on_the_socket_itself(genstudio_emulator: Emulator) -> None:
    import anyio.abc

    from genstudio_async._transports import ReadinessCachingBackend

    emu = genstudio_emulator
    asked: list[object] = []
    original = anyio.abc.SocketStream.extra_attributes

    def counted(self: anyio.abc.SocketStream) -> object:
        asked.append(self)
        return original.fget(self)  # type: ignore[attr-defined]

    async with AsyncGenStudio(emu.api_key, base_url=emu.base_url) as client:
        pool = client._http_client._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, ReadinessCachingBackend)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(anyio.abc.SocketStream, "extra_attributes", property(counted))
            await asyncio.gather(*(client.submit(T2I) for _ in range(30)))
            await asyncio.gather(*(client.submit(T2I) for _ in range(30)))
    # Connections opened (one look each for the socket), but no look per request at every pooled connection.
    assert len(asked) <= 2 * 30


async def test_a_kept_alive_connection_the_server_closed_is_not_used_again() -> None:
    # The readiness check is what tells the pool that the server hung up on an idle connection: a submit sent on
    # it would be lost (and, the server may have read it, never sent again).
    async def answer_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        await answer_submits(reader, writer, head)
        return False  # closes the connection once answered, without saying "Connection: close"

    async with (
        raw_server(answer_then_hang_up) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, max_retries=0) as client,
    ):
        for _ in range(3):
            assert (await client.submit(T2I)).prompt_id == "cft-1"
            await asyncio.wait_for(server._no_connections.wait(), 10)  # the server's side is closed
    assert len(server.requests) == 3


# --- cookies ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_an_answer_sets_its_cookies_and_one_without_costs_no_cookie_pass(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.cookiejar

    passes: list[object] = []
    original = http.cookiejar.CookieJar.extract_cookies

    def counted(self: http.cookiejar.CookieJar, response: object, request: object) -> None:
        passes.append(response)
        original(self, response, request)  # type: ignore[arg-type]

    monkeypatch.setattr(http.cookiejar.CookieJar, "extract_cookies", counted)
    answers = iter([b"Set-Cookie: session=s-42; Path=/\r\n", b""])

    async def submits(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
        writer.write(answer(SUBMITTED).replace(b"\r\n\r\n", b"\r\n" + next(answers) + b"\r\n", 1))
        await writer.drain()
        return True

    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(raw_server(submits))
        given = await stack.enter_async_context(AioHttpClient()) if transport == "aiohttp" else None
        client = await stack.enter_async_context(AsyncGenStudio(API_KEY, base_url=server.origin, http_client=given))
        await client.submit(T2I)  # sets a cookie: read as httpx reads it
        assert client._http_client.cookies.get("session") == "s-42"
        assert len(passes) == 1
        await client.submit(T2I)  # sets none: no pass through http.cookiejar
        assert len(passes) == 1
        assert client._http_client.cookies.get("session") == "s-42"


# --- reading an answer ------------------------------------------------------------------------------------------


async def test_an_uncoded_answer_is_read_whole_and_a_gzipped_one_through_httpx(
    http_client: AioHttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The aiohttp transport hands an uncoded body over whole: no stack of httpx's async generators per request.
    raw_reads: list[httpx.Response] = []
    original = httpx.Response.aiter_raw

    def counted(self: httpx.Response, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        raw_reads.append(self)
        return original(self, chunk_size)

    monkeypatch.setattr(httpx.Response, "aiter_raw", counted)
    plain = SUBMITTED
    gzipped = gzip.compress(SUBMITTED)
    answers = iter([(b"", plain), (b"Content-Encoding: gzip\r\n", gzipped)])

    async def submits(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> bool:
        await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
        coding, body = next(answers)
        writer.write(answer(body).replace(b"\r\n\r\n", b"\r\n" + coding + b"\r\n", 1))
        await writer.drain()
        return True

    async with (
        raw_server(submits) as server,
        AsyncGenStudio(API_KEY, base_url=server.origin, http_client=http_client) as client,
    ):
        first = await client.submit(T2I)
        assert raw_reads == []
        second = await client.submit(T2I)  # inflated by the SDK, a step at a time, as before
        assert len(raw_reads) == 1
    assert first.prompt_id == second.prompt_id != ""
    assert len(server.writers) == 1  # the answer read whole gave its connection back for the next request
