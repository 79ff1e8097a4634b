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

Rerunning the same command continues: an output folder with complete checkpoints resumes from the newest
(recipes/checkpoints.py). Every row is checked before the first step (recipes/row_checks.py). The finished folder
holds training_summary.json and our model card as README.md (recipes/training_summary.py). Bad input is one line
and exit 2, Ctrl-C one line and exit 3 (toolkit/cli.py, docs/failure-behaviour.md).
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from recipes.sft_args import parse_checked, precheck
from toolkit.cli import InputError, Interrupted, run


CTRL_C_BEFORE_TRAINING = "before any training step; nothing to keep"  # later, the trainer keeps a checkpoint

if __name__ == "__main__":  # a missing file or path fails here, before seconds of torch / transformers imports
    if code := run(precheck, sys.argv[1:]):
        sys.exit(code)


import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor, Trainer, set_seed  # noqa: E402
from trl import ModelConfig, SFTConfig, SFTTrainer, get_quantization_config  # noqa: E402

from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor  # noqa: E402
from modeling_allava.processing_allava import CHAT_TEMPLATES  # noqa: E402
from recipes.checkpoints import discard_checkpoints, last_complete_checkpoint, resume_point  # noqa: E402
from recipes.collator import AllavaCollator  # noqa: E402
from recipes.data import load_mixture  # noqa: E402
from recipes.distributed import restore_fsdp_on_cpu  # noqa: E402
from recipes.lengths import add_length_column  # noqa: E402
from recipes.packing import PackedAllavaCollator, packing_unsupported_reason, use_per_sample_attention  # noqa: E402
from recipes.remote_code import RemoteCodeRefusedError, load_pretrained  # noqa: E402
from recipes.row_checks import check_rows, drop_or_refuse  # noqa: E402
from recipes.script_arguments import AllavaScriptArguments  # noqa: E402
from recipes.streaming import (  # noqa: E402
    EncodedStream,
    StreamingTrainerMixin,
    load_position,
    refuse_unstreamable,
    stream_mixture,
)
from recipes.token_budget import check_budget  # noqa: E402
from recipes.training_summary import summary_of_run, write_summary_and_card  # noqa: E402


logger = logging.getLogger("allava.sft")

# LoRA goes on the language model's linear layers only (a bare "q_proj" would also match CLIP's attention).
LM_LINEAR_NAMES = (
    "q_proj", "k_proj", "v_proj", "o_proj", "dense", "qkv_proj", "fc1", "fc2", "gate_proj", "up_proj", "down_proj",
    "gate_up_proj",
)  # fmt: skip
# With 4/8-bit loading only the language model is quantised.
KEEP_FULL_PRECISION = ["vision_tower", "multi_modal_projector", "lm_head"]
# How the trainable-parameter log line groups parameters (the first name part found in a parameter's name).
TRAINABLE_PARTS = ("lora_", "multi_modal_projector", "vision_tower", "language_model", "lm_head")


def refuse_trl_packing(training_args: SFTConfig) -> None:
    """TRL's `packing` / `padding_free` pack text-only datasets (TRL refuses them for images after the model loads);
    ours is `pack_batches`: say so at once, in one line, instead of two switches that look alike."""
    for name in ("packing", "padding_free"):
        if getattr(training_args, name):
            raise InputError(
                f"{name}: TRL's {name} is not used for ALLaVA's image+text rows; packing is pack_batches "
                "(on by default where the model supports it; docs/packing.md): remove "
                f"{name} or set it to false"
            )


class AllavaSFTTrainer(StreamingTrainerMixin, SFTTrainer):
    """TRL's SFTTrainer, with the option to take the loss from the model's own forward (see `fused_lm_head_loss`),
    and a streamed mixture's hooks (`stream`, see recipes/streaming.py)."""

    def __init__(self, *args, fused_lm_head_loss: bool = True, stream: EncodedStream | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fused_lm_head_loss = fused_lm_head_loss
        self.stream = stream

    def create_model_card(self, *args, **kwargs) -> None:
        """TRL's generic card is not written: the run ends by writing ours (recipes/training_summary.py)."""

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        if restore_fsdp_on_cpu(self.accelerator.state):  # an FSDP launch on CPU: see recipes/distributed.py
            self.is_fsdp_enabled = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.fused_lm_head_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # transformers' Trainer loss: model(**inputs).loss, normalised by the tokens of the whole accumulated batch.
        return Trainer.compute_loss(self, model, {**inputs, "use_cache": False}, return_outputs, num_items_in_batch)


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
    if composing:
        vision, text = script_args.vision_model_name_or_path, script_args.text_model_name_or_path
        with loading("vision_model_name_or_path / text_model_name_or_path", f"{vision} + {text}"):
            processor = AllavaProcessor.from_backbones(vision, text)
    else:
        with loading("model_name_or_path", model_args.model_name_or_path):
            processor = load_pretrained(
                AutoProcessor,
                model_args.model_name_or_path,
                trust_remote_code,
                revision=model_args.model_revision,
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
    """Stage 1 composes from backbones; stage 2 loads a checkpoint (folder or hub id): an ALLaVA one with the installed
    classes, any other only with SFTConfig's --trust_remote_code."""
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    if composing:
        vision, text = script_args.vision_model_name_or_path, script_args.text_model_name_or_path
        with loading("vision_model_name_or_path / text_model_name_or_path", f"{vision} + {text}"):
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


def base_model_reference(name_or_path: str) -> str:
    """What a LoRA adapter records as its base: a local folder's absolute path (so merging works from any folder),
    else the hub id as given."""
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.is_dir() else name_or_path


def trainable_report(model: torch.nn.Module) -> str:
    """Trainable parameters of the model as it trains (after peft has wrapped it), per part."""
    parts: dict[str, int] = {}
    total = trainable = 0
    for name, parameter in model.named_parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
            part = next((p for p in TRAINABLE_PARTS if p in name), "other")
            part = "LoRA adapters" if part == "lora_" else part
            parts[part] = parts.get(part, 0) + parameter.numel()
    detail = ", ".join(f"{part} {count:,}" for part, count in parts.items())
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%): {detail}"


def main(
    script_args: AllavaScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    argv: list[str] | None = None,
) -> None:
    """Train one stage. `argv` (the command line, when run as a script) is recorded in training_summary.json."""
    refuse_trl_packing(training_args)
    # Our collator reads the raw `messages` / `images` columns: SFTTrainer must neither drop nor re-tokenise them.
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    if training_args.include_num_input_tokens_seen in ("no", False):
        training_args.include_num_input_tokens_seen = "non_padding"  # tokens seen, for the training summary
    composing = training_stage(script_args, model_args)
    main_process = training_args.process_index == 0
    output_dir = training_args.output_dir
    resume = resume_point(output_dir, training_args.resume_from_checkpoint, script_args.overwrite_output_dir)
    set_seed(training_args.seed)  # the new projector's initialisation is part of the run

    # Data and every row's check first: a broken mixture fails before minutes of model loading.
    sources: list[dict] = []
    if script_args.max_tokens_per_batch is not None and not script_args.streaming:
        raise InputError(
            "max_tokens_per_batch works with streaming: true only; a map-style mixture is batched by "
            "per_device_train_batch_size"
        )
    if script_args.streaming:  # rows are checked as they stream (recipes/streaming.py)
        refuse_unstreamable(training_args)
        training_args.ignore_data_skip = True  # the stream skips what was consumed itself, without collating it
        mixture = stream_mixture(script_args.dataset_mixture, training_args.seed, script_args.shuffle_buffer, sources)
    else:
        train_dataset = load_mixture(script_args.dataset_mixture, seed=training_args.seed, sources=sources)
    processor = load_processor(script_args, model_args, composing, training_args.trust_remote_code)
    checker = AllavaCollator(processor, training_args.max_length, training_args.pad_to_multiple_of)
    stream = None
    if script_args.streaming:
        rank, world_size = training_args.process_index, training_args.world_size
        skip, dropped = load_position(resume, rank, world_size) if resume else (0, 0)
        stream = EncodedStream(mixture, checker, rank, world_size, script_args.drop_bad_rows, skip, dropped)
        train_dataset = mixture  # what SFTTrainer is given; batches come from `stream` (AllavaSFTTrainer)
    else:
        with PartialState().main_process_first():
            problems = check_rows(train_dataset, checker, num_proc=training_args.dataset_num_proc)
        train_dataset, dropped = drop_or_refuse(
            train_dataset, problems, script_args.drop_bad_rows, output_dir if main_process else None
        )

    model = load_model(script_args, model_args, composing, training_args.trust_remote_code)
    model.set_trainable_modules(script_args.trainable)
    if script_args.trainable == "projector_only" or model_args.use_peft:
        # Frozen embeddings: make their output require grad so text-only batches and checkpointed layers backprop.
        model.enable_input_require_grads()

    peft_config = lora_config(model_args) if model_args.use_peft else None
    if peft_config is not None and composing:
        # The adapter records its base model's path: save the freshly composed model next to the run.
        base_dir = (Path(output_dir) / "base_model").resolve()
        if main_process:
            model.save_pretrained(base_dir)
            processor.save_pretrained(base_dir)
        model.name_or_path = model.config._name_or_path = str(base_dir)
    elif peft_config is not None:
        model.name_or_path = model.config._name_or_path = base_model_reference(model_args.model_name_or_path)

    collator = AllavaCollator(processor, training_args.max_length, training_args.pad_to_multiple_of)
    not_packable = packing_unsupported_reason(model.config, training_args.max_length)
    if script_args.pack_batches and not_packable is None:
        attention = use_per_sample_attention(model)  # sdpa on each sample alone: no work between samples
        collator = PackedAllavaCollator(
            processor, training_args.max_length, training_args.pad_to_multiple_of, attn_implementation=attention
        )
    elif script_args.pack_batches:
        logger.warning("padded batches, not packed: %s", not_packable)
    if stream is not None and script_args.max_tokens_per_batch is not None:
        check_budget(script_args.max_tokens_per_batch, training_args.max_length)
        stream.token_budget = script_args.max_tokens_per_batch
        stream.packed = isinstance(collator, PackedAllavaCollator)
    if stream is None and training_args.train_sampling_strategy in ("group_by_length", "batch_rebalance"):
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
        stream=stream,
    )
    logger.info("%s (%s)", trainable_report(trainer.model), "LoRA" if peft_config else script_args.trainable)
    if script_args.overwrite_output_dir and resume is None and main_process:
        discard_checkpoints(output_dir)
    try:
        trainer.train(resume_from_checkpoint=resume)
    except KeyboardInterrupt:
        kept = last_complete_checkpoint(output_dir)
        hint = (
            f"{Path(kept).name} in {output_dir} is kept; rerun the same command to resume from it"
            if kept
            else "no checkpoint was saved yet; rerun the same command to start again"
        )
        raise Interrupted(f"stopped at step {trainer.state.global_step}; {hint}") from None
    trainer.save_model(output_dir)
    trainer.save_state()  # trainer_state.json (loss history) beside the model: the loss curve and card read it
    if stream is not None:  # rows dropped by every process so far (each checkpoint keeps its processes' counts)
        position = trainer.stream_position or {"dropped": stream.dropped}
        dropped = int(trainer.accelerator.reduce(torch.tensor(position["dropped"]), reduction="sum"))
    if main_process:
        summary = summary_of_run(script_args, training_args, model_args, trainer.state, sources, dropped, argv)
        write_summary_and_card(output_dir, summary, model.config.to_dict(), processor)
        if peft_config is not None:
            logger.info(
                "saved a LoRA adapter (+ projector) on %s to %s: merge it into a full checkpoint with "
                "`python recipes/merge_lora.py %s <merged_dir>`, or load it with peft's "
                "AutoPeftModel.from_pretrained(%r, trust_remote_code=True)",
                model.name_or_path, output_dir, output_dir, output_dir,
            )  # fmt: skip
        else:
            logger.info("saved %s (load with AutoModelForImageTextToText, trust_remote_code=True)", output_dir)


ARGUMENT_CLASSES = (AllavaScriptArguments, SFTConfig, ModelConfig)


def parse_arguments(argv: list[str]) -> tuple[AllavaScriptArguments, SFTConfig, ModelConfig]:
    """Recipe + command line -> the three argument objects; unknown keys, bad types and ranges fail first."""
    return parse_checked(ARGUMENT_CLASSES, argv)


def cli(argv: list[str]) -> None:
    """The command: check, parse and train (`python recipes/sft.py --config ... [--key value ...]`)."""
    precheck(argv)
    main(*parse_arguments(argv), argv=argv)


def command() -> int:
    """`python recipes/sft.py` and `allava-sft`: log to stderr, run `cli` on sys.argv, return the exit code."""
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    return run(cli, sys.argv[1:], on_ctrl_c=CTRL_C_BEFORE_TRAINING)


if __name__ == "__main__":
    sys.exit(command())
