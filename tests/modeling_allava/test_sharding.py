"""What sharded training (FSDP, ZeRO) reads from the model: shard-unit classes, and saving from a wrapped instance."""

import json

import pytest
import torch
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
from tokenizers import Tokenizer, models
from torch.distributed.fsdp import FSDPModule
from transformers import PreTrainedTokenizerFast

from modeling_allava import TEXT_BACKBONES
from recipes.tiny.models import tiny_config


DECODER_LAYER = {
    "phi": "PhiDecoderLayer",
    "phi3": "Phi3DecoderLayer",
    "stablelm": "StableLmDecoderLayer",
    "llama": "LlamaDecoderLayer",
    "qwen2": "Qwen2DecoderLayer",
    "qwen3": "Qwen3DecoderLayer",
    "smollm3": "SmolLM3DecoderLayer",
    "gemma3_text": "Gemma3DecoderLayer",
}


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level stand-in: the configs only need the special-token ids."""
    words = ["<|endoftext|>", "<pad>", "<image>", "<|end|>", "hi"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="hi"))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<pad>", bos_token="<|endoftext|>"
    )


def tiny_model(backbone: str, tokenizer):
    from modeling_allava import AllavaForConditionalGeneration

    torch.manual_seed(0)
    return AllavaForConditionalGeneration(tiny_config(backbone, tokenizer, hidden_size=32, num_layers=1))


@pytest.mark.parametrize("backbone", TEXT_BACKBONES)
def test_shard_units_are_the_models_own_blocks(backbone, tokenizer, monkeypatch):
    model = tiny_model(backbone, tokenizer)
    # CLIP's PreTrainedModel also lists its text tower's classes, which an ALLaVA model does not contain.
    assert set(model._no_split_modules) == {"CLIPEncoderLayer", "CLIPVisionEmbeddings", DECODER_LAYER[backbone]}
    # accelerate's FSDP2 transformer-based wrapping derives its units from that set (and rejects absent classes).
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP")
    policy = fsdp2_prepare_auto_wrap_policy(FullyShardedDataParallelPlugin(fsdp_version=2), model)
    units = {type(module).__name__ for module in model.modules() if policy(module)}
    assert units == set(model._no_split_modules)


def test_a_wrapped_instance_saves_as_allava_with_its_remote_code(tokenizer, tmp_path):
    """FSDP2's `fully_shard` swaps the instance's class for a `FSDP<name>` subclass defined in torch."""
    model = tiny_model("phi", tokenizer)
    original = type(model)
    torch_module = "torch.distributed.fsdp._fully_shard._fsdp_init"  # where torch 2.13 defines that subclass
    model.__class__ = type(f"FSDP{original.__name__}", (FSDPModule, original), {"__module__": torch_module})
    model.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForImageTextToText"] == "modeling_allava.AllavaForConditionalGeneration"
    assert (tmp_path / "modeling_allava.py").is_file() and not list(tmp_path.glob("_fsdp*.py"))
    assert type(model).__name__ == f"FSDP{original.__name__}"  # the wrapper class is back after saving
