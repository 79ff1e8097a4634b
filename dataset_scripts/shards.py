"""The synthesis output folder: append-only JSONL shards that survive `kill -9` at any instant.

Layout of `--output DIR` (n = --num-shards, i = --shard-index, both zero-padded to 5 digits):
    records-i-of-n.jsonl   one finished record per line
    rejects-i-of-n.jsonl   replies that failed validation after all retries (reason + raw text)
    skipped-i-of-n.jsonl   inputs left out (unreadable, truncated, oversized, unreachable, duplicate, ...)
    summary-i-of-n.json    written at the end of every run (atomic replace)
    images/ab/<sha256>.<ext>   content-addressed copies of the images exactly as sent (records point here)

Each line is written with one `write()` on an O_APPEND descriptor, then fsync'd, so a killed run leaves at worst a
torn last line; `open()` cuts it off before appending. Writes are thread-safe (the runner fsyncs off the event
loop). Images are written (atomically) before the record that names them. (The store: dataset_scripts/jsonl_store.py.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from dataset_scripts.jsonl_store import JsonlStore, atomic_write, cut_torn_tail, iter_jsonl  # noqa: F401 (re-exported)


KINDS = ("records", "rejects", "skipped")


class ShardLockedError(RuntimeError):
    """Another live process is writing the same shard of the same folder."""


def shard_tag(shard_index: int, num_shards: int) -> str:
    return f"{shard_index:05d}-of-{num_shards:05d}"


class OutputDir:
    """One shard's files in an output folder, locked against a second writer for the same shard."""

    def __init__(self, root: str | Path, shard_index: int = 0, num_shards: int = 1) -> None:
        self.root = Path(root)
        self.tag = shard_tag(shard_index, num_shards)
        self._stores: dict[str, JsonlStore] = {}
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
            self._stores[kind] = JsonlStore(self.path(kind))
            self._stores[kind].open()

    def append(self, kind: str, row: dict) -> None:
        """One line, one write(), then fsync: a reader never sees half a record except as a torn last line."""
        self._stores[kind].append(row)

    def store_image(self, data: bytes, extension: str) -> str:
        """Content-addressed copy under images/; returns the path relative to the output folder."""
        digest = hashlib.sha256(data).hexdigest()
        relative = f"images/{digest[:2]}/{digest}.{extension}"
        target = self.root / relative
        if target.exists() and target.stat().st_size == len(data):
            return relative
        atomic_write(target, data)
        return relative

    def write_summary(self, summary: dict) -> Path:
        target = self.path("summary")
        atomic_write(target, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return target

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
