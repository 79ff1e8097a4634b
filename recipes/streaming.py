"""The training mixture as a stream: rows are read while training, so no machine holds a copy of the whole mixture.

    streaming: true          # in the recipe, or --streaming true; max_steps is then required
    shuffle_buffer: 10000    # rows held for shuffling (a stream has no global shuffle)

Each mixture entry is opened with `load_dataset(..., streaming=True)` and brought to the `id`, `messages`, `images`
columns, as `recipes/data.py` does for a map-style mixture. On a stream:

- `take_fraction` keeps each row whose seeded hash of (seed, entry, row id) falls below the fraction: a fixed random
  share, the same on every rank and every pass, of about (not exactly) that many rows;
- `epochs` repeats the entry, each copy shuffled with its own seed;
- the entries and their copies are interleaved round-robin until every one is used up (each row once), then shuffled
  in a buffer of `shuffle_buffer` rows (and the order of the files);
- `datasets.distributed.split_dataset_by_node` gives each process a disjoint share: whole files when their number is
  a multiple of the process count, else every n-th row (each process then reads, but does not decode, all rows).

`EncodedStream` runs the collator's `encode` on each row of a process's share as it arrives (the check of
`recipes/row_checks.py`, which cannot run up front on a stream): a bad row stops the run naming it, or with
`--drop_bad_rows` is logged and counted. The share is read again and again (pass 0, 1, ... reshuffled by
`set_epoch`) until `max_steps`, so no process ever runs out of batches before the others; within each pass every
row goes to exactly one process. Accelerate does not shard or dispatch these batches again (`stream_loader`).

Resume: every batch carries how many rows of its process's stream were read up to its last row; each checkpoint
keeps that count per process (`stream/rank-<n>.json`), and a resumed run skips that many rows before encoding
anything (no image is decoded for a skipped row). The Trainer's own batch skipping is switched off
(`ignore_data_skip`): it would collate every consumed batch again.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate.data_loader import prepare_data_loader
from datasets import Image, IterableDataset, List, interleave_datasets
from datasets.distributed import split_dataset_by_node

from dataset_scripts.schema import conversations_to_messages
from recipes.collator import AllavaCollator, EncodedRow
from recipes.data import COLUMNS, TRAINING_FEATURES, MixtureEntry, parse_mixture, refuse_empty_parquet
from recipes.token_budget import budget_batches
from toolkit.cli import InputError, is_path_like


logger = logging.getLogger("allava.sft")
STREAM_KEY = "allava_stream"  # the batch entry with the stream position; taken out before the model sees the batch
STATE_DIR = "stream"


def refuse_unstreamable(training_args: Any) -> None:
    """What needs the whole dataset or a length cannot run on a stream: one line saying what to change."""
    if training_args.max_steps is None or training_args.max_steps < 1:
        raise InputError("streaming: set max_steps (a stream has no length, so num_train_epochs cannot end the run)")
    if training_args.train_sampling_strategy in ("group_by_length", "batch_rebalance"):
        raise InputError(
            f"streaming: train_sampling_strategy={training_args.train_sampling_strategy!r} sorts the whole dataset by "
            "length, which a stream cannot; remove it (rows are mixed by shuffle_buffer instead)"
        )
    if training_args.dataloader_num_workers:
        raise InputError(
            "streaming: dataloader_num_workers must be 0 (the stream position each checkpoint records is exact only "
            "when the training process reads the stream itself)"
        )


def stream_mixture(
    mixture: Sequence[Mapping[str, Any]], seed: int, shuffle_buffer: int, sources: list[dict] | None = None
) -> IterableDataset:
    """The whole mixture as one shuffled stream (the same on every process; `split_dataset_by_node` shares it out)."""
    if shuffle_buffer < 1:
        raise InputError(f"shuffle_buffer must be a whole number >= 1, got {shuffle_buffer!r}")
    parts = []
    for entry in parse_mixture(mixture):
        stream = open_entry(entry)
        if entry.take_fraction < 1:
            stream = stream.filter(_KeepShare(seed, entry.where, entry.take_fraction), input_columns=["id"])
        if sources is not None:
            record = {"path": entry.path, "name": entry.name, "split": entry.split, "revision": entry.revision}
            sources.append({**record, "take_fraction": entry.take_fraction, "epochs": entry.epochs, "rows": None})
        parts.extend(_shuffled(stream, seed + copy, shuffle_buffer) for copy in range(entry.epochs))
    mixed = parts[0] if len(parts) == 1 else interleave_datasets(parts, stopping_strategy=EACH_ROW_ONCE)
    return _shuffled(mixed, seed, shuffle_buffer)


EACH_ROW_ONCE = "all_exhausted_without_replacement"


def _shuffled(stream: IterableDataset, seed: int, shuffle_buffer: int) -> IterableDataset:
    """`stream.shuffle` reading one file at a time (in a seeded order that changes every pass) into the buffer.
    datasets' default reads 10 files at once (`max_buffer_input_shards`), each through its own thread and its own
    copy of the row pipeline, and sleeps 5 s (`SLEEP_TIME_ON_THREADS_SHUTDOWN`) whenever one of them ends or is
    closed. Measured on a built 10^6-row dataset (2 entries of 18 files, the default buffer of 10,000): first row
    after 63 s and 3.7 GB resident, closing took 156 s; one file at a time: 4.5 s, 0.7 GB, 5 s. Over one file both
    give the same order."""
    return stream.shuffle(seed=seed, buffer_size=shuffle_buffer, max_buffer_input_shards=1)


def trainer_sample(mixture: Sequence[Mapping[str, Any]]) -> IterableDataset:
    """The Trainer's `train_dataset` with a stream: the first entry's first row, unshuffled, held in memory. TRL's
    SFTTrainer reads one row of it (are there images?); from the shuffled mixture that one row would fill a whole
    shuffle buffer (every buffered row read, its image bytes held) and closing the interleaved stream costs
    `datasets` a 5 s sleep per interleaving level. In memory, no parquet scan is left to the Trainer (see
    `EncodedStream.close`). Batches never come from it: they come from `EncodedStream` (`stream_loader`)."""
    first = first_row(open_entry(parse_mixture(mixture)[0]))
    return datasets.Dataset.from_list([first], features=TRAINING_FEATURES).to_iterable_dataset()


def first_row(stream: IterableDataset) -> dict:
    """The stream's first row, its read closed at once (StopIteration when empty): no scan stays open behind it."""
    rows = iter(stream)
    try:
        return next(rows)
    finally:
        rows.close()


@dataclass(frozen=True)
class _KeepShare:
    """take_fraction on a stream: keep a row when a seeded hash of its id falls below the fraction."""

    seed: int
    where: str
    fraction: float

    def __call__(self, row_id: str) -> bool:
        digest = hashlib.blake2b(f"{self.seed}\0{self.where}\0{row_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self.fraction * 2**64


def open_entry(entry: MixtureEntry) -> IterableDataset:
    """One entry as a stream with the columns `id`, `messages`, `images` (images left encoded)."""
    if is_path_like(entry.path):
        if not Path(entry.path).expanduser().exists():
            raise InputError(f"{entry.describe()}: no such folder (a local path; hub ids look like org/name)")
        try:
            builder = datasets.load_dataset_builder(entry.path, entry.name, revision=entry.revision)
        except Exception as error:  # as below
            raise InputError(f"{entry.describe()}: cannot stream the dataset: {error}") from error
        refuse_empty_parquet(entry, builder)
    try:
        stream = datasets.load_dataset(
            entry.path, entry.name, split=entry.split, revision=entry.revision, streaming=True
        )
        columns = stream.column_names or list(first_row(stream))
    except StopIteration:
        raise InputError(f"{entry.describe()}: the dataset is empty") from None
    except Exception as error:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError...)
        raise InputError(f"{entry.describe()}: cannot stream the dataset: {error}") from error
    if not isinstance(stream, IterableDataset):
        raise InputError(f"{entry.describe()}: expected a streaming IterableDataset, got {type(stream).__name__}")
    features = stream.features or {}
    if "messages" in columns and ("images" in columns or "image" not in columns):
        if isinstance(features.get("images"), List) and isinstance(features["images"].feature, Image):
            stream = stream.cast_column("images", List(Image(decode=False)))
        converted = stream.map(_MessagesRow(entry, "images" in columns), remove_columns=_others(columns))
    elif "conversations" in columns:
        if isinstance(features.get("image"), Image):
            stream = stream.cast_column("image", Image(decode=False))
        converted = stream.map(_ConversationsRow(entry, "image" in columns), remove_columns=_others(columns))
    else:
        raise InputError(
            f"{entry.describe()}: needs a 'messages' (with 'images') or a 'conversations' (with 'image') column; "
            f"found columns {sorted(columns)}"
        )
    return converted.cast(TRAINING_FEATURES)


def _others(columns: Sequence[str]) -> list[str]:
    return [column for column in columns if column not in COLUMNS]


def _row_id(row: Mapping[str, Any], entry: MixtureEntry) -> str:
    """The row's `id` (or the ALLaVA text subset's `idx`); else a hash of its content, stable across passes and
    processes (a stream has no stable row number)."""
    if row.get("id") is not None:
        return str(row["id"])
    if row.get("idx") is not None:
        return str(row["idx"])
    content = json.dumps([row.get("messages"), row.get("conversations")], sort_keys=True, default=str)
    return f"{entry.path}/{entry.name or 'default'}/{entry.split}#{hashlib.blake2b(content.encode()).hexdigest()[:16]}"


def _undecoded(image: Any) -> Any:
    """An image as datasets' undecoded `{"bytes", "path"}` (a stream without features may give a path string)."""
    return {"bytes": None, "path": image} if isinstance(image, str) else image


@dataclass(frozen=True)
class _MessagesRow:
    entry: MixtureEntry
    has_images: bool

    def __call__(self, row: dict) -> dict:
        images = [_undecoded(image) for image in row["images"] or []] if self.has_images else []
        return {"id": _row_id(row, self.entry), "messages": row["messages"], "images": images}


@dataclass(frozen=True)
class _ConversationsRow:
    entry: MixtureEntry
    has_image: bool

    def __call__(self, row: dict) -> dict:
        row_id = _row_id(row, self.entry)
        image = _undecoded(row["image"]) if self.has_image else None
        messages = conversations_to_messages(row["conversations"], image is not None, row_id)
        return {"id": row_id, "messages": messages, "images": [image] if image is not None else []}


@dataclass
class StreamedRow:
    """An encoded row and how many rows of its process's stream had been read when it came (itself included)."""

    row: EncodedRow
    rows_read: int
    dropped: int  # rows of this process's stream dropped so far (--drop_bad_rows)


class EncodedStream(torch.utils.data.IterableDataset):
    """One process's share of the mixture stream, encoded and checked row by row, repeated pass after pass."""

    def __init__(
        self,
        mixture: IterableDataset,
        collator: AllavaCollator,
        rank: int,
        world_size: int,
        drop_bad_rows: bool = False,
        skip_rows: int = 0,
        dropped: int = 0,
    ) -> None:
        self.share = split_dataset_by_node(mixture, rank=rank, world_size=world_size)
        self.collator, self.rank, self.drop_bad_rows = collator, rank, drop_bad_rows
        self.skip_rows, self.dropped = skip_rows, dropped
        self.token_budget: int | None = None  # max_tokens_per_batch: batches by tokens (recipes/token_budget.py)
        self.packed = False  # whether those batches are packed (cost: their tokens) or padded (rows x longest)
        self._passes: weakref.WeakSet = weakref.WeakSet()  # the passes being read, for `close`

    def __iter__(self) -> Iterator[StreamedRow]:
        rows_read = 0
        for pass_number in count():
            self.share.set_epoch(pass_number)
            usable = 0
            rows = iter(self.share)
            self._passes.add(rows)
            for row in rows:
                rows_read += 1
                if rows_read <= self.skip_rows:
                    usable += 1  # read before the checkpoint: not checked again
                    continue
                encoded = self._encode(row)
                if encoded is not None:
                    usable += 1
                    yield StreamedRow(encoded, rows_read, self.dropped)
            if not usable:
                raise InputError(
                    f"streaming: process {self.rank} has no usable row in its share of the mixture (fewer rows or "
                    "files than processes, or every row bad); use fewer processes or more data"
                )
            logger.info("process %d: pass %d over its share of the stream ended", self.rank, pass_number)

    def close(self) -> None:
        """Stop every pass still being read, now, while Python is whole. Training stops mid-pass; a parquet scan
        left open until the interpreter exits can abort the process after all its work is saved (SIGABRT,
        "terminate called without an active exception": Arrow threads that need the GIL after Python has begun to
        shut down, apache/arrow#45214). Those threads then get `datasets`' own grace, counted from the close (an
        interleaved stream's close has already waited it)."""
        started = time.monotonic()
        open_passes = list(self._passes)
        for rows in open_passes:
            rows.close()
        gc.collect()
        grace = datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN - (time.monotonic() - started)
        if open_passes and grace > 0:
            time.sleep(grace)

    def _encode(self, row: dict) -> EncodedRow | None:
        try:
            return self.collator.encode([row])[0]
        except ValueError as error:
            if not self.drop_bad_rows:
                raise InputError(
                    f"{error} (streamed rows are checked as they arrive; pass --drop_bad_rows true to train without "
                    "such rows)"
                ) from None
            self.dropped += 1
            logger.warning("--drop_bad_rows: dropped a streamed row (%d so far here): %s", self.dropped, error)
            return None


class _BudgetBatches(torch.utils.data.IterableDataset):
    """The stream grouped into token-budget batches (lists of rows), for a DataLoader without its own batching."""

    def __init__(self, stream: EncodedStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[list[StreamedRow]]:
        stream = self.stream
        return budget_batches(stream, lambda item: len(item.row), stream.token_budget, stream.packed)


@dataclass
class StreamBatches:
    """Collate streamed rows with the training collator; the batch also carries the stream position (`STREAM_KEY`)."""

    collator: AllavaCollator

    def __call__(self, items: Sequence[StreamedRow]) -> dict[str, Any]:
        batch = self.collator.layout([item.row for item in items])
        last = items[-1]
        batch[STREAM_KEY] = {
            "rows_read": last.rows_read,
            "dropped": last.dropped,
            "ids": [item.row.row_id for item in items],
        }
        return batch


def stream_loader(trainer: Any, stream: EncodedStream) -> torch.utils.data.DataLoader:
    """The DataLoader for a stream already shared out per process: accelerate only moves batches to the device
    (num_processes=1 here, so it neither shards the stream again nor dispatches batches from process 0)."""
    budget = stream.token_budget is not None  # then the stream makes the batches (the loader's batch_size is None)
    loader = torch.utils.data.DataLoader(
        _BudgetBatches(stream) if budget else stream,
        batch_size=None if budget else trainer.args.per_device_train_batch_size,
        collate_fn=StreamBatches(trainer.data_collator),
        pin_memory=trainer.args.dataloader_pin_memory,
    )
    prepared = prepare_data_loader(
        loader,
        trainer.accelerator.device,
        num_processes=1,
        process_index=0,
        put_on_device=True,
        dispatch_batches=False,
        non_blocking=trainer.accelerator.non_blocking,
    )
    trainer.accelerator._dataloaders.append(prepared)
    return prepared


def save_position(checkpoint: str | Path, rank: int, world_size: int, rows_read: int, dropped: int) -> None:
    """Record this process's stream position in a checkpoint (before its trainer_state.json marks it complete)."""
    folder = Path(checkpoint) / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    state = {"rows_read": rows_read, "world_size": world_size, "dropped": dropped}
    (folder / f"rank-{rank}.json").write_text(json.dumps(state) + "\n", encoding="utf-8")


def load_position(checkpoint: str | Path, rank: int, world_size: int) -> tuple[int, int]:
    """(rows read, rows dropped) by this process before `checkpoint`; one line if the checkpoint cannot continue."""
    file = Path(checkpoint) / STATE_DIR / f"rank-{rank}.json"
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError(
            f"resume_from_checkpoint {checkpoint}: no stream position for process {rank} ({file}); a checkpoint of a "
            "streaming run resumes with streaming: true and the same number of processes"
        ) from None
    if state.get("world_size") != world_size:
        raise InputError(
            f"resume_from_checkpoint {checkpoint}: saved by {state.get('world_size')} processes, resumed with "
            f"{world_size}; a stream is shared out per process, so resume with {state.get('world_size')}"
        )
    return int(state["rows_read"]), int(state.get("dropped", 0))


class StreamingTrainerMixin:
    """Trainer hooks for a streamed mixture (`self.stream` is an `EncodedStream`, or None for a map-style dataset):
    our DataLoader, the stream position taken out of each batch, and saved with each checkpoint."""

    stream: EncodedStream | None = None
    stream_position: dict[str, Any] | None = None

    def get_train_dataloader(self):
        return stream_loader(self, self.stream) if self.stream is not None else super().get_train_dataloader()

    def training_step(self, model, inputs, *args, **kwargs):
        position = inputs.pop(STREAM_KEY, None)
        if position is not None:
            self.note_stream_batch(position)
        return super().training_step(model, inputs, *args, **kwargs)

    def note_stream_batch(self, position: dict[str, Any]) -> None:
        """A streamed batch is about to be trained on: from here on its rows count as consumed."""
        self.stream_position = position

    def _save_checkpoint(self, model, trial) -> None:
        if self.stream is not None:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            stream, position = self.stream, self.stream_position
            rows_read, dropped = (
                (position["rows_read"], position["dropped"]) if position else (stream.skip_rows, stream.dropped)
            )
            save_position(folder, stream.rank, self.args.world_size, rows_read, dropped)
            self.accelerator.wait_for_everyone()  # all positions on disk before the checkpoint is complete
        super()._save_checkpoint(model, trial)
