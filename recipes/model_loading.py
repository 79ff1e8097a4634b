"""What recipes/sft.py trains: processor and model of either stage (stage 1 composes backbones, stage 2 loads a
checkpoint: an ALLaVA one with the installed classes, any other only with --trust_remote_code), frozen per
`trainable`, LoRA on top. A model or processor that cannot be loaded is one line naming the field."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import PartialState
from peft import LoraConfig
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import ModelConfig, SFTConfig, get_quantization_config

from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor
from modeling_allava.processing_allava import CHAT_TEMPLATES
from recipes.remote_code import RemoteCodeRefusedError, load_pretrained
from recipes.script_arguments import AllavaScriptArguments
from toolkit.cli import InputError


# LoRA goes on the language model's linear layers only (a bare "q_proj" would also match CLIP's attention).
LM_LINEAR_NAMES = (
    "q_proj", "k_proj", "v_proj", "o_proj", "dense", "qkv_proj", "fc1", "fc2", "gate_proj", "up_proj", "down_proj",
    "gate_up_proj",
)  # fmt: skip
# With 4/8-bit loading only the language model is quantised.
KEEP_FULL_PRECISION = ["vision_tower", "multi_modal_projector", "lm_head"]
# How the trainable-parameter log line groups parameters (the first name part found in a parameter's name).
TRAINABLE_PARTS = ("lora_", "multi_modal_projector", "vision_tower", "language_model", "lm_head")
BACKBONE_FIELDS = "vision_model_name_or_path / text_model_name_or_path"


def training_stage(script_args: AllavaScriptArguments, model_args: ModelConfig) -> bool:
    """True for stage 1 (compose from backbones), False for stage 2 (a checkpoint); a mix of both is an error."""
    composing = bool(script_args.vision_model_name_or_path or script_args.text_model_name_or_path)
    if composing == bool(model_args.model_name_or_path):
        raise InputError(
            "Set either model_name_or_path (stage 2: a stage-1 checkpoint) or both vision_model_name_or_path and "
            "text_model_name_or_path (stage 1: compose from backbones)."
        )
    if composing and not (script_args.vision_model_name_or_path and script_args.text_model_name_or_path):
        raise InputError("Stage 1 needs both vision_model_name_or_path and text_model_name_or_path.")
    if composing and (model_args.load_in_4bit or model_args.load_in_8bit):
        raise InputError("4/8-bit loading needs a stage-1 checkpoint in model_name_or_path, not backbones.")
    return composing


@contextmanager
def loading(field_name: str, name: str):
    """A model or processor that cannot be loaded (no such hub repo, offline, no config) is named in one line."""
    try:
        yield
    except RemoteCodeRefusedError as error:
        raise InputError(f"{field_name}: {error}") from None
    except OSError as error:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise InputError(f"{field_name} {name!r}: cannot load it ({first})") from error


def load_processor(
    script_args: AllavaScriptArguments, model_args: ModelConfig, composing: bool, trust_remote_code: bool = False
):
    """The processor alone (seconds): the collator needs it to check every row before the model loads."""
    vision, text = script_args.vision_model_name_or_path, script_args.text_model_name_or_path
    if composing:
        with loading(BACKBONE_FIELDS, f"{vision} + {text}"):
            processor = AllavaProcessor.from_backbones(vision, text)
    else:
        with loading("model_name_or_path", model_args.model_name_or_path):
            processor = load_pretrained(
                AutoProcessor, model_args.model_name_or_path, trust_remote_code, revision=model_args.model_revision
            )
    name = script_args.chat_template
    if name:
        if name not in CHAT_TEMPLATES and not Path(name).is_file():
            raise InputError(f"chat_template: {name!r} is neither one of {sorted(CHAT_TEMPLATES)} nor a file")
        processor.chat_template = CHAT_TEMPLATES[name] if name in CHAT_TEMPLATES else Path(name).read_text()
    return processor


def load_model(
    script_args: AllavaScriptArguments, model_args: ModelConfig, composing: bool, trust_remote_code: bool = False
):
    """Stage 1 composes from backbones; stage 2 loads a checkpoint, 4/8-bit if asked (the language model only)."""
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    if composing:
        vision, text = script_args.vision_model_name_or_path, script_args.text_model_name_or_path
        with loading(BACKBONE_FIELDS, f"{vision} + {text}"):
            return AllavaForConditionalGeneration.from_backbones(
                vision,
                text,
                projector_type=script_args.projector_type,
                vision_feature_layer=script_args.vision_feature_layer,
                dtype=None if dtype == "auto" else dtype,
                attn_implementation=model_args.attn_implementation,
            )
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:
        quantization_config.llm_int8_skip_modules = KEEP_FULL_PRECISION
    with loading("model_name_or_path", model_args.model_name_or_path):
        return load_pretrained(
            AutoModelForImageTextToText,
            model_args.model_name_or_path,
            trust_remote_code,
            revision=model_args.model_revision,
            dtype=dtype,
            attn_implementation=model_args.attn_implementation,
            quantization_config=quantization_config,
            device_map={"": PartialState().local_process_index} if quantization_config is not None else None,
        )


def prepare_for_training(
    model, processor, script_args: AllavaScriptArguments, model_args: ModelConfig, training_args: SFTConfig
) -> LoraConfig | None:
    """Freeze per `trainable`; with LoRA, point the model at the base its adapter will record and return the config.

    A LoRA run from freshly composed backbones first saves them as `<output_dir>/base_model`, its recorded base.
    """
    model.set_trainable_modules(script_args.trainable)
    if script_args.trainable == "projector_only" or model_args.use_peft:
        # Frozen embeddings: make their output require grad so text-only batches and checkpointed layers backprop.
        model.enable_input_require_grads()
    if not model_args.use_peft:
        return None
    if model_args.model_name_or_path:  # a local folder's absolute path (merging then works from any folder), or the id
        path = Path(model_args.model_name_or_path).expanduser()
        base = str(path.resolve()) if path.is_dir() else model_args.model_name_or_path
    else:
        base = str((Path(training_args.output_dir) / "base_model").resolve())
        if training_args.process_index == 0:
            model.save_pretrained(base)
            processor.save_pretrained(base)
    model.name_or_path = model.config._name_or_path = base
    return lora_config(model_args)


def lora_config(model_args: ModelConfig) -> LoraConfig:
    """LoRA on the language model's linear layers; the projector is trained fully and saved with the adapter."""
    names = model_args.lora_target_modules or LM_LINEAR_NAMES
    return LoraConfig(
        task_type=model_args.lora_task_type,
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=rf".*language_model.*\.({'|'.join(names)})",
        modules_to_save=["multi_modal_projector", *(model_args.lora_modules_to_save or [])],
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
        bias="none",
    )


def trainable_report(model: torch.nn.Module) -> str:
    """Trainable parameters of the model as it trains, per part. Counted after peft has wrapped the model (LoRA
    freezes the language model and adds adapters), so `set_trainable_modules`' counts would not tell it."""
    parts: Counter[str] = Counter()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            parts[next((part for part in TRAINABLE_PARTS if part in name), "other")] += parameter.numel()
    trainable, total = parts.total(), sum(parameter.numel() for parameter in model.parameters())
    detail = ", ".join(f"{'LoRA adapters' if part == 'lora_' else part} {count:,}" for part, count in parts.items())
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%): {detail}"
