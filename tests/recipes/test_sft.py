"""recipes/sft.py end to end on tiny models: two stages, reloadable checkpoints, trainable parts, config errors."""

from pathlib import Path

import pytest
import torch
import yaml
from trl import ModelConfig, SFTConfig, TrlParser

from modeling_allava import AllavaForConditionalGeneration
from recipes import sft
from recipes.data import parse_mixture
from tests.recipes.conftest import (
    REPO,
    log_history,
    logits_in_fresh_process,
    mixture_args,
    quick_args,
    red_pixels,
    run_sft,
)


REMOTE_CODE = {"configuration_allava.py", "modeling_allava.py", "processing_allava.py"}
PROCESSOR_FILES = {"processor_config.json", "tokenizer.json", "chat_template.jinja"}


def saved_files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_two_stage_training_learns_and_saves_reloadable_checkpoints(stage1, shapes_dataset, tmp_path):
    stage1_losses = [entry["loss"] for entry in log_history(stage1 / "checkpoint-12") if "loss" in entry]
    assert len(stage1_losses) == 12
    assert sum(stage1_losses[-3:]) / 3 < sum(stage1_losses[:3]) / 3 - 0.5  # from ~6.6 (uniform over 768 tokens)
    output_dir = tmp_path / "stage2"
    run_sft(
        ["--config", str(REPO / "recipes/tiny/finetune.yaml"), "--model_name_or_path", str(stage1)]
        + mixture_args(shapes_dataset, "instruct_shapes", "text")
        + quick_args(output_dir, 8, save_steps=4, learning_rate=1e-3)
    )
    stage2_losses = [entry["loss"] for entry in log_history(output_dir / "checkpoint-8") if "loss" in entry]
    assert stage2_losses[0] < stage1_losses[0] - 0.5  # stage 2 starts from the trained stage-1 weights
    for folder in (stage1, stage1 / "checkpoint-6", output_dir / "checkpoint-4", output_dir):
        assert REMOTE_CODE | PROCESSOR_FILES | {"model.safetensors", "config.json"} <= saved_files(folder), folder
    for folder, fresh in zip(
        (output_dir, output_dir / "checkpoint-4"),
        logits_in_fresh_process(tmp_path, output_dir, output_dir / "checkpoint-4"),
    ):
        here = AllavaForConditionalGeneration.from_pretrained(folder).eval()
        with torch.no_grad():
            logits = here(input_ids=fresh["input_ids"], pixel_values=red_pixels(folder)).logits
        torch.testing.assert_close(fresh["logits"], logits)


@pytest.mark.parametrize("trainable", ["allava", "projector_only"])
def test_frozen_parts_stay_unchanged_with_activation_checkpointing(
    trainable, tiny_backbones, shapes_dataset, tmp_path
):
    """Text-only and image rows mixed, checkpointed layers, frozen embeddings: gradients still reach what trains."""
    vision, text = tiny_backbones
    torch.manual_seed(0)
    initial = AllavaForConditionalGeneration.from_backbones(str(vision), str(text)).state_dict()
    run_sft(
        ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
        + ["--trainable", trainable, "--activation_checkpointing", "true", "--bf16", "false", "--max_length", "256"]
        + mixture_args(shapes_dataset, "caption_shapes", "text")
        + quick_args(tmp_path, 3, learning_rate=1e-2, save_strategy="no", seed=0)
    )
    trained = AllavaForConditionalGeneration.from_pretrained(tmp_path).state_dict()
    changed = {name for name, tensor in trained.items() if not torch.equal(tensor, initial[name])}
    parts = {name.split(".")[1] if name.startswith("model.") else name.split(".")[0] for name in changed}
    expected = {"multi_modal_projector", "language_model", "lm_head"}
    assert parts == (expected if trainable == "allava" else {"multi_modal_projector"})
    assert all(name in changed for name in trained if "multi_modal_projector" in name)


def parse(args: list[str]):
    return sft.parse_arguments(args)


def test_config_errors_name_the_key(tmp_path, shapes_dataset):
    config = yaml.safe_load((REPO / "recipes/tiny/pretrain.yaml").read_text())
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({**config, "learning_rat": 1e-3}))
    with pytest.raises(ValueError, match="learning_rat"):
        parse(["--config", str(tmp_path / "typo.yaml")])
    (tmp_path / "stage.yaml").write_text(yaml.safe_dump({**config, "trainable": "everything"}))
    with pytest.raises(ValueError, match="trainable must be one of"):
        parse(["--config", str(tmp_path / "stage.yaml")])
    with pytest.raises(ValueError, match=r"dataset_mixture\[0\]: not a JSON object"):
        parse(["--dataset_mixture", "{path: x}"])
    missing = ["--config", str(REPO / "recipes/tiny/pretrain.yaml"), "--output_dir", str(tmp_path / "out")]
    missing += mixture_args(shapes_dataset, "caption_shapes", "no_such_subset")
    with pytest.raises(ValueError, match=r"dataset_mixture\[1\].*'no_such_subset'.*cannot load"):
        sft.main(*parse(missing))
    both = mixture_args(shapes_dataset, "text") + ["--model_name_or_path", "x", "--bf16", "false"]
    both += ["--output_dir", str(tmp_path / "o")]
    with pytest.raises(ValueError, match="Set either model_name_or_path"):
        sft.main(*parse(both + ["--text_model_name_or_path", "y"]))


@pytest.mark.parametrize(
    "recipe", sorted(p.relative_to(REPO / "recipes") for p in (REPO / "recipes").glob("*/*.yaml"))
)
def test_every_recipe_parses(recipe):
    if recipe.parts[0] == "accelerate_configs":
        assert yaml.safe_load((REPO / "recipes" / recipe).read_text())["distributed_type"]
        return
    # use_cpu: the real recipes ask for bf16, which TrainingArguments only accepts here on CPU
    script_args, training_args, model_args = parse(["--config", str(REPO / "recipes" / recipe), "--use_cpu", "true"])
    assert parse_mixture(script_args.dataset_mixture)
    stage_1 = recipe.name == "pretrain.yaml"
    assert bool(script_args.vision_model_name_or_path) == stage_1 != bool(model_args.model_name_or_path)
    if recipe.parts[0] != "tiny":  # the paper's recipe: LM + projector, vision frozen, bf16, cosine 2e-5
        assert script_args.trainable == "allava" and training_args.bf16
        assert training_args.learning_rate == 2e-5 and training_args.weight_decay == 0
        devices = 8
        global_batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * devices
        assert global_batch == (256 if stage_1 else 128)
