"""Peak memory of one full-depth bf16 forward + backward of a recipe's real model on this CPU, against the memory
accounting of docs/training.md (one process, no sharding: bf16 weights 2·(Ψ + Φ), bf16 gradients 2·Ψ, activations
2·b·s·h·L + 34·b·s·h with activation checkpointing).

    python -m bench.bench_memory [--recipe allava-stablelm2] [--lengths 1024 2048 4096]

Each length runs in its own process (random weights built from tests/modeling_allava/real_configs/, vision tower
frozen, projector + LM trained, activation checkpointing on, SDPA, TRL's fused LM-head loss as the recipe trains) on
one packed row: the image's tokens, then text up to the length, every text token a label. Measured per length:
- torch's accounting: bytes of the parameters, of the gradients after backward, and of the tensors autograd saved
  for backward in the forward (saved-tensor hooks; parameters excluded, each storage counted once);
- resident memory: the rise when the model is built, the peak rise during the step above the built model (2 ms
  samples), and the process's peak RSS (wait4).
No optimiser step: AdamW's 12·Ψ bytes of fp32 state (the table's K) are on paper only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from trl.trainer.utils import add_fused_lm_head

from bench.common import PeakMemory, release_memory, resident_bytes
from bench.scale_measure import measure
from tests.modeling_allava.paper_costs import memory_bytes
from tests.modeling_allava.real_models import RECIPES, real_config


GIB = 2**30


def build(recipe: str, layers: int | None = None):
    """The recipe's model with random weights, created in bf16 (no fp32 copy ever exists, so the process's peak is
    the bf16 model's); vision frozen, projector + LM trained, activation checkpointing as the Trainer enables it."""
    from modeling_allava import AllavaForConditionalGeneration

    config = real_config(recipe, layers=layers, attn_implementation="sdpa")
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = AllavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    model.set_trainable_modules("allava")
    model.activation_checkpointing_enable()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # as AllavaSFTTrainer's TRL adds it
    return model.train()


def packed_row(config, length: int) -> dict:
    """One row of `length` tokens: a token, the image's tokens, then text; every text token after the image a label."""
    generator = torch.Generator().manual_seed(1)
    vocab = config.text_config.vocab_size
    ids = torch.randint(3, min(vocab, config.image_token_index) - 1, (1, length), generator=generator)
    image = slice(1, 1 + config.image_seq_length)
    ids[0, image] = config.image_token_index
    labels = ids.clone()
    labels[0, : image.stop] = -100
    size = config.vision_config.image_size
    pixels = torch.randn((1, 3, size, size), generator=generator).to(torch.bfloat16)
    return {"input_ids": ids, "pixel_values": pixels, "labels": labels}


class SavedTensors:
    """Bytes autograd saves for backward during a forward, parameters excluded, each storage once."""

    def __init__(self, model) -> None:
        self.skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.seen: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.skip:
            self.seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def bytes(self) -> int:
        return sum(self.seen.values())


def step(recipe: str, length: int, layers: int | None = None) -> dict:
    """Build, then one forward + backward; what torch accounts and what the resident set shows."""
    release_memory()
    start = resident_bytes()
    model = build(recipe, layers)
    release_memory()
    built = resident_bytes()
    row = packed_row(model.config, length)
    saved = SavedTensors(model)
    with PeakMemory("cpu") as peak:
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
            outputs = model(**row, fused_lm_head=True, use_cache=False)
        loss = -outputs.log_probs.sum() / outputs.label_mask.sum()
        loss.backward()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    return {
        "length": length,
        "loss": float(loss),
        "start_rss": start,
        "weights": weights,
        "grads": grads,
        "saved": saved.bytes,
        "built_rss": built - start,
        "step_peak_rss": peak.bytes,
    }


def predicted(recipe: str, length: int, layers: int | None = None) -> dict[str, float]:
    return memory_bytes(real_config(recipe, layers=layers), batch=1, tokens=length)


def table(recipe: str, runs: list[dict], layers: int | None = None) -> str:
    """Predicted vs measured, one block of rows per length (GiB)."""
    lines = [
        f"{recipe}, full depth, bf16, batch 1, CPU" if layers is None else f"{recipe}, {layers} layers, bf16",
        "",
        "| tokens | part | predicted | torch | resident |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        paper = predicted(recipe, run["length"], layers)
        grads_plus = run["step_peak_rss"]
        rows = [
            ("weights 2·(Ψ+Φ)", paper["weights"], run["weights"], run["built_rss"]),
            ("gradients 2·Ψ", paper["grads"], run["grads"], None),
            ("activations", paper["activations"], run["saved"], None),
            ("step peak over weights", paper["grads"] + paper["activations"], None, grads_plus),
            ("process peak (wait4)", sum(paper.values()), None, run.get("process_rss")),
        ]
        for part, guess, counted, resident in rows:
            cells = [f"{value / GIB:.2f}" if value is not None else "" for value in (guess, counted, resident)]
            lines.append(f"| {run['length']} | {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def extrapolate(runs: list[dict], length: int) -> float:
    """Saved activations at `length` from the two longest measured lengths, linearly."""
    (a, b) = sorted(runs, key=lambda run: run["length"])[-2:]
    slope = (b["saved"] - a["saved"]) / (b["length"] - a["length"])
    return b["saved"] + slope * (length - b["length"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="allava-stablelm2", choices=sorted(RECIPES))
    parser.add_argument("--lengths", type=int, nargs="+", default=[RECIPES["allava-stablelm2"].max_length])
    parser.add_argument("--layers", type=int, default=None, help="cut both towers (a quick check, not the bench)")
    parser.add_argument("--save", type=Path, default=None, help="also write the measured runs here (JSON)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(step(args.recipe, args.child, args.layers)))
        return
    runs = []
    for length in args.lengths:
        command = [sys.executable, "-m", "bench.bench_memory", "--recipe", args.recipe, "--child", str(length)]
        result = measure(command + (["--layers", str(args.layers)] if args.layers else []))
        run = json.loads(result["stdout"].strip().splitlines()[-1])
        runs.append({**run, "process_rss": result["rss"] - run["start_rss"], "wall": result["wall"]})
        print(f"{length} tokens: {result['wall']:.0f} s, loss {run['loss']:.3f}", file=sys.stderr, flush=True)
    if args.save:
        args.save.write_text(json.dumps(runs, indent=1))
    print(table(args.recipe, runs, args.layers))
    longest = RECIPES[args.recipe].max_length
    if len(runs) > 1 and max(run["length"] for run in runs) < longest:
        print(f"\nactivations at {longest} tokens, extrapolated linearly: {extrapolate(runs, longest) / GIB:.2f} GiB")


if __name__ == "__main__":
    main()
