"""Full-depth real models on the meta device: each part has the published number of parameters.

The published figures are the model cards' sizes and the parameter counts the Hugging Face Hub shows for the
checkpoints' safetensors; the exact counts below are what these architectures give and round to them.
"""

from pathlib import Path

import pytest
import torch

from modeling_allava import AllavaForConditionalGeneration
from tests.modeling_allava.real_models import RECIPES, real_config


# Text models: LM + head, embeddings counted once when tied.
PUBLISHED_TEXT = {
    # microsoft/phi-2: model card "2.7 billion parameters"; Hub: 2.78B params.
    "allava-phi2": (2_779_683_840, "2.78B"),
    # stabilityai/stablelm-2-1_6b: model card "1.6 billion"; Hub: 1.64B params.
    "allava-stablelm2": (1_644_515_328, "1.64B"),
    # microsoft/Phi-3-mini-128k-instruct: model card "3.8B parameters"; Hub: 3.82B params.
    "allava-phi3": (3_821_079_552, "3.82B"),
    # Qwen/Qwen3-1.7B-Base: model card "Number of Parameters: 1.7B; Non-Embedding: 1.4B" (tied embeddings).
    "allava-qwen3-siglip2": (1_720_574_976, "1.72B"),
}
# Vision towers as Llava holds them (the vision half only).
PUBLISHED_VISION = {
    # CLIP ViT-L/14 image encoder: ~0.3B (CLIP paper's ViT-L/14; "CLIP ViT-L/336px, 0.3B" in LLaVA-1.5's tables).
    "clip_vision_model": (303_507_456, "0.30B"),
    # SigLIP So400m/14 vision encoder: 428M with its attention-pooling head ("Getting ViT in Shape", SoViT-400m/14).
    "siglip_vision_model": (428_225_600, "0.43B"),
}


def _count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _figure(count: int, published: str) -> str:
    """`count` written with as many digits as the published figure has."""
    digits = len(published.split(".")[1].rstrip("B")) if "." in published else 0
    return f"{count / 1e9:.{digits}f}B"


@pytest.fixture(scope="module", params=list(RECIPES))
def full_model(request):
    config = real_config(request.param)
    with torch.device("meta"):
        return request.param, AllavaForConditionalGeneration(config)


def test_each_part_has_the_published_size(full_model):
    recipe, model = full_model
    config = model.config
    text = _count(model.model.language_model) + (0 if config.tie_word_embeddings else _count(model.lm_head))
    vision = _count(model.model.vision_tower)
    exact, published = PUBLISHED_TEXT[recipe]
    assert (text, _figure(text, published)) == (exact, published)
    exact, published = PUBLISHED_VISION[config.vision_config.model_type]
    assert (vision, _figure(vision, published)) == (exact, published)
    # The projector has no published size: Linear(vision, text) -> GELU -> Linear(text, text), with biases.
    v, t = config.vision_config.hidden_size, config.text_config.hidden_size
    assert _count(model.model.multi_modal_projector) == v * t + t + t * t + t
    assert _count(model) == text + vision + v * t + t + t * t + t


def test_qwen3_non_embedding_size_is_the_published_one():
    config = real_config("allava-qwen3-siglip2")
    with torch.device("meta"):
        model = AllavaForConditionalGeneration(config)
    embedding = model.get_input_embeddings().weight.numel()
    assert f"{(_count(model.model.language_model) - embedding) / 1e9:.1f}B" == "1.4B"


@pytest.mark.parametrize(("recipe", "tokens"), [("allava-phi2", 576), ("allava-qwen3-siglip2", 729)])
def test_image_token_counts_at_real_image_sizes(recipe, tokens):
    """CLIP-L/14 at 336 px: 24 x 24 patches (its CLS dropped); SigLIP at 384 px: all 27 x 27 patches."""
    assert real_config(recipe).image_seq_length == tokens


def test_training_docs_show_the_tables_the_real_models_give():
    """docs/training.md's ZeRO table, FSDP wrap plan and FLOP projections are what paper_costs computes."""
    from tests.modeling_allava import paper_costs

    docs = (Path(__file__).parents[2] / "docs" / "training.md").read_text(encoding="utf-8")
    for table in (paper_costs.zero_table(), paper_costs.wrap_table(), paper_costs.flops_table()):
        assert table in docs, table
    assert f"MFU of {paper_costs.allava_mfu()} " in docs
