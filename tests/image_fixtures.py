"""Hostile image bytes for the image-safety tests."""

import struct
import zlib


def bomb_png(width: int = 13000, height: int = 13000) -> bytes:
    """A PNG header claiming width x height grey pixels, with one small IDAT: decoding it would allocate it all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
