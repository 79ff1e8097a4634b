"""One source of truth per fact: the backbone table, the image-token rule, the template files, the padding switch."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

import modeling_allava
from modeling_allava import (
    CHAT_TEMPLATES,
    IMAGE_TOKEN,
    TEXT_BACKBONES,
    TRAINABLE_STAGES,
    VISION_BACKBONES,
    AllavaConfig,
    AllavaForConditionalGeneration,
    AllavaProcessor,
)
from modeling_allava.configuration_allava import TextBackbone
from recipes.collator import AllavaCollator
from recipes.tiny.models import build_tiny_model_and_processor, build_tiny_tokenizer, save_tiny_backbones, tiny_config


PACKAGE = Path(modeling_allava.__file__).parent
SIGLIP = {
    "model_type": "siglip_vision_model",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 56,
    "patch_size": 14,
}


def _meta_model(config: AllavaConfig) -> AllavaForConditionalGeneration:
    with torch.device("meta"):
        return AllavaForConditionalGeneration(config)


@pytest.mark.parametrize("text_backbone", TEXT_BACKBONES)
def test_decoder_layer_names_the_text_models_block(text_backbone):
    """FSDP wraps by class name: the table's name must be the class transformers builds for that backbone."""
    model = _meta_model(tiny_config(text_backbone))
    names = {type(module).__name__ for module in model.model.language_model.modules()}
    assert TEXT_BACKBONES[text_backbone].decoder_layer in names


@pytest.mark.parametrize("vision_config", [None, SIGLIP], ids=["clip", "siglip"])
def test_encoder_layer_names_the_vision_towers_block(vision_config):
    config = tiny_config("phi")
    if vision_config is not None:
        config = AllavaConfig(vision_config=vision_config, text_config=config.text_config)
    model = _meta_model(config)
    names = {type(module).__name__ for module in model.model.vision_tower.modules()}
    assert VISION_BACKBONES[config.vision_config.model_type].encoder_layer in names


def test_every_backbone_template_ships_as_a_jinja_file():
    files = {path.stem: path.read_text(encoding="utf-8") for path in PACKAGE.glob("*.jinja")}
    assert files == CHAT_TEMPLATES
    assert {backbone.chat_template for backbone in TEXT_BACKBONES.values()} == set(files)


def test_templates_share_one_message_text_block():
    """The cleaning of message text is one rule: the block is the same, character for character, in every template."""
    block = re.compile(r"\{#- message text:.*\{#- end of message text -#\}", re.DOTALL)
    blocks = {name: block.findall(template) for name, template in CHAT_TEMPLATES.items()}
    assert all(len(found) == 1 for found in blocks.values()), blocks
    assert len({found[0] for found in blocks.values()}) == 1


def test_chat_template_follows_the_table(monkeypatch):
    """The processor asks the table which template a backbone uses; nothing else decides it."""
    monkeypatch.setitem(TEXT_BACKBONES, "phi", TextBackbone("phi3", packable=True, decoder_layer="PhiDecoderLayer"))
    tokenizer = build_tiny_tokenizer()
    processor = AllavaProcessor.from_config(tiny_config("phi", tokenizer), tokenizer)
    assert processor.chat_template == CHAT_TEMPLATES["phi3"]


def test_packing_follows_the_table(monkeypatch):
    from recipes.packing import packing_unsupported_reason

    config = tiny_config("llama")
    assert packing_unsupported_reason(config, 2048) is None
    monkeypatch.setitem(TEXT_BACKBONES, "llama", TEXT_BACKBONES["llama"]._replace(packable=False))
    assert "'llama'" in packing_unsupported_reason(config, 2048)


@pytest.mark.parametrize(
    ("vision_config", "strategy", "tokens"),
    [(None, "default", 16), (None, "full", 17), (SIGLIP, "default", 16)],
    ids=["clip-drops-cls", "clip-keeps-cls", "siglip-has-no-cls"],
)
def test_one_image_token_count_everywhere(vision_config, strategy, tokens):
    """Config, processor (placeholders written, chat tokenisation, serving hint) and collator count alike, and the
    count is what the vision tower really hands the language model."""
    tokenizer = build_tiny_tokenizer()
    config = tiny_config("phi", tokenizer, vision_feature_select_strategy=strategy)
    if vision_config is not None:
        config = AllavaConfig(
            vision_config=vision_config, text_config=config.text_config, image_token_index=config.image_token_index
        )
    processor = AllavaProcessor.from_config(config, tokenizer)
    image = Image.new("RGB", (70, 40), (200, 30, 30))
    out = processor(images=[image], text=[f"{IMAGE_TOKEN}\nhi"], return_tensors="pt")
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "hi"}]}]
    chat = processor.apply_chat_template(messages, tokenize=True, return_dict=True)
    torch.manual_seed(0)
    model = AllavaForConditionalGeneration(config).eval()
    assert config.image_seq_length == tokens
    assert processor.image_seq_length == tokens
    assert int((out["input_ids"] == processor.image_token_id).sum()) == tokens
    assert chat["input_ids"][0].count(processor.image_token_id) == tokens
    assert processor._get_num_multimodal_tokens(image_sizes=[(40, 70)]).num_image_tokens == [tokens]
    assert AllavaCollator(processor).image_tokens_per_image == tokens
    with torch.no_grad():  # Llava refuses a placeholder count that differs from the tower's feature count
        assert torch.isfinite(model(**out).logits).all()


def _corner_and_centre(processor: AllavaProcessor) -> tuple[np.ndarray, np.ndarray]:
    """A wide black band: padding to a square puts the CLIP mean colour above it; a plain resize crops it to black."""
    image_processor = processor.image_processor
    pixels = image_processor(Image.new("RGB", (80, 20)), return_tensors="np")["pixel_values"][0]
    mean, std = np.array(image_processor.image_mean), np.array(image_processor.image_std)
    return (pixels[:, 0, 0] * std + mean) * 255, (pixels[:, 28, 28] * std + mean) * 255


@pytest.mark.parametrize(("aspect", "corner"), [("pad", [122, 116, 104]), ("resize", [0, 0, 0])])
def test_image_aspect_ratio_drives_the_processors_padding(tmp_path, aspect, corner):
    model, processor = build_tiny_model_and_processor("phi", image_aspect_ratio=aspect)
    assert model.config.image_aspect_ratio == aspect
    found_corner, centre = _corner_and_centre(processor)
    np.testing.assert_allclose(found_corner, corner, atol=1.5)
    np.testing.assert_allclose(centre, 0, atol=1.5)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    np.testing.assert_allclose(_corner_and_centre(reloaded)[0], corner, atol=1.5)


@pytest.mark.parametrize(("aspect", "corner"), [("pad", [122, 116, 104]), ("resize", [0, 0, 0])])
def test_composed_processor_pads_as_the_composed_model_says(tmp_path, aspect, corner):
    vision_dir, text_dir = save_tiny_backbones(tmp_path)
    model = AllavaForConditionalGeneration.from_backbones(str(vision_dir), str(text_dir), image_aspect_ratio=aspect)
    processor = AllavaProcessor.from_backbones(str(vision_dir), str(text_dir), image_aspect_ratio=aspect)
    assert model.config.image_aspect_ratio == aspect
    np.testing.assert_allclose(_corner_and_centre(processor)[0], corner, atol=1.5)


def test_trainable_stages_are_the_literal_of_set_trainable_modules():
    from typing import get_args

    from modeling_allava.modeling_allava import TrainableStage

    model, _ = build_tiny_model_and_processor("phi")
    assert TRAINABLE_STAGES == get_args(TrainableStage)
    with pytest.raises(ValueError, match="stage must be one of allava, projector_only, full"):
        model.set_trainable_modules("vision_only")


def test_the_rest_of_the_repo_asks_this_package(tmp_path, monkeypatch):
    """Trainable stages, Auto classes and the image placeholder are defined here once and imported elsewhere."""
    import dataset_scripts.schema as schema
    import hub.push_model as push_model
    import modeling_allava.modeling_allava as modeling
    import recipes.script_arguments as script_arguments

    assert script_arguments.TRAINABLE_STAGES is TRAINABLE_STAGES
    assert script_arguments.AllavaScriptArguments.__dataclass_fields__["trainable"].metadata["choices"] == list(
        TRAINABLE_STAGES
    )
    assert schema.IMAGE_TOKEN is IMAGE_TOKEN
    # The upload check asks for exactly the Auto classes the model package lists: a new one is required at once.
    monkeypatch.setattr(modeling, "AUTO_MODEL_CLASSES", (*modeling.AUTO_MODEL_CLASSES, "AutoModelForNewTask"))
    auto_map = dict.fromkeys(["AutoConfig", *modeling_allava.AUTO_MODEL_CLASSES])
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": auto_map}))
    with pytest.raises(RuntimeError, match="missing AutoModelForNewTask, "):
        push_model.check_upload_folder(tmp_path)
