"""The training data mixture: several datasets (hub ids or local folders), each with a row share and a repeat count.

A recipe lists its mixture as YAML:

    dataset_mixture:
      - {path: outputs/tiny/dataset, name: caption_shapes, take_fraction: 0.3}
      - {path: outputs/tiny/dataset, name: text, epochs: 2}

Each entry is loaded with `datasets.load_dataset(path, name, split=split)`, reduced to `take_fraction` of its own
rows (a seeded random subset), repeated `epochs` times, and brought to the three columns the collator reads: `id`,
`messages`, `images`. Datasets in the ALLaVA release layout (`conversations` + `image`) are converted with
`dataset_scripts.schema`.
Entries are independent: unlike TRL's `DatasetConfig.fraction` (a target share of the whole mixture, normalised
across entries, first rows kept), `take_fraction` never looks at the other entries, so `fraction` is refused.
Images stay encoded until the collator opens them, so a broken image is reported with its row id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets import Dataset, Features, Image, List, Value, concatenate_datasets
from datasets.utils.file_utils import xopen
from pyarrow import ArrowException

from dataset_scripts.schema import FEATURES, conversations_to_messages
from recipes.dataset_cache import local_cache_dir
from toolkit.cli import InputError, is_path_like


logger = logging.getLogger(__name__)

COLUMNS = ("id", "messages", "images")
# Images are decoded by the collator (`modeling_allava.load_image`), whose errors name the row.
TRAINING_FEATURES = Features(
    {"id": Value("string"), "messages": FEATURES["messages"], "images": List(Image(decode=False))}
)
# TRL's DatasetConfig.fraction means something else (see the module docstring): refuse it rather than misread it.
TRL_FRACTION = (
    "{where}: 'fraction' is TRL's share of the whole mixture, which this recipe does not implement; for a seeded "
    "random share of this dataset's own rows write 'take_fraction: {value}' (recipes/data.py, docs/training.md)"
)


@dataclass(frozen=True)
class MixtureEntry:
    """One dataset of the mixture; `where` names it in error messages (e.g. `dataset_mixture[1]`)."""

    path: str
    name: str | None = None
    split: str = "train"
    revision: str | None = None  # a hub dataset's branch, tag or commit
    take_fraction: float = 1.0  # a seeded random share of this dataset's rows (not TRL's mixture-wide `fraction`)
    epochs: int = 1
    where: str = "dataset_mixture"

    def describe(self) -> str:
        return f"{self.where} ({self.path!r}, name={self.name!r}, split={self.split!r})"


def parse_mixture(mixture: Sequence[Mapping[str, Any]] | None) -> list[MixtureEntry]:
    """Validate the YAML list; every error names the entry and the key at fault."""
    if not mixture or isinstance(mixture, (str, Mapping)):
        raise InputError(
            "dataset_mixture must be a non-empty list of {path, name, split, revision, take_fraction, epochs} entries"
        )
    allowed = {f.name for f in fields(MixtureEntry)} - {"where"}
    entries = []
    for index, raw in enumerate(mixture):
        where = f"dataset_mixture[{index}]"
        if not isinstance(raw, Mapping):
            raise InputError(f"{where}: expected a mapping with keys {sorted(allowed)}, got {raw!r}")
        if "fraction" in raw:
            raise InputError(TRL_FRACTION.format(where=where, value=raw["fraction"]))
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")
        if not isinstance(raw.get("path"), str) or not raw["path"]:
            raise InputError(f"{where}: 'path' (a hub dataset id or a local folder) is required")
        for key in ("name", "split", "revision"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise InputError(f"{where}: '{key}' must be a string, got {raw[key]!r}")
        fraction = raw.get("take_fraction", 1.0)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise InputError(f"{where}: 'take_fraction' must be a number in (0, 1], got {fraction!r}")
        epochs = raw.get("epochs", 1)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise InputError(f"{where}: 'epochs' must be a whole number >= 1, got {epochs!r}")
        entries.append(MixtureEntry(**{**raw, "take_fraction": float(fraction), "where": where}))
    return entries


def load_mixture(
    mixture: Sequence[Mapping[str, Any]], seed: int = 0, sources: list[dict[str, Any]] | None = None
) -> Dataset:
    """Load, subsample, repeat and concatenate the mixture (the Trainer's sampler shuffles it).

    `sources`, when given, receives one record per entry for the training summary: path, name, split, revision
    (a local folder's is its content key, see `local_cache_dir`), take_fraction, epochs and rows used.
    """
    parts = []
    cache_dirs: dict[str, str] = {}  # one walk per local folder, however many subsets of it the mixture reads
    for entry in parse_mixture(mixture):
        if Path(entry.path).is_dir() and entry.path not in cache_dirs:
            cache_dirs[entry.path] = local_cache_dir(Path(entry.path))
        dataset = load_entry(entry, cache_dirs.get(entry.path))
        if entry.take_fraction < 1:
            keep = max(1, round(len(dataset) * entry.take_fraction))
            dataset = dataset.shuffle(seed=seed).select(range(keep)).flatten_indices()
        logger.info("%s: %d rows x %d epoch(s)", entry.describe(), len(dataset), entry.epochs)
        if sources is not None:
            local = cache_dirs.get(entry.path)
            revision = f"local:{Path(local).name}" if local else entry.revision
            record = {"path": entry.path, "name": entry.name, "split": entry.split, "revision": revision}
            shares = {"take_fraction": entry.take_fraction, "epochs": entry.epochs, "rows": len(dataset)}
            sources.append({**record, **shares})
        parts.extend([dataset] * entry.epochs)
    return concatenate_datasets(parts)


def load_entry(entry: MixtureEntry, cache_dir: str | None) -> Dataset:
    """One entry as a Dataset with exactly the columns `id`, `messages`, `images`; a local folder is read through
    its `local_cache_dir` (None for a hub id)."""
    if is_path_like(entry.path) and not Path(entry.path).expanduser().exists():
        raise InputError(f"{entry.describe()}: no such folder (a local path; hub ids look like org/name)")
    try:
        where = {"revision": entry.revision, "cache_dir": cache_dir}
        builder = datasets.load_dataset_builder(entry.path, entry.name, **where)
    except Exception as error:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError...)
        raise InputError(f"{entry.describe()}: cannot load the dataset: {error}") from error
    refuse_empty_parquet(entry, builder)
    try:
        dataset = datasets.load_dataset(
            entry.path, entry.name, split=entry.split, **where, **_training_columns(builder)
        )
    except Exception as error:
        raise InputError(f"{entry.describe()}: cannot load the dataset: {error}") from error
    if not isinstance(dataset, Dataset):
        raise InputError(f"{entry.describe()}: expected a map-style Dataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise InputError(f"{entry.describe()}: the dataset is empty")
    columns = set(dataset.column_names)
    if "messages" in columns and ("images" in columns or "image" not in columns):
        dataset = _from_messages(dataset, entry)
    elif "conversations" in columns:
        dataset = _from_conversations(dataset, entry)
    else:
        raise InputError(
            f"{entry.describe()}: needs a 'messages' (with 'images') or a 'conversations' (with 'image') column; "
            f"found columns {sorted(columns)}"
        )
    try:
        return dataset.cast(TRAINING_FEATURES) if dataset.features != TRAINING_FEATURES else dataset
    except (ValueError, TypeError) as error:
        raise InputError(
            f"{entry.describe()}: columns do not match the ALLaVA schema ({error}); 'messages' must hold "
            "{role, content: [{type, text}]} and 'images' a list of images"
        ) from error


def refuse_empty_parquet(entry: MixtureEntry, builder: datasets.DatasetBuilder) -> None:
    """Name a parquet file of the split whose first row group is empty (pyarrow writes one for a table without
    rows): `datasets` takes that group's size, 0, as its batch size and pyarrow refuses it, as an anonymous error
    when loading and mid-run when streaming. Local files only: a hub file's footer would cost a request each."""
    for file in (builder.config.data_files or {}).get(entry.split, []):
        if "://" in file or not file.endswith(".parquet"):
            continue
        try:
            metadata = pq.ParquetFile(file).metadata
        except (OSError, ArrowException) as error:
            raise InputError(f"{entry.describe()}: {file}: not a readable parquet file ({error})") from None
        if metadata.num_row_groups and metadata.row_group(0).num_rows == 0:
            raise InputError(
                f"{entry.describe()}: {file} starts with an empty row group (written without rows?), which datasets "
                "cannot read; remove or rewrite the file"
            )


def _training_columns(builder: datasets.DatasetBuilder) -> dict[str, Any]:
    """`load_dataset` arguments that read only the columns training uses, already typed for training, where the
    builder can (parquet, the format of built datasets and of most hub datasets): its Arrow cache then holds each
    image once. A built dataset has each image in two columns (`image` for the release layout, `images` for
    `messages`), and casting a column of image lists rewrites every column of the table, so reading it whole and
    converting it afterwards put each image's bytes four times in the cache (measured on 500 px JPEGs)."""
    if not hasattr(builder.config, "columns"):
        return {}
    features = builder.info.features or _parquet_features(builder)
    if features is None:
        return {}
    names = set(features)
    if "messages" in names and "images" in names:
        keep = [name for name in features if name in ("id", "messages", "images")]
        typed = Features(
            {name: TRAINING_FEATURES[name] if _is_image_list(features[name]) else features[name] for name in keep}
        )
        return {"columns": keep, "features": typed}
    if "conversations" in names:
        keep = [name for name in features if name in ("id", "idx", "conversations", "image")]
        return {"columns": keep}
    return {}


def _with_ids(dataset: Dataset, entry: MixtureEntry) -> Dataset:
    if "id" in dataset.column_names:
        return dataset
    source = "idx" if "idx" in dataset.column_names else None  # the ALLaVA text subset numbers rows as `idx`
    prefix = f"{entry.path}/{entry.name or 'default'}/{entry.split}"

    def add_id(row: dict, index: int) -> dict:
        return {"id": str(row[source]) if source else f"{prefix}#{index}"}

    return dataset.map(add_id, with_indices=True, desc=f"ids for {entry.where}")


def _from_messages(dataset: Dataset, entry: MixtureEntry) -> Dataset:
    dataset = _with_ids(dataset, entry)
    if "images" not in dataset.column_names:  # a text-only chat dataset
        dataset = dataset.add_column("images", [[]] * len(dataset), feature=List(Image(decode=False)))
    elif _is_image_list(dataset.features["images"]) and dataset.features["images"] != TRAINING_FEATURES["images"]:
        # Skipped when read typed (`_training_columns`): casting a list of images rewrites every column.
        dataset = dataset.cast_column("images", List(Image(decode=False)))
    return dataset.select_columns(list(COLUMNS))


def _parquet_features(builder: datasets.DatasetBuilder) -> Features | None:
    """The features stored in the first data file's parquet schema (a builder knows them only after a first load);
    None where they cannot be read here, and the dataset is then read whole."""
    files = [file for split_files in (builder.config.data_files or {}).values() for file in split_files]
    try:
        with xopen(files[0], "rb") as file:  # a local path or an hf:// URL: only the footer is read
            return Features.from_arrow_schema(pq.read_schema(file))
    except Exception:  # any failure only means no pruning; load_dataset then reports the real problems
        return None


def _is_image_list(feature: Any) -> bool:
    return isinstance(feature, List) and isinstance(feature.feature, Image)


def _from_conversations(dataset: Dataset, entry: MixtureEntry) -> Dataset:
    """ALLaVA/LLaVA release layout -> messages + images, without decoding any image."""
    dataset = _with_ids(dataset, entry)
    has_image_column = "image" in dataset.column_names
    if has_image_column:
        dataset = dataset.cast_column("image", Image(decode=False))

    def convert(row: dict) -> dict:
        image = row["image"] if has_image_column else None
        messages = conversations_to_messages(row["conversations"], image is not None, row["id"])
        return {"messages": messages, "images": [image] if image is not None else []}

    converted = dataset.map(
        convert,
        remove_columns=[c for c in dataset.column_names if c != "id"],
        features=TRAINING_FEATURES,
        desc=f"conversations -> messages for {entry.where}",
    )
    return converted.select_columns(list(COLUMNS))
