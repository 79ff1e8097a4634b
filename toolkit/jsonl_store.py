"""Files that survive `kill -9` at any instant: append-only JSONL stores and the one atomic whole-file writer.

A store row is written with one `write()` on an O_APPEND descriptor, then fsync'd, so a killed writer leaves at worst
a torn last line: bytes after the last newline, possibly cut inside a multi-byte character or just before the newline.
Readers skip that tail, and `JsonlStore.open()` cuts it off in place (one `truncate()`, never a rewrite of what came
before) so the next row starts on a line boundary instead of being glued to it. A store may start with a header row
saying what made the rows; it is created atomically with the file. Used by the synthesis shards
(dataset_scripts/shards.py) and the evaluation cache (recipes/benchmarks/cache.py).
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path


class JsonlError(ValueError):
    """A complete line of a store that is not a JSON object: damage from outside, not from a kill."""


def write_all(fd: int, data: bytes) -> None:
    """All of `data`, however many write() calls it takes (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Replace `path` whole or not at all: write a private sibling, fsync it, rename it over `path`, fsync the folder.

    On any failure (a full disk included) the sibling is removed and the error re-raised; `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, data.encode("utf-8") if isinstance(data, str) else data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename has happened all the same
    finally:
        os.close(folder)


def iter_jsonl(path: str | Path, strict: bool = False) -> Iterator[dict]:
    """Rows of a store, streamed; a torn (unterminated) last line is ignored, its work is simply redone.

    A complete line that is not a JSON object can only come from outside tampering: skipped, or with `strict` a
    `JsonlError` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
                row, problem = None, str(error)
            else:
                problem = "not a JSON object"
            if isinstance(row, dict):
                yield row
            elif strict:
                raise JsonlError(f"{path}, line {number}: {problem}.")


def cut_torn_tail(path: str | Path, block: int = 1 << 16) -> None:
    """Truncate a file after its last newline (drop the half line a kill left), scanning backwards."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("r+b") as handle:
        end = handle.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(0, position - block)
            handle.seek(start)
            newline = handle.read(position - start).rfind(b"\n")
            if newline >= 0:
                position = start + newline + 1
                break
            position = start
        if position != end:
            handle.truncate(position)
            handle.flush()
            os.fsync(handle.fileno())


def _encode_row(row: dict) -> bytes:
    return (json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


class JsonlStore:
    """One append-only JSONL file; `append` is thread-safe and durable once it returns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._lock = threading.Lock()

    def open(self, header: dict | None = None) -> None:
        """Cut a torn tail; a file with no complete line starts over with `header` (if given) as its first row."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut_torn_tail(self.path)
        if header is not None and (not self.path.exists() or self.path.stat().st_size == 0):
            atomic_write(self.path, _encode_row(header))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def rows(self, strict: bool = False) -> Iterator[dict]:
        return iter_jsonl(self.path, strict)

    def append(self, row: dict) -> None:
        """One line, one write(), then fsync: a reader never sees half a row except as a torn last line."""
        self.append_many([row])

    def append_many(self, rows: list[dict]) -> None:
        """Several lines in one write() and one fsync (a group commit); a kill leaves at worst a torn last line.

        A failed write (a full disk) is undone back to the last whole line before the `OSError` is re-raised, so the
        store stays appendable and every row already written is kept.
        """
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not open for appending")
        data = b"".join(_encode_row(row) for row in rows)
        with self._lock:  # writers in threads: whole lines at a time
            size = os.fstat(self._fd).st_size
            try:
                written = os.write(self._fd, data)
                if written != len(data):  # regular files do not short-write unless the disk is full
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
            except OSError:
                try:
                    os.ftruncate(self._fd, size)  # undo the partial lines, so the next append starts a whole one
                except OSError:
                    pass  # the torn tail is cut by the next open()
                raise
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
