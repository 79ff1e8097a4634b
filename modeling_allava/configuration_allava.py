"""ALLaVA configuration: transformers' LlavaConfig plus the few knobs ALLaVA checkpoints need."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, LlavaConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.configuration_auto import CONFIG_MAPPING


# Backbones exercised by this repo's tests; any other registered type is accepted but untested.
TESTED_VISION_TYPES = ("clip_vision_model", "siglip_vision_model")
TESTED_TEXT_TYPES = ("phi", "phi3", "stablelm", "llama", "qwen2")
# Vision towers that prepend a CLS token (the "default" feature strategy drops it).
_VISION_TYPES_WITH_CLS = ("clip_vision_model",)


def _check_sub_config(field: str, value) -> None:
    """Fail with the field name and the tested choices instead of transformers' list of 400 model types."""
    if isinstance(value, dict):
        model_type = value.get("model_type")
        if model_type is not None and model_type not in CONFIG_MAPPING:
            tested = TESTED_VISION_TYPES if field == "vision_config" else TESTED_TEXT_TYPES
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
        image_aspect_ratio: `"pad"` pads images to a square with the CLIP mean colour before resizing.
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
        has_cls = self.vision_config.model_type in _VISION_TYPES_WITH_CLS
        if self.vision_feature_select_strategy == "default" and not has_cls:
            # SigLIP has no CLS token: dropping the first token would silently lose a patch.
            self.vision_feature_select_strategy = "full"
        patches = (self.vision_config.image_size // self.vision_config.patch_size) ** 2
        keeps_cls = has_cls and self.vision_feature_select_strategy == "full"
        self.image_seq_length = patches + int(keeps_cls)


__all__ = ["AllavaConfig"]
