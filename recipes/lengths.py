"""Exact token counts per training row, so padded batches can be grouped by length.

transformers' `train_sampling_strategy="group_by_length"` (and `"batch_rebalance"`) reads a `length` column when the
dataset has one; our rows hold raw `messages` / `images`, so this module adds it. The count is the collator's own
(`AllavaCollator.encode`: chat template, assistant labels, an image's placeholder tokens included), computed without
decoding a single image. Since an image sample carries its image tokens in that count, sorting by length also keeps
image and text-only samples apart wherever their lengths differ, and a mixed batch costs nothing extra (only image
rows send pixels through the vision tower): length is the only thing padding depends on.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from datasets.fingerprint import Hasher
from PIL import Image

from recipes.collator import AllavaCollator


LENGTH_COLUMN = "length"  # TrainingArguments.length_column_name's default
# Stands in for every image while counting: an image's token count does not depend on its pixels.
_PLACEHOLDER = Image.new("RGB", (1, 1))


def add_length_column(
    dataset: Dataset, collator: AllavaCollator, num_proc: int | None = None, column: str = LENGTH_COLUMN
) -> Dataset:
    """Return `dataset` with `column` = tokens per row as `collator` encodes it (errors name the row, as in training).

    Rows are read as Arrow batches, so image bytes are never copied or decoded; results are cached by `datasets` like
    any `map` of a file-backed dataset.
    """

    def count(batch: pa.Table) -> dict[str, list[int]]:
        images = pc.list_value_length(batch["images"]).fill_null(0).to_pylist()
        rows = [
            {"id": row_id, "messages": messages, "images": [_PLACEHOLDER] * n_images}
            for row_id, messages, n_images in zip(batch["id"].to_pylist(), batch["messages"].to_pylist(), images)
        ]
        return {column: [len(row) for row in collator.encode(rows)]}

    fingerprint = Hasher.hash([dataset._fingerprint, column, *collator_fingerprint(collator)])
    counted = dataset.with_format("arrow").map(
        count,
        batched=True,
        batch_size=256,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        new_fingerprint=fingerprint,
        desc=f"token counts ({column!r} column)",
    )
    return dataset.add_column(column, counted.data.column(column).to_pylist())


def collator_fingerprint(collator: AllavaCollator) -> list:
    """What the collator's encoding depends on, for cache keys of dataset maps that call it."""
    tokenizer = collator.processor.tokenizer
    return [
        collator.processor.chat_template,
        collator.image_tokens_per_image,
        collator.max_length,
        tokenizer.backend_tokenizer.to_str() if hasattr(tokenizer, "backend_tokenizer") else repr(tokenizer),
    ]
