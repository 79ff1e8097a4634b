import pytest
from transformers import AutoConfig

from modeling_allava import TEXT_BACKBONES, AllavaConfig
from recipes.tiny.models import tiny_config


def test_defaults_reproduce_allava_phi2():
    config = AllavaConfig()
    assert config.model_type == "allava"
    assert config.vision_config.model_type == "clip_vision_model"
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (336, 14)
    assert config.vision_config.hidden_size == 1024
    assert config.vision_feature_layer == -2
    assert config.vision_feature_select_strategy == "default"
    assert config.image_seq_length == 576  # (336 / 14)^2, CLS dropped
    assert config.projector_type == "mlp2x_gelu"
    assert config.image_aspect_ratio == "pad"
    assert config.text_config.model_type == "phi"
    assert config.text_config.hidden_size == 2560
    assert config.lm_head_bias is False


@pytest.mark.parametrize("text_backbone", TEXT_BACKBONES)
def test_text_configs_of_every_tested_type_from_dicts(text_backbone):
    config = tiny_config(text_backbone)
    assert config.text_config.model_type == text_backbone
    reloaded = AllavaConfig.from_dict(config.to_dict())
    assert reloaded.text_config.to_dict() == config.text_config.to_dict()


def test_config_objects_accepted_and_round_trip(tmp_path):
    config = tiny_config("phi3", projector_type="linear", lm_head_bias=True)
    config = AllavaConfig(vision_config=config.vision_config, text_config=config.text_config, lm_head_bias=True)
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, AllavaConfig)
    assert reloaded.lm_head_bias is True
    assert reloaded.text_config.model_type == "phi3"


def test_full_feature_strategy_keeps_cls_in_token_count():
    config = tiny_config("phi", vision_feature_select_strategy="full")
    assert config.image_seq_length == 16 + 1


def test_siglip_vision_has_no_cls_to_drop():
    vision = {"model_type": "siglip_vision_model", "hidden_size": 64, "num_attention_heads": 4, "image_size": 56}
    config = AllavaConfig(vision_config={**vision, "patch_size": 14})
    assert config.vision_feature_select_strategy == "full"
    assert config.image_seq_length == 16


@pytest.mark.parametrize("field", ["vision_config", "text_config"])
def test_unknown_backbone_type_names_the_field(field):
    with pytest.raises(ValueError, match=rf"AllavaConfig\.{field}: unknown backbone model_type 'gpt-nonexistent'"):
        AllavaConfig(**{field: {"model_type": "gpt-nonexistent"}})


def test_unknown_projector_type_rejected():
    with pytest.raises(Exception, match="projector_type"):
        AllavaConfig(projector_type="mlp3x_gelu")
