"""Writing a dataset folder that `load_dataset(<folder>, <subset>)` opens offline, and pushing it to the Hub.

Layout: `<out>/<subset>/train-XXXXX-of-YYYYY.parquet` (images embedded as bytes, streamed in bounded memory),
`<out>/README.md` (the card, whose YAML `configs:` maps each subset to its files) and `<out>/stats.json`.
Shared by build_dataset.py (synthesis shards) and import_allava4v.py (the original release).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataset_scripts.schema import SPLIT


ROW_GROUP = 100  # rows per parquet row group: small, since image rows are large


class DatasetFolderError(RuntimeError):
    """The output folder cannot be written as asked."""


def prepare_output(out: str | Path, overwrite: bool) -> Path:
    """An empty output folder; an existing non-empty one is replaced only with `overwrite` (no stale files)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DatasetFolderError(f"{out} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


class _SubsetFiles:
    def __init__(self, folder: Path, rows_per_file: int, schema: pa.Schema) -> None:
        self.folder = folder
        self.rows_per_file = rows_per_file
        self.schema = schema
        self.files: list[Path] = []
        self.writer: pq.ParquetWriter | None = None
        self.in_file = 0
        self.batch: list[dict] = []
        self.rows = 0

    def add(self, encoded: dict) -> None:
        self.batch.append(encoded)
        self.rows += 1
        if len(self.batch) >= ROW_GROUP or self.in_file + len(self.batch) >= self.rows_per_file:
            self._flush()

    def _flush(self) -> None:
        if not self.batch:
            return
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.files.append(self.folder / f"{SPLIT}-{len(self.files):05d}.parquet.partial")
            self.writer = pq.ParquetWriter(self.files[-1], self.schema)
        self.writer.write_table(pa.Table.from_pylist(self.batch, schema=self.schema))
        self.in_file += len(self.batch)
        self.batch = []
        if self.in_file >= self.rows_per_file:
            self.writer.close()
            self.writer, self.in_file = None, 0

    def close(self) -> None:
        self._flush()
        if self.writer is not None:
            self.writer.close()
        total = len(self.files)
        for index, path in enumerate(self.files):
            path.rename(self.folder / f"{SPLIT}-{index:05d}-of-{total:05d}.parquet")


def write_subsets(rows: Iterable[tuple[str, dict]], out: Path, rows_per_file: int = 10_000) -> dict[str, int]:
    """Stream (subset, row) pairs into parquet files per subset; returns rows per subset (sorted by name)."""
    from dataset_scripts.schema import FEATURES

    schema = FEATURES.arrow_schema
    subsets: dict[str, _SubsetFiles] = {}
    for subset, row in rows:
        if subset not in subsets:
            subsets[subset] = _SubsetFiles(out / subset, rows_per_file, schema)
        subsets[subset].add(FEATURES.encode_example(row))
    for files in subsets.values():
        files.close()
    return {name: subsets[name].rows for name in sorted(subsets)}


def finish(out: Path, stats: dict, pretty_name: str | None, license: str, repo_id: str | None) -> None:
    """Write stats.json and the dataset card (README.md)."""
    from hub.cards import build_dataset_card

    (out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    card = build_dataset_card(stats, pretty_name=pretty_name, license=license, repo_id=repo_id)
    card.save(out / "README.md")


def push_to_hub(out: Path, repo_id: str, private: bool) -> str:
    """Upload the folder as is (parquet + card) through hub/upload.py, like model pushes: token check, repo creation,
    and a re-push of an unchanged folder makes no commit. Returns the line saying what happened."""
    from hub.upload import upload_folder

    return upload_folder(
        out,
        repo_id,
        repo_type="dataset",
        private=private,
        commit_message="Upload ALLaVA-style dataset",
        delete_patterns=["*.parquet"],  # parquet files an earlier, larger build left would be loaded as rows
    )


def merge_counts(*counters: dict) -> dict:
    total: Counter = Counter()
    for counter in counters:
        total.update(counter)
    return dict(sorted(total.items()))
