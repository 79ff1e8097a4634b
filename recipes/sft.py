"""Two-stage ALLaVA training with TRL's SFTTrainer.

    # stage 1 (pretrain): compose CLIP + LM, train projector + LM on captions and text
    accelerate launch --config_file recipes/accelerate_configs/zero1.yaml recipes/sft.py \
        --config recipes/allava-phi2/pretrain.yaml
    # stage 2 (finetune): start from the stage-1 checkpoint, train on instructions and text
    accelerate launch --config_file recipes/accelerate_configs/zero1.yaml recipes/sft.py \
        --config recipes/allava-phi2/finetune.yaml

Any YAML key can be overridden on the command line (`--learning_rate 1e-5`, `--output_dir ...`). Stage 1 is chosen by
setting `vision_model_name_or_path` + `text_model_name_or_path`; stage 2 by `model_name_or_path` (a stage-1 output).
Loss counts assistant tokens only (see recipes/collator.py). Every checkpoint holds weights, processor and remote code,
and loads with `AutoModelForImageTextToText.from_pretrained(dir, trust_remote_code=True)`; LoRA runs save adapters,
which `recipes/merge_lora.py` turns into such a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from peft import LoraConfig
from transformers import AutoModelForImageTextToText, AutoProcessor, Trainer, set_seed
from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_quantization_config


REPO = Path(__file__).resolve().parents[1]
if not __package__:  # run as a script (python recipes/x.py, accelerate launch): make the repo importable
    sys.path.insert(0, str(REPO))

from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor  # noqa: E402
from modeling_allava.processing_allava import CHAT_TEMPLATES  # noqa: E402
from recipes.collator import AllavaCollator  # noqa: E402
from recipes.data import load_mixture  # noqa: E402
from recipes.distributed import restore_fsdp_on_cpu  # noqa: E402
from recipes.lengths import add_length_column  # noqa: E402
from recipes.packing import PackedAllavaCollator, packing_unsupported_reason, use_per_sample_attention  # noqa: E402


logger = logging.getLogger("allava.sft")

TRAINABLE_CHOICES = ("allava", "projector_only", "full")
# LoRA goes on the language model's linear layers only (a bare "q_proj" would also match CLIP's attention).
LM_LINEAR_NAMES = (
    "q_proj", "k_proj", "v_proj", "o_proj", "dense", "qkv_proj", "fc1", "fc2", "gate_proj", "up_proj", "down_proj",
    "gate_up_proj",
)  # fmt: skip
# With 4/8-bit loading only the language model is quantised.
KEEP_FULL_PRECISION = ["vision_tower", "multi_modal_projector", "lm_head"]


@dataclass
class AllavaScriptArguments:
    """What TRL's SFTConfig / ModelConfig do not cover: data mixture, stage-1 backbones, trainable parts."""

    dataset_mixture: list[str] | None = field(
        default=None,
        metadata={
            "help": "Datasets to train on: a YAML list of {path, name, split, fraction, epochs} mappings (on the "
            "command line: one JSON object per entry). See recipes/data.py."
        },
    )
    vision_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Stage 1: vision tower to compose from (e.g. openai/clip-vit-large-patch14-336)."},
    )
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Stage 1: causal language model to compose from (e.g. microsoft/phi-2)."}
    )
    projector_type: str = field(default="mlp2x_gelu", metadata={"help": "Stage 1 projector: mlp2x_gelu or linear."})
    trainable: str = field(
        default="allava",
        metadata={
            "help": "allava: projector + LM, vision frozen (both ALLaVA stages); projector_only: LLaVA-1.5 "
            "pretraining; full: everything (tiny random models only).",
            "choices": list(TRAINABLE_CHOICES),
        },
    )
    chat_template: str | None = field(
        default=None,
        metadata={
            "help": f"Override the processor's chat template: one of {sorted(CHAT_TEMPLATES)} or a .jinja file."
        },
    )
    pack_batches: bool = field(
        default=True,
        metadata={
            "help": "Pack each batch's samples into rows of up to max_length tokens instead of padding them: "
            "position_ids restart per sample, attention stays inside each sample, same loss (recipes/packing.py). "
            "Used where the model supports it, padded batches otherwise (the log says why)."
        },
    )

    fused_lm_head_loss: bool = field(
        default=True,
        metadata={
            "help": "Loss from TRL's fused, chunked LM head (never builds the [tokens, vocab] logits; logs entropy "
            "and token accuracy). false: the model's own cross-entropy over full logits, several times cheaper "
            "for tiny models on CPU, where TRL's kernel has no Triton and scores every position."
        },
    )

    def __post_init__(self) -> None:
        # YAML values bypass argparse's `choices`, so check here.
        if self.trainable not in TRAINABLE_CHOICES:
            raise ValueError(f"trainable must be one of {TRAINABLE_CHOICES}, got {self.trainable!r}")
        if self.dataset_mixture is not None:
            self.dataset_mixture = [_json_entry(entry, index) for index, entry in enumerate(self.dataset_mixture)]


def _json_entry(entry, index: int):
    if not isinstance(entry, str):
        return entry
    try:
        return json.loads(entry)
    except json.JSONDecodeError as error:
        raise ValueError(f"dataset_mixture[{index}]: not a JSON object: {entry!r} ({error})") from error


class AllavaSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer, with the option to take the loss from the model's own forward (see `fused_lm_head_loss`)."""

    def __init__(self, *args, fused_lm_head_loss: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fused_lm_head_loss = fused_lm_head_loss

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        if restore_fsdp_on_cpu(self.accelerator.state):  # an FSDP launch on CPU: see recipes/distributed.py
            self.is_fsdp_enabled = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.fused_lm_head_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # transformers' Trainer loss: model(**inputs).loss, normalised by the tokens of the whole accumulated batch.
        return Trainer.compute_loss(self, model, {**inputs, "use_cache": False}, return_outputs, num_items_in_batch)


def load_model_and_processor(script_args: AllavaScriptArguments, model_args: ModelConfig):
    """Stage 1 composes from backbones; stage 2 loads a checkpoint (folder or hub id) through remote code."""
    composing = bool(script_args.vision_model_name_or_path or script_args.text_model_name_or_path)
    if composing == bool(model_args.model_name_or_path):
        raise ValueError(
            "Set either model_name_or_path (stage 2: a stage-1 checkpoint) or both vision_model_name_or_path and "
            "text_model_name_or_path (stage 1: compose from backbones)."
        )
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    if composing:
        if not (script_args.vision_model_name_or_path and script_args.text_model_name_or_path):
            raise ValueError("Stage 1 needs both vision_model_name_or_path and text_model_name_or_path.")
        if model_args.load_in_4bit or model_args.load_in_8bit:
            raise ValueError("4/8-bit loading needs a stage-1 checkpoint in model_name_or_path, not backbones.")
        model = AllavaForConditionalGeneration.from_backbones(
            script_args.vision_model_name_or_path,
            script_args.text_model_name_or_path,
            projector_type=script_args.projector_type,
            dtype=None if dtype == "auto" else dtype,
            attn_implementation=model_args.attn_implementation,
        )
        processor = AllavaProcessor.from_backbones(
            script_args.vision_model_name_or_path, script_args.text_model_name_or_path
        )
    else:
        quantization_config = get_quantization_config(model_args)
        if quantization_config is not None:
            quantization_config.llm_int8_skip_modules = KEEP_FULL_PRECISION
        model = AutoModelForImageTextToText.from_pretrained(
            model_args.model_name_or_path,
            revision=model_args.model_revision,
            trust_remote_code=True,
            dtype=dtype,
            attn_implementation=model_args.attn_implementation,
            quantization_config=quantization_config,
            device_map={"": PartialState().local_process_index} if quantization_config is not None else None,
        )
        processor = AutoProcessor.from_pretrained(
            model_args.model_name_or_path, revision=model_args.model_revision, trust_remote_code=True
        )
    if script_args.chat_template:
        name = script_args.chat_template
        processor.chat_template = CHAT_TEMPLATES[name] if name in CHAT_TEMPLATES else Path(name).read_text()
    return model, processor, composing


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


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` whose trainer state was written (a run killed mid-save leaves a partial one)."""
    folders = [p for p in Path(output_dir).glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    folders = [p for p in folders if p.name.split("-")[-1].isdigit()]
    return str(max(folders, key=lambda p: int(p.name.split("-")[-1]))) if folders else None


def main(script_args: AllavaScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
    # Our collator reads the raw `messages` / `images` columns: SFTTrainer must neither drop nor re-tokenise them.
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    set_seed(training_args.seed)  # the new projector's initialisation is part of the run

    # Data first: a broken mixture fails before minutes of model loading.
    train_dataset = load_mixture(script_args.dataset_mixture, seed=training_args.seed)
    model, processor, composed = load_model_and_processor(script_args, model_args)
    counts = model.set_trainable_modules(script_args.trainable)
    logger.info("trainable parameters per part (%s): %s", script_args.trainable, counts)
    if script_args.trainable == "projector_only" or model_args.use_peft:
        # Frozen embeddings: make their output require grad so text-only batches and checkpointed layers backprop.
        model.enable_input_require_grads()

    peft_config = lora_config(model_args) if model_args.use_peft else None
    if peft_config is not None and composed:
        # The adapter records its base model's path: save the freshly composed model next to the run.
        base_dir = (Path(training_args.output_dir) / "base_model").resolve()
        if training_args.process_index == 0:
            model.save_pretrained(base_dir)
            processor.save_pretrained(base_dir)
        model.name_or_path = model.config._name_or_path = str(base_dir)

    collator = AllavaCollator(processor, training_args.max_length, training_args.pad_to_multiple_of)
    not_packable = packing_unsupported_reason(model.config, training_args.max_length)
    if script_args.pack_batches and not_packable is None:
        attention = use_per_sample_attention(model)  # sdpa on each sample alone: no work between samples
        collator = PackedAllavaCollator(
            processor, training_args.max_length, training_args.pad_to_multiple_of, attn_implementation=attention
        )
    elif script_args.pack_batches:
        logger.warning("padded batches, not packed: %s", not_packable)
    if training_args.train_sampling_strategy in ("group_by_length", "batch_rebalance"):
        # transformers' length-grouped samplers read a `length` column: the collator's exact token counts.
        with PartialState().main_process_first():
            train_dataset = add_length_column(train_dataset, collator, num_proc=training_args.dataset_num_proc)

    trainer = AllavaSFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        processing_class=processor,  # saved into every checkpoint and the final folder
        peft_config=peft_config,
        fused_lm_head_loss=script_args.fused_lm_head_loss,
    )
    resume = training_args.resume_from_checkpoint
    if resume in ("true", "True", "latest"):
        resume = last_complete_checkpoint(training_args.output_dir)
        if resume is None:
            raise ValueError(
                f"resume_from_checkpoint=latest but {training_args.output_dir} has no complete checkpoint"
            )
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json (loss history) beside the model: the loss curve and card read it
    if training_args.process_index == 0:
        logger.info(
            "saved %s (load with AutoModelForImageTextToText, trust_remote_code=True)", training_args.output_dir
        )


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    parser = TrlParser((AllavaScriptArguments, SFTConfig, ModelConfig))
    main(*parser.parse_args_and_config())
