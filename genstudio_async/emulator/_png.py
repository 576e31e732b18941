"""Real PNG images, written with zlib and struct (no imaging library), drawn from a seed and a prompt text.

``render_image(width, height, seed, text)`` draws a picture that is the same for the same inputs and visibly
different for another seed or text: a two-colour gradient, a few circles, rectangles and a diagonal band
placed by a hash of both, and a strip of coloured blocks along the bottom that spells the text's hash.
Rows are built with bytes operations rather than per-pixel Python, so a 512×512 image takes milliseconds.

Sizes are clamped: each side to 1..``EMULATOR_MAX_IMAGE_SIDE`` (2048) pixels, because a workflow may ask for
16384×16384 and the emulator should stay cheap. The emulator renders lazily, on the first download, in a
worker thread, and keeps a few recent results in memory.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
import zlib
from collections.abc import Iterable

from ._defaults import EMULATOR_MAX_IMAGE_SIDE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IDAT_CHUNK_SIZE = 1 << 20
_BRIGHTNESS_LEVELS = 48

Color = tuple[int, int, int]


def clamp_side(value: int) -> int:
    """One side of an image, clamped to 1..EMULATOR_MAX_IMAGE_SIDE pixels."""
    return max(1, min(EMULATOR_MAX_IMAGE_SIDE, int(value)))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def encode_png(width: int, height: int, rows: Iterable[bytes]) -> bytes:
    """An 8-bit RGB PNG from ``height`` rows of ``width * 3`` bytes each."""
    compressor = zlib.compressobj(6)
    compressed: list[bytes] = []
    for row in rows:
        compressed.append(compressor.compress(b"\x00" + row))
    compressed.append(compressor.flush())
    data = b"".join(compressed)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    parts = [PNG_SIGNATURE, _chunk(b"IHDR", header)]
    parts += [_chunk(b"IDAT", data[i : i + _IDAT_CHUNK_SIZE]) for i in range(0, len(data), _IDAT_CHUNK_SIZE)]
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of PNG bytes, or ``None`` if they are not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _blend(a: Color, b: Color, t: float) -> Color:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _random_color(rng: random.Random) -> Color:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def render_image(width: int, height: int, seed: int, text: str) -> bytes:
    """A PNG of (clamped) ``width`` × ``height`` drawn deterministically from ``seed`` and ``text``."""
    width, height = clamp_side(width), clamp_side(height)
    # surrogatepass: a prompt text may hold a lone surrogate (valid JSON "\\ud800"); it must not crash the download
    digest = hashlib.sha256(f"{seed}\x00{text}".encode("utf-8", "surrogatepass")).digest()
    text_digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    rng = random.Random(digest)
    left, right = _random_color(rng), _random_color(rng)

    # One horizontal gradient row, then a brightness ramp from top to bottom through translate tables.
    gradient = bytearray()
    for x in range(width):
        gradient += bytes(_blend(left, right, x / max(1, width - 1)))
    base_row = bytes(gradient)
    tables = [
        bytes(min(255, round(v * (0.45 + 0.75 * level / (_BRIGHTNESS_LEVELS - 1)))) for v in range(256))
        for level in range(_BRIGHTNESS_LEVELS)
    ]

    short_side = min(width, height)
    circles = [
        (rng.randrange(width), rng.randrange(height), max(1, rng.randrange(short_side // 10 + 1, short_side // 3 + 2)),
         bytes(_random_color(rng)))
        for _ in range(rng.randint(2, 4))
    ]
    rects = []
    for _ in range(rng.randint(1, 3)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        rects.append((x0, y0, x0 + rng.randrange(width // 8 + 1, width // 2 + 2),
                      y0 + rng.randrange(height // 8 + 1, height // 2 + 2), bytes(_random_color(rng))))
    band_slope = rng.uniform(-1.5, 1.5)
    band_offset = rng.uniform(0, width)
    band_width = max(1, width // rng.randint(8, 16))
    band_color = bytes(_random_color(rng))
    strip_top = height - max(1, height // 16)
    block_width = max(1, width // 16)
    strip_row = bytearray(base_row)
    for index in range(16):
        x0, x1 = index * block_width, min(width, (index + 1) * block_width)
        color = bytes(text_digest[index * 2 : index * 2 + 3].ljust(3, b"\x00"))
        strip_row[x0 * 3 : x1 * 3] = color * (x1 - x0)
    strip = bytes(strip_row)

    def rows() -> Iterable[bytes]:
        for y in range(height):
            if y >= strip_top:
                yield strip
                continue
            level = y * (_BRIGHTNESS_LEVELS - 1) // max(1, height - 1)
            row = bytearray(base_row.translate(tables[level]))
            band_x = int(band_offset + band_slope * y) % max(1, width)
            band_end = min(width, band_x + band_width)
            row[band_x * 3 : band_end * 3] = band_color * (band_end - band_x)
            for rx0, ry0, rx1, ry1, color in rects:
                if ry0 <= y < ry1:
                    x0, x1 = rx0, min(width, rx1)
                    row[x0 * 3 : x1 * 3] = color * (x1 - x0)
            for cx, cy, radius, color in circles:
                dy = y - cy
                if -radius < dy < radius:
                    dx = math.isqrt(radius * radius - dy * dy)
                    x0, x1 = max(0, cx - dx), min(width, cx + dx)
                    if x1 > x0:
                        row[x0 * 3 : x1 * 3] = color * (x1 - x0)
            yield bytes(row)

    return encode_png(width, height, rows())
