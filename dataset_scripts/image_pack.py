"""One append-only file of images per shard: a whole batch of images costs one write() and one fsync.

Layout: entries back to back, each a 40-byte header (SHA-256 digest of the bytes, then their length as 8 bytes
little-endian) followed by the bytes exactly as sent to the teacher. A record names its image by the pack's file name,
the offset of the bytes and their length (`image`, `image_offset`, `image_length`).

Why not one file per image: each small file costs its own create, write, fsync and rename -- measured ~0.5 ms of CPU
per image on ext4, against ~0.01 ms in a pack (docs/benchmarks.md) -- and a million files are slow to copy or upload.

Crash safety, as for the JSONL stores: the pack is fsync'd before any record naming its entries is written, so a
killed writer leaves at worst a torn last entry that no record names; `open()` cuts it off. A failed write (a full
disk) is cut back to the last whole entry. Identical bytes are stored once per pack: `open()` rebuilds the index of
digests by reading the headers only (one small read per entry).
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from pathlib import Path

from toolkit.jsonl_store import write_all


HEADER = struct.Struct("<32sQ")  # sha256 digest, length of the bytes that follow


class PackError(ValueError):
    """A record names bytes that are not where it says: a pack from elsewhere, damaged, or cut short."""


def read_packed(path: str | Path, offset: int, length: int) -> bytes:
    """The bytes of one entry, checked against its header (a wrong offset or a cut file is an error, not garbage)."""
    with open(path, "rb") as handle:
        handle.seek(max(offset - HEADER.size, 0))
        header = handle.read(HEADER.size)
        data = handle.read(length)
    if offset < HEADER.size or len(header) < HEADER.size or HEADER.unpack(header)[1] != length:
        raise PackError(f"{path}: no image of {length} bytes starts at offset {offset}")
    if len(data) != length:
        raise PackError(f"{path}: cut short at {offset + len(data)} bytes, inside the image at offset {offset}")
    return data


class ImagePack:
    """The writer of one pack; thread-safe (`add_many` may be called from several threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._size = 0
        self._index: dict[bytes, tuple[int, int]] = {}  # digest -> (offset, length)
        self._lock = threading.Lock()

    def open(self) -> None:
        """Index the entries already there and cut a torn last entry, so appends start on an entry boundary."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        end, offset = os.fstat(self._fd).st_size, 0
        while offset + HEADER.size <= end:
            digest, length = HEADER.unpack(os.pread(self._fd, HEADER.size, offset))
            if offset + HEADER.size + length > end:
                break
            self._index.setdefault(digest, (offset + HEADER.size, length))
            offset += HEADER.size + length
        if offset != end:
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        self._size = offset

    def add_many(self, images: list[bytes]) -> list[tuple[int, int]]:
        """Store the images (each distinct one once) and return each one's (offset, length); durable on return.

        On a failure (a full disk) the pack is cut back to where it was and the OSError re-raised.
        """
        with self._lock:
            located, new, size = [], [], self._size
            fresh: dict[bytes, tuple[int, int]] = {}
            for data in images:
                digest = hashlib.sha256(data).digest()
                where = self._index.get(digest) or fresh.get(digest)
                if where is None:
                    where = fresh[digest] = (size + HEADER.size, len(data))
                    new += [HEADER.pack(digest, len(data)), data]
                    size += HEADER.size + len(data)
                located.append(where)
            if new:
                try:
                    write_all(self._fd, b"".join(new))
                    os.fsync(self._fd)
                except BaseException:
                    os.ftruncate(self._fd, self._size)
                    raise
                self._size = size
                self._index.update(fresh)
            return located

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
