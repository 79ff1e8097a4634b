"""Training throughput and peak memory on CPU: the baseline a user would pick vs our padded, grouped, packed batches.

    python -m bench.bench_packing                      # the table in docs/packing.md (~15 minutes on one core)
    python -m bench.bench_packing --samples 16 --hidden 128   # a quick look

All variants run in this one process, on the same rows (ALLaVA-like shapes-world rows, `bench.common.bench_rows`: 576
image tokens per 336 px scene, answers of ANSWER_WORDS words (about 50-600 tokens), 15% text-only rows), the same
random weights and the same TRL `SFTTrainer` settings; only the model class, the collator and the sampler differ:

  (a) baseline: transformers' `LlavaForConditionalGeneration` + TRL's vision collator (`assistant_only_loss`), padded
  (b) ours padded: `AllavaForConditionalGeneration` + `recipes.collator.AllavaCollator`
  (c) ours grouped: (b) in the order transformers' `group_by_length` sampler gives a large dataset (`length` column
      of `recipes.lengths`; on a dataset this small the sampler's mega-batches would hold a single batch, so the rows
      are put in that order here with one mega-batch for all, and read sequentially)
  (d) ours packed, as recipes/sft.py trains: `recipes.packing.PackedAllavaCollator` (rows of up to `--max-length`
      tokens, no attention mask) and the `sdpa_per_sample` attention (sdpa on each sample's span)
  (e) (d) with plain sdpa, which computes each packed row's whole attention under a block-diagonal mask
  (f) (e) in shorter rows (`row_length=--short-rows`; 0: no wider than the batch's longest sample)

Throughput counts non-pad tokens (image tokens included) over the whole `trainer.train()` call (data loading,
collation and image preprocessing included), per second of this process's CPU time with one torch thread (other jobs
on a shared machine barely move it) and per wall-clock second. Peak memory is the peak resident set size (RSS,
sampled every 2 ms from /proc/self/statm) during `train()` minus the RSS just before the model was built: weights,
gradients, optimiser state and activations. glibc is told to return freed memory at once
(`bench.common.release_memory`) so one variant's leftovers do not hide the next one's peak.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from datasets import Dataset
from transformers import LlavaForConditionalGeneration
from transformers.trainer_pt_utils import get_length_grouped_indices
from trl import SFTConfig, SFTTrainer

from bench.common import (
    ModelShape,
    PeakMemory,
    StepClock,
    TokenCounter,
    baseline_model,
    baseline_processor,
    bench_rows,
    phi_clip_config,
    release_memory,
    training_datasets,
)
from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor
from recipes.collator import AllavaCollator
from recipes.lengths import add_length_column
from recipes.packing import SDPA_PER_SAMPLE, PackedAllavaCollator
from recipes.tiny.models import build_tiny_tokenizer


ANSWER_WORDS = (20, 250)  # answers of about 50-600 tokens


def run(name: str, build_model, collator, processor, dataset: Dataset, args: argparse.Namespace, **config) -> dict:
    """Train one epoch over `dataset` with SFTTrainer; return throughput, padding and peak memory."""
    memory = PeakMemory("cpu")  # from before the model is built: weights count too
    model = build_model()
    clock = StepClock("cpu")
    training_args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-packing-"),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        max_length=args.max_length,
        learning_rate=1e-5,
        bf16=False,
        use_cpu=True,
        activation_checkpointing=args.activation_checkpointing,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=args.seed,
        **config,
    )
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,  # None: the one SFTTrainer picks itself (TRL's vision collator for the baseline)
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[clock],
    )
    counter = TokenCounter(trainer.model, processor.tokenizer.pad_token_id, model.config)
    with memory:
        trainer.train()
    counter.handle.remove()
    result = {
        "name": name,
        "steps": len(counter.real),
        "samples": sum(len(lengths) for lengths in counter.samples),
        "tokens_per_s": sum(counter.real) / clock.wall,
        "tokens_per_cpu_s": sum(counter.real) / clock.cpu,
        "padding": 1 - sum(counter.real) / sum(counter.total),
        "largest_batch": max(counter.total),
        "peak_mib": memory.mib,
        "wall_s": clock.wall,
    }
    print(f"  {result}", flush=True)
    del trainer, model
    return result


def parse_args() -> argparse.Namespace:
    """The command line: run sizes, model shape and which variants to run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=48, help="rows trained on per variant (one epoch)")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per step (per_device_train_batch_size)")
    parser.add_argument("--max-length", type=int, default=2048, help="max_length: the longest packed row")
    parser.add_argument("--hidden", type=int, default=512, help="text model width (Phi layout, 64-wide heads)")
    parser.add_argument("--layers", type=int, default=2, help="text model layers")
    parser.add_argument("--vision-hidden", type=int, default=64, help="CLIP width (336 px, patch 14)")
    parser.add_argument("--vision-layers", type=int, default=2, help="CLIP layers")
    parser.add_argument("--activation-checkpointing", action="store_true", help="TRL's default; off here")
    parser.add_argument("--variants", default="abcdef", help="which of a-f to run, in this order")
    parser.add_argument("--short-rows", type=int, default=0, help="(f)'s row_length (0: the batch's longest sample)")
    parser.add_argument("--repeats", type=int, default=1, help="run the variants this many times, keep each's best")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time measures work alone)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def print_setup(rows: list[dict], lengths: list[int], shape: ModelShape, args: argparse.Namespace) -> None:
    """One line on the rows, the model and the machine, so a table can be read against what it measured."""
    print(
        f"{len(rows)} rows, {sum(1 for r in rows if r['images'])} with an image; tokens per row min {min(lengths)} "
        f"mean {sum(lengths) / len(lengths):.0f} max {max(lengths)}; batch {args.batch_size}, max_length "
        f"{args.max_length}; text model Phi {args.layers}x{args.hidden}, CLIP {args.vision_layers}x"
        f"{args.vision_hidden} at {shape.image_size} px; torch threads {torch.get_num_threads()}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def model_builders(config, weights: dict) -> tuple:
    """Builders of our model (per attention) and the baseline, each starting from the same `weights`."""

    def ours_model(attention: str = "sdpa") -> AllavaForConditionalGeneration:
        model = AllavaForConditionalGeneration(config)
        model.load_state_dict(weights)
        model.set_trainable_modules("allava")
        model.set_attn_implementation({"text_config": attention})
        return model

    def theirs_model() -> LlavaForConditionalGeneration:
        model = baseline_model(config)
        model.load_state_dict(weights)
        return model

    return ours_model, theirs_model


def build_variants(
    config, weights: dict, processor, padded: AllavaCollator, datasets: tuple[Dataset, ...], args: argparse.Namespace
) -> dict[str, tuple]:
    """Variants a-f by key: name, model builder, collator (None: TRL's), processor, dataset, SFTConfig extras.

    `datasets` is (ours, theirs, ours grouped by length); `padded` is the collator the lengths were measured with.
    """
    ours, theirs, grouped = datasets
    ours_model, theirs_model = model_builders(config, weights)
    ours_args = {"remove_unused_columns": False, "dataset_kwargs": {"skip_prepare_dataset": True}}
    per_sample = PackedAllavaCollator(processor, args.max_length, attn_implementation=SDPA_PER_SAMPLE)
    packed = PackedAllavaCollator(processor, args.max_length)
    short = PackedAllavaCollator(processor, args.max_length, row_length=args.short_rows)
    return {
        "a": ("(a) TRL + transformers Llava, padded", theirs_model, None, baseline_processor(processor), theirs,
              {"assistant_only_loss": True}),
        "b": ("(b) ours, padded", ours_model, padded, processor, ours, ours_args),
        "c": ("(c) ours, grouped by length", ours_model, padded, processor, grouped,
              {"train_sampling_strategy": "sequential", **ours_args}),
        "d": (f"(d) ours, packed, rows <= {args.max_length}, sdpa per sample", lambda: ours_model(SDPA_PER_SAMPLE),
              per_sample, processor, ours, ours_args),
        "e": (f"(e) ours, packed, rows <= {args.max_length}, masked sdpa", ours_model, packed, processor, ours,
              ours_args),
        "f": (f"(f) ours, packed, rows <= {args.short_rows or 'longest sample'}, masked sdpa", ours_model, short,
              processor, ours, ours_args),
    }  # fmt: skip


def best_runs(variants: dict[str, tuple], args: argparse.Namespace) -> dict[str, dict]:
    """Run the chosen variants `--repeats` times; keep each one's fastest run and its highest peak memory."""
    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        for key in args.variants:
            name, build, collator, variant_processor, dataset, extras = variants[key]
            result = run(name, build, collator, variant_processor, dataset, args, **extras)
            if key not in best or result["tokens_per_cpu_s"] > best[key]["tokens_per_cpu_s"]:
                best[key] = {**result, "peak_mib": max(result["peak_mib"], best.get(key, result)["peak_mib"])}
    return best


def print_table(best: dict[str, dict]) -> None:
    """The markdown table of docs/packing.md, each variant against the baseline (a) when it ran."""
    base = best.get("a")
    print(f"\nload average after the runs: {os.getloadavg()[0]:.1f}")
    print(
        "| variant | non-pad tokens per CPU-second | per wall second | padding | largest batch (tokens) "
        "| peak RSS delta | throughput vs (a) | memory vs (a) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in best.values():
        speed = f"{result['tokens_per_cpu_s'] / base['tokens_per_cpu_s']:.2f}x" if base else "-"
        memory = f"{result['peak_mib'] / base['peak_mib']:.2f}x" if base else "-"
        print(
            f"| {result['name']} | {result['tokens_per_cpu_s']:.0f} | {result['tokens_per_s']:.0f} | "
            f"{result['padding']:.1%} | {result['largest_batch']} | {result['peak_mib']:.0f} MiB | {speed} "
            f"| {memory} |"
        )


def main() -> None:
    args = parse_args()
    release_memory()  # before anything large is allocated
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    shape = ModelShape.phi_layout(args.hidden, args.layers, args.vision_hidden, args.vision_layers)
    tokenizer = build_tiny_tokenizer(text_backbone="phi")
    config = phi_clip_config(tokenizer, shape)
    processor = AllavaProcessor.from_config(config, tokenizer)
    weights = AllavaForConditionalGeneration(config).state_dict()  # every variant starts from these

    rows = bench_rows(args.samples, args.seed, shape.image_size, ANSWER_WORDS[1], min_words=ANSWER_WORDS[0])
    ours, theirs = training_datasets(rows)
    padded = AllavaCollator(processor, args.max_length)
    lengths = add_length_column(ours, padded)["length"]
    torch.manual_seed(args.seed)
    grouped = ours.select(get_length_grouped_indices(lengths, args.batch_size, len(lengths) // args.batch_size))
    print_setup(rows, lengths, shape, args)
    variants = build_variants(config, weights, processor, padded, (ours, theirs, grouped), args)
    print_table(best_runs(variants, args))


if __name__ == "__main__":
    main()
