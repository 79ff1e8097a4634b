"""Export an ALLaVA checkpoint to transformers' native Llava format: no remote code, readable by
`LlavaForConditionalGeneration`, vLLM's and SGLang's Llava loaders and lmms-eval's `llava_hf` model.

    python hub/export_llava_hf.py runs/allava-phi2/finetune out/allava-phi2-llava-hf [--drop-lm-head-bias]

Weights are written in the llava-hf layout (`language_model.model.*`, `language_model.lm_head.*`,
`vision_tower.vision_model.*`, `multi_modal_projector.*`), the layout the serving engines map from; transformers
5.24 reads it too. The processor is a plain `LlavaProcessor` (CLIP CLS counted, pad-to-square) carrying the chat
template. The export then reloads the folder with `LlavaForConditionalGeneration` and checks its logits against the
source model on a probe input. What native Llava cannot express is refused with the reason: the `linear` projector
always, an LM-head bias unless `--drop-lm-head-bias` (the measured logit change is then reported), a text model that
is no `AutoModelForCausalLM` type, a vision tower that is no `AutoModel` type.
"""

import copy
import sys
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import save_torch_state_dict
from PIL import Image
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES

from hub.checkpoint_files import read_allava_config
from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor
from toolkit.cli import Parser, existing_folder, run


# Our in-memory names -> llava-hf names (prefix renames, first match wins).
LLAVA_HF_PREFIXES = (
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
    ("model.vision_tower.", "vision_tower.vision_model."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
)
# Text backbones whose head vLLM builds with a bias (vLLM's PhiForCausalLM); they get an explicit all-zero bias.
HEAD_BIAS_TEXT_TYPES = ("phi",)
EQUAL_LOGITS_ATOL = 1e-5


def llava_hf_state_dict(model: AllavaForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The model's tensors under llava-hf names, the LM-head bias left out (it is handled by the caller)."""
    renamed = {}
    for key, tensor in model.state_dict().items():
        if key == "lm_head.bias":
            continue
        prefix, new_prefix = next((old, new) for old, new in LLAVA_HF_PREFIXES if key.startswith(old))
        renamed[new_prefix + key[len(prefix) :]] = tensor
    return renamed


def llava_config(model: AllavaForConditionalGeneration) -> LlavaConfig:
    """The native config; built from copies, because LlavaConfig resets its sub-configs' attention backend, which
    would silently switch the live source model's vision tower to another attention implementation."""
    config = copy.deepcopy(model.config)
    config.text_config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.text_config.model_type]]
    llava = LlavaConfig(
        vision_config=config.vision_config,
        text_config=config.text_config,
        image_token_index=config.image_token_index,
        projector_hidden_act=config.projector_hidden_act,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        vision_feature_layer=config.vision_feature_layer,
        image_seq_length=config.image_seq_length,
        multimodal_projector_bias=config.multimodal_projector_bias,
        tie_word_embeddings=config.tie_word_embeddings,
    )
    llava.architectures = ["LlavaForConditionalGeneration"]
    llava.dtype = model.dtype
    return llava


def llava_processor(processor: AllavaProcessor) -> LlavaProcessor:
    """The same tokenizer, image processing and chat template, minus the pointers to our remote code (and the
    loading environment that transformers records in tokenizer_config.json)."""
    processor.tokenizer.init_kwargs.pop("auto_map", None)
    processor.tokenizer.init_kwargs.pop("local_files_only", None)
    vars(processor.image_processor).pop("auto_map", None)
    return LlavaProcessor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        patch_size=processor.patch_size,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
        chat_template=processor.chat_template,
        image_token=processor.image_token,
        num_additional_image_tokens=processor.num_additional_image_tokens,
    )


def probe_inputs(processor, image_size: int) -> dict[str, torch.Tensor]:
    """A fixed image + question, rendered with the checkpoint's own chat template."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(image_size, image_size * 3 // 2, 3), dtype=np.uint8)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": Image.fromarray(pixels)}, {"type": "text", "text": "Describe it."}],
        }
    ]
    return processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


def unexpressible_backbone(config) -> str | None:
    """Why `LlavaConfig` cannot name this model's backbones, if it cannot: Llava builds its text model with
    AutoModelForCausalLM's table and its vision tower with AutoModel's."""
    text_type, vision_type = config.text_config.model_type, config.vision_config.model_type
    if text_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return f"text model type {text_type!r} has no AutoModelForCausalLM class in transformers"
    if vision_type not in MODEL_MAPPING_NAMES:
        return f"vision model type {vision_type!r} has no AutoModel class in transformers"
    return None


@torch.no_grad()
def max_logit_change(source, exported, inputs) -> float:
    pixel_values = inputs["pixel_values"].to(source.dtype)
    before = source(**{**inputs, "pixel_values": pixel_values}).logits.float()
    after = exported(**{**inputs, "pixel_values": pixel_values}).logits.float()
    return (before - after).abs().max().item()


def export(checkpoint: Path, output_dir: Path, drop_lm_head_bias: bool = False, max_shard_size: str = "5GB") -> float:
    """Write the native Llava folder, reload it and return the max |logit change| on the probe input."""
    read_allava_config(checkpoint)
    model = AllavaForConditionalGeneration.from_pretrained(checkpoint, dtype="auto").eval()
    processor = AllavaProcessor.from_pretrained(checkpoint)
    config = model.config
    if config.projector_type != "mlp2x_gelu":
        raise ValueError(
            f"{checkpoint}: projector_type {config.projector_type!r} cannot be exported: native Llava only has the "
            "2-layer GELU MLP projector (mlp2x_gelu)."
        )
    if config.lm_head_bias and not drop_lm_head_bias:
        raise ValueError(
            f"{checkpoint}: this model's LM head has a bias, which LlavaForConditionalGeneration cannot hold, so the "
            "exported model would give different logits. Re-run with --drop-lm-head-bias to export anyway; the "
            "maximum logit change on a probe input is then reported."
        )
    reason = unexpressible_backbone(config)
    if reason:
        raise ValueError(f"{checkpoint}: cannot be exported to native Llava: {reason}.")
    if not processor.chat_template:
        raise ValueError(f"{checkpoint}: the processor has no chat template; serving engines need one.")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} is not empty.")

    state_dict = llava_hf_state_dict(model)
    if config.text_config.model_type in HEAD_BIAS_TEXT_TYPES:
        # vLLM's Phi head has a bias and vLLM requires every parameter; zeros keep both engines identical.
        head = state_dict["language_model.lm_head.weight"]
        state_dict["language_model.lm_head.bias"] = torch.zeros(head.shape[0], dtype=head.dtype)
    if config.tie_word_embeddings:  # stored once, as the embedding
        del state_dict["language_model.lm_head.weight"]
    output_dir.mkdir(parents=True, exist_ok=True)
    save_torch_state_dict(state_dict, output_dir, max_shard_size=max_shard_size)
    llava_config(model).save_pretrained(output_dir)
    model.generation_config.save_pretrained(output_dir)
    exported_processor = llava_processor(processor)
    exported_processor.save_pretrained(output_dir)
    # transformers 4.x readers (serving images pin it) look for the image processor in preprocessor_config.json.
    exported_processor.image_processor.save_pretrained(output_dir)

    exported = LlavaForConditionalGeneration.from_pretrained(output_dir, dtype=model.dtype).eval()
    change = max_logit_change(model, exported, probe_inputs(processor, config.vision_config.image_size))
    if not config.lm_head_bias and change > EQUAL_LOGITS_ATOL:
        raise RuntimeError(f"{output_dir}: exported logits differ from the source by {change:.3g}; please report it.")
    return change


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv, expected=(ValueError, OSError))


def _main(argv: list[str] | None) -> None:
    parser = Parser(
        "Export an ALLaVA checkpoint to transformers' native Llava format (no remote code; vLLM, SGLang, lmms-eval).",
        "python hub/export_llava_hf.py runs/allava-phi2/finetune out/allava-phi2-llava-hf",
    )
    parser.add_argument("checkpoint", type=Path, help="ALLaVA checkpoint folder (model_type 'allava')")
    parser.add_argument("output", type=Path, help="empty or new folder for the native Llava export")
    parser.add_argument(
        "--drop-lm-head-bias", action="store_true", help="export a model whose LM head has a bias, without the bias"
    )
    parser.add_argument("--max-shard-size", default="5GB")
    args = parser.parse_args(argv)
    existing_folder(args.checkpoint, "checkpoint")
    change = export(args.checkpoint, args.output, args.drop_lm_head_bias, args.max_shard_size)
    print(f"Exported {args.checkpoint} -> {args.output} (LlavaForConditionalGeneration, no remote code).")
    print(f"Max |logit change| vs the source model on a probe input: {change:.3g}")


if __name__ == "__main__":
    sys.exit(main())
