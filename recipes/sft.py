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

from recipes.sft_args import parse_checked, precheck
from toolkit.cli import run


if __name__ == "__main__":  # `python recipes/sft.py`: a missing file or path fails before seconds of torch imports
    if code := run(precheck, sys.argv[1:]):
        sys.exit(code)


from accelerate import PartialState  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import set_seed  # noqa: E402
from trl import ModelConfig, SFTConfig  # noqa: E402

from recipes.checkpoints import discard_checkpoints, resume_point  # noqa: E402
from recipes.collator import AllavaCollator  # noqa: E402
from recipes.data import load_mixture  # noqa: E402
from recipes.lengths import add_length_column  # noqa: E402
from recipes.model_loading import (  # noqa: E402
    load_model,
    load_processor,
    prepare_for_training,
    trainable_report,
    training_stage,
)
from recipes.packing import PackedAllavaCollator, training_collator  # noqa: E402
from recipes.row_checks import check_rows, drop_or_refuse  # noqa: E402
from recipes.script_arguments import AllavaScriptArguments  # noqa: E402
from recipes.streaming import (  # noqa: E402
    EncodedStream,
    load_position,
    refuse_unstreamable,
    stream_mixture,
    trainer_sample,
)
from recipes.token_budget import check_budget  # noqa: E402
from recipes.trainer import AllavaSFTTrainer, allava_settings  # noqa: E402
from recipes.training_summary import summary_of_run, write_summary_and_card  # noqa: E402


logger = logging.getLogger("allava.sft")
CTRL_C_BEFORE_TRAINING = "before any training step; nothing to keep"  # later, the trainer keeps a checkpoint
LENGTH_SAMPLERS = ("group_by_length", "batch_rebalance")  # transformers' samplers that read a `length` column


def main(argv: list[str] | None = None) -> int:
    """`python recipes/sft.py` and `allava-sft`: log to stderr, check and train, return the exit code."""
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    return run(precheck, argv) or run(train, argv, on_ctrl_c=CTRL_C_BEFORE_TRAINING)


def train(argv: list[str]) -> None:
    """Train one stage: arguments -> data (every row checked) -> processor and model -> trainer -> train -> save.
    `argv` is the command line (recipe via --config, flag overrides); it is recorded in training_summary.json."""
    script_args, training_args, model_args = parse_arguments(argv)
    allava_settings(training_args)
    composing = training_stage(script_args, model_args)
    output_dir, main_process = training_args.output_dir, training_args.process_index == 0
    resume = resume_point(output_dir, training_args.resume_from_checkpoint, script_args.overwrite_output_dir)
    set_seed(training_args.seed)  # the new projector's initialisation is part of the run

    # Data and every row's check first: a broken mixture fails before minutes of model loading.
    sources: list[dict] = []
    mixture = open_mixture(script_args, training_args, sources)
    processor = load_processor(script_args, model_args, composing, training_args.trust_remote_code)
    collator = AllavaCollator(processor, training_args.max_length, training_args.pad_to_multiple_of)
    train_dataset, stream, dropped = checked_rows(mixture, collator, script_args, training_args, resume)

    model = load_model(script_args, model_args, composing, training_args.trust_remote_code)
    peft_config = prepare_for_training(model, processor, script_args, model_args, training_args)
    collator = training_collator(collator, model, script_args.pack_batches)
    if stream is not None:
        stream.packed = isinstance(collator, PackedAllavaCollator)  # what a token budget counts (token_budget.py)
    elif training_args.train_sampling_strategy in LENGTH_SAMPLERS:  # the collator's exact token counts
        with PartialState().main_process_first():
            train_dataset = add_length_column(train_dataset, collator, num_proc=training_args.dataset_num_proc)

    trainer = AllavaSFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,  # with a stream, batches come from `stream` (recipes/streaming.py)
        processing_class=processor,  # saved into every checkpoint and the final folder
        peft_config=peft_config,
        fused_lm_head_loss=script_args.fused_lm_head_loss,
        stream=stream,
    )
    logger.info("%s (%s)", trainable_report(trainer.model), "LoRA" if peft_config else script_args.trainable)
    if script_args.overwrite_output_dir and resume is None and main_process:
        discard_checkpoints(output_dir)
    trainer.train_or_keep(resume)
    trainer.save_model(output_dir)
    trainer.save_state()  # trainer_state.json (loss history) beside the model: the loss curve and card read it
    dropped = trainer.rows_dropped(dropped)
    if main_process:
        summary = summary_of_run(script_args, training_args, model_args, trainer.state, sources, dropped, argv)
        write_summary_and_card(output_dir, summary, model.config.to_dict(), processor)
        logger.info(saved_message(output_dir, model.name_or_path if peft_config else None))
    # Each process leaves its process group once every process is done (a no-op in one process). Left to interpreter
    # exit, the two-process streaming test's rank 1 aborted (SIGABRT, "terminate called without an active exception")
    # after all work was saved in 2 of 12 runs; with the group destroyed, in none of 12.
    trainer.accelerator.wait_for_everyone()
    PartialState().destroy_process_group()


def parse_arguments(argv: list[str]) -> tuple[AllavaScriptArguments, SFTConfig, ModelConfig]:
    """Recipe + command line -> the three argument objects; unknown keys, bad types and ranges fail first."""
    return parse_checked((AllavaScriptArguments, SFTConfig, ModelConfig), argv)


def open_mixture(script_args: AllavaScriptArguments, training_args: SFTConfig, sources: list[dict]):
    """The mixture, loaded whole (map-style) or as a stream (rows read while training); `sources` gets what each
    entry resolved to, for the summary."""
    if not script_args.streaming:
        return load_mixture(script_args.dataset_mixture, seed=training_args.seed, sources=sources)
    refuse_unstreamable(training_args)
    if script_args.max_tokens_per_batch is not None:
        check_budget(script_args.max_tokens_per_batch, training_args.max_length)
    training_args.ignore_data_skip = True  # the stream skips what was consumed itself, without collating it
    return stream_mixture(script_args.dataset_mixture, training_args.seed, script_args.shuffle_buffer, sources)


def checked_rows(
    mixture, collator: AllavaCollator, script_args: AllavaScriptArguments, training_args: SFTConfig, resume
) -> tuple[Dataset, EncodedStream | None, int]:
    """(dataset for the trainer, stream or None, rows dropped). A map-style mixture has every row checked now (bad
    ones stop the run or are dropped: recipes/row_checks.py); a stream checks each row as it arrives, after the rows
    a resumed run already trained on."""
    if not script_args.streaming:
        with PartialState().main_process_first():
            problems = check_rows(mixture, collator, num_proc=training_args.dataset_num_proc)
        report_dir = training_args.output_dir if training_args.process_index == 0 else None
        dataset, dropped = drop_or_refuse(mixture, problems, script_args.drop_bad_rows, report_dir)
        return dataset, None, dropped
    rank, world_size = training_args.process_index, training_args.world_size
    skip, dropped = load_position(resume, rank, world_size) if resume else (0, 0)
    stream = EncodedStream(mixture, collator, rank, world_size, script_args.drop_bad_rows, skip, dropped)
    stream.token_budget = script_args.max_tokens_per_batch
    return trainer_sample(script_args.dataset_mixture), stream, dropped


def saved_message(output_dir: str, lora_base: str | None) -> str:
    """The run's last log line: what was saved and how to load it."""
    if lora_base is None:
        return f"saved {output_dir} (load with AutoModelForImageTextToText, trust_remote_code=True)"
    return (
        f"saved a LoRA adapter (+ projector) on {lora_base} to {output_dir}: merge it into a full checkpoint with "
        f"`python recipes/merge_lora.py {output_dir} <merged_dir>`, or load it with peft's "
        f"AutoPeftModel.from_pretrained({output_dir!r}, trust_remote_code=True)"
    )


if __name__ == "__main__":
    sys.exit(main())
