"""Padding-free batches: pack a batch's samples into a few rows, each sample attending only to itself.

    collator = PackedAllavaCollator(processor, max_length=2048)
    batch = collator(rows)   # input_ids / labels / position_ids [rows, length], pixel_values, no attention_mask

The samples are tokenised exactly as in `AllavaCollator.encode` (same labels, never truncated). Instead of one padded
row per sample, whole samples are placed into rows of at most `max_length` tokens; `position_ids` restart at 0 for
every sample. With `attention_mask=None` and no cache, transformers reads those restarts as sample boundaries and
builds a block-diagonal causal mask (sdpa, eager, flex attention); flash-attention's variable-length kernels read them
too, but only from a single row, so for flash-attention every sample goes into one row. The model must be called
with `use_cache=False` (TRL's SFTTrainer does): with a cache, transformers does not look for packed sequences and
attention would cross samples.

sdpa with that mask still computes every query-key pair of a row; `sdpa_per_sample` (an attention implementation
registered with transformers, switched on by `use_per_sample_attention`) runs sdpa on each sample's span instead.

Images: LLaVA-style models scatter image features into the image tokens in reading order (row by row), so
`pixel_values` follow the samples in the order they were packed.
"""

from __future__ import annotations

import bisect
import heapq
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, PretrainedConfig
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from modeling_allava import TEXT_BACKBONES
from recipes.collator import IGNORE_INDEX, AllavaCollator, EncodedRow


logger = logging.getLogger("allava.sft")
# sdpa run on each packed sample alone (see `sdpa_per_sample`); plain sdpa for everything else.
SDPA_PER_SAMPLE = "sdpa_per_sample"
# Attention implementations that honour restarting position_ids (flash-attention: in a single row only).
PACKABLE_ATTENTION = ("sdpa", SDPA_PER_SAMPLE, "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


def sdpa_per_sample(module, query, key, value, attention_mask, position_ids=None, **kwargs):
    """Attention for packed rows without the work between samples: sdpa with `is_causal` on each sample's span.

    sdpa given the block-diagonal mask of a packed row computes all row_length^2 query-key pairs (then masks most of
    them); on each sample alone it computes only that sample's causal half, with the fast causal kernels. Inputs that
    are not packed rows (one sequence per row, or a cache) go to transformers' sdpa with its usual mask.
    """
    packed = position_ids is not None and query.shape[2] == key.shape[2] == position_ids.shape[-1] > 1
    starts = (position_ids[..., 1:] == 0).nonzero().tolist() if packed else []
    if not starts:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    window = kwargs.get("sliding_window")
    length = query.shape[2]
    rows = []
    for row in range(query.shape[0]):
        bounds = [0, *(column + 1 for index, column in starts if index == row % position_ids.shape[0]), length]
        if window is not None and max(end - start for start, end in zip(bounds, bounds[1:])) > window:
            raise ValueError(f"a packed sample is longer than the sliding window ({window}); use padded batches")
        pieces = [
            sdpa_attention_forward(
                module, query[row : row + 1, :, start:end], key[row : row + 1, :, start:end],
                value[row : row + 1, :, start:end], None, **kwargs,
            )[0]
            for start, end in zip(bounds, bounds[1:])
        ]  # fmt: skip
        rows.append(torch.cat(pieces, dim=1))
    return torch.cat(rows, dim=0), None


AttentionInterface.register(SDPA_PER_SAMPLE, sdpa_per_sample)
AttentionMaskInterface.register(SDPA_PER_SAMPLE, sdpa_mask)  # the masks plain sdpa needs for other inputs


def use_per_sample_attention(model) -> str:
    """Give a text model on sdpa `sdpa_per_sample` for packed training; return the attention implementation to lay
    packed rows out for. Runtime only: checkpoints do not record it and load with plain sdpa. A model with
    sliding-window layers (Gemma-3) keeps plain sdpa: its mask bounds the window inside a packed sample of any length,
    while `sdpa_per_sample` refuses samples longer than the window."""
    text_config = model.config.get_text_config()
    attention = text_config._attn_implementation or "sdpa"
    if attention == "sdpa" and "sliding_attention" not in (getattr(text_config, "layer_types", None) or ()):
        model.set_attn_implementation({"text_config": SDPA_PER_SAMPLE})
        attention = SDPA_PER_SAMPLE
    return attention


def packing_unsupported_reason(config: PretrainedConfig, max_length: int | None) -> str | None:
    """Why packed batches cannot be used for this model (None when they can), for a log line or an error."""
    text_config = config.get_text_config()
    if max_length is None:
        return "packing needs max_length (the longest row) to be set"
    backbone = TEXT_BACKBONES.get(text_config.model_type)
    if backbone is None or not backbone.packable:
        packable = tuple(name for name, backbone in TEXT_BACKBONES.items() if backbone.packable)
        return f"text model type {text_config.model_type!r} is not among the tested ones {packable}"
    attention = text_config._attn_implementation or "sdpa"
    if attention not in PACKABLE_ATTENTION:
        return f"attention implementation {attention!r} is not among {PACKABLE_ATTENTION}"
    return None


def plan_rows(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Place whole samples (their indices) into rows of at most `max_length` tokens, keeping the batch tensor (rows x
    fullest row) small.

    Best-fit decreasing gives the fewest rows; the batch tensor is as wide as its fullest row, though, so the same
    samples are also spread evenly (longest first into the emptiest row) over that many rows and over each larger
    count, and the plan with the fewest tensor tokens wins (then the narrowest). One row per sample is among the
    candidates, so a packed batch is never larger than the padded one.
    """
    if not lengths:
        raise ValueError("cannot pack an empty batch")
    too_long = [index for index, length in enumerate(lengths) if length > max_length]
    if too_long:
        raise ValueError(
            f"sample #{too_long[0]} has {lengths[too_long[0]]} tokens, more than max_length={max_length}; "
            "samples are never split or truncated"
        )
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])

    def width(plan: list[list[int]]) -> int:
        return max(sum(lengths[index] for index in row) for row in plan)

    best = _best_fit_decreasing(order, lengths, max_length)
    best_cost = (len(best) * width(best), width(best))
    for count in range(len(best), len(lengths) + 1):
        if count * lengths[order[0]] >= best_cost[0]:
            break  # every row is at least as wide as the longest sample: more rows cannot be smaller
        plan = _spread(order, lengths, count)
        cost = (count * width(plan), width(plan))
        if cost[1] <= max_length and cost < best_cost:
            best, best_cost = plan, cost
    return best


def _best_fit_decreasing(order: list[int], lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Each sample, longest first, into the fullest row that still has room (free space kept sorted)."""
    free: list[tuple[int, int]] = []  # (free tokens, row number), ascending
    rows: list[list[int]] = []
    for index in order:
        slot = bisect.bisect_left(free, (lengths[index], -1))
        if slot == len(free):
            rows.append([index])
            room, row = capacity - lengths[index], len(rows) - 1
        else:
            room, row = free.pop(slot)
            rows[row].append(index)
            room -= lengths[index]
        bisect.insort(free, (room, row))
    return rows


def _spread(order: list[int], lengths: Sequence[int], count: int) -> list[list[int]]:
    """Each sample, longest first, into the emptiest of `count` rows."""
    rows: list[list[int]] = [[] for _ in range(count)]
    fill = [(0, row) for row in range(count)]  # a heap of (tokens, row number)
    for index in order:
        tokens, row = heapq.heappop(fill)
        rows[row].append(index)
        heapq.heappush(fill, (tokens + lengths[index], row))
    return rows


@dataclass
class PackedAllavaCollator(AllavaCollator):
    """`AllavaCollator` with packed instead of padded rows; `max_length` (the longest row) is required.

    `attn_implementation` picks the layout: several rows of up to `row_length` tokens for sdpa / eager / flex
    attention, one row holding every sample for flash-attention (whose variable-length path needs a single row).
    Labels are -100 on the first token of every sample, so no token is ever predicted from another sample.

    `row_length` (default `max_length`) caps the packed rows; a row is never capped below the batch's longest sample,
    so `row_length=0` gives rows exactly as long as the padded layout's, only fuller. sdpa and eager compute the
    attention of a whole row (row_length squared per row) where flash-attention and flex attention skip the blocks
    between samples: with them, or with wide models where attention is a small share, long rows waste the least.
    """

    attn_implementation: str = "sdpa"
    row_length: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_length is None:
            raise ValueError("PackedAllavaCollator needs max_length: rows are packed up to that many tokens")
        if self.attn_implementation not in PACKABLE_ATTENTION:
            raise ValueError(
                f"attn_implementation {self.attn_implementation!r} does not support packed rows; "
                f"use one of {PACKABLE_ATTENTION} or the padded AllavaCollator"
            )

    def layout(self, encoded: Sequence[EncodedRow]) -> dict[str, torch.Tensor]:
        return self.pack(encoded)

    @property
    def single_row(self) -> bool:
        return self.attn_implementation.startswith("flash_attention")

    def pack(self, encoded: Sequence[EncodedRow]) -> dict[str, torch.Tensor]:
        """Lay the encoded samples out in packed rows; `pixel_values` in the order the images appear in the rows."""
        lengths = [len(row) for row in encoded]
        if self.single_row:
            plan = [list(range(len(encoded)))]
        else:
            capacity = self.max_length if self.row_length is None else min(self.row_length, self.max_length)
            plan = plan_rows(lengths, max(capacity, *lengths))
        width = max(sum(lengths[index] for index in row) for row in plan)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(plan), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(plan), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(plan), width), dtype=torch.long)
        images = []
        for row_number, row in enumerate(plan):
            start = 0
            for index in row:
                sample = encoded[index]
                end = start + len(sample)
                input_ids[row_number, start:end] = torch.tensor(sample.input_ids)
                labels[row_number, start + 1 : end] = torch.tensor(sample.labels[1:])  # first token: never a target
                position_ids[row_number, start:end] = torch.arange(len(sample))
                if sample.image is not None:
                    images.append(sample.image)
                start = end
            # The unused end of a row is one more (label-free) sequence of its own, so it sees no real token.
            position_ids[row_number, start:] = torch.arange(width - start)
        batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}
        if images:
            batch["pixel_values"] = self.pixel_values(images)
        return batch


def training_collator(collator: AllavaCollator, model, pack: bool) -> AllavaCollator:
    """The collator to train with: `collator` packed where asked and the model supports it (its text model then runs
    sdpa on each sample alone, `use_per_sample_attention`), else `collator` itself, padded (the log says why)."""
    reason = packing_unsupported_reason(model.config, collator.max_length)
    if not pack or reason is not None:
        if pack:
            logger.warning("padded batches, not packed: %s", reason)
        return collator
    attention = use_per_sample_attention(model)
    return PackedAllavaCollator(
        collator.processor, collator.max_length, collator.pad_to_multiple_of, attn_implementation=attention
    )
