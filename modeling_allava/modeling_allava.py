"""ALLaVA model: transformers' Llava with a selectable projector, an optional LM-head bias and training helpers.

Everything else (vision feature selection, image-token scattering, generation, caching, attention backends) is
inherited from `LlavaModel` / `LlavaForConditionalGeneration` unchanged.
"""

from typing import Literal, get_args

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.models.llava.modeling_llava import (
    LlavaForConditionalGeneration,
    LlavaModel,
    LlavaMultiModalProjector,
    LlavaPreTrainedModel,
)

from .configuration_allava import AllavaConfig, end_of_turn_ids


# What `set_trainable_modules` trains: see its docstring.
TrainableStage = Literal["allava", "projector_only", "full"]
TRAINABLE_STAGES: tuple[str, ...] = get_args(TrainableStage)
# Every Auto class a saved checkpoint answers to; users load with AutoModel and expect generate().
AUTO_MODEL_CLASSES = ("AutoModel", "AutoModelForCausalLM", "AutoModelForImageTextToText")
# Weights of a full dual-encoder checkpoint (CLIP, SigLIP) that its vision half never uses.
OTHER_HALF_KEYS = r"^(text_model\.|text_projection\.|visual_projection\.|logit_scale$|logit_bias$)"


def load_vision_half(source: str, vision_config, **loading) -> nn.Module:
    """The vision tower of a vision-only or a full dual-encoder checkpoint. A full one's text tower is skipped
    quietly: leaving it out is the point, so transformers' load report would only list expected noise."""
    model_class = MODEL_MAPPING[type(vision_config)]
    own = model_class._keys_to_ignore_on_load_unexpected
    # On the class itself for this one load: transformers maps checkpoint keys by the class it loads.
    model_class._keys_to_ignore_on_load_unexpected = [*(own or []), OTHER_HALF_KEYS]
    try:
        return model_class.from_pretrained(source, config=vision_config, **loading)
    finally:
        model_class._keys_to_ignore_on_load_unexpected = own


class AllavaMultiModalProjector(LlavaMultiModalProjector):
    """`mlp2x_gelu` is exactly Llava's projector (linear_1, GELU, linear_2); `linear` keeps linear_1 alone."""

    def __init__(self, config: AllavaConfig):
        super().__init__(config)
        if config.projector_type == "linear":
            self.act = nn.Identity()
            self.linear_2 = nn.Identity()


class AllavaPreTrainedModel(LlavaPreTrainedModel):
    config: AllavaConfig

    def post_init(self) -> None:
        super().post_init()
        # transformers gathers `_no_split_modules` from each part's model class, and CLIP's also names its text
        # tower's classes. FSDP wrapping (accelerate, peft) takes its shard units from this set and rejects names
        # the model lacks, so keep only blocks this model has (e.g. CLIPEncoderLayer + PhiDecoderLayer).
        present = {type(module).__name__ for module in self.modules()}
        self._no_split_modules = {name for name in self._no_split_modules if name in present}


class AllavaModel(AllavaPreTrainedModel, LlavaModel):
    """Llava's backbone (vision tower, projector, language model) with ALLaVA's projector choice."""

    def __init__(self, config: AllavaConfig):
        # LlavaModel.__init__ hard-codes Llava's projector, so build the three parts here instead of twice.
        LlavaPreTrainedModel.__init__(self, config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = AllavaMultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_image_features(self, pixel_values, *args, **kwargs):
        """Llava's, with a frozen vision tower run without autograd. Nothing before a frozen tower trains, so its
        graph would only hold activations in memory; yet autograd records one as soon as its input requires grad,
        which `enable_input_require_grads` (LoRA, projector-only training) makes true via the patch embedding."""
        tower = self.vision_tower
        if not torch.is_grad_enabled() or any(p.requires_grad for p in tower.parameters()):
            return super().get_image_features(pixel_values, *args, **kwargs)
        own_forward = tower.__dict__.get("forward")  # an instance-level forward set by someone else, kept
        tower.forward = torch.no_grad()(tower.forward)
        try:
            return super().get_image_features(pixel_values, *args, **kwargs)
        finally:
            if own_forward is None:
                del tower.forward
            else:
                tower.forward = own_forward


class AllavaForConditionalGeneration(AllavaPreTrainedModel, LlavaForConditionalGeneration):
    """ALLaVA vision-language model. Loaded by AutoModel, AutoModelForCausalLM and AutoModelForImageTextToText alike,
    so `AutoModel.from_pretrained(...)` gives a model with `generate()`."""

    def __init__(self, config: AllavaConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = AllavaModel(config)
        # Phi-2's LM head has a bias that Llava's head would silently drop.
        self.lm_head = nn.Linear(
            config.text_config.hidden_size, config.text_config.vocab_size, bias=config.lm_head_bias
        )
        self.post_init()

    @classmethod
    def from_backbones(
        cls,
        vision: str,
        text: str,
        *,
        image_token_index: int | None = None,
        projector_type: Literal["mlp2x_gelu", "linear"] = "mlp2x_gelu",
        dtype: torch.dtype | str | None = None,
        attn_implementation: str | None = None,
        **config_kwargs,
    ) -> "AllavaForConditionalGeneration":
        """Compose a new ALLaVA model from a pretrained vision tower and a pretrained causal LM (hub ids or folders).

        The text path keeps the source LM's weights exactly (LM-head bias included), so text-only logits equal the
        source model's; only the projector is freshly initialised, as LLaVA does it (torch's default Linear init).
        `image_token_index` defaults to the id of `<image>` after adding it to the text model's tokenizer (what
        `AllavaProcessor.from_backbones` does). Without `dtype` the whole model takes the text checkpoint's dtype.
        """
        vision_config = AutoConfig.from_pretrained(vision)
        vision_config = getattr(vision_config, "vision_config", vision_config)  # full CLIP/SigLIP -> vision half
        loading = {"dtype": dtype, "attn_implementation": attn_implementation}
        loading = {k: v for k, v in loading.items() if v is not None}
        # Loading must leave the random stream the new projector is drawn from as it was: a plain load draws nothing,
        # DeepSpeed ZeRO-3's partitioned load does, and one seed must give one model under every engine.
        with torch.random.fork_rng(devices=[]):
            causal_lm = AutoModelForCausalLM.from_pretrained(text, **loading)
            # transformers loads each checkpoint in its saved dtype (CLIP-L/336 float32, Phi-2 float16, StableLM-2
            # bfloat16): without a dtype the tower takes the LM's, or their features could not meet in the projector.
            vision_tower = load_vision_half(vision, vision_config, **{"dtype": causal_lm.dtype, **loading})
        implementation = causal_lm.config._attn_implementation  # AllavaConfig below resets the sub-config's
        from .processing_allava import IMAGE_TOKEN, load_tokenizer_with_image_token

        tokenizer = load_tokenizer_with_image_token(text)
        if image_token_index is None:
            image_token_index = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

        config = AllavaConfig(
            vision_config=vision_tower.config,
            text_config=causal_lm.config,
            projector_type=projector_type,
            lm_head_bias=causal_lm.get_output_embeddings().bias is not None,
            image_token_index=image_token_index,
            tie_word_embeddings=causal_lm.config.tie_word_embeddings,
            **config_kwargs,
        )
        # Under DeepSpeed ZeRO-3 the backbones above load partitioned (zero.Init); this skeleton, whose parts are
        # replaced below, must not be partitioned again: zero.Init cannot initialise meta tensors.
        from transformers.modeling_utils import set_zero3_state

        with set_zero3_state(), torch.device("meta"):
            model = cls(config)
        # Adopt the pretrained modules as they are; only the projector needs real (new) weights.
        model.model.vision_tower = vision_tower
        model.model.language_model = causal_lm.get_decoder()
        model.lm_head = causal_lm.get_output_embeddings()
        config.vision_config, config.text_config = vision_tower.config, causal_lm.config  # one source of truth
        projector = model.model.multi_modal_projector.to_empty(device=causal_lm.device)
        # LLaVA (and so ALLaVA) builds its projector after loading the LM, with torch's default Linear init (uniform,
        # +-1/sqrt(fan_in)), not the LM's normal(0.02): about the same scale at CLIP-L -> Phi-2 widths, but 3-4x
        # larger per layer for a 64-wide tower, where 0.02 made the model take ~1.4x the steps to start using images.
        for module in projector.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
        projector.to(causal_lm.dtype)
        if image_token_index >= config.text_config.vocab_size:
            model.resize_token_embeddings(image_token_index + 1)
        model.set_attn_implementation(implementation)
        model.tie_weights()
        model.generation_config.eos_token_id = end_of_turn_ids(
            config.text_config.model_type, tokenizer, causal_lm.generation_config.eos_token_id
        )
        return model

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None, **kwargs):
        """Llava's forward, refusing sequences longer than the text model's context instead of failing deep inside."""
        tokens = input_ids if input_ids is not None else kwargs.get("inputs_embeds")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if position_ids is not None:
            needed = int(position_ids.max()) + 1
        else:
            needed = tokens.shape[1] + (cache.get_seq_length() if cache is not None else 0)
        limit = self.config.text_config.max_position_embeddings
        if needed > limit:
            raise ValueError(
                f"Input needs {needed} positions but the text model's context is {limit} tokens "
                "(text_config.max_position_embeddings); shorten the prompt or lower max_new_tokens."
            )
        return super().forward(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **kwargs,
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual; a model registered for remote code also maps every Auto class in `auto_map`."""
        # FSDP2 (`fully_shard`) swaps the instance's class for a generated `FSDP<name>` subclass defined in torch:
        # saved as that, the remote code would be torch's FSDP files. Save as the class this file defines.
        wrapped_class = type(self)
        self.__class__ = next(cls for cls in wrapped_class.__mro__ if cls.__module__ == __name__)
        try:
            if self._auto_class is not None:
                code_name = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
                self.config.auto_map = {
                    **(getattr(self.config, "auto_map", None) or {}),
                    **dict.fromkeys(AUTO_MODEL_CLASSES, code_name),
                }
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.__class__ = wrapped_class

    def set_trainable_modules(self, stage: TrainableStage = "allava") -> dict[str, int]:
        """Freeze/unfreeze parts per recipe and return trainable parameter counts per part.

        `allava`: vision tower frozen, projector and language model trained (both ALLaVA stages).
        `projector_only`: LLaVA-1.5's pretraining stage. `full`: everything (tiny random models only).
        """
        if stage not in TRAINABLE_STAGES:
            raise ValueError(f"stage must be one of {', '.join(TRAINABLE_STAGES)}; got {stage!r}")
        parts = {
            "vision_tower": (self.model.vision_tower, stage == "full"),
            "multi_modal_projector": (self.model.multi_modal_projector, True),
            "language_model": (self.model.language_model, stage != "projector_only"),
            "lm_head": (self.lm_head, stage != "projector_only"),
        }
        counts = {}
        for name, (module, trainable) in parts.items():
            module.requires_grad_(trainable)
            counts[name] = sum(p.numel() for p in module.parameters() if p.requires_grad)
        return counts


__all__ = [
    "AUTO_MODEL_CLASSES",
    "TRAINABLE_STAGES",
    "AllavaForConditionalGeneration",
    "AllavaModel",
    "AllavaPreTrainedModel",
]
