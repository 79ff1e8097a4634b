"""What to synthesise from: an image folder, a manifest (JSONL/JSON/CSV/TXT) or `hf:<dataset>[:<config>]:<split>`.

Inputs are listed and validated before the first request, so a bad manifest fails in a second with the line at fault,
not after an hour of paid calls. Image bytes are read lazily, per item, by the worker that needs them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dataset_scripts.images import SkipImage, read_file
from dataset_scripts.schema import check_source_name
from dataset_scripts.url_fetch import fetch_url
from toolkit.cli import InputError


if TYPE_CHECKING:
    from datasets import Dataset


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
MANIFEST_SUFFIXES = {".jsonl", ".json", ".csv", ".txt"}
QUESTION_KEYS = ("question", "instruction")
CAPTION_KEYS = ("original_caption", "caption")


ImageReader = Callable[[str, float, int], bytes]  # (origin, timeout, max_bytes) -> raw image bytes


@dataclass(frozen=True, slots=True)
class Item:
    """One unit of work: an image (+ instruction for vflan) or a text instruction. A run holds one per input (ALLaVA:
    ~1.4M), so it has slots and shares its `images` reader with the other inputs of its `--input`: with a reader
    and a `Path` of its own, an input took 0.87 KB."""

    origin: str  # path relative to the input folder / manifest value / URL / hf:<dataset>:<split>#<row>
    source: str
    question: str | None = None  # vflan instruction, or the text-mode instruction
    original_caption: str | None = None
    images: ImageReader | None = None  # reads this input's image by its origin; None for text inputs
    # Stable identity of the input (not of its content): resume bookkeeping and shard assignment.
    item_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(f"{self.origin}\0{self.question or ''}".encode()).hexdigest()[:20]
        object.__setattr__(self, "item_id", digest)

    def read_image(self, timeout: float, max_bytes: int) -> bytes:
        """The raw bytes of this input's image (read lazily, by the worker that needs them)."""
        return self.images(self.origin, timeout, max_bytes)


def shard_of(item: Item, num_shards: int) -> int:
    return int(item.item_id, 16) % num_shards


def select_shard(items: list[Item], num_shards: int, shard_index: int, limit: int | None = None) -> list[Item]:
    """This machine's disjoint share of the inputs (every machine lists the same inputs, each keeps its own)."""
    if not 0 <= shard_index < num_shards:
        raise InputError(f"--shard-index must be in [0, {num_shards}), got {shard_index}")
    mine = [item for item in items if shard_of(item, num_shards) == shard_index]
    return mine[:limit] if limit is not None else mine


@dataclass(frozen=True)
class _ManifestImages:
    """A manifest's images: URLs, or paths (relative ones from the manifest's folder). The manifest is the user's."""

    base: Path
    allow_private: bool

    def __call__(self, value: str, timeout: float, max_bytes: int) -> bytes:
        if "://" in value:
            return fetch_url(value, timeout, max_bytes, self.allow_private)
        return read_file(os.path.join(self.base, value), max_bytes)  # an absolute value stands alone


def _first(row: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _text_of(row: dict) -> str | None:
    """The instruction of a text row: `instruction`/`question`, or the first human turn of `conversations`."""
    text = _first(row, QUESTION_KEYS)
    if text is None and isinstance(row.get("conversations"), list):
        for turn in row["conversations"]:
            if isinstance(turn, dict) and turn.get("from") == "human" and isinstance(turn.get("value"), str):
                return turn["value"].strip() or None
    return text


def _manifest_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(location for messages, row dict) for each row of a JSONL / JSON / CSV / TXT manifest."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise InputError(f"{path}:{number}: not valid JSON ({error.msg})") from None
                    yield f"{path}:{number}", row
        elif suffix == ".json":
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise InputError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
            if not isinstance(rows, list):
                raise InputError(f"{path}: expected a JSON list of objects")
            for number, row in enumerate(rows):
                yield f"{path}[{number}]", row
        elif suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                if not reader.fieldnames:
                    raise InputError(f"{path}: empty CSV (a header row with an 'image' column is required)")
                for number, row in enumerate(reader, 2):
                    yield f"{path}:{number}", row
        else:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        yield f"{path}:{number}", {"instruction": line.strip()}
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason})") from None


def _make_item(where: str, row: object, mode: str, source: str, images: ImageReader | None, origin: str) -> Item:
    """Validate one input row for `mode`; `images` is None when the row names no image."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected an object, got {type(row).__name__}")
    row_source = _first(row, ("source",)) or source
    try:
        check_source_name(row_source)
    except ValueError as error:
        raise InputError(f"{where}: {error}") from None
    if mode == "text":
        instruction = _text_of(row)
        if instruction is None:
            raise InputError(f"{where}: no instruction (expected 'instruction', 'question' or 'conversations')")
        return Item(origin=origin, source=row_source, question=instruction)
    if images is None:
        raise InputError(f"{where}: no image (expected an 'image' path/URL or a 'url')")
    question = _first(row, QUESTION_KEYS)
    if mode == "vflan" and question is None:
        raise InputError(f"{where}: vflan mode needs an instruction in 'question' (or 'instruction')")
    return Item(
        origin=origin,
        source=row_source,
        question=question if mode == "vflan" else None,
        original_caption=_first(row, CAPTION_KEYS),
        images=images,
    )


def _from_manifest(path: Path, mode: str, source: str, allow_private: bool) -> list[Item]:
    if path.suffix.lower() == ".txt" and mode != "text":
        raise InputError(f"{path}: a .txt manifest (one instruction per line) only fits --mode text")
    images = _ManifestImages(path.parent, allow_private)
    items = []
    for where, row in _manifest_rows(path):
        image = None
        if isinstance(row, dict) and mode != "text":
            image = _first(row, ("image", "url"))
        origin = image or f"{path.name}#{len(items)}"
        items.append(_make_item(where, row, mode, source, images if image else None, origin))
    if not items:
        raise InputError(f"{path}: the manifest has no rows")
    return items


def _from_folder(folder: Path, mode: str, source: str) -> list[Item]:
    if mode != "caption-qa":
        raise InputError(f"{folder}: an image folder only fits --mode caption-qa ({mode} needs a manifest)")
    names = _image_files(folder)
    if not names:
        raise InputError(f"{folder}: no images found (looked for {sorted(IMAGE_SUFFIXES)})")
    names.sort(key=_path_order)
    images = _FolderImages(folder)
    return [Item(origin=name, source=source, images=images) for name in names]


def _image_files(folder: Path) -> list[str]:
    """Paths of the image files under `folder`, relative to it, as `rglob` finds them (symlinked files included,
    symlinked folders not entered). `os.walk`, not `rglob`: pathlib interns every name it parses, and the interpreter's
    table of interned strings keeps its size once grown (~150 B an input)."""
    names = []
    for root, _, files in os.walk(folder):
        relative = os.path.relpath(root, folder)
        for file in files:
            if os.path.splitext(file)[1].lower() in IMAGE_SUFFIXES and os.path.isfile(os.path.join(root, file)):
                names.append(file if relative == "." else f"{relative}/{file}".replace(os.sep, "/"))
    return names


def _path_order(name: str) -> str:
    """Sorts relative posix paths as `Path`s sort, part by part ("a/b" before "a-b/c"): NUL sorts before any
    character a file name can hold."""
    return name.replace("/", "\0")


@dataclass(frozen=True)
class _FolderImages:
    folder: Path

    def __call__(self, name: str, timeout: float, max_bytes: int) -> bytes:
        return read_file(os.path.join(self.folder, name), max_bytes)


@dataclass(frozen=True)
class _HubCells:
    """A Hub dataset's image cells, by row (the `#<row>` ending an input's origin): embedded bytes, a URL, or a path
    inside the dataset's own folder — never a file elsewhere on this machine (an absolute path or `../` in someone
    else's dataset is refused)."""

    dataset: Dataset
    column: str
    folder: Path | None
    allow_private: bool

    def __call__(self, origin: str, timeout: float, max_bytes: int) -> bytes:
        value = self.dataset[int(origin.rpartition("#")[2])][self.column]
        if isinstance(value, dict):
            if value.get("bytes"):
                return value["bytes"]
            value = value.get("path")
        if not isinstance(value, str) or not value:
            return b""
        if "://" in value:
            return fetch_url(value, timeout, max_bytes, self.allow_private)
        if self.folder is None:
            refusal = f"{value}: a file path in a Hub dataset (only URLs and embedded bytes are read)"
            raise SkipImage("refused", refusal)
        root = self.folder.resolve()
        path = (root / value).resolve()
        if Path(value).is_absolute() or not path.is_relative_to(root):
            raise SkipImage("refused", f"{value}: outside the dataset folder {self.folder}")
        return read_file(path, max_bytes)


def _from_hf(spec: str, mode: str, source: str, image_column: str | None, allow_private: bool) -> list[Item]:
    parts = spec[len("hf:") :].split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise InputError(f"{spec!r}: expected hf:<dataset>[:<config>]:<split>")
    name, config, split = parts[0], (parts[1] if len(parts) == 3 else None), parts[-1]
    import datasets  # heavy: only for hf: inputs

    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # noqa: BLE001 (any loader failure is a bad input, reported as such)
        raise InputError(f"{spec!r}: could not load the dataset ({type(error).__name__}: {error})") from None
    column = None
    if mode != "text":
        column = image_column or next(
            (key for key, feature in dataset.features.items() if isinstance(feature, datasets.Image)), "image"
        )
        if column not in dataset.column_names:
            raise InputError(f"{spec!r}: no image column {column!r} (columns: {dataset.column_names})")
        if isinstance(dataset.features[column], datasets.Image):
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
    folder = Path(name) if Path(name).is_dir() else None
    text_columns = [key for key in dataset.column_names if key != column]
    rows = dataset.select_columns(text_columns) if text_columns else ({} for _ in range(len(dataset)))
    images = _HubCells(dataset, column, folder, allow_private) if column else None
    items = []
    for index, row in enumerate(rows):
        where = f"{spec}#{index}"
        items.append(_make_item(where, row, mode, source, images, where))
    if not items:
        raise InputError(f"{spec!r}: the split is empty")
    return items


def load_items(
    spec: str, mode: str, source: str, image_column: str | None = None, allow_private_urls: bool = False
) -> list[Item]:
    """All inputs named by `--input`, validated; `source` is the default source name (rows may override it).

    Image URLs to loopback / private / link-local addresses are refused unless `allow_private_urls`."""
    check_source_name(source)
    if spec.startswith("hf:"):
        return _from_hf(spec, mode, source, image_column, allow_private_urls)
    path = Path(spec)
    if path.is_dir():
        return _from_folder(path, mode, source)
    if not path.exists():
        raise InputError(f"--input {spec!r} does not exist")
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise InputError(f"{spec}: unknown input type; expected a folder, {sorted(MANIFEST_SUFFIXES)} or hf:...")
    return _from_manifest(path, mode, source, allow_private_urls)
