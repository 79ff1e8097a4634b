"""recipes/sft.py's own options: what TRL's SFTConfig and ModelConfig do not cover (data mixture, stage-1 backbones,
trainable parts, ALLaVA's batching and streaming switches). Kept apart so the script reads as the training run."""

from __future__ import annotations

from dataclasses import dataclass, field

from modeling_allava import TRAINABLE_STAGES
from modeling_allava.processing_allava import CHAT_TEMPLATES
from recipes.sft_args import mixture_entry, mixture_not_a_list
from toolkit.cli import InputError


@dataclass
class AllavaScriptArguments:
    """What TRL's SFTConfig / ModelConfig do not cover: data mixture, stage-1 backbones, trainable parts."""

    dataset_mixture: list[str] | None = field(
        default=None,
        metadata={
            "help": "Datasets to train on: a YAML list of {path, name, split, take_fraction, epochs} mappings (on the "
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
    vision_feature_layer: int = field(
        default=-2, metadata={"help": "Stage 1: the vision layer the projector reads (LLaVA: -2, the penultimate)."}
    )
    trainable: str = field(
        default="allava",
        metadata={
            "help": "allava: projector + LM, vision frozen (both ALLaVA stages); projector_only: LLaVA-1.5 "
            "pretraining; full: everything (tiny random models only).",
            "choices": list(TRAINABLE_STAGES),
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
            "Used where the model supports it, padded batches otherwise (the log says why). The only packing "
            "switch: SFTConfig's packing / padding_free are refused (TRL's dataset packing has no images)."
        },
    )

    drop_bad_rows: bool = field(
        default=False,
        metadata={
            "help": "Every row is checked before the first step; by default any bad row stops the run with all of "
            "them listed. true: train without them (counted in the log and listed in <output_dir>/bad_rows.jsonl). "
            "With streaming, each row is checked as it arrives: a bad row stops the run, or is logged and counted."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the mixture (load_dataset(streaming=True)), each process reading its own share, instead "
            "of loading it whole on every machine; needs max_steps (recipes/streaming.py, docs/training.md)."
        },
    )
    shuffle_buffer: int = field(
        default=10_000, metadata={"help": "With streaming: rows held in the buffer that shuffles the stream."}
    )
    max_tokens_per_batch: int | None = field(
        default=None,
        metadata={
            "help": "With streaming: build each batch by this many tokens (padded: rows x longest row; packed: their "
            "tokens) instead of per_device_train_batch_size rows (recipes/token_budget.py)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start from step 0 even if output_dir holds checkpoints of an earlier run (they are deleted). "
            "By default a rerun resumes from the newest complete checkpoint."
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
        if self.trainable not in TRAINABLE_STAGES:
            raise InputError(f"trainable must be one of {TRAINABLE_STAGES}, got {self.trainable!r}")
        if isinstance(self.dataset_mixture, (str, dict)):
            raise InputError(mixture_not_a_list(self.dataset_mixture, "recipe"))
        if self.dataset_mixture is not None:
            self.dataset_mixture = [mixture_entry(entry, index) for index, entry in enumerate(self.dataset_mixture)]
        if self.max_tokens_per_batch is not None and not self.streaming:
            raise InputError(
                "max_tokens_per_batch works with streaming: true only; a map-style mixture is batched by "
                "per_device_train_batch_size"
            )
