"""ALLaVA for transformers: importing this package registers the model with the Auto classes.

AutoModel, AutoModelForCausalLM and AutoModelForImageTextToText all resolve to AllavaForConditionalGeneration,
so whichever one a user picks, the model generates. Saved checkpoints carry the three model files as remote code.
"""

import transformers
from transformers import AutoConfig, AutoProcessor

from .configuration_allava import TEXT_BACKBONES, VISION_BACKBONES, AllavaConfig, backbone_template, image_seq_length
from .modeling_allava import (
    AUTO_MODEL_CLASSES,
    TRAINABLE_STAGES,
    AllavaForConditionalGeneration,
    AllavaModel,
    AllavaPreTrainedModel,
)
from .processing_allava import (
    CHAT_TEMPLATES,
    IMAGE_TOKEN,
    AllavaProcessor,
    build_image_processor,
    load_image,
    load_tokenizer_with_image_token,
)


AutoConfig.register("allava", AllavaConfig, exist_ok=True)
for _auto_class in AUTO_MODEL_CLASSES:
    getattr(transformers, _auto_class).register(AllavaConfig, AllavaForConditionalGeneration, exist_ok=True)
AutoProcessor.register(AllavaConfig, AllavaProcessor, exist_ok=True)

AllavaConfig.register_for_auto_class("AutoConfig")
AllavaForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
AllavaProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "AUTO_MODEL_CLASSES",
    "CHAT_TEMPLATES",
    "IMAGE_TOKEN",
    "TEXT_BACKBONES",
    "TRAINABLE_STAGES",
    "VISION_BACKBONES",
    "AllavaConfig",
    "AllavaForConditionalGeneration",
    "AllavaModel",
    "AllavaPreTrainedModel",
    "AllavaProcessor",
    "backbone_template",
    "build_image_processor",
    "image_seq_length",
    "load_image",
    "load_tokenizer_with_image_token",
]
