"""GPU: tokens/s, model FLOPs utilisation and peak memory of the baseline vs our packed batches, at ALLaVA-Phi2 size.

    python -m bench.gpu_packing                       # one H100 / H200: under 8 minutes, nothing downloaded
    python -m bench.gpu_packing --device cpu --tiny   # smoke test of the same code path (run by the tests)

Random-init Phi-2-sized text model (2.7B: 32 x 2560, vocab 51200) + CLIP-L/14@336-sized vision tower (24 x 1024,
576 image tokens) in bf16; vision frozen, projector + LM trained (ALLaVA), TRL's defaults otherwise (activation
checkpointing, its fused LM-head loss). Same ALLaVA-like rows as bench/bench_packing.py. Per attention implementation
(sdpa, and flash-attention 2 when `flash_attn` imports): (a) transformers' Llava + TRL's vision collator, padded;
(b) ours padded; (e) ours packed (`recipes.packing.PackedAllavaCollator`) on that attention as transformers runs it
(for sdpa: the whole row under a block-diagonal mask); for sdpa also (d) ours packed as recipes/sft.py trains, with
the `sdpa_per_sample` attention (sdpa on each sample's span). Throughput and MFU count non-pad tokens
and the useful FLOPs of the real samples only (causal attention per sample, frozen tower forward only) over the
measured steps (after `--warmup`); memory is `torch.cuda.max_memory_allocated` over the whole run (`bench.common`).
GPU idle share: the time the training loop spends fetching its next batch (the Trainer's `get_batch_samples`:
dataloader wait, plus collation with `--workers 0`, of the batch after next as accelerate prefetches one) over the
measured time. The step clock synchronises the device
at every step end, so the GPU has nothing queued while the loop waits: that wait is GPU idle time.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import tempfile

import torch
from trl import SFTConfig, SFTTrainer

from bench.bench_packing import ANSWER_WORDS
from bench.common import (
    PHI2_SHAPE,
    ModelShape,
    PeakMemory,
    StepClock,
    TokenCounter,
    baseline_model,
    baseline_processor,
    bench_rows,
    data_waits,
    peak_flops,
    phi_clip_config,
    training_datasets,
    training_flops,
)
from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor
from recipes.collator import AllavaCollator
from recipes.packing import SDPA_PER_SAMPLE, PackedAllavaCollator
from recipes.tiny.models import build_tiny_tokenizer


def run(name, build_model, collator, processor, dataset, attention: str, args) -> dict:
    device = torch.device(args.device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    memory = PeakMemory(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        model = build_model().to(dtype)
    model.set_attn_implementation({"text_config": attention})
    clock = StepClock(device, args.warmup)
    training_args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="gpu-packing-"),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps,
        max_length=args.max_length,
        learning_rate=1e-5,
        bf16=device.type == "cuda",
        use_cpu=device.type == "cpu",
        optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch",
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=args.workers,
        seed=0,
        **(
            {"assistant_only_loss": True}
            if collator is None
            else {"remove_unused_columns": False, "dataset_kwargs": {"skip_prepare_dataset": True}}
        ),
    )
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,  # None: TRL's own vision collator (the baseline)
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[clock],
    )
    waits = data_waits(trainer)
    counter = TokenCounter(trainer.model, processor.tokenizer.pad_token_id, model.config)
    with memory:
        trainer.train()
    counter.handle.remove()
    measured = slice(args.warmup, args.warmup + args.steps)
    seconds = clock.seconds
    flops = training_flops(model.config, counter.lengths(measured), sum(counter.images[measured]))
    peak = peak_flops(device)
    result = {
        "name": f"{name} [{attention}]",
        "tokens_per_s": sum(counter.real[measured]) / seconds,
        "padding": 1 - sum(counter.real[measured]) / sum(counter.total[measured]),
        "mfu": flops / seconds / peak if peak else None,
        "peak_gib": memory.bytes / 2**30 if device.type == "cuda" else None,
        "step_s": seconds / args.steps,
        "idle": sum(waits[measured]) / seconds,  # fetch i feeds step i + 1; the clock starts after step `warmup`
    }
    print(f"  {result}", flush=True)
    del trainer, model
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny model instead of Phi-2 + CLIP-L sizes (smoke test)"
    )
    parser.add_argument("--batch-size", type=int, help="samples per step (default 16; --tiny: 3)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--warmup", type=int, help="steps not measured (default 3; --tiny: 1)")
    parser.add_argument("--steps", type=int, help="measured steps (default 8; --tiny: 1)")
    parser.add_argument("--workers", type=int, help="dataloader workers for collation (default 4; --tiny: 0)")
    parser.add_argument("--attention", nargs="*", default=None, help="default: sdpa, + flash_attention_2 if installed")
    args = parser.parse_args()
    for key, full, tiny in (("batch_size", 16, 3), ("warmup", 3, 1), ("steps", 8, 1), ("workers", 4, 0)):
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)
    attentions = args.attention or ["sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])

    shape = ModelShape.phi_layout(64, 2, 64, 1) if args.tiny else PHI2_SHAPE
    tokenizer = build_tiny_tokenizer(text_backbone="phi")  # ids stay below the 51,200-token Phi-2 vocabulary
    config = phi_clip_config(tokenizer, shape)
    processor = AllavaProcessor.from_config(config, tokenizer)
    # One batch more than is trained: accelerate's loader collates batch k + 1 while handing out batch k, so the last
    # measured step's fetch then collates a batch as every other one does (the GPU idle share counts it).
    count = args.batch_size * (args.warmup + args.steps + 1)
    ours, theirs = training_datasets(
        bench_rows(count, 0, shape.image_size, ANSWER_WORDS[1], min_words=ANSWER_WORDS[0])
    )
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    print(f"device: {device_name}; torch {torch.__version__}; attention: {attentions}", flush=True)

    def ours_model() -> AllavaForConditionalGeneration:
        torch.manual_seed(0)
        model = AllavaForConditionalGeneration(config)
        model.set_trainable_modules("allava")
        return model

    def theirs_model():
        torch.manual_seed(0)
        return baseline_model(config)

    groups = []
    for attention in attentions:
        packed = PackedAllavaCollator(processor, args.max_length, attn_implementation=attention)
        group = [
            run("(a) TRL + transformers Llava, padded", theirs_model, None, baseline_processor(processor), theirs,
                attention, args),
            run("(b) ours, padded", ours_model, AllavaCollator(processor, args.max_length), processor, ours, attention,
                args),
            run("(e) ours, packed", ours_model, packed, processor, ours, attention, args),
        ]  # fmt: skip
        if attention == "sdpa":  # what recipes/sft.py trains with: sdpa on each sample's span
            per_sample = PackedAllavaCollator(processor, args.max_length, attn_implementation=SDPA_PER_SAMPLE)
            group.append(run("(d) ours, packed", ours_model, per_sample, processor, ours, SDPA_PER_SAMPLE, args))
        groups.append(group)

    print(f"\n{device_name}, batch {args.batch_size} samples, max_length {args.max_length}, {args.steps} steps")
    print(
        "| variant | non-pad tokens/s | padding | MFU | peak memory (allocated) | GPU idle | step | tokens/s vs (a) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for group in groups:
        for result in group:
            print(row(result, group[0]))


def row(result: dict, base: dict) -> str:
    """One markdown table row; `base` is the baseline (a) with the same attention."""
    mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a"
    memory = f"{result['peak_gib']:.1f} GiB" if result["peak_gib"] is not None else "n/a"
    return (
        f"| {result['name']} | {result['tokens_per_s']:.0f} | {result['padding']:.1%} | {mfu} | {memory} | "
        f"{result['idle']:.1%} | "
        f"{result['step_s']:.2f} s | {result['tokens_per_s'] / base['tokens_per_s']:.2f}x |"
    )


if __name__ == "__main__":
    main()
