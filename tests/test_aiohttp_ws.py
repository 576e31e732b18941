"""The progress socket over aiohttp (``_aiohttp_ws``): what the stream relies on from websockets, kept.

The stream's behaviour over these sockets (to the terminal event, gaps, the idle watchdog, refused handshakes,
oversized frames, cancellation) runs in tests/test_stream.py, parametrized by ``via``.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from genstudio_async._aiohttp_ws import AioHttpSockets
from genstudio_async._sockets import OpenFailed, UnusableProxy


async def test_text_and_binary_frames_come_as_websockets_gives_them_and_a_close_code_is_kept() -> None:
    async def handler(socket: ServerConnection) -> None:
        await socket.send("text")
        await socket.send(b"\x00binary")
        await socket.close(4001, "bye")

    sockets = AioHttpSockets()
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        socket = await sockets.connect(f"ws://127.0.0.1:{port}/?token=a%2Fb", proxy=None)
        try:
            assert await socket.recv() == "text"
            assert await socket.recv() == b"\x00binary"
            with pytest.raises(ConnectionClosed) as closed:
                await socket.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
        finally:
            await socket.close()
        assert socket.state.name == "CLOSED"
    await sockets.aclose()


async def test_the_url_goes_as_it_is_never_re_quoted() -> None:
    paths: list[str] = []

    async def handler(socket: ServerConnection) -> None:
        assert socket.request is not None
        paths.append(socket.request.path)
        await socket.close()

    sockets = AioHttpSockets()
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        socket = await sockets.connect(f"ws://127.0.0.1:{port}/ws?token=a%2Fb%3D", proxy=None)
        await socket.close()
    await sockets.aclose()
    assert paths == ["/ws?token=a%2Fb%3D"]


async def test_a_socks_proxy_is_refused_before_any_connection() -> None:
    sockets = AioHttpSockets()
    with pytest.raises(UnusableProxy):
        await sockets.connect("ws://127.0.0.1:9/ws", proxy="socks5://127.0.0.1:9")
    await sockets.aclose()


async def test_an_http_proxy_from_the_environment_carries_the_handshake() -> None:
    """The proxy the client read from the environment is the one used; its failure is a socket that did not open."""
    first_lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first_lines.append(await reader.readline())
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sockets = AioHttpSockets()
    try:
        with pytest.raises(OpenFailed) as failed:
            await sockets.connect("ws://genstudio.invalid/ws?token=SECRET-TOKEN", proxy=f"http://127.0.0.1:{port}")
        assert "SECRET-TOKEN" not in str(failed.value)
    finally:
        await sockets.aclose()
        server.close()
        await server.wait_closed()
    # (aiohttp tries an idempotent GET a second time when the peer hangs up: a handshake, never a submit)
    assert first_lines and all(line.startswith(b"GET ws://genstudio.invalid/ws?") for line in first_lines)


async def test_a_closed_session_opens_nothing() -> None:
    sockets = AioHttpSockets()
    await sockets.aclose()
    with pytest.raises(OpenFailed):
        await sockets.connect("ws://127.0.0.1:9/ws", proxy=None)
