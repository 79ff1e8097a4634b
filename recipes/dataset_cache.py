"""A content-keyed `datasets` cache folder for a local dataset folder, shared by the training mixture (data.py) and
the benchmark loader (benchmarks/data.py)."""

import hashlib
from pathlib import Path

import datasets


def local_cache_dir(folder: Path) -> str:
    """A `datasets` cache folder for one local dataset folder, keyed by its path and its files' sizes and times.

    datasets caches a local folder under `<folder name>/<subset>` only, blind to its path and contents, so a rebuilt
    folder (the demo rebuilds its dataset in place), or another folder of the same name, would be read from a stale
    cache. Unchanged folders keep reusing their cache; concurrent runs share it the way datasets shares any cache.
    """
    key = hashlib.sha256(str(folder.resolve()).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        key.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "allava_local" / key.hexdigest()[:16])
