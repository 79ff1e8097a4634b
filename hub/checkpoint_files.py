"""What an ALLaVA checkpoint folder holds and how it is checked: shared by the pusher, converter and exporter.

`read_json` reads a folder's JSON files with errors naming the file, `read_allava_config` refuses anything that is not
an ALLaVA (ours) checkpoint with a pointer to the step that makes one, and `check_upload_folder` checks that a folder
loads with `from_pretrained(trust_remote_code=True)` on a machine without this repo.
"""

import json
from pathlib import Path
from typing import Any

from toolkit.cli import InputError


REMOTE_CODE_FILES = ("configuration_allava.py", "modeling_allava.py", "processing_allava.py")


def read_json(path: Path, required: bool = False) -> dict[str, Any] | None:
    """Read a JSON object; a missing optional file is None, a broken one is an error naming the file."""
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} not found.")
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error}).") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}.")
    return value


def check_not_adapter(checkpoint: Path) -> None:
    """A LoRA run's folder holds an adapter, not a model: name the merge step instead of failing on missing weights."""
    has_weights = any((checkpoint / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json"))
    if (checkpoint / "adapter_config.json").is_file() and not has_weights:
        raise InputError(
            f"{checkpoint} holds a LoRA adapter (adapter_config.json), not full weights: merge it first with "
            f"python recipes/merge_lora.py {checkpoint} <output_dir>"
        )


def read_allava_config(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's config.json, refused with a pointer to the converter unless it is an ALLaVA (ours) one."""
    check_not_adapter(checkpoint)
    config = read_json(checkpoint / "config.json", required=True)
    if config.get("model_type") != "allava":
        raise ValueError(
            f"{checkpoint / 'config.json'}: model_type is {config.get('model_type')!r}, not 'allava'. Convert "
            "original ALLaVA checkpoints first: python hub/convert_allava_checkpoint.py <original> <output>."
        )
    return config


def check_upload_folder(folder: Path) -> None:
    """Fail before uploading if the folder lacks anything a fresh `from_pretrained(trust_remote_code=True)` needs."""
    from modeling_allava.modeling_allava import AUTO_MODEL_CLASSES  # here: the CLI checks its arguments before torch

    config = read_json(folder / "config.json", required=True)
    missing = [key for key in ("AutoConfig", *AUTO_MODEL_CLASSES) if key not in (config.get("auto_map") or {})]
    processor = read_json(folder / "processor_config.json") or {}
    if "AutoProcessor" not in (processor.get("auto_map") or {}):
        missing.append("processor_config.json auto_map.AutoProcessor")
    expected = [*REMOTE_CODE_FILES, "generation_config.json", "tokenizer_config.json", "chat_template.jinja"]
    missing += [name for name in expected if not (folder / name).is_file()]
    if not (folder / "model.safetensors").is_file() and not (folder / "model.safetensors.index.json").is_file():
        missing.append("model.safetensors(.index.json)")
    if missing:
        raise RuntimeError(f"{folder}: the upload folder is incomplete: missing {', '.join(missing)}.")
