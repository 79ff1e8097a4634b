"""recipes/sft.py end to end on tiny models: two stages, reloadable checkpoints, trainable parts, config errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from modeling_allava import AllavaForConditionalGeneration
from recipes import sft
from recipes.data import parse_mixture
from recipes.model_loading import load_model
from tests.recipes.conftest import (
    REPO,
    log_history,
    logits_in_fresh_process,
    mixture_args,
    quick_args,
    red_pixels,
    run_sft,
)
from toolkit.cli import EXIT_USAGE, InputError


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
    check_summary_and_card(stage1, output_dir, stage2_losses[-1])
    for folder, fresh in zip(
        (output_dir, output_dir / "checkpoint-4"),
        logits_in_fresh_process(tmp_path, output_dir, output_dir / "checkpoint-4"),
    ):
        here = AllavaForConditionalGeneration.from_pretrained(folder).eval()
        with torch.no_grad():
            logits = here(input_ids=fresh["input_ids"], pixel_values=red_pixels(folder)).logits
        torch.testing.assert_close(fresh["logits"], logits)


def check_summary_and_card(stage1: Path, stage2: Path, final_loss: float) -> None:
    """training_summary.json in the format hub/model_card.py reads, and README.md rendered from it."""
    summary = json.loads((stage2 / "training_summary.json").read_text())
    first = json.loads((stage1 / "training_summary.json").read_text())
    assert set(first["base_models"]) == {"vision", "text"} and summary["base_models"] == first["base_models"]
    assert [stage["name"] for stage in summary["stages"]] == ["pretrain", "finetune"]  # stage 1's row carried over
    assert summary["stages"][0] == first["stages"][0]
    assert summary["steps"] == summary["stages"][1]["steps"] == 8
    assert summary["final_loss"] == pytest.approx(final_loss, abs=1e-4)
    assert summary["tokens_seen"] > 0 and summary["bad_rows_dropped"] == 0
    assert [(s["name"], s["take_fraction"], s["epochs"]) for s in summary["dataset_mixture"]] == [
        ("instruct_shapes", 1.0, 1), ("text", 1.0, 1)
    ]  # fmt: skip
    assert all(s["revision"].startswith("local:") for s in summary["dataset_mixture"])  # the folder's content key
    assert summary["datasets"] == []  # hub ids only: these are local folders
    assert {"torch", "transformers", "trl", "peft", "datasets"} <= set(summary["versions"])
    assert "CPU" in summary["hardware"]
    card = (stage2 / "README.md").read_text()
    assert card.startswith("---") and "fine-tuned version of" not in card
    assert "| name | recipe | trainable | steps |" in card and "| finetune |" in card and "| pretrain |" in card
    assert f"final logged loss {final_loss:.4f}" in card


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
    with pytest.raises(ValueError, match="unknown setting 'learning_rat'; did you mean 'learning_rate'"):
        parse(["--config", str(tmp_path / "typo.yaml")])
    (tmp_path / "stage.yaml").write_text(yaml.safe_dump({**config, "trainable": "everything"}))
    with pytest.raises(ValueError, match="trainable must be one of"):
        parse(["--config", str(tmp_path / "stage.yaml")])
    with pytest.raises(ValueError, match=r"dataset_mixture\[0\]: not a JSON object"):
        parse(["--dataset_mixture", "{path: x}"])
    missing = ["--config", str(REPO / "recipes/tiny/pretrain.yaml"), "--output_dir", str(tmp_path / "out")]
    missing += mixture_args(shapes_dataset, "caption_shapes", "no_such_subset")
    with pytest.raises(ValueError, match=r"dataset_mixture\[1\].*'no_such_subset'.*cannot load"):
        sft.train(missing)
    both = mixture_args(shapes_dataset, "text") + ["--model_name_or_path", "x", "--bf16", "false"]
    both += ["--output_dir", str(tmp_path / "o")]
    with pytest.raises(ValueError, match="Set either model_name_or_path"):
        sft.train(both + ["--text_model_name_or_path", "y"])


@pytest.mark.parametrize("flag", ["packing", "padding_free"])
def test_trl_packing_switches_are_refused_in_favour_of_pack_batches(flag, tmp_path):
    """TRL's dataset packing (refused by TRL for images after the model loads) next to ours would be two look-alike
    switches: it stops at once, naming pack_batches."""
    args = ["--config", str(REPO / "recipes/tiny/pretrain.yaml"), "--output_dir", str(tmp_path), f"--{flag}", "true"]
    with pytest.raises(InputError, match=rf"^{flag}: TRL's {flag} is not used .*packing is pack_batches"):
        sft.train(args)
    assert not any(tmp_path.iterdir())  # nothing loaded or written


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("dataset_mixture", "/data/allava", r"dataset_mixture \(.*\): expected a list of .*got '/data/allava'"),
        ("max_steps", [10], r"max_steps \(.*\): expected a whole number, got \[10\]"),
        ("learning_rate", None, r"learning_rate \(.*\): expected a number, got null"),
        ("max_length", -5, r"max_length \(.*\): must be a whole number >= 1 .*got -5"),
        ("max_steps\r", 3, r"unknown setting 'max_steps\\r' \(it contains '\\r'\); did you mean 'max_steps'"),
        ("lеarning_rate", 1e-3, r"unknown setting 'lеarning_rate' \(it contains 'е'\); did you mean 'learning_rate'"),
    ],
)
def test_recipe_values_are_checked_and_named(tmp_path, setting, value, message):
    config = yaml.safe_load((REPO / "recipes/tiny/pretrain.yaml").read_text())
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({**config, setting: value}, allow_unicode=True))
    with pytest.raises(InputError, match=message):
        parse(["--config", str(tmp_path / "recipe.yaml")])


def test_command_line_values_are_checked(tmp_path):
    recipe = ["--config", str(REPO / "recipes/tiny/pretrain.yaml")]
    with pytest.raises(InputError, match=r"max_length \(command line\): must be a whole number >= 1"):
        parse([*recipe, "--max_length", "-5"])
    with pytest.raises(InputError, match=r"unknown setting 'lerning_rate'; did you mean 'learning_rate'"):
        parse([*recipe, "--lerning_rate", "1e-3"])
    with pytest.raises(InputError, match=r"text_model_name_or_path \(command line\): 'x/phi\\r' contains a control"):
        sft.precheck([*recipe, "--text_model_name_or_path", "x/phi\r"])


def test_help_lists_config_and_latest(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--config RECIPE_YAML" in text and "'latest'" in text and "--overwrite_output_dir" in text


@pytest.mark.parametrize("path", ["./typo/backbones/text", "/nowhere/phi", "outputs/tiny/backbones/txt", "~/nope"])
def test_a_missing_local_path_is_named_at_once(path, tiny_backbones, tmp_path):
    vision, _ = tiny_backbones
    argv = ["--config", str(REPO / "recipes/tiny/pretrain.yaml"), "--vision_model_name_or_path", str(vision)]
    with pytest.raises(InputError, match=rf"text_model_name_or_path \(command line\): '{path}' does not exist"):
        sft.precheck([*argv, "--text_model_name_or_path", path])


# Runs recipes/sft.py as `python recipes/sft.py` would, then reports whether torch had been imported by the end.
AS_SCRIPT = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("torch imported:", "torch" in sys.modules)
"""


def test_the_script_reports_bad_input_in_one_line_with_exit_2(tmp_path):
    """As a user runs it: no hub connection attempt, no traceback, one line naming the field, before heavy imports."""
    result = subprocess.run(
        [sys.executable, "-c", AS_SCRIPT, str(REPO / "recipes/sft.py"), "--config",
         str(REPO / "recipes/tiny/pretrain.yaml"), "--vision_model_name_or_path", "./no-such-clip", "--output_dir",
         str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip().splitlines() == [
        "error: vision_model_name_or_path (command line): './no-such-clip' does not exist (a local path; hub ids "
        "look like org/name)"
    ]
    assert result.stdout.strip() == "torch imported: False"
    assert not (tmp_path / "out").exists()


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


@pytest.mark.parametrize(("args", "layer"), [([], -2), (["--vision_feature_layer", "-1"], -1)])
def test_vision_feature_layer_is_a_stage_1_option_with_the_llava_default(tiny_backbones, args, layer):
    vision, text = tiny_backbones
    backbones = ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
    script_args, _, model_args = parse([*backbones, "--use_cpu", "true", *args])
    assert load_model(script_args, model_args, composing=True).config.vision_feature_layer == layer
