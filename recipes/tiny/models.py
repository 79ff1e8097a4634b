"""Tiny random ALLaVA models and an offline tokenizer, for tests, the offline demo and benches.

    python -m recipes.tiny.models --output outputs/tiny/backbones --image-size 84 --patch-size 28 --text-width 128

writes a tiny CLIP and a tiny Phi + tokenizer, the backbones recipes/tiny/*.yaml compose.
"""

import itertools
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    PreTrainedTokenizerFast,
    SiglipConfig,
    SiglipModel,
    SiglipVisionConfig,
)

from modeling_allava.configuration_allava import TEMPLATE_TOKENS, TEXT_BACKBONES, AllavaConfig, end_of_turn_ids
from modeling_allava.modeling_allava import AllavaForConditionalGeneration
from modeling_allava.processing_allava import IMAGE_TOKEN, AllavaProcessor
from recipes.tiny import shapes_world
from toolkit.cli import Parser


SPECIAL_TOKENS = ["<|endoftext|>", "<pad>", IMAGE_TOKEN, "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
# Tiny configs of the tested vision towers (patch features only; the SigLIP head is not used by Llava).
VISION_TYPES = ("clip_vision_model", "siglip_vision_model")

_WORDS = list(shapes_world.VOCABULARY)
# Capitalised forms too: sentences start with them, and unmerged they cost the tiny model several tokens each.
_WORDS += [word.capitalize() for word in _WORDS if word.isalpha() and word.islower()]


def _training_corpus() -> list[str]:
    """Deterministic text for the BPE trainer: words alone and in short phrases so common bigrams merge."""
    phrases = [" ".join(pair) for pair in itertools.islice(itertools.product(_WORDS[:60], _WORDS[:40]), 2400)]
    return _WORDS + phrases + [str(n) for n in range(100)]


def build_tiny_tokenizer(vocab_size: int = 1536, text_backbone: str | None = None) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer built offline in well under a second; encodes any text. With a
    `text_backbone`, the special tokens of its chat template are appended (after the trained vocabulary, so the
    ids of every other token stay the same).

    Whitespace and punctuation are isolated tokens, so a prompt that ends in a space (ALLaVA's `[/INST] `)
    tokenises the same way at training and at generation time.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\s|[^\w\s]"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer)
    extra = []
    if text_backbone is not None:
        template = TEXT_BACKBONES[text_backbone].chat_template
        extra = [token for token in TEMPLATE_TOKENS[template] if token not in SPECIAL_TOKENS]
        tokenizer.add_special_tokens(extra)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<pad>",
        extra_special_tokens=SPECIAL_TOKENS[2:] + extra,
        model_max_length=2048,
    )


def _tiny_text_config(text_backbone: str, tokenizer, hidden_size: int, num_layers: int) -> dict:
    if text_backbone not in TEXT_BACKBONES:
        raise ValueError(f"text_backbone must be one of {', '.join(TEXT_BACKBONES)}; got {text_backbone!r}")
    vocab_size = (len(tokenizer) + 63) // 64 * 64
    config = {
        "model_type": text_backbone,
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": vocab_size,
        "max_position_embeddings": 2048,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
    }
    if text_backbone == "phi":
        config["partial_rotary_factor"] = 0.5
    if text_backbone == "stablelm":
        config.update(partial_rotary_factor=0.25, use_qkv_bias=True)
    if text_backbone in ("qwen3", "gemma3_text"):
        config["head_dim"] = hidden_size // 4
    if text_backbone == "gemma3_text":  # one sliding-window layer and one global one, as Gemma-3 alternates them
        config.update(sliding_window=8, layer_types=["sliding_attention", "full_attention"][:num_layers])
        config["layer_types"] += ["full_attention"] * (num_layers - len(config["layer_types"]))
    if text_backbone == "smollm3":  # one layer without RoPE, as SmolLM3 leaves every fourth one
        config["no_rope_layers"] = [int(index % 2 == 0) for index in range(num_layers)]
    return config


def tiny_vision_config(
    image_size: int = 56, patch_size: int = 14, hidden_size: int = 64, vision_type: str = "clip_vision_model"
):
    """A two-layer CLIP or SigLIP vision tower config."""
    if vision_type not in VISION_TYPES:
        raise ValueError(f"vision_type must be one of {', '.join(VISION_TYPES)}; got {vision_type!r}")
    shape = dict(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
    )
    if vision_type == "siglip_vision_model":
        return SiglipVisionConfig(**shape)
    return CLIPVisionConfig(**shape, projection_dim=hidden_size)


def tiny_config(
    text_backbone: str = "phi",
    tokenizer: PreTrainedTokenizerFast | None = None,
    image_size: int = 56,
    patch_size: int = 14,
    hidden_size: int = 64,
    num_layers: int = 2,
    vision_type: str = "clip_vision_model",
    **overrides,
) -> AllavaConfig:
    """A `vision_type` + `text_backbone` ALLaVA config with a few-hundred-thousand parameters."""
    tokenizer = tokenizer or build_tiny_tokenizer(text_backbone=text_backbone)
    return AllavaConfig(
        vision_config=tiny_vision_config(image_size, patch_size, vision_type=vision_type),
        text_config=_tiny_text_config(text_backbone, tokenizer, hidden_size, num_layers),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        **overrides,
    )


def build_tiny_processor(
    text_backbone: str = "phi", image_size: int = 56, patch_size: int = 14, tokenizer=None
) -> AllavaProcessor:
    tokenizer = tokenizer or build_tiny_tokenizer(text_backbone=text_backbone)
    return AllavaProcessor.from_config(tiny_config(text_backbone, tokenizer, image_size, patch_size), tokenizer)


def build_tiny_model_and_processor(
    text_backbone: str = "phi", seed: int = 0, image_size: int = 56, **config_overrides
) -> tuple[AllavaForConditionalGeneration, AllavaProcessor]:
    """A random tiny model and its matching processor (built from the model's config); same seed, same weights."""
    tokenizer = build_tiny_tokenizer(text_backbone=text_backbone)
    config = tiny_config(text_backbone, tokenizer, image_size=image_size, **config_overrides)
    processor = AllavaProcessor.from_config(config, tokenizer)
    torch.manual_seed(seed)
    model = AllavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = end_of_turn_ids(text_backbone, tokenizer, tokenizer.eos_token_id)
    return model.eval(), processor


def save_tiny_backbones(
    folder: str | Path,
    text_backbone: str = "phi",
    seed: int = 0,
    image_size: int = 56,
    patch_size: int = 14,
    vision_hidden_size: int = 64,
    text_hidden_size: int = 64,
    vision_type: str = "clip_vision_model",
) -> tuple[Path, Path]:
    """Write a tiny full CLIP (or SigLIP) checkpoint and a tiny causal LM + tokenizer, shaped like the hub repos
    `from_backbones` reads (e.g. openai/clip-vit-large-patch14-336 and microsoft/phi-2)."""
    folder = Path(folder)
    tokenizer = build_tiny_tokenizer(text_backbone=text_backbone)
    torch.manual_seed(seed)
    vision_config = tiny_vision_config(image_size, patch_size, vision_hidden_size, vision_type)
    if vision_type == "siglip_vision_model":  # a full dual encoder, as google/siglip-so400m-patch14-384 is
        text = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4}
        SiglipModel(SiglipConfig(vision_config=vision_config.to_dict(), text_config=text)).save_pretrained(
            folder / "vision"
        )
        return _save_tiny_text(folder, text_backbone, tokenizer, text_hidden_size)
    clip = CLIPModel(
        CLIPConfig(
            vision_config=vision_config.to_dict(),
            text_config={
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
            },
            projection_dim=64,
        )
    )
    # CLIP initialises its position embeddings at std 0.02: ~1% of the patch features, so a random tower's token
    # cannot say where in the image it is (a linear probe on one shape's token reads its column at chance), while a
    # pretrained CLIP's can. At std 3 the place also survives the mean over the image tokens (a ridge probe reads the
    # column at 0.79, against 0.59 at std 1 and 0.33 at 0.02), which is what a language model that has not yet
    # learned where to look sees; at std 1 stage 1 could leave position unlearned (docs/benchmarks.md).
    with torch.no_grad():
        clip.vision_model.embeddings.position_embedding.weight.normal_(std=3.0)
    clip.save_pretrained(folder / "vision")
    return _save_tiny_text(folder, text_backbone, tokenizer, text_hidden_size)


def _save_tiny_text(folder: Path, text_backbone: str, tokenizer, text_hidden_size: int) -> tuple[Path, Path]:
    text_config = AutoConfig.for_model(**_tiny_text_config(text_backbone, tokenizer, text_hidden_size, 2))
    AutoModelForCausalLM.from_config(text_config).save_pretrained(folder / "text")
    tokenizer.save_pretrained(folder / "text")
    return folder / "vision", folder / "text"


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        "Write tiny random backbones (a CLIP and a Phi with its tokenizer) for the tiny recipes.",
        "python -m recipes.tiny.models --output outputs/tiny/backbones --image-size 84 --patch-size 28",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder to write vision/ and text/ into")
    parser.add_argument("--image-size", type=int, default=56, help="image side in pixels")
    parser.add_argument("--patch-size", type=int, default=14, help="vision patch side in pixels")
    parser.add_argument("--text-width", type=int, default=64, help="hidden size of the text model")
    args = parser.parse_args(argv)
    vision, text = save_tiny_backbones(
        args.output, image_size=args.image_size, patch_size=args.patch_size, text_hidden_size=args.text_width
    )
    print(f"wrote {vision} and {text}")


__all__ = [
    "build_tiny_model_and_processor",
    "build_tiny_processor",
    "build_tiny_tokenizer",
    "save_tiny_backbones",
    "tiny_config",
]


if __name__ == "__main__":
    main()
