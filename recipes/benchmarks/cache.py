"""Append-only per-sample cache: a crashed or interrupted run continues without redoing finished samples.

The file is an append-only JSONL store (toolkit/jsonl_store.py): a kill at any instant leaves at worst a
torn last line, which is cut off on the next open (that sample is redone). Line 1 holds the settings that decide a
sample's answer (model and a fingerprint of its files, dtype, generation settings, prompt variant, judge, data
provenance); a run with other settings is refused, naming what differs, so answers are never mixed. Later lines
are one record each, fsync'd as soon as the sample is done; a later record for the same id replaces an earlier one
(a judge failure re-judged on resume).

Under data parallelism (`SharedCache`) every process appends to a file of its own (one writer per file:
cache/<name>.jsonl for the main process, cache/<name>.rank<R>.jsonl for process R) and reads all of them, so a
rerun with any process count finds every answer already made.
"""

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from toolkit.jsonl_store import JsonlError, JsonlStore, iter_jsonl


# The files that hold a checkpoint's weights and architecture (not results or notes a user may keep beside them).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
WEIGHT_NAMES = ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")


class CacheError(ValueError):
    """The cache cannot be continued by this run: other settings, or damage from outside."""


def _local_folder(name_or_path: str) -> Path | None:
    """The folder a model was loaded from: a local path, or the Hub id's snapshot in the local Hub cache."""
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    try:
        config = try_to_load_from_cache(name_or_path, "config.json")
    except ValueError:  # not a valid repo id: nothing to fingerprint beyond the name
        return None
    return Path(config).parent if isinstance(config, str) else None


def weights_fingerprint(name_or_path: str) -> str | None:
    """Names, sizes and modification times of the checkpoint's weight and config files, hashed: new weights at the
    same path (or a Hub snapshot at another commit) change it, without reading gigabytes. None without local files."""
    folder = _local_folder(name_or_path)
    if folder is None:
        return None
    entries = []
    for path in sorted(folder.iterdir()):
        if (path.suffix in WEIGHT_SUFFIXES or path.name in WEIGHT_NAMES) and path.is_file():
            stat = path.stat()
            entries.append((path.name, stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def _differences(stored: dict, settings: dict) -> str:
    changed = sorted(key for key in {**stored, **settings} if stored.get(key) != settings.get(key))
    values = "; ".join(f"{key} was {stored.get(key)!r}, now {settings.get(key)!r}" for key in changed)
    return f"{', '.join(changed)} differ: {values}"


def read_records(path: Path, rows: Iterator[dict], settings: dict) -> Iterator[dict]:
    """The records of a cache file whose header holds `settings`; CacheError for another header or a damaged line."""
    try:
        stored = (next(rows, None) or {}).get("settings")
        if not isinstance(stored, dict):
            raise CacheError(f"{path}, line 1: not an evaluation cache header; use another --output folder.")
        if stored != settings:
            raise CacheError(
                f"{path}: cached answers were made with other settings ({_differences(stored, settings)}); "
                "use another --output folder, or delete this file to start over."
            )
        for number, record in enumerate(rows, start=1):
            if not isinstance(record.get("id"), str):
                raise CacheError(f"{path}: record {number} has no string 'id'.")
            yield record
    except JsonlError as error:
        raise CacheError(f"{error} Delete that line (the sample is redone) or the file.") from None


class SampleCache:
    """{sample id: record} read back from the file, plus `append` for new records; use as a context manager."""

    def __init__(self, path: Path, settings: dict):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        settings = json.loads(json.dumps(settings))  # as it will read back (tuples become lists)
        self.settings = settings
        self._store = JsonlStore(self.path)
        self._store.open(header={"settings": settings})
        try:
            self._read(settings)
        except BaseException:
            self._store.close()
            raise

    def _read(self, settings: dict) -> None:
        for record in read_records(self.path, self._store.rows(strict=True), settings):
            self.records[record["id"]] = record

    def append(self, record: dict) -> None:
        self.append_many([record])

    def append_many(self, records: list[dict]) -> None:
        """Records in one write and one fsync (a batch's answers land together)."""
        self._store.append_many(records)
        for record in records:
            self.records[record["id"]] = record

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "SampleCache":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _rank_of(path: Path, name: str) -> int | None:
    """0 for cache/<name>.jsonl, R for cache/<name>.rank<R>.jsonl, None for any other file."""
    if path.name == f"{name}.jsonl":
        return 0
    match = re.fullmatch(rf"{re.escape(name)}\.rank(\d+)\.jsonl", path.name)
    return int(match.group(1)) if match else None


class SharedCache:
    """One benchmark's answers across the files of every process count that worked on it.

    This process appends to its own file only; the others' files are read (never cut or written: their writers may
    be running). A sample can have records in several files (a batch regenerated after a kill, a verdict added by
    the main process): `record(id, batch)` is the last one made in that batch, reading the other files in rank
    order, then this process's own.
    """

    def __init__(self, folder: Path, name: str, settings: dict, rank: int):
        self.folder, self.name, self.rank = Path(folder), name, rank
        filename = f"{name}.jsonl" if rank == 0 else f"{name}.rank{rank}.jsonl"
        self.own = SampleCache(self.folder / filename, settings)
        self.refresh()

    def refresh(self) -> None:
        """Read the other processes' files again (after they finished their shares)."""
        others = sorted(
            (rank, path) for path in self.folder.iterdir() if (rank := _rank_of(path, self.name)) is not None
        )
        self._candidates: dict[str, list[dict]] = {}
        for rank, path in others:
            if rank != self.rank:
                for record in read_records(path, iter_jsonl(path, strict=True), self.own.settings):
                    self._candidates.setdefault(record["id"], []).append(record)
        for record in iter_jsonl(self.own.path, strict=True):
            if "id" in record:  # the header was checked when the file was opened
                self._candidates.setdefault(record["id"], []).append(record)

    def record(self, sample_id: str, batch: str | None = None) -> dict | None:
        """The latest record of `sample_id` made in `batch` (any batch: None), or None."""
        for record in reversed(self._candidates.get(sample_id, [])):
            if batch is None or record.get("batch") == batch:
                return record
        return None

    def append_many(self, records: list[dict]) -> None:
        self.own.append_many(records)
        for record in records:
            self._candidates.setdefault(record["id"], []).append(record)

    def close(self) -> None:
        self.own.close()
