"""ALLaVA for transformers: importing this package registers the model with the Auto classes.

AutoModel, AutoModelForCausalLM and AutoModelForImageTextToText all resolve to AllavaForConditionalGeneration,
so whichever one a user picks, the model generates. Saved checkpoints carry the three model files as remote code.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .configuration_allava import AllavaConfig
from .modeling_allava import AUTO_MODEL_CLASSES, AllavaForConditionalGeneration, AllavaModel, AllavaPreTrainedModel
from .processing_allava import AllavaProcessor, build_image_processor, load_image, load_tokenizer_with_image_token


AutoConfig.register("allava", AllavaConfig, exist_ok=True)
for _auto_class in (AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText):
    _auto_class.register(AllavaConfig, AllavaForConditionalGeneration, exist_ok=True)
AutoProcessor.register(AllavaConfig, AllavaProcessor, exist_ok=True)

AllavaConfig.register_for_auto_class("AutoConfig")
AllavaForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
AllavaProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "AUTO_MODEL_CLASSES",
    "AllavaConfig",
    "AllavaForConditionalGeneration",
    "AllavaModel",
    "AllavaPreTrainedModel",
    "AllavaProcessor",
    "build_image_processor",
    "load_image",
    "load_tokenizer_with_image_token",
]
