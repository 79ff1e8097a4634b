"""Convert a released FreedomIntelligence ALLaVA checkpoint (LLaVA fork, transformers 4.37 remote code) into
`AllavaForConditionalGeneration` + `AllavaProcessor`, loadable with plain transformers.

    python hub/convert_allava_checkpoint.py path/to/ALLaVA-Phi2-2_7B out/allava-phi2 [--vision-config DIR_OR_ID]

Handles `LlavaPhiForCausalLM` (ALLaVA-Phi2-2_7B, ALLaVA-3B, ALLaVA-3B-Longer), `LlavaStableLM_1_6bForCausalLM`
(ALLaVA-StableLM2-1_6B) and `LlavaPhi3ForCausalLM` (ALLaVA-Phi3-mini-128k). The flat backbone fields of the original
config become a proper `text_config`, the `mm_*` fields become AllavaConfig fields, and every tensor is renamed into
our layout. Any source tensor left unused, any model tensor left without a source, or any shape disagreement stops the
conversion with the full list: nothing is silently dropped or randomly initialised.
"""

import copy
import dataclasses
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, GenerationConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from hub.checkpoint_files import read_json
from modeling_allava import (
    IMAGE_TOKEN,
    TEXT_BACKBONES,
    AllavaConfig,
    AllavaForConditionalGeneration,
    AllavaProcessor,
    load_tokenizer_with_image_token,
)
from toolkit.cli import Parser, existing_folder, folder_or_repo_id, run


# Original architecture -> text backbone model_type (its chat template comes from TEXT_BACKBONES).
ARCHITECTURES = {
    "LlavaPhiForCausalLM": "phi",
    "LlavaStableLM_1_6bForCausalLM": "stablelm",
    "LlavaPhi3ForCausalLM": "phi3",
}
# StableLM-2 was first released with its own remote code (`stablelm_epoch`) and these field names.
TEXT_FIELD_RENAMES = {"rope_pct": "partial_rotary_factor", "norm_eps": "layer_norm_eps"}
# Older field names that transformers still accepts and folds into `rope_parameters`.
LEGACY_ROPE_FIELDS = {"rope_theta", "rope_scaling", "partial_rotary_factor"}
# Generic PreTrainedConfig fields that describe the saved file, not the backbone.
NOT_BACKBONE_FIELDS = {"architectures", "transformers_version", "dtype", "id2label", "label2id"}
# LLaVA fields read here (mm_* and friends) or meaningful only while training.
LLAVA_FIELDS = {
    "mm_vision_tower", "mm_hidden_size", "mm_projector_type", "mm_vision_select_layer", "mm_vision_select_feature",
    "mm_use_im_start_end", "mm_use_im_patch_token", "image_aspect_ratio", "tokenizer_model_max_length",
    "tokenizer_padding_side", "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter", "use_mm_proj", "mm_projector_lr",
    "mm_patch_merge_type", "unfreeze_mm_vision_tower", "mm_vision_tower_lr", "image_grid_pinpoints",
}  # fmt: skip
VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
PROJECTOR_PREFIX = "model.mm_projector."
MAX_LISTED = 30


def _listing(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f" ... and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def load_shard(path: Path) -> dict[str, torch.Tensor]:
    """One safetensors or PyTorch weight file; a damaged file is a ValueError naming it."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(path)
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and pickle raise many different types for a truncated file
        raise ValueError(
            f"{path}: cannot read weights ({type(error).__name__}: {error}). The file is truncated or corrupt; "
            "download it again."
        ) from error
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ValueError(f"{path}: expected a mapping of tensor names to tensors.")
    return tensors


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder: sharded (index json) or single file, safetensors preferred over .bin."""
    for index_name, single_name in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index_path = folder / index_name
        if index_path.is_file():
            weight_map = (read_json(index_path) or {}).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ValueError(f"{index_path}: no 'weight_map'.")
            shards = sorted(set(weight_map.values()))
            absent_files = [shard for shard in shards if not (folder / shard).is_file()]
            if absent_files:
                raise FileNotFoundError(f"{index_path} names shard files that are missing: {_listing(absent_files)}.")
            state_dict = {}
            for shard in shards:
                state_dict.update(load_shard(folder / shard))
            absent = [key for key in weight_map if key not in state_dict]
            if absent:
                raise ValueError(f"{index_path}: {len(absent)} tensors are not in the shards: {_listing(absent)}.")
            return state_dict
        if (folder / single_name).is_file():
            return load_shard(folder / single_name)
    raise FileNotFoundError(f"{folder}: no model.safetensors, pytorch_model.bin or sharded index found.")


def text_config_from(original: dict, text_type: str, config_path: Path):
    """The backbone's own config built from the fields the LLaVA fork stored flat at the top level."""
    config_class = CONFIG_MAPPING[text_type]
    accepted = ({f.name for f in dataclasses.fields(config_class)} | LEGACY_ROPE_FIELDS) - NOT_BACKBONE_FIELDS
    fields = {TEXT_FIELD_RENAMES.get(key, key): value for key, value in copy.deepcopy(original).items()}
    kwargs = {key: value for key, value in fields.items() if key in accepted}
    rope_scaling = kwargs.get("rope_scaling") or {}
    if rope_scaling.get("type") == "su":  # Phi-3's pre-July-2024 name; transformers only validates "longrope"
        rope_scaling["type"] = "longrope"
    try:
        text_config = AutoConfig.for_model(text_type, **kwargs)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{config_path}: the {text_type} backbone fields are invalid ({error}).") from error
    text_config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[text_type]]
    ignored = set(original) - LLAVA_FIELDS - {"model_type", "_name_or_path", "torch_dtype", "auto_map"}
    ignored -= {key for key in original if TEXT_FIELD_RENAMES.get(key, key) in kwargs} | NOT_BACKBONE_FIELDS
    if ignored:
        print(f"Not carried over from {config_path.name} (no {config_class.__name__} field): {_listing(ignored)}")
    return text_config


def vision_config_from(original: dict, source: str | None, config_path: Path):
    """The CLIP vision config: the original stores only the tower's name (`mm_vision_tower`), not its config."""
    given = source is not None
    source = source or original.get("mm_vision_tower")
    if not source:
        raise ValueError(f"{config_path}: no mm_vision_tower; pass --vision-config.")
    folder_or_repo_id(source, "--vision-config" if given else f"{config_path}: mm_vision_tower")
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Cannot read the vision tower config {source!r} (mm_vision_tower in {config_path}). Pass "
            f"--vision-config with a local folder or hub id of that CLIP model. ({error})"
        ) from error
    config = getattr(config, "vision_config", config)
    if original.get("mm_hidden_size", config.hidden_size) != config.hidden_size:
        raise ValueError(
            f"{config_path}: mm_hidden_size is {original['mm_hidden_size']} but the vision tower {source!r} has "
            f"hidden_size {config.hidden_size}."
        )
    return config


def multimodal_fields(original: dict, config_path: Path) -> dict:
    """AllavaConfig fields from the LLaVA `mm_*` switches; unsupported switches are refused, not ignored."""
    for flag in ("mm_use_im_start_end", "mm_use_im_patch_token"):
        if original.get(flag):
            raise ValueError(f"{config_path}: {flag}=true is not supported (no released ALLaVA model uses it).")
    projector = original.get("mm_projector_type", "linear")  # LLaVA's own default
    if projector not in ("mlp2x_gelu", "linear"):
        raise ValueError(f"{config_path}: mm_projector_type {projector!r} is not supported (mlp2x_gelu, linear).")
    strategies = {"patch": "default", "cls_patch": "full"}
    select = original.get("mm_vision_select_feature", "patch")
    if select not in strategies:
        raise ValueError(f"{config_path}: mm_vision_select_feature {select!r} is not supported (patch, cls_patch).")
    aspect = original.get("image_aspect_ratio") or "square"
    if aspect not in ("pad", "square"):
        raise ValueError(f"{config_path}: image_aspect_ratio {aspect!r} is not supported (pad, square).")
    return {
        "projector_type": projector,
        "vision_feature_layer": original.get("mm_vision_select_layer", -2),
        "vision_feature_select_strategy": strategies[select],
        "image_aspect_ratio": "pad" if aspect == "pad" else "resize",
    }


def target_key(source_key: str, projector_type: str) -> str | None:
    """Our name for an original tensor name, or None when the original name is not one we know."""
    if source_key.startswith(VISION_PREFIX):
        return "model.vision_tower." + source_key[len(VISION_PREFIX) :]
    if source_key.startswith(PROJECTOR_PREFIX):
        rest = source_key[len(PROJECTOR_PREFIX) :]
        layers = {"0.": "linear_1.", "2.": "linear_2."} if projector_type == "mlp2x_gelu" else {"": "linear_1."}
        for old, new in layers.items():
            if rest.startswith(old) and rest[len(old) :] in ("weight", "bias"):
                return f"model.multi_modal_projector.{new}{rest[len(old) :]}"
        return None
    if source_key in ("lm_head.weight", "lm_head.bias"):
        return source_key
    if source_key.startswith("model."):
        return "model.language_model." + source_key[len("model.") :]
    return None


def convert_state_dict(source: dict[str, torch.Tensor], config: AllavaConfig) -> dict[str, torch.Tensor]:
    """Rename every tensor; fail listing unused source tensors, uncovered model tensors and shape mismatches."""
    with torch.device("meta"):
        expected = AllavaForConditionalGeneration(config).state_dict()
    converted, unused = {}, []
    for key, tensor in source.items():
        new_key = target_key(key, config.projector_type)
        if new_key is None or new_key not in expected:
            unused.append(key)
        else:
            converted[new_key] = tensor
    problems = []
    if unused:
        problems.append(f"{len(unused)} source tensors have no place in the model: {_listing(unused)}")
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = set(expected) - set(converted) - tied
    if missing:
        problems.append(f"{len(missing)} model tensors have no source tensor: {_listing(missing)}")
    mismatched = [
        f"{key} {tuple(tensor.shape)} vs {tuple(expected[key].shape)}"
        for key, tensor in converted.items()
        if tensor.shape != expected[key].shape
    ]
    if mismatched:
        problems.append(f"shape mismatches (source vs model): {_listing(mismatched)}")
    if problems:
        raise ValueError("Conversion stopped:\n- " + "\n- ".join(problems))
    return converted


def convert(original_dir: Path, output_dir: Path, vision_config: str | None = None, max_shard_size: str = "5GB"):
    """Convert `original_dir` into `output_dir` (empty or absent); returns the converted model and processor."""
    config_path = original_dir / "config.json"
    original = read_json(config_path, required=True)
    architecture = (original.get("architectures") or [None])[0]
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"{config_path}: architectures[0] is {architecture!r}; expected one of {', '.join(ARCHITECTURES)}."
        )
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} is not empty.")
    text_type = ARCHITECTURES[architecture]
    template = TEXT_BACKBONES[text_type].chat_template
    source = read_state_dict(original_dir)

    tokenizer = load_tokenizer_with_image_token(str(original_dir))
    tokenizer.model_max_length = original.get("tokenizer_model_max_length", tokenizer.model_max_length)
    image_token_index = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    text_config = text_config_from(original, text_type, config_path)
    config = AllavaConfig(
        vision_config=vision_config_from(original, vision_config, config_path),
        text_config=text_config,
        image_token_index=image_token_index,
        lm_head_bias="lm_head.bias" in source,
        tie_word_embeddings=text_config.tie_word_embeddings,
        **multimodal_fields(original, config_path),
    )
    dtype = next(iter(source.values())).dtype
    model = AllavaForConditionalGeneration.from_pretrained(
        None, config=config, state_dict=convert_state_dict(source, config), dtype=dtype
    )
    if image_token_index >= text_config.vocab_size:
        print(f"<image> (id {image_token_index}) is outside the vocabulary: embeddings resized by one row.")
        model.resize_token_embeddings(image_token_index + 1)

    end_tokens = [tokenizer.eos_token] + (["<|end|>"] if template == "phi3" else [])
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in end_tokens if t in tokenizer.get_vocab()],
        pad_token_id=tokenizer.pad_token_id,
    )
    processor = AllavaProcessor.from_config(config, tokenizer)
    model.save_pretrained(output_dir, max_shard_size=max_shard_size)
    processor.save_pretrained(output_dir)
    print(
        f"Converted {architecture} ({len(source)} tensors, {dtype}) -> {output_dir}: text backbone {text_type}, "
        f"chat template {template!r}, <image> id {image_token_index}."
    )
    return model, processor


def main(argv: list[str] | None = None) -> int:
    """The command line; expected errors print one line and return exit code 2."""
    return run(_main, argv, expected=(ValueError, OSError))


def _main(argv: list[str] | None) -> None:
    parser = Parser(
        "Convert a released FreedomIntelligence ALLaVA checkpoint into one that loads with plain transformers.",
        "python hub/convert_allava_checkpoint.py path/to/ALLaVA-Phi2-2_7B out/allava-phi2",
    )
    parser.add_argument("original", type=Path, help="released checkpoint folder (config.json, weights, tokenizer)")
    parser.add_argument("output", type=Path, help="empty or new folder for the converted checkpoint")
    parser.add_argument(
        "--vision-config",
        help="CLIP config folder or hub id (default: the checkpoint's mm_vision_tower, e.g. "
        "openai/clip-vit-large-patch14-336)",
    )
    parser.add_argument("--max-shard-size", default="5GB")
    args = parser.parse_args(argv)
    existing_folder(args.original, "original")
    if args.vision_config:  # checked again where it is read; here before the weights are
        folder_or_repo_id(args.vision_config, "--vision-config")
    convert(args.original, args.output, vision_config=args.vision_config, max_shard_size=args.max_shard_size)


if __name__ == "__main__":
    sys.exit(main())
