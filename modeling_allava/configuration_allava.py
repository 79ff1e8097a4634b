"""ALLaVA configuration: transformers' LlavaConfig plus the few knobs ALLaVA checkpoints need.

Also the one table of supported backbones and the one rule for how many tokens an image becomes: this file ships
inside every checkpoint, so the processor and the model can read both there too.
"""

from typing import Literal, NamedTuple

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, LlavaConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.configuration_auto import CONFIG_MAPPING


class TextBackbone(NamedTuple):
    """What the repo knows about one text backbone (a transformers `model_type`)."""

    chat_template: str  # the template's name: modeling_allava/<name>.jinja, a key of processing_allava.CHAT_TEMPLATES
    packable: bool  # packed (padding-free) rows give the padded losses (tests/recipes/test_packing_model.py)
    decoder_layer: str  # the transformer block class: the unit FSDP wraps


class VisionBackbone(NamedTuple):
    """What the repo knows about one vision tower (a transformers `model_type`)."""

    has_cls: bool  # prepends a CLS token (the "default" feature strategy drops it)
    encoder_layer: str  # the transformer block class: the unit FSDP wraps


# The backbones this repo tests. Any other type registered with AutoConfig also loads, untested, with the `allava`
# template, no packing and no CLS token.
TEXT_BACKBONES: dict[str, TextBackbone] = {
    "phi": TextBackbone("allava", packable=True, decoder_layer="PhiDecoderLayer"),  # ALLaVA-Phi2
    "phi3": TextBackbone("phi3", packable=True, decoder_layer="Phi3DecoderLayer"),  # ALLaVA-Phi3-mini
    "stablelm": TextBackbone("allava", packable=True, decoder_layer="StableLmDecoderLayer"),  # ALLaVA-StableLM2
    "llama": TextBackbone("llama3", packable=True, decoder_layer="LlamaDecoderLayer"),  # Llama-3.x
    "qwen2": TextBackbone("chatml", packable=True, decoder_layer="Qwen2DecoderLayer"),  # Qwen2.5
    "qwen3": TextBackbone("chatml", packable=True, decoder_layer="Qwen3DecoderLayer"),
    "smollm3": TextBackbone("chatml", packable=True, decoder_layer="SmolLM3DecoderLayer"),  # (SmolLM2 is "llama")
    "gemma3_text": TextBackbone("gemma", packable=True, decoder_layer="Gemma3DecoderLayer"),  # Gemma-3 1B (text)
}
VISION_BACKBONES: dict[str, VisionBackbone] = {
    "clip_vision_model": VisionBackbone(has_cls=True, encoder_layer="CLIPEncoderLayer"),
    # SigLIP and SigLIP2's fixed-resolution checkpoints (google/siglip2-so400m-patch14-384 is a "siglip" model)
    "siglip_vision_model": VisionBackbone(has_cls=False, encoder_layer="SiglipEncoderLayer"),
}
# Vision types Llava's forward cannot drive (it passes pixel_values alone), refused with the reason.
UNSUPPORTED_VISION: dict[str, str] = {
    "siglip2_vision_model": "SigLIP2's NaFlex tower needs pixel_attention_mask and spatial_shapes, which Llava never "
    "passes; use a fixed-resolution SigLIP2 checkpoint (e.g. google/siglip2-so400m-patch14-384, model_type 'siglip')",
}
DEFAULT_CHAT_TEMPLATE = "allava"


def chat_template_name(text_model_type: str) -> str:
    """The chat template a text backbone uses (ALLaVA's own `[INST]` format for untested types)."""
    backbone = TEXT_BACKBONES.get(text_model_type)
    return backbone.chat_template if backbone else DEFAULT_CHAT_TEMPLATE


# The special tokens each template writes; the tokenizer must know them as single tokens. `backbone_template`
# tries them in this order (Phi-3's last: tokenizers of other families may carry `<|user|>` and `<|end|>` as well).
TEMPLATE_TOKENS: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "llama3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
    "phi3": ("<|user|>", "<|assistant|>", "<|end|>"),
    "allava": (),
}


# The token that ends an assistant turn in each template (None: the tokenizer's eos); generation stops there too.
END_OF_TURN: dict[str, str | None] = {
    "chatml": "<|im_end|>",
    "llama3": "<|eot_id|>",
    "gemma": "<end_of_turn>",
    "phi3": "<|end|>",
    "allava": None,
}


def end_of_turn_ids(text_model_type: str, tokenizer, eos_token_id: int | list[int] | None) -> list[int]:
    """The ids generation stops at: the LM's own eos id(s) plus its template's end-of-turn token (a base model's
    generation config knows only its eos: Qwen3-Base would talk past `<|im_end|>`)."""
    ids = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    token = END_OF_TURN[backbone_template(text_model_type, tokenizer)] or tokenizer.eos_token
    end = tokenizer.convert_tokens_to_ids(token) if token is not None else None
    return ids + [end] if end is not None and end not in ids else ids


def backbone_template(text_model_type: str, tokenizer) -> str:
    """The text backbone's template (the table's), unless its tokenizer speaks another format: SmolLM2 is a "llama"
    model with a ChatML tokenizer. A tokenizer with none of the needed tokens is refused (its turns would be text)."""
    vocab = tokenizer.get_vocab()
    name = chat_template_name(text_model_type)
    if all(token in vocab for token in TEMPLATE_TOKENS[name]):
        return name
    for other, tokens in TEMPLATE_TOKENS.items():
        if tokens and all(token in vocab for token in tokens):
            return other
    raise ValueError(
        f"The {text_model_type!r} chat template ({name}) needs the special tokens {', '.join(TEMPLATE_TOKENS[name])}, "
        "which the tokenizer lacks; pass chat_template= explicitly."
    )


def has_cls_token(vision_model_type: str) -> bool:
    """Whether the vision tower prepends a CLS token to its patch features."""
    backbone = VISION_BACKBONES.get(vision_model_type)
    return backbone is not None and backbone.has_cls


def image_seq_length(
    height: int, width: int, patch_size: int, num_additional_image_tokens: int, vision_feature_select_strategy: str
) -> int:
    """How many tokens one image becomes: one per patch plus the tower's extra tokens (its CLS), minus the first
    token, which Llava's "default" feature strategy drops. The config, the processor's placeholder expansion and the
    collator all count with this."""
    patches = (height // patch_size) * (width // patch_size)
    return patches + num_additional_image_tokens - int(vision_feature_select_strategy == "default")


def _check_sub_config(field: str, value) -> None:
    """Fail with the field name and the tested choices instead of transformers' list of 400 model types."""
    model_type = value.get("model_type") if isinstance(value, dict) else getattr(value, "model_type", None)
    if field == "vision_config" and model_type in UNSUPPORTED_VISION:
        reason = UNSUPPORTED_VISION[model_type]
        raise ValueError(f"AllavaConfig.vision_config: {model_type!r} is not supported: {reason}.")
    if isinstance(value, dict):
        if model_type is not None and model_type not in CONFIG_MAPPING:
            tested = VISION_BACKBONES if field == "vision_config" else TEXT_BACKBONES
            raise ValueError(
                f"AllavaConfig.{field}: unknown backbone model_type {model_type!r}. "
                f"Tested types: {', '.join(tested)} (any type registered with transformers' AutoConfig also loads)."
            )


@strict
class AllavaConfig(LlavaConfig):
    r"""Configuration of an ALLaVA model: a vision tower, a projector and a causal language model.

    Defaults reproduce ALLaVA (CLIP ViT-L/14 at 336 px, features from layer -2 with CLS dropped -> 576 image tokens,
    2-layer GELU MLP projector). `vision_config` / `text_config` take config objects or dicts of any registered type.

    Extra fields over `LlavaConfig`:
        projector_type: `"mlp2x_gelu"` (Linear, GELU, Linear) or `"linear"` (one Linear).
        lm_head_bias: build the LM head with a bias (Phi-2's own head has one; Llava's never does).
        image_aspect_ratio: `"pad"` pads images to a square with the CLIP mean colour before resizing (LLaVA-1.5);
            `"resize"` resizes and centre-crops them as CLIP does. `AllavaProcessor.from_config` follows it.
    """

    model_type = "allava"
    # ALLaVA-Phi2: Phi-2 text defaults (Llava defaults to a 7B Llama); the CLIP-L/14@336 vision default is Llava's.
    sub_configs_defaults = {
        **LlavaConfig.sub_configs_defaults,
        "text_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="phi",
            init_kwargs={
                "hidden_size": 2560,
                "intermediate_size": 10240,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "vocab_size": 51200,
                "partial_rotary_factor": 0.4,
            },
        ),
    }

    projector_type: Literal["mlp2x_gelu", "linear"] = "mlp2x_gelu"
    lm_head_bias: bool = False
    image_aspect_ratio: Literal["pad", "resize"] = "pad"

    def __post_init__(self, **kwargs):
        _check_sub_config("vision_config", self.vision_config)
        _check_sub_config("text_config", self.text_config)
        super().__post_init__(**kwargs)
        has_cls = has_cls_token(self.vision_config.model_type)
        if self.vision_feature_select_strategy == "default" and not has_cls:
            # SigLIP has no CLS token: dropping the first token would silently lose a patch.
            self.vision_feature_select_strategy = "full"
        size = self.vision_config.image_size
        self.image_seq_length = image_seq_length(
            size, size, self.vision_config.patch_size, int(has_cls), self.vision_feature_select_strategy
        )


__all__ = [
    "END_OF_TURN",
    "TEMPLATE_TOKENS",
    "AllavaConfig",
    "TEXT_BACKBONES",
    "UNSUPPORTED_VISION",
    "VISION_BACKBONES",
    "TextBackbone",
    "VisionBackbone",
    "backbone_template",
    "chat_template_name",
    "end_of_turn_ids",
    "has_cls_token",
    "image_seq_length",
]
