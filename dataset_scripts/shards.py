"""The synthesis output folder: append-only JSONL shards that survive `kill -9` at any instant.

Layout of `--output DIR` (n = --num-shards, i = --shard-index, both zero-padded to 5 digits):
    records-i-of-n.jsonl   one finished record per line
    rejects-i-of-n.jsonl   replies that failed validation after all retries (reason + raw text)
    skipped-i-of-n.jsonl   inputs left out (unreadable, truncated, oversized, unreachable, duplicate, ...)
    summary-i-of-n.json    written at the end of every run (atomic replace)
    images/ab/<sha256>.<ext>   content-addressed copies of the images exactly as sent (records point here)

Each line is written with one `write()` on an O_APPEND descriptor, then fsync'd, so a killed run leaves at worst a
torn last line; `open()` cuts it off before appending. Writes are thread-safe (the runner fsyncs off the event
loop). Images are written (atomically) before the record that names them. A failed write (a full disk) is undone
back to the last whole line and raised as `OutputWriteError`; an image's temporary file is removed.

One folder, one layout: processes may share a folder only as different shards of the same `--num-shards` (their
inputs never overlap). Each holds `flock` on `.lock-<shard>` (holding its pid) for its whole run; a starting process
checks the others under the brief folder lock `.lock`. The kernel drops a dead process's locks, so a killed run never
blocks a rerun; a process that finds itself alone removes the temporary files killed runs left behind.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path


KINDS = ("records", "rejects", "skipped")


class ShardLockedError(RuntimeError):
    """Another live process writes the same shard, or the same folder with another --num-shards."""


class OutputWriteError(RuntimeError):
    """Writing to the output folder failed (a full disk, a read-only mount); what was saved before is kept whole."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(f"cannot write {path}: {error.strerror or error}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_new_file(target: Path, data: bytes) -> None:
    """Write a temporary file beside `target`, fsync, rename over it; on failure leave nothing behind."""
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputWriteError(target, error) from None


def _holder(path: Path) -> str | None:
    """The pid written in a shard lock file if a live process holds its lock, else None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None  # free: its writer finished or died (the kernel released the lock)
    except BlockingIOError:
        return os.read(fd, 32).decode("ascii", "replace").strip() or "?"
    finally:
        os.close(fd)


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
        """Lock the shard (see the module notes) and cut torn last lines, so appends start on a line boundary."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            guard = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputWriteError(self.root, error) from None
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)  # held for a moment by each starting process: starts never interleave
            self._lock_shard()
        except ShardLockedError:
            self.close()
            raise
        except OSError as error:
            self.close()
            raise OutputWriteError(self.root, error) from None
        finally:
            os.close(guard)
        try:
            for kind in KINDS:
                cut_torn_tail(self.path(kind))
                self._fds[kind] = os.open(self.path(kind), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            self.close()
            raise OutputWriteError(self.root, error) from None

    def _lock_shard(self) -> None:
        layout = self.tag.split("-of-")[1]
        others = {}
        for path in sorted(self.root.glob(".lock-*-of-*")):
            pid = _holder(path)
            if pid is not None:
                others[path.name.removeprefix(".lock-")] = pid
        for tag, pid in others.items():
            if tag == self.tag or not tag.endswith(f"-of-{layout}"):
                what = "this shard" if tag == self.tag else f"shard {tag} (another --num-shards would redo its items)"
                raise ShardLockedError(
                    f"output folder {self.root} is in use by process {pid} writing {what}; "
                    "wait for it to finish or choose another --output"
                )
        self._lock_fd = os.open(self.root / f".lock-{self.tag}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free, unless taken without the folder lock
        except BlockingIOError:
            raise ShardLockedError(f"output folder {self.root}: shard {self.tag} is held by another process") from None
        os.ftruncate(self._lock_fd, 0)
        os.write(self._lock_fd, f"{os.getpid()}\n".encode())
        if not others:  # alone in the folder: every temporary file is an orphan of a killed or failed run
            for orphan in [*self.root.glob("images/*/*.tmp-*"), *self.root.glob("*.tmp-*")]:
                orphan.unlink(missing_ok=True)

    def append(self, kind: str, row: dict) -> None:
        """One line, one write(), then fsync: a reader never sees half a record except as a torn last line."""
        line = (json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        fd = self._fds[kind]
        with self._write_lock:  # workers append from threads; one line at a time keeps lines whole
            size = os.fstat(fd).st_size
            try:
                written = os.write(fd, line)
                if written != len(line):  # regular files do not short-write unless the disk is full
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
            except OSError as error:
                try:
                    os.ftruncate(fd, size)  # undo the partial line, so the next append starts a whole one
                except OSError:
                    pass  # the torn tail is cut by the next open()
                raise OutputWriteError(self.path(kind), error) from None
        try:
            os.fsync(fd)
        except OSError as error:
            raise OutputWriteError(self.path(kind), error) from None

    def store_image(self, data: bytes, extension: str) -> str:
        """Content-addressed copy under images/; returns the path relative to the output folder."""
        digest = hashlib.sha256(data).hexdigest()
        relative = f"images/{digest[:2]}/{digest}.{extension}"
        target = self.root / relative
        if target.exists() and target.stat().st_size == len(data):
            return relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputWriteError(target.parent, error) from None
        _write_new_file(target, data)
        return relative

    def write_summary(self, summary: dict) -> Path:
        target = self.path("summary")
        _write_new_file(target, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        return target

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
