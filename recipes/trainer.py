"""The trainer recipes/sft.py runs: TRL's SFTTrainer set up for ALLaVA's raw image+text rows, with a switch for the
loss, a streamed mixture's hooks (recipes/streaming.py), and Ctrl-C that keeps the last complete checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Trainer
from trl import SFTConfig, SFTTrainer

from recipes.checkpoints import last_complete_checkpoint
from recipes.distributed import restore_fsdp_on_cpu
from recipes.streaming import EncodedStream, StreamingTrainerMixin
from toolkit.cli import InputError, Interrupted


def allava_settings(training_args: SFTConfig) -> None:
    """SFTConfig as our collator needs it: raw `messages` / `images` columns kept, neither dropped nor re-tokenised
    by SFTTrainer, and tokens seen counted (for the training summary).

    TRL's `packing` / `padding_free` pack text-only datasets (TRL refuses them for images after the model loads);
    ours is `pack_batches`: say so at once, in one line, instead of two switches that look alike."""
    for name in ("packing", "padding_free"):
        if getattr(training_args, name):
            raise InputError(
                f"{name}: TRL's {name} is not used for ALLaVA's image+text rows; packing is pack_batches "
                f"(on by default where the model supports it; docs/packing.md): remove {name} or set it to false"
            )
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    if training_args.include_num_input_tokens_seen in ("no", False):
        training_args.include_num_input_tokens_seen = "non_padding"


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

    def train_or_keep(self, resume: str | None) -> None:
        """`train`; Ctrl-C ends it in one line saying which checkpoint is kept and that a rerun resumes from it."""
        try:
            self.train(resume_from_checkpoint=resume)
        except KeyboardInterrupt:
            output_dir = self.args.output_dir
            kept = last_complete_checkpoint(output_dir)
            hint = (
                f"{Path(kept).name} in {output_dir} is kept; rerun the same command to resume from it"
                if kept
                else "no checkpoint was saved yet; rerun the same command to start again"
            )
            raise Interrupted(f"stopped at step {self.state.global_step}; {hint}") from None
        finally:
            if self.stream is not None:
                self.stream.close()

    def rows_dropped(self, dropped: int) -> int:
        """Bad rows dropped in the whole run: `dropped` for a checked dataset; for a stream, those of every process
        so far (each checkpoint keeps its processes' counts)."""
        if self.stream is None:
            return dropped
        position = self.stream_position or {"dropped": self.stream.dropped}
        return int(self.accelerator.reduce(torch.tensor(position["dropped"]), reduction="sum"))
