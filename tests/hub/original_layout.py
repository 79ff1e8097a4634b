"""Tiny checkpoints in the layout FreedomIntelligence released (LLaVA fork, flat backbone config, `mm_*` fields,
`model.mm_projector.{0,2}` / `model.vision_tower.vision_tower.vision_model.*` / `model.*` / bias-free `lm_head`), and
the original forward pass re-implemented from those tensors with stock transformers modules and torch ops.

The reference never touches our converter or modeling code, so agreement with it tests the conversion end to end.
"""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import (
    CLIPConfig,
    CLIPVisionConfig,
    CLIPVisionModel,
    Phi3Config,
    Phi3ForCausalLM,
    PhiConfig,
    PhiForCausalLM,
    PreTrainedTokenizerFast,
    StableLmConfig,
    StableLmForCausalLM,
)

from recipes.tiny.models import build_tiny_tokenizer


VOCAB = 768
HIDDEN = 64
VISION = CLIPVisionConfig(
    hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=56, patch_size=14
)
_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    bos_token_id=0,
    eos_token_id=0,
    pad_token_id=None,
)
_LONG_FACTORS = [1.0 + i / 4 for i in range(8)]
_SHORT_FACTORS = [1.0 + i / 8 for i in range(8)]

# architecture -> (original model_type, reference text config, its class, fields as spelled in the original config)
LAYOUTS = {
    "LlavaPhiForCausalLM": (
        "llava_phi",
        PhiConfig(**_COMMON, partial_rotary_factor=0.4, hidden_act="gelu_new", layer_norm_eps=1e-5),
        PhiForCausalLM,
        dict(_COMMON, partial_rotary_factor=0.4, hidden_act="gelu_new", layer_norm_eps=1e-5, rope_theta=10000.0),
    ),
    "LlavaStableLM_1_6bForCausalLM": (
        "llava_stablelm_1_6b",
        StableLmConfig(**_COMMON, partial_rotary_factor=0.5, use_qkv_bias=True, layer_norm_eps=1e-6),
        StableLmForCausalLM,
        dict(_COMMON, rope_pct=0.5, use_qkv_bias=True, norm_eps=1e-6, rope_theta=10000, hidden_act="silu"),
    ),
    "LlavaPhi3ForCausalLM": (
        "llava_phi3",
        Phi3Config(
            **_COMMON,
            max_position_embeddings=131072,
            original_max_position_embeddings=4096,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "long_factor": _LONG_FACTORS,
                "short_factor": _SHORT_FACTORS,
                "original_max_position_embeddings": 4096,
            },
        ),
        Phi3ForCausalLM,
        dict(
            _COMMON,
            max_position_embeddings=131072,
            original_max_position_embeddings=4096,
            rope_theta=10000.0,
            rope_scaling={"type": "su", "long_factor": _LONG_FACTORS, "short_factor": _SHORT_FACTORS},
            sliding_window=262144,
        ),
    ),
}


def tokenizer_without_image_token() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with Phi-3's chat tokens but no `<image>` (the converter must add it)."""
    words = ["[UNK]", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>", "\n", " ", "?", "what", "is", "this"]
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"\w+|\s|[^\w\s]"), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        unk_token="[UNK]",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
    )


def build_original(folder: Path, architecture: str, seed: int = 0) -> dict:
    """Write config.json, model.safetensors, a tokenizer and the CLIP config the checkpoint names; return the
    source tensors and the reference modules built from them."""
    model_type, text_config, causal_lm_class, flat_fields = LAYOUTS[architecture]
    folder.mkdir(parents=True)
    clip_dir = folder.parent / f"{folder.name}-clip"
    clip_text = {"hidden_size": 32, "num_attention_heads": 4}
    CLIPConfig(vision_config=VISION.to_dict(), text_config=clip_text).save_pretrained(clip_dir)
    torch.manual_seed(seed)
    causal_lm = causal_lm_class(text_config).eval()
    vision = CLIPVisionModel(VISION).eval()
    source = {key: value for key, value in causal_lm.state_dict().items() if key != "lm_head.bias"}
    source.update({f"model.vision_tower.vision_tower.vision_model.{k}": v for k, v in vision.state_dict().items()})
    source["model.mm_projector.0.weight"] = torch.randn(HIDDEN, VISION.hidden_size) * 0.1
    source["model.mm_projector.0.bias"] = torch.randn(HIDDEN) * 0.1
    source["model.mm_projector.2.weight"] = torch.randn(HIDDEN, HIDDEN) * 0.1
    source["model.mm_projector.2.bias"] = torch.randn(HIDDEN) * 0.1
    source = {key: value.contiguous() for key, value in source.items()}
    save_file(source, folder / "model.safetensors", metadata={"format": "pt"})

    tokenizer = tokenizer_without_image_token() if architecture == "LlavaPhi3ForCausalLM" else build_tiny_tokenizer()
    tokenizer.save_pretrained(folder)
    config = {
        "_name_or_path": "./checkpoints/allava",
        "architectures": [architecture],
        "model_type": model_type,
        **flat_fields,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": False,
        "use_cache": True,
        "torch_dtype": "float32",
        "transformers_version": "4.37.2",
        "mm_vision_tower": str(clip_dir),
        "mm_hidden_size": VISION.hidden_size,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "pad",
        "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right",
        "tune_mm_mlp_adapter": False,
        "use_mm_proj": True,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return {"source": source, "causal_lm": causal_lm, "vision": vision}


@torch.no_grad()
def reference_logits(original: dict, input_ids: torch.Tensor, pixel_values: torch.Tensor, image_token_id: int):
    """LLaVA-1.5's forward from the source tensors: CLIP layer -2 without CLS, Linear-GELU-Linear, features spliced
    in place of the image tokens, then the backbone with the LLaVA wrapper's bias-free LM head."""
    source, causal_lm = original["source"], original["causal_lm"]
    features = original["vision"](pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]
    features = F.linear(features, source["model.mm_projector.0.weight"], source["model.mm_projector.0.bias"])
    features = F.linear(F.gelu(features), source["model.mm_projector.2.weight"], source["model.mm_projector.2.bias"])
    head = nn.Linear(HIDDEN, VOCAB, bias=False)
    head.weight.copy_(source["lm_head.weight"])
    image_positions = input_ids == image_token_id
    embeddings = causal_lm.get_input_embeddings()(input_ids.masked_fill(image_positions, 0))
    embeddings[image_positions] = features.reshape(-1, HIDDEN)
    hidden = causal_lm.get_decoder()(inputs_embeds=embeddings).last_hidden_state
    return head(hidden)
