"""Append-only per-sample cache: a crashed or interrupted run continues without redoing finished samples.

The file is an append-only JSONL store (toolkit/jsonl_store.py): a kill at any instant leaves at worst a
torn last line, which is cut off on the next open (that sample is redone). Line 1 holds the settings that decide a
sample's answer (model and a fingerprint of its files, dtype, generation settings, prompt variant, judge, data
provenance); a run with other settings is refused, naming what differs, so answers are never mixed. Later lines
are one record each, fsync'd as soon as the sample is done; a later record for the same id replaces an earlier one
(a judge failure re-judged on resume).
"""

import hashlib
import json
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from toolkit.jsonl_store import JsonlError, JsonlStore


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


class SampleCache:
    """{sample id: record} read back from the file, plus `append` for new records; use as a context manager."""

    def __init__(self, path: Path, settings: dict):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        settings = json.loads(json.dumps(settings))  # as it will read back (tuples become lists)
        self._store = JsonlStore(self.path)
        self._store.open(header={"settings": settings})
        try:
            self._read(settings)
        except BaseException:
            self._store.close()
            raise

    def _read(self, settings: dict) -> None:
        rows = self._store.rows(strict=True)
        try:
            stored = (next(rows, None) or {}).get("settings")
            if not isinstance(stored, dict):
                raise CacheError(f"{self.path}, line 1: not an evaluation cache header; use another --output folder.")
            if stored != settings:
                raise CacheError(
                    f"{self.path}: cached answers were made with other settings ({_differences(stored, settings)}); "
                    "use another --output folder, or delete this file to start over."
                )
            for number, record in enumerate(rows, start=1):
                if not isinstance(record.get("id"), str):
                    raise CacheError(f"{self.path}: record {number} has no string 'id'.")
                self.records[record["id"]] = record
        except JsonlError as error:
            raise CacheError(f"{error} Delete that line (the sample is redone) or the file.") from None

    def append(self, record: dict) -> None:
        self._store.append(record)
        self.records[record["id"]] = record

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "SampleCache":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
