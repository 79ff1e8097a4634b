"""The real models' sizes and training cost on paper, as docs/training.md prints them (a test keeps them equal).

    python -m tests.modeling_allava.paper_costs

Everything is computed from the published configs (real_configs/) on the meta device and from bench/common.py's
FLOP model; no GPU figure here is measured. Token counts per row are assumptions (TEXT_TOKENS), stated in the doc.
"""

import functools
from typing import NamedTuple

import torch

from bench.common import training_flops
from modeling_allava import TEXT_BACKBONES, VISION_BACKBONES, AllavaForConditionalGeneration
from tests.modeling_allava.real_models import RECIPES, real_config


H100_BF16_DENSE = 989e12  # FLOP/s, NVIDIA's H100 SXM datasheet (dense, no sparsity)
A800_BF16_DENSE = 312e12  # FLOP/s, as the A100 it is cut from
MFUS = (0.20, 0.35, 0.50)
ALLAVA_HOURS = (8.3, 10.6)  # ALLaVA-3B (Phi-2) on 8x A800, stage 1 and stage 2 (paper)
ZERO_GPUS = 8
ADAM_STATE_BYTES = 12  # fp32 master weights + Adam's two moments per trainable parameter (ZeRO paper's K)


class Subset(NamedTuple):
    rows: int
    text_tokens: int  # ASSUMED mean text tokens per row (prompt + answer + template), image tokens not included
    image: bool


# ALLaVA-4V sizes (paper / release); mean lengths are assumptions (see docs/training.md).
SUBSETS = {
    "caption_laion": Subset(505_588, 300, True),
    "caption_vflan": Subset(202_552, 250, True),
    "instruct_laion": Subset(505_588, 350, True),
    "instruct_vflan": Subset(203_065, 300, True),
    "text": Subset(143_000, 800, False),
}
# The recipes' mixtures (recipes/<name>/{pretrain,finetune}.yaml): subset -> epochs.
STAGES = {
    "stage 1 (pretrain)": {"caption_laion": 1, "caption_vflan": 1, "text": 2},
    "stage 2 (finetune)": {"instruct_laion": 1, "instruct_vflan": 1, "text": 1},
}
TEXT_TOKENS = {name: subset.text_tokens for name, subset in SUBSETS.items()}


def stage_flops(recipe: str, stage: str) -> tuple[float, int]:
    """FLOPs of one pass over the stage's mixture, and its token count (image tokens included)."""
    config = real_config(recipe)
    flops, tokens = 0.0, 0
    for name, epochs in STAGES[stage].items():
        subset = SUBSETS[name]
        length = subset.text_tokens + (config.image_seq_length if subset.image else 0)
        flops += epochs * subset.rows * training_flops(config, [length], int(subset.image))
        tokens += epochs * subset.rows * length
    return flops, tokens


@functools.cache
def parts(recipe: str) -> dict[str, int]:
    """Parameters per part of the full-depth model (meta device): trainable Ψ and the frozen tower Φ."""
    with torch.device("meta"):
        model = AllavaForConditionalGeneration(real_config(recipe))
    counts = model.set_trainable_modules("allava")
    frozen = sum(p.numel() for p in model.model.vision_tower.parameters())
    return {"trainable": sum(counts.values()), "frozen": frozen, "model": model}


def zero_bytes(trainable: int, frozen: int, gpus: int = ZERO_GPUS) -> dict[str, float]:
    """Model states per GPU (bf16 weights and gradients, fp32 Adam state) for each ZeRO stage."""
    k = ADAM_STATE_BYTES
    return {
        "DDP / ZeRO-0": (4 + k) * trainable + 2 * frozen,
        "ZeRO-1 (`zero1.yaml`)": 4 * trainable + k * trainable / gpus + 2 * frozen,
        "ZeRO-2 (`zero2.yaml`)": 2 * trainable + (2 + k) * trainable / gpus + 2 * frozen,
        "ZeRO-3 (`zero3.yaml`)": (4 + k) * trainable / gpus + 2 * frozen / gpus,
    }


def activation_bytes(text_config, batch: int, tokens: int) -> int:
    """Activations of a bf16 step with activation checkpointing and SDPA: one saved hidden state per layer
    (2·b·s·h·L) plus the recomputed layer's own (34·b·s·h, Korthikanti et al. without the attention scores)."""
    h, layers = text_config.hidden_size, text_config.num_hidden_layers
    return 2 * batch * tokens * h * layers + 34 * batch * tokens * h


def memory_bytes(config, batch: int, tokens: int) -> dict[str, int]:
    """One process, no sharding, before the optimiser: bf16 weights 2·(Ψ + Φ), bf16 gradients 2·Ψ, activations."""
    with torch.device("meta"):
        model = AllavaForConditionalGeneration(config)
    trainable = sum(model.set_trainable_modules("allava").values())
    frozen = sum(p.numel() for p in model.model.vision_tower.parameters())
    return {
        "weights": 2 * (trainable + frozen),
        "grads": 2 * trainable,
        "activations": activation_bytes(config.text_config, batch, tokens),
    }


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def zero_table() -> str:
    sizes = {recipe: parts(recipe) for recipe in RECIPES}
    head = "| stage | " + " | ".join(f"{r} (Ψ = {s['trainable'] / 1e9:.3f}B)" for r, s in sizes.items()) + " |"
    lines = [head, "|---|" + "---|" * len(sizes)]
    tables = {recipe: zero_bytes(s["trainable"], s["frozen"]) for recipe, s in sizes.items()}
    for stage in tables["allava-phi2"]:
        lines.append(f"| {stage} | " + " | ".join(_gib(tables[r][stage]) for r in sizes) + " |")
    return "\n".join(lines)


def _units(model, name: str) -> tuple[str, int, int]:
    """(class name, how many, parameters of one) for one block class of the model."""
    units = [module for module in model.modules() if type(module).__name__ == name]
    return name, len(units), sum(p.numel() for p in units[0].parameters())


def wrap_table() -> str:
    """FSDP shard units: each vision and text block, plus the root (embeddings, head, projector, norms)."""
    lines = ["| recipe | vision blocks | text blocks | root unit | largest unit, bf16 |", "|---|---|---|---|---|"]
    for recipe in RECIPES:
        model = parts(recipe)["model"]
        config = model.config
        names = (
            VISION_BACKBONES[config.vision_config.model_type].encoder_layer,
            TEXT_BACKBONES[config.text_config.model_type].decoder_layer,
        )
        vision, text = [_units(model, name) for name in names]
        root = sum(p.numel() for p in model.parameters()) - vision[1] * vision[2] - text[1] * text[2]
        largest = max(root, vision[2], text[2])
        lines.append(
            f"| {recipe} | {vision[1]} x `{vision[0]}` ({vision[2] / 1e6:.1f}M) "
            f"| {text[1]} x `{text[0]}` ({text[2] / 1e6:.1f}M) | {root / 1e6:.1f}M | {_gib(2 * largest)} |"
        )
    return "\n".join(lines)


def flops_table() -> str:
    header = "| recipe | stage | tokens | FLOPs | " + " | ".join(f"H100 h at {m:.0%} MFU" for m in MFUS) + " |"
    lines = [header, "|---|---|---|---|" + "---|" * len(MFUS)]
    for recipe in RECIPES:
        for stage in STAGES:
            flops, tokens = stage_flops(recipe, stage)
            hours = " | ".join(f"{flops / (H100_BF16_DENSE * m) / 3600:.0f}" for m in MFUS)
            lines.append(f"| {recipe} | {stage} | {tokens / 1e9:.2f}B | {flops:.2e} | {hours} |")
    return "\n".join(lines)


def allava_mfu() -> str:
    """The MFU ALLaVA-3B's reported 8.3 h + 10.6 h on 8 A800s imply for our stage FLOPs (Phi-2)."""
    implied = []
    for stage, hours in zip(STAGES, ALLAVA_HOURS):
        flops, _ = stage_flops("allava-phi2", stage)
        implied.append(f"{stage.split(' (')[0]}: {flops / (8 * A800_BF16_DENSE * hours * 3600):.0%}")
    return "; ".join(implied)


def main() -> None:
    print(flops_table(), zero_table(), wrap_table(), allava_mfu(), sep="\n\n")


if __name__ == "__main__":
    main()
