"""recipes/sft.py with packed batches (its default; the tiny YAML pads), padded ones, and length-grouped ones."""

import pytest

from recipes import sft
from tests.recipes.conftest import REPO, log_history, mixture_args, quick_args, run_sft


def train(tiny_backbones, shapes_dataset, output_dir, *flags: str) -> list[dict]:
    vision, text = tiny_backbones
    run_sft(
        ["--config", str(REPO / "recipes/tiny/pretrain.yaml")]
        + ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
        + mixture_args(shapes_dataset, "caption_shapes", "text")
        + quick_args(output_dir, 3, learning_rate=1e-3)
        + list(flags)
    )
    return [entry for entry in log_history(output_dir / "checkpoint-3") if "loss" in entry]


def test_packed_training_follows_the_padded_run(tiny_backbones, shapes_dataset, tmp_path, monkeypatch):
    collators = []
    trainer_class = sft.AllavaSFTTrainer

    def recording_trainer(*args, **kwargs):
        attention = kwargs["model"].config.text_config._attn_implementation
        collators.append((type(kwargs["data_collator"]).__name__, attention))
        return trainer_class(*args, **kwargs)

    monkeypatch.setattr(sft, "AllavaSFTTrainer", recording_trainer)
    # Packing is sft.py's default (the tiny YAML turns it off: short rows), with sdpa run on each sample's span;
    # --pack_batches false keeps padded batches.
    assert sft.AllavaScriptArguments.__dataclass_fields__["pack_batches"].default is True
    packed = train(tiny_backbones, shapes_dataset, tmp_path / "packed", "--pack_batches", "true")
    padded = train(tiny_backbones, shapes_dataset, tmp_path / "padded", "--pack_batches", "false")
    assert collators == [("PackedAllavaCollator", "sdpa_per_sample"), ("AllavaCollator", "sdpa")]
    assert len(packed) == len(padded) == 3
    # Same samples per step, same loss: step 1 equal to float noise, later steps through the same updates.
    assert packed[0]["loss"] == pytest.approx(padded[0]["loss"], abs=1e-5)
    assert packed[0]["grad_norm"] == pytest.approx(padded[0]["grad_norm"], rel=1e-4)
    for mine, theirs in zip(packed[1:], padded[1:]):
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=1e-3)


def test_group_by_length_adds_the_length_column_for_padded_batches(tiny_backbones, shapes_dataset, tmp_path):
    steps = train(
        tiny_backbones,
        shapes_dataset,
        tmp_path / "grouped",
        "--pack_batches",
        "false",
        "--train_sampling_strategy",
        "group_by_length",
    )
    assert len(steps) == 3  # without the column, transformers' sampler would fail to find lengths
