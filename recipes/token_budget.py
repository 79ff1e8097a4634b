"""Batches built by a token budget (`max_tokens_per_batch`) instead of a row count, so every step carries about the
same work: many short rows or a few long ones.

The cost of a batch is what the model computes on: for padded batches, rows x the longest row (padding included);
for packed batches, the sum of the rows' tokens (packed rows hold no padding but their tails). Rows are taken in
stream order and a batch closes when the next row would take it over the budget, so no row is dropped, split or
reordered, and every batch but the last of a stream is full up to one row. The budget must hold the longest row
allowed (`max_length`), so any row fits in a batch of its own.

Used with a streamed mixture (`recipes/streaming.py`), where each process batches its own share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from toolkit.cli import InputError


Row = TypeVar("Row")


def batch_cost(lengths: list[int], packed: bool) -> int:
    """Tokens the model computes on for a batch of rows with these lengths."""
    return sum(lengths) if packed else len(lengths) * max(lengths, default=0)


def check_budget(budget: int, max_length: int | None) -> None:
    """A budget that cannot hold one row of `max_length` tokens is refused in one line."""
    if max_length is None:
        raise InputError("max_tokens_per_batch needs max_length (the longest row, which must fit in one batch)")
    if budget < max_length:
        raise InputError(
            f"max_tokens_per_batch={budget} is smaller than max_length={max_length}: a row of max_length tokens "
            "would fit in no batch; raise it (a few times max_length keeps steps full)"
        )


def budget_batches(
    rows: Iterable[Row], length: Callable[[Row], int], budget: int, packed: bool
) -> Iterator[list[Row]]:
    """Group `rows` in order into batches whose `batch_cost` stays within `budget` (a row over budget: alone)."""
    batch: list[Row] = []
    lengths: list[int] = []
    for row in rows:
        size = length(row)
        if batch and batch_cost([*lengths, size], packed) > budget:
            yield batch
            batch, lengths = [], []
        batch.append(row)
        lengths.append(size)
    if batch:
        yield batch
