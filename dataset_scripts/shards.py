"""The synthesis output folder: append-only JSONL shards that survive `kill -9` at any instant.

Layout of `--output DIR` (n = --num-shards, i = --shard-index, both zero-padded to 5 digits):
    records-i-of-n.jsonl   one finished record per line
    rejects-i-of-n.jsonl   replies that failed validation after all retries (reason + raw text)
    skipped-i-of-n.jsonl   inputs left out (unreadable, truncated, oversized, unreachable, duplicate, ...)
    summary-i-of-n.json    written at the end of every run (atomic replace)
    images/ab/<sha256>.<ext>   content-addressed copies of the images exactly as sent (records point here)

Each line is written with one `write()` on an O_APPEND descriptor, then fsync'd, so a killed run leaves at worst a
torn last line; `open()` cuts it off before appending. Writes are thread-safe (the runner fsyncs off the event
loop). Images are written (atomically) before the record that names them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path


KINDS = ("records", "rejects", "skipped")


class ShardLockedError(RuntimeError):
    """Another live process is writing the same shard of the same folder."""


def shard_tag(shard_index: int, num_shards: int) -> str:
    return f"{shard_index:05d}-of-{num_shards:05d}"


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """Rows of a shard file, streamed; a torn (unterminated) last line is ignored."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return  # torn by a kill mid-write: the work behind it is simply redone
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # only possible after outside tampering; the line's work is redone


def write_text_atomically(target: Path, text: str) -> None:
    """Write through a temporary file and an atomic rename: readers see the old file or the new one, never half."""
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)


def cut_torn_tail(path: Path, block: int = 1 << 16) -> None:
    """Truncate a file after its last newline (drop the half line a kill left), scanning backwards."""
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


class OutputDir:
    """One shard's files in an output folder, locked against a second writer for the same shard."""

    def __init__(self, root: str | Path, shard_index: int = 0, num_shards: int = 1) -> None:
        self.root = Path(root)
        self.tag = shard_tag(shard_index, num_shards)
        self._fds: dict[str, int] = {}
        self._write_lock = threading.Lock()
        self._lock_fd: int | None = None

    def path(self, kind: str) -> Path:
        suffix = "json" if kind == "summary" else "jsonl"
        return self.root / f"{kind}-{self.tag}.{suffix}"

    def open(self) -> None:
        """Lock the shard and cut torn last lines, so appends start on a line boundary."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.root / f".lock-{self.tag}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ShardLockedError(f"shard {self.tag} of {self.root} is being written by another process") from None
        for kind in KINDS:
            cut_torn_tail(self.path(kind))
            self._fds[kind] = os.open(self.path(kind), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, kind: str, row: dict) -> None:
        """One line, one write(), then fsync: a reader never sees half a record except as a torn last line."""
        line = (json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        fd = self._fds[kind]
        with self._write_lock:  # workers append from threads; one line at a time keeps lines whole
            written = os.write(fd, line)
        if written != len(line):  # regular files do not short-write unless the disk is full
            raise OSError(f"short write to {self.path(kind)}: {written} of {len(line)} bytes")
        os.fsync(fd)

    def store_image(self, data: bytes, extension: str) -> str:
        """Content-addressed copy under images/; returns the path relative to the output folder."""
        digest = hashlib.sha256(data).hexdigest()
        relative = f"images/{digest[:2]}/{digest}.{extension}"
        target = self.root / relative
        if target.exists() and target.stat().st_size == len(data):
            return relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        return relative

    def write_summary(self, summary: dict) -> Path:
        target = self.path("summary")
        write_text_atomically(target, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return target

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
