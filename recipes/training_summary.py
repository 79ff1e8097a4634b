"""What a finished training run leaves next to its model for the model card: `training_summary.json` and README.md.

The summary has the shape hub/model_card.py and hub/push_model.py read: `base_models` (`{"vision": ..., "text": ...}`),
`datasets` (hub dataset ids, the card's metadata), `stages` (one row per training stage: stage 2 carries over stage
1's rows from its base model's summary) and other keys shown as bullets (recipe, overrides, data mixture with
revisions, take_fraction and epochs, steps, tokens seen, final loss, package versions, hardware). The README is
`hub.model_card.build_model_card` on that summary, so the folder's card is the one `hub/push_model.py` would upload.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from hub.model_card import build_model_card
from recipes.sft_args import split_arguments
from toolkit.cli import is_path_like


SUMMARY_FILE = "training_summary.json"
PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")
SECRET_WORDS = ("token", "secret", "password", "api_key")
CARD_EXAMPLE = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in this image?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A cat sleeping on a sofa."}]},
]


def read_summary(folder: str | None) -> dict[str, Any]:
    """A local model folder's summary (stage 1's, when stage 2 starts from it); {} for hub ids or none written."""
    path = Path(folder) / SUMMARY_FILE if folder else None
    if path is None or not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return summary if isinstance(summary, dict) else {}


def is_hub_id(name: Any) -> bool:
    return isinstance(name, str) and not is_path_like(name) and name.count("/") <= 1 and not Path(name).exists()


def command_line_overrides(options: dict[str, list[str]]) -> list[str]:
    """The command-line flags as typed, secrets masked (a `--hub_token` never reaches the card)."""
    flags = []
    for key, values in options.items():
        masked = any(word in key.lower() for word in SECRET_WORDS)
        flags.append(" ".join([f"--{key}", *(["***"] if masked and values else values)]))
    return flags


def hardware(world_size: int) -> str:
    import torch

    if torch.cuda.is_available():
        return f"{world_size} process(es) on {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)"
    return f"{world_size} process(es) on CPU ({platform.processor() or platform.machine()})"


def build_summary(
    *,
    stage: dict[str, Any],
    base_models: dict[str, str],
    base_model_folder: str | None,
    sources: list[dict[str, Any]],
    recipe: str | None,
    overrides: list[str],
    world_size: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The training_summary.json of this run (see the module docstring); `stage` is this run's row of `stages`."""
    earlier = read_summary(base_model_folder)
    hub_datasets = [source["path"] for source in sources if is_hub_id(source["path"])]
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    summary = {
        "recipe": recipe,
        "overrides": overrides,
        "base_models": earlier.get("base_models") or base_models,
        "datasets": list(dict.fromkeys([*(earlier.get("datasets") or []), *hub_datasets])),
        "stages": [*(earlier.get("stages") or []), stage],
        "dataset_mixture": sources,
        **extra,
        "versions": versions,
        "hardware": hardware(world_size),
    }
    return {key: value for key, value in summary.items() if value is not None}


def summary_of_run(
    script_args: Any,
    training_args: Any,
    model_args: Any,
    state: Any,
    sources: list[dict[str, Any]],
    dropped: int,
    argv: list[str] | None,
) -> dict[str, Any]:
    """The summary of a finished `recipes/sft.py` run, from its arguments (the three dataclasses), the Trainer's
    final state, the mixture's `sources` (see `recipes.data.load_mixture`), the bad rows dropped and its argv."""
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    final_loss = round(losses[-1], 4) if losses else None
    vision, text = script_args.vision_model_name_or_path, script_args.text_model_name_or_path
    composing = bool(vision)
    config, options = split_arguments(argv or [])
    trainable = f"LoRA r={model_args.lora_r} + projector" if model_args.use_peft else script_args.trainable
    stage = {
        "name": "pretrain" if composing else "finetune",
        "recipe": config or "",
        "trainable": trainable,
        "steps": state.global_step,
        "epochs": round(state.epoch or 0.0, 3),
        "learning_rate": training_args.learning_rate,
        "global_batch_size": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size,
        "max_length": training_args.max_length,
        "tokens_seen": state.num_input_tokens_seen,
        "final_loss": final_loss,
    }
    return build_summary(
        stage=stage,
        base_models={"vision": vision, "text": text} if composing else {},
        base_model_folder=None if composing else model_args.model_name_or_path,
        sources=sources,
        recipe=config,
        overrides=command_line_overrides(options),
        world_size=training_args.world_size,
        extra={
            "stage": f"1 (pretrain), composed from {vision} + {text}"
            if composing
            else f"2 (finetune), from {model_args.model_name_or_path}",
            "steps": state.global_step,
            "tokens_seen": state.num_input_tokens_seen,
            "final_loss": final_loss,
            "bad_rows_dropped": dropped,
        },
    )


def write_summary_and_card(output_dir: str, summary: dict[str, Any], config: dict[str, Any], processor) -> None:
    """training_summary.json and README.md (our model card, replacing TRL's default one) in `output_dir`."""
    folder = Path(output_dir)
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    state_file = folder / "trainer_state.json"
    trainer_state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else None
    base_models = summary.get("base_models") or {}
    names = [base_models.get("vision"), base_models.get("text")] if isinstance(base_models, dict) else base_models
    card = build_model_card(
        config,
        repo_id=str(folder),
        license="other",
        prompt_example=processor.apply_chat_template(CARD_EXAMPLE, tokenize=False),
        base_models=[name for name in names if is_hub_id(name)],
        datasets=summary.get("datasets") or [],
        training=summary,
        trainer_state=trainer_state,
    )
    card.save(folder / "README.md")
