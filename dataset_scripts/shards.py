"""The synthesis output folder: append-only JSONL shards that survive `kill -9` at any instant.

Layout of `--output DIR` (n = --num-shards, i = --shard-index, both zero-padded to 5 digits):
    records-i-of-n.jsonl   one finished record per line
    rejects-i-of-n.jsonl   replies that failed validation after all retries (reason + raw text)
    skipped-i-of-n.jsonl   inputs left out (unreadable, truncated, oversized, unreachable, duplicate, ...)
    batches-i-of-n.jsonl   --api batch only: files uploaded, batches created and collected, inputs between rounds
    spent-i-of-n.jsonl     billed usage of inputs given up before a record or reject (counted in costs and budget)
    summary-i-of-n.json    written at the end of every run (atomic replace)
    images-i-of-n.pack     the images exactly as sent, each stored once (records name pack, offset and length;
                           dataset_scripts/image_pack.py)

Lines are written with one `write()` on an O_APPEND descriptor, then fsync'd, so a killed run leaves at worst a
torn last line; `open()` cuts it off before appending. Writes are thread-safe; the runner hands them over in group
commits (`write_group`: many rows in one write and one fsync per file, off the event loop). Images are made durable
before the records that name them. A failed write (a full disk) is undone back to the last whole line (or image) and
raised as `OutputWriteError`.

One folder, one layout: processes may share a folder only as different shards of the same `--num-shards` (their
inputs never overlap). Each holds `flock` on `.lock-<shard>` (holding its pid) for its whole run; a starting process
checks the others under the brief folder lock `.lock`. The kernel drops a dead process's locks, so a killed run never
blocks a rerun; a process that finds itself alone removes the temporary summary files killed runs left behind.
The store itself: toolkit/jsonl_store.py.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from dataset_scripts.image_pack import ImagePack, read_packed
from toolkit.jsonl_store import (  # noqa: F401 (atomic_write, cut_torn_tail, iter_jsonl: re-exported)
    JsonlStore,
    atomic_write,
    cut_torn_tail,
    iter_jsonl,
)


KINDS = ("records", "rejects", "skipped")  # opened by every run; "batches" only once a batch run writes to it


class ShardLockedError(RuntimeError):
    """Another live process writes the same shard, or the same folder with another --num-shards."""


class OutputWriteError(RuntimeError):
    """Writing to the output folder failed (a full disk, a read-only mount); what was saved before is kept whole."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(f"cannot write {path}: {error.strerror or error}")


def _write_new_file(target: Path, data: str | bytes) -> None:
    """`atomic_write`, with a failure (a full disk) reported as `OutputWriteError`; nothing is left behind."""
    try:
        atomic_write(target, data)
    except OSError as error:
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


class OutputDir:
    """One shard's files in an output folder, locked against a second writer for the same shard."""

    def __init__(self, root: str | Path, shard_index: int = 0, num_shards: int = 1) -> None:
        self.root = Path(root)
        self.tag = shard_tag(shard_index, num_shards)
        self._stores: dict[str, JsonlStore] = {}
        self._pack = ImagePack(self.path("images"))
        self._lock_fd: int | None = None

    def path(self, kind: str) -> Path:
        suffix = {"summary": "json", "images": "pack"}.get(kind, "jsonl")
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
                self._stores[kind] = JsonlStore(self.path(kind))
                self._stores[kind].open()
            self._pack.open()
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
            for orphan in self.root.glob("*.tmp-*"):
                orphan.unlink(missing_ok=True)

    def append(self, kind: str, row: dict) -> None:
        """One line, one write(), then fsync: a reader never sees half a record except as a torn last line."""
        self.write_group([(kind, row, None)])

    def store_image(self, data: bytes) -> dict:
        """Store the bytes in this shard's pack now; returns the fields a record names them by."""
        (reference,) = self._add_images([data])
        return reference

    def _add_images(self, images: list[bytes]) -> list[dict]:
        """Store the images in the pack; for each, the record fields naming it."""
        try:
            located = self._pack.add_many(images)
        except OSError as error:
            raise OutputWriteError(self._pack.path, error) from None
        name = self._pack.path.name
        return [{"image": name, "image_offset": offset, "image_length": length} for offset, length in located]

    def write_group(self, rows: list[tuple[str, dict, bytes | None]]) -> None:
        """A group commit of (kind, row, image bytes or None): the images, then the rows, one write() and fsync each.

        A row given image bytes gets the fields naming them (`image`, `image_offset`, `image_length`); the images are
        durable before any row is written, so a record never names bytes that are not there.
        """
        with_image = [row for _, row, data in rows if data is not None]
        locations = self._add_images([data for *_, data in rows if data is not None]) if with_image else []
        for row, reference in zip(with_image, locations, strict=True):
            row.update(reference)
        by_kind: dict[str, list[dict]] = {}
        for kind, row, _ in rows:
            by_kind.setdefault(kind, []).append(row)
        for kind, kind_rows in by_kind.items():
            try:
                if kind not in self._stores:
                    store = JsonlStore(self.path(kind))
                    store.open()
                    self._stores[kind] = store
                self._stores[kind].append_many(kind_rows)
            except OSError as error:
                raise OutputWriteError(self.path(kind), error) from None

    def write_summary(self, summary: dict) -> Path:
        target = self.path("summary")
        _write_new_file(target, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return target

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        self._pack.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def read_image(folder: str | Path, record: dict) -> bytes:
    """The image bytes a record (or a batch-mode input) names: a pack entry, or a whole file (older folders)."""
    path = Path(folder) / record["image"]
    if record.get("image_offset") is None:
        return path.read_bytes()
    return read_packed(path, record["image_offset"], record["image_length"])
