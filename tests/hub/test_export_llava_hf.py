"""hub/export_llava_hf.py: native Llava layout, loaded in a fresh process without remote code, identical logits."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from hub.export_llava_hf import export, main
from recipes.tiny.models import build_tiny_model_and_processor
from tests.hub.processes import run_python


# Loads the export the way lmms-eval's llava_hf does (plain prompt string with <image>, tokenizer's chat template)
# in a process that never imports this repo, and keeps what it computed.
FRESH = """
import sys, torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
model = LlavaForConditionalGeneration.from_pretrained(sys.argv[1]).eval()
processor = AutoProcessor.from_pretrained(sys.argv[1])
messages = [{"role": "user", "content": "<image>\\nWhat is in the picture?"}]
prompt = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
inputs = processor(text=prompt, images=[Image.open(sys.argv[2])], return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
torch.save({"logits": logits, "inputs": dict(inputs), "processor": type(processor).__name__,
            "extra_tokens": processor.num_additional_image_tokens}, sys.argv[3])
"""
LLAVA_HF_PREFIXES = (
    "language_model.model.",
    "language_model.lm_head.",
    "vision_tower.vision_model.",
    "multi_modal_projector.",
)


def _saved_keys(folder) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in folder.glob("*.safetensors"):
        with safe_open(path, "pt") as handle:
            tensors.update({key: handle.get_tensor(key) for key in handle.keys()})
    return tensors


def _checkpoint(folder, text_backbone: str = "phi", dtype=torch.float32, **overrides):
    model, processor = build_tiny_model_and_processor(text_backbone, seed=5, **overrides)
    model.to(dtype).save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor


def test_export_loads_natively_with_identical_logits(tmp_path):
    model, processor = _checkpoint(tmp_path / "ckpt")
    assert export(tmp_path / "ckpt", tmp_path / "llava", max_shard_size="200KB") == 0.0  # same ops, same weights

    out = tmp_path / "llava"
    assert not list(out.glob("*.py"))
    assert all("allava" not in path.read_text().lower() for path in out.glob("*.json"))  # no remote-code pointer
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llava" and config["architectures"] == ["LlavaForConditionalGeneration"]
    assert config["text_config"]["architectures"] == ["PhiForCausalLM"] and "auto_map" not in config
    assert (out / "model.safetensors.index.json").exists() and (out / "preprocessor_config.json").exists()
    tensors = _saved_keys(out)
    assert all(key.startswith(LLAVA_HF_PREFIXES) for key in tensors)
    assert "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight" in tensors
    assert torch.equal(tensors["language_model.lm_head.bias"], torch.zeros(model.config.text_config.vocab_size))

    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (50, 90, 3), dtype=np.uint8)).save(image)
    run_python(["-c", FRESH, str(out), str(image), str(tmp_path / "fresh.pt")], cwd=tmp_path)
    fresh = torch.load(tmp_path / "fresh.pt", weights_only=False)
    assert fresh["processor"] == "LlavaProcessor" and fresh["extra_tokens"] == 1

    # Our processor, with the content-parts messages our recipes use, must produce the very same tokens.
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": Image.open(image)},
                {"type": "text", "text": "What is in the picture?"},
            ],
        }
    ]
    ours = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    assert torch.equal(fresh["inputs"]["input_ids"], ours["input_ids"])
    with torch.no_grad():
        expected = model(**ours).logits
    torch.testing.assert_close(fresh["logits"], expected, atol=1e-6, rtol=0)


def test_bfloat16_stablelm_export_is_exact_and_has_no_head_bias(tmp_path):
    # bf16 makes any change in how the two models compute visible (e.g. another attention backend).
    _checkpoint(tmp_path / "ckpt", "stablelm", dtype=torch.bfloat16)
    assert export(tmp_path / "ckpt", tmp_path / "llava") == 0.0
    tensors = _saved_keys(tmp_path / "llava")
    assert "language_model.lm_head.weight" in tensors and "language_model.lm_head.bias" not in tensors


def test_linear_projector_is_refused(tmp_path):
    _checkpoint(tmp_path / "ckpt", projector_type="linear")
    with pytest.raises(ValueError, match="projector_type 'linear' cannot be exported.*mlp2x_gelu"):
        export(tmp_path / "ckpt", tmp_path / "llava")
    assert not (tmp_path / "llava").exists()


def test_lm_head_bias_needs_consent_and_the_change_is_measured(tmp_path, capsys):
    model, processor = build_tiny_model_and_processor("phi", seed=5, lm_head_bias=True)
    with torch.no_grad():
        model.lm_head.bias.copy_(torch.linspace(-0.5, 0.25, model.lm_head.bias.numel()))
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="LM head has a bias.*--drop-lm-head-bias"):
        export(tmp_path / "ckpt", tmp_path / "llava")
    assert not (tmp_path / "llava").exists()

    main([str(tmp_path / "ckpt"), str(tmp_path / "llava"), "--drop-lm-head-bias"])
    # Dropping a bias shifts every logit by exactly that bias: the largest change is max |bias| = 0.5.
    assert "Max |logit change| vs the source model on a probe input: 0.5" in capsys.readouterr().out
    assert not _saved_keys(tmp_path / "llava")["language_model.lm_head.bias"].any()


def test_a_lora_adapter_folder_is_refused_with_the_merge_command(tmp_path, capsys):
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert main([str(adapter), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {adapter} holds a LoRA adapter (adapter_config.json), not full weights: merge it first with "
        f"python recipes/merge_lora.py {adapter} <output_dir>"
    )
