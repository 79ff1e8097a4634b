"""hub/convert_allava_checkpoint.py on tiny checkpoints in the three released layouts, checked against the original
LLaVA-1.5 computation re-implemented from the source tensors (tests/hub/original_layout.py)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from hub.convert_allava_checkpoint import convert, main
from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor
from tests.hub.original_layout import build_original, reference_logits


# Same weights, same float32 ops in a different arrangement: differences stay at rounding level.
LOGITS_ATOL = 1e-5


IMAGE = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 70, 3), dtype=np.uint8))
MESSAGES = [
    {"role": "user", "content": [{"type": "image", "image": IMAGE}, {"type": "text", "text": "what is this?"}]}
]


@pytest.mark.parametrize(
    ("architecture", "text_type", "prompt_start"),
    [
        ("LlavaPhiForCausalLM", "phi", "[INST] <image>"),
        ("LlavaStableLM_1_6bForCausalLM", "stablelm", "[INST] <image>"),
        ("LlavaPhi3ForCausalLM", "phi3", "<|user|>\n<image>"),
    ],
)
def test_converted_model_matches_the_original_computation(tmp_path, capsys, architecture, text_type, prompt_start):
    original = build_original(tmp_path / "original", architecture)
    main([str(tmp_path / "original"), str(tmp_path / "converted")])
    assert f"Converted {architecture}" in capsys.readouterr().out

    model = AllavaForConditionalGeneration.from_pretrained(tmp_path / "converted").eval()
    processor = AllavaProcessor.from_pretrained(tmp_path / "converted")
    config = model.config
    assert config.text_config.model_type == text_type and config.projector_type == "mlp2x_gelu"
    assert config.vision_config.hidden_size == 32 and config.image_aspect_ratio == "pad" and not config.lm_head_bias
    assert processor.image_processor.do_pad and processor.image_processor.crop_size["height"] == 56

    assert processor.apply_chat_template(MESSAGES, add_generation_prompt=True).startswith(prompt_start)
    inputs = processor.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    image_token = config.image_token_index
    assert processor.tokenizer.convert_ids_to_tokens(image_token) == "<image>"
    assert (inputs["input_ids"] == image_token).sum() == 16  # (56 / 14)^2 patches, CLS dropped
    with torch.no_grad():
        ours = model(**inputs).logits
    expected = reference_logits(original, inputs["input_ids"], inputs["pixel_values"], image_token)
    torch.testing.assert_close(ours, expected, atol=LOGITS_ATOL, rtol=0)


def test_phi3_conversion_adds_the_image_token_and_stop_tokens(tmp_path):
    build_original(tmp_path / "original", "LlavaPhi3ForCausalLM")  # its tokenizer has no <image>
    model, processor = convert(tmp_path / "original", tmp_path / "converted")
    tokenizer = processor.tokenizer
    assert tokenizer.tokenize("<image>") == ["<image>"]
    assert model.config.image_token_index == tokenizer.convert_tokens_to_ids("<image>")
    ends = {tokenizer.convert_tokens_to_ids(token) for token in ("<|endoftext|>", "<|end|>")}
    assert set(model.generation_config.eos_token_id) == ends
    rope = model.config.text_config.rope_parameters  # the legacy "su" rope scaling, carried over as longrope
    assert rope["rope_type"] == "longrope" and rope["original_max_position_embeddings"] == 4096


def _rewrite(folder, change) -> None:
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_unused_and_missing_source_tensors_stop_the_conversion(tmp_path):
    folder = tmp_path / "original"
    build_original(folder, "LlavaPhiForCausalLM")
    _rewrite(folder, lambda t: t.update({"model.vision_tower.vision_tower.text_model.extra.weight": torch.ones(2)}))
    with pytest.raises(ValueError, match=r"1 source tensors have no place.*text_model\.extra\.weight"):
        convert(folder, tmp_path / "out1")
    _rewrite(folder, lambda t: [t.pop(k) for k in ("model.vision_tower.vision_tower.text_model.extra.weight",
                                                    "model.layers.1.mlp.fc1.weight")])  # fmt: skip
    with pytest.raises(ValueError, match=r"1 model tensors have no source tensor: model\.language_model\.layers\.1"):
        convert(folder, tmp_path / "out2")
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


def test_damaged_or_partial_weights_name_the_file(tmp_path):
    folder = tmp_path / "original"
    original = build_original(folder, "LlavaPhiForCausalLM")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match=r"original/model\.safetensors: cannot read weights.*truncated or corrupt"):
        convert(folder, tmp_path / "out")

    (folder / "model.safetensors").unlink()
    keys = sorted(original["source"])
    halves = {"model-00001-of-00002.safetensors": keys[:40], "model-00002-of-00002.safetensors": keys[40:]}
    for name, names in halves.items():
        save_file({k: original["source"][k] for k in names}, folder / name, metadata={"format": "pt"})
    weight_map = {key: name for name, names in halves.items() for key in names}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"index\.json names shard files that are missing: model-00002-of"):
        convert(folder, tmp_path / "out")
    save_file({k: original["source"][k] for k in halves["model-00002-of-00002.safetensors"][1:]},
              folder / "model-00002-of-00002.safetensors", metadata={"format": "pt"})  # fmt: skip
    with pytest.raises(ValueError, match=r"index\.json: 1 tensors are not in the shards"):
        convert(folder, tmp_path / "out")

    for path in folder.glob("model*"):
        path.unlink()
    torch.save(original["source"], folder / "pytorch_model.bin")
    (folder / "pytorch_model.bin").write_bytes((folder / "pytorch_model.bin").read_bytes()[:4000])
    with pytest.raises(ValueError, match=r"original/pytorch_model\.bin: cannot read weights"):
        convert(folder, tmp_path / "out")


def test_bad_configs_are_refused_with_the_field_named(tmp_path):
    folder = tmp_path / "original"
    build_original(folder, "LlavaPhiForCausalLM")
    config = json.loads((folder / "config.json").read_text())
    for field, value, message in [
        ("architectures", ["LlavaLlamaForCausalLM"], "architectures\\[0\\] is 'LlavaLlamaForCausalLM'"),
        ("mm_use_im_start_end", True, "mm_use_im_start_end=true is not supported"),
        ("mm_projector_type", "mlp3x_gelu", "mm_projector_type 'mlp3x_gelu'"),
        ("mm_hidden_size", 1024, "mm_hidden_size is 1024 but the vision tower"),
        ("mm_vision_tower", str(tmp_path / "nowhere"), r"config.json: mm_vision_tower: .*nowhere: no such folder"),
    ]:
        (folder / "config.json").write_text(json.dumps({**config, field: value}))
        with pytest.raises(ValueError, match=message):
            convert(folder, tmp_path / "out")
