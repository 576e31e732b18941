"""Helpers shared across the test suite: waiting for a condition, reading and writing PNGs, a clean stderr."""

from __future__ import annotations

import asyncio
import gzip
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def eventually(
    condition: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition", interval: float = 0.01
) -> None:
    """Poll ``condition()`` every ``interval`` s (the event loop keeps running meanwhile); fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def png_size(png: bytes | Path) -> tuple[int, int]:
    """The size in a PNG's IHDR (the PNG's bytes or its file), after checking the signature and the IHDR's CRC."""
    data, name = (png.read_bytes(), str(png)) if isinstance(png, Path) else (png, "data")
    assert data.startswith(PNG_SIGNATURE), f"{name} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, f"{name}: no IHDR chunk first"
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(data[12:29]), f"{name}: bad IHDR CRC"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Check PNG bytes by hand: signature, IHDR (RGB 8-bit), every chunk's CRC; return width, height, raw rows."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG signature"
    offset, width, height, idat = 8, 0, 0, b""
    kinds = []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            width, height, depth, color_type = struct.unpack(">IIBB", payload[:10])
            assert (depth, color_type) == (8, 2)
        elif kind == b"IDAT":
            idat += payload
        offset += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


def tiny_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` grey pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def no_crash(stderr: str) -> None:
    """No sign on stderr of a crash, a leaked task or an unclosed resource."""
    for sign in ("Traceback", "Task was destroyed", "never retrieved", "Unclosed", "ResourceWarning", "internal error"):
        assert sign not in stderr, stderr


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_http_server(handler: RawHandler) -> AsyncIterator[str]:
    """A server on 127.0.0.1 (a free port) that hands each connection to ``handler`` and yields its origin.

    For servers no well-behaved framework would be: dripping headers, endless or lying bodies. Each connection's
    handler is cancelled and its socket closed when the block ends.
    """
    connections: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            connections.discard(task)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    """The request line and headers of one HTTP/1.1 request (the body, if any, is left unread)."""
    return await reader.readuntil(b"\r\n\r\n")


def zero_bomb(mebibytes: int, *, layers: int = 1, wbits: int = 31) -> bytes:
    """``mebibytes`` MiB of zero bytes compressed (``wbits``: 31 gzip, 15 zlib, -15 raw deflate), then gzipped
    again once per further layer: a few kilobytes on the wire, ``mebibytes`` MiB once inflated."""
    squeezer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1 << 20)
    data = b"".join(squeezer.compress(block) for _ in range(mebibytes)) + squeezer.flush()
    for _ in range(layers - 1):
        data = gzip.compress(data, 9)
    return data


@dataclass
class Peak:
    bytes: int = 0


@contextmanager
def peak_memory() -> Iterator[Peak]:
    """How much more memory Python held at its peak inside the block than when it began (``tracemalloc``).

    For asserting that a body was never held whole: deterministic, unlike the process's RSS.
    """
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    peak = Peak()
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1] - before
        if started_here:
            tracemalloc.stop()
