"""The `length` column behind length-grouped (padded) batches: exact counts, no image decoding, used by the Trainer."""

import io
import random
import tempfile

import pytest
import torch
from datasets import Dataset
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import SFTConfig, SFTTrainer

from recipes.collator import AllavaCollator
from recipes.data import TRAINING_FEATURES
from recipes.lengths import add_length_column
from recipes.tiny.models import build_tiny_model_and_processor
from tests.recipes.test_packing import chat_rows


def encoded_image(row: dict) -> list[dict]:
    buffer = io.BytesIO()
    row["images"][0].save(buffer, format="PNG")
    return [{"bytes": buffer.getvalue(), "path": None}]


@pytest.fixture(scope="module")
def model_and_processor():
    return build_tiny_model_and_processor("phi")


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """Training-format rows (images stored undecoded, as recipes/data.py loads them) of varied lengths."""
    rows = chat_rows(160, seed=5)
    rng = random.Random(5)
    for row in rows:
        row["images"] = encoded_image(row) if row["images"] else []
        answer = row["messages"][1]["content"][0]
        answer["text"] = " ".join([answer["text"]] * rng.randint(1, 6))
    return Dataset.from_list(rows, features=TRAINING_FEATURES)


def test_length_column_is_the_collators_token_count(model_and_processor, dataset):
    collator = AllavaCollator(model_and_processor[1], 1024)
    with_lengths = add_length_column(dataset, collator)
    assert with_lengths.column_names == [*dataset.column_names, "length"]
    assert with_lengths["length"] == [len(sample) for sample in collator.encode(list(dataset))]


def test_length_column_never_decodes_an_image(model_and_processor):
    rows = chat_rows(3, seed=6)
    for row in rows:
        row["images"] = [{"bytes": b"not an image", "path": None}] if row["images"] else []
    broken = Dataset.from_list(rows, features=TRAINING_FEATURES)
    collator = AllavaCollator(model_and_processor[1], 1024)
    lengths = add_length_column(broken, collator)["length"]
    assert lengths[0] > collator.image_tokens_per_image  # counted with its image tokens, bytes never opened
    with pytest.raises(ValueError, match="row 'row-0' images\\[0\\]: cannot read image"):
        collator(rows[:1])  # training itself still reports the broken image by row


def test_length_column_errors_name_the_row(model_and_processor, dataset):
    with pytest.raises(ValueError, match="row 'row-[0-9]+'.*exceed max_length=30"):
        add_length_column(dataset, AllavaCollator(model_and_processor[1], 30))


def test_group_by_length_batches_have_less_padding_than_random_ones(model_and_processor, dataset):
    model, processor = model_and_processor
    collator = AllavaCollator(processor, 1024)
    with_lengths = add_length_column(dataset, collator)
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=4,
        train_sampling_strategy="group_by_length",
        report_to=[],
        use_cpu=True,
        bf16=False,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    trainer = SFTTrainer(
        model=model, args=args, data_collator=collator, train_dataset=with_lengths, processing_class=processor
    )
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == with_lengths["length"]

    def padding(order: list[int]) -> float:
        lengths = with_lengths["length"]
        batches = [order[i : i + 4] for i in range(0, len(order), 4)]
        padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
        return 1 - sum(lengths) / padded

    torch.manual_seed(0)
    grouped = padding(list(iter(sampler)))
    shuffled = padding(torch.randperm(len(with_lengths), generator=torch.Generator().manual_seed(0)).tolist())
    assert grouped < shuffled / 2
