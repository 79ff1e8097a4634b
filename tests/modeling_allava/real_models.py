"""The shipped recipes' real backbones, from the published configs in real_configs/ (nothing is downloaded).

`real_config(recipe)` is the full-depth ALLaVA config of a recipe; `real_config(recipe, layers=2)` keeps every width,
head count, vocabulary, RoPE setting and image size but only two text and two vision layers, small enough to train
a step on a CPU.
"""

import json
from pathlib import Path
from typing import NamedTuple

from modeling_allava import AllavaConfig


CONFIGS = Path(__file__).parent / "real_configs"


class Recipe(NamedTuple):
    text: str  # real_configs/<text>.json
    vision: str  # real_configs/<vision>.json
    max_length: int  # the recipe's max_length (recipes/<name>/*.yaml)


RECIPES: dict[str, Recipe] = {
    "allava-phi2": Recipe("phi-2", "clip-vit-large-patch14-336", 2048),
    "allava-stablelm2": Recipe("stablelm-2-1_6b", "clip-vit-large-patch14-336", 4096),
    "allava-phi3": Recipe("phi-3-mini-128k-instruct", "clip-vit-large-patch14-336", 4096),
    "allava-qwen3-siglip2": Recipe("qwen3-1_7b-base", "siglip2-so400m-patch14-384", 4096),
}


def published_config(name: str) -> dict:
    """One real_configs/ file, without its `_source` note."""
    config = json.loads((CONFIGS / f"{name}.json").read_text())
    config.pop("_source")
    return config


def real_config(recipe: str, layers: int | None = None, **overrides) -> AllavaConfig:
    """The recipe's ALLaVA config; `layers` cuts both towers to that depth."""
    text, vision = published_config(RECIPES[recipe].text), published_config(RECIPES[recipe].vision)
    if layers is not None:
        text["num_hidden_layers"] = vision["num_hidden_layers"] = layers
        if "max_window_layers" in text:
            text["max_window_layers"] = layers
    return AllavaConfig(
        vision_config=vision,
        text_config=text,
        tie_word_embeddings=text["tie_word_embeddings"],
        lm_head_bias=text["model_type"] == "phi",  # Phi-2's own head has a bias (from_backbones keeps it)
        **overrides,
    )
