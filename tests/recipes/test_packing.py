"""Packed batch layout: whole samples, restarting positions, labels cut at sample boundaries, images in order."""

import random

import pytest
import torch
from PIL import Image

from recipes.collator import IGNORE_INDEX, AllavaCollator, EncodedRow
from recipes.packing import PackedAllavaCollator, packing_unsupported_reason, plan_rows
from recipes.tiny.models import build_tiny_processor, tiny_config


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (90, 90, 90)]


def chat_rows(count: int, seed: int = 0, text_every: int = 3) -> list[dict]:
    """Rows of different lengths; every `text_every`-th is text-only; each image has its own colour."""
    rng = random.Random(seed)
    words = "the a red blue circle square left right image shows small large two three".split()
    rows = []
    for index in range(count):
        has_image = index % text_every != text_every - 1
        question = " ".join(rng.choice(words) for _ in range(rng.randint(2, 10)))
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(3, 40)))
        user = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": f"{index} {question}"}]
        rows.append(
            {
                "id": f"row-{index}",
                "messages": [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                ],
                "images": [Image.new("RGB", (40 + index, 30), COLOURS[index % len(COLOURS)])] if has_image else [],
            }
        )
    return rows


def segments(batch: dict) -> list[tuple[int, int, int]]:
    """(row, start, end) of every sample in a packed batch, in reading order, from the position restarts."""
    found = []
    for row, positions in enumerate(batch["position_ids"].tolist()):
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        found += [(row, start, end) for start, end in zip(starts, starts[1:])]
    return found


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor("phi")


def test_plan_rows_keeps_samples_whole_within_max_length_and_never_beats_padding_for_size():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 24))]
        plan = plan_rows(lengths, 400)
        assert sorted(index for row in plan for index in row) == list(range(len(lengths)))
        fills = [sum(lengths[index] for index in row) for row in plan]
        assert max(fills) <= 400
        assert len(plan) * max(fills) <= len(lengths) * max(lengths)  # never more tokens than the padded batch


def test_plan_rows_spreads_samples_over_rows_instead_of_filling_one():
    # Best-fit decreasing alone gives rows of 1000 and 400 tokens (a 2 x 1000 tensor); spread: 700 and 700.
    assert sorted(map(sorted, plan_rows([600, 400, 300, 100], 1000))) == [[0, 3], [1, 2]]
    # Three long samples that cannot share a row evenly: one row each (the padded layout) is the smallest tensor.
    assert plan_rows([1100, 1000, 900], 2048) == [[0], [1], [2]]


def test_plan_rows_refuses_a_sample_longer_than_max_length():
    with pytest.raises(ValueError, match="sample #1 has 30 tokens, more than max_length=20"):
        plan_rows([10, 30], 20)


def test_packed_batch_holds_each_encoded_sample_whole_with_restarting_positions(processor):
    rows = chat_rows(7)
    encoded = AllavaCollator(processor, 256).encode(rows)
    batch = PackedAllavaCollator(processor, 256)(rows)
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape[0] < len(rows)  # packed: fewer rows than samples
    assert batch["input_ids"].shape[1] <= 256
    by_ids = {tuple(sample.input_ids): sample for sample in encoded}
    seen = []
    for row, start, end in segments(batch):
        ids = tuple(batch["input_ids"][row, start:end].tolist())
        if set(ids) == {processor.tokenizer.pad_token_id}:  # the unused end of a row
            assert (batch["labels"][row, start:end] == IGNORE_INDEX).all()
            continue
        sample = by_ids[ids]  # KeyError: a sample was split, truncated or merged
        assert batch["position_ids"][row, start:end].tolist() == list(range(end - start))
        assert batch["labels"][row, start:end].tolist() == [IGNORE_INDEX, *sample.labels[1:]]
        seen.append(sample.row_id)
    assert sorted(seen) == sorted(row["id"] for row in rows)


def test_labels_are_cut_at_every_sample_boundary(processor):
    collator = PackedAllavaCollator(processor, 64)
    # Hand-made samples whose every token is a target: only the first token of each may lose its label.
    samples = [EncodedRow(f"s{n}", list(range(5, 5 + n)), list(range(5, 5 + n)), None) for n in (9, 6, 12, 4)]
    batch = collator.pack(samples)
    for row, start, end in segments(batch):
        labels = batch["labels"][row, start:end]
        if batch["input_ids"][row, start] == processor.tokenizer.pad_token_id:
            continue
        assert labels[0] == IGNORE_INDEX
        assert (labels[1:] != IGNORE_INDEX).all()


def test_pixel_values_follow_the_images_in_reading_order(processor):
    rows = chat_rows(7)
    collator = PackedAllavaCollator(processor, 256)
    encoded = collator.encode(rows)
    batch = collator.pack(encoded)
    by_ids = {tuple(sample.input_ids): sample for sample in encoded}
    in_order = []
    for row, start, end in segments(batch):
        sample = by_ids.get(tuple(batch["input_ids"][row, start:end].tolist()))
        if sample is not None and sample.image is not None:
            in_order.append(sample.image)
    assert len(in_order) == sum(bool(row["images"]) for row in rows) == batch["pixel_values"].shape[0]
    torch.testing.assert_close(batch["pixel_values"], collator.pixel_values(in_order), rtol=0, atol=0)
    # The order really differs from the rows' order here, so a collator that kept row order would fail.
    assert not torch.equal(batch["pixel_values"], collator.pixel_values([r["images"][0] for r in rows if r["images"]]))


def test_text_only_batch_has_no_pixel_values(processor):
    rows = [row for row in chat_rows(9) if not row["images"]]
    batch = PackedAllavaCollator(processor, 256)(rows)
    assert "pixel_values" not in batch


def test_flash_attention_gets_every_sample_in_one_row_without_padding(processor):
    rows = chat_rows(5)
    batch = PackedAllavaCollator(processor, 256, attn_implementation="flash_attention_2")(rows)
    lengths = [len(sample) for sample in AllavaCollator(processor, 256).encode(rows)]
    assert batch["input_ids"].shape == (1, sum(lengths))
    assert (batch["input_ids"] != processor.tokenizer.pad_token_id).all()
    assert [end - start for _, start, end in segments(batch)] == lengths


def test_row_length_caps_rows_but_never_below_the_longest_sample(processor):
    rows = chat_rows(7)
    longest = max(len(sample) for sample in AllavaCollator(processor, 256).encode(rows))
    assert PackedAllavaCollator(processor, 256, row_length=0)(rows)["input_ids"].shape[1] == longest
    assert PackedAllavaCollator(processor, 256)(rows)["input_ids"].shape[1] > longest


def test_pad_to_multiple_of_pads_the_row_ends(processor):
    batch = PackedAllavaCollator(processor, 256, pad_to_multiple_of=64)(chat_rows(4))
    assert batch["input_ids"].shape[1] % 64 == 0


def test_a_sample_longer_than_max_length_is_an_error_naming_the_row(processor):
    with pytest.raises(ValueError, match="row 'row-0'.*exceed max_length=20"):
        PackedAllavaCollator(processor, 20)(chat_rows(2))


def test_collator_refuses_missing_max_length_and_unsupported_attention(processor):
    with pytest.raises(ValueError, match="needs max_length"):
        PackedAllavaCollator(processor, None)
    with pytest.raises(ValueError, match="'paged_attention' does not support packed rows"):
        PackedAllavaCollator(processor, 128, attn_implementation="paged_attention")


def test_packing_unsupported_reason_names_what_is_missing():
    config = tiny_config("phi")
    assert packing_unsupported_reason(config, 2048) is None
    assert "max_length" in packing_unsupported_reason(config, None)
    config.text_config._attn_implementation = "paged_attention"
    assert "'paged_attention'" in packing_unsupported_reason(config, 2048)
    gemma = tiny_config("phi")
    gemma.text_config.model_type = "gemma"
    assert "'gemma'" in packing_unsupported_reason(gemma, 2048)
