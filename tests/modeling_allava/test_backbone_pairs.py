"""Every tested backbone pair, end to end: compose from backbone folders -> train two steps -> save -> reload in a
fresh process through remote code -> export to native Llava -> `LlavaForConditionalGeneration` gives the same logits.

The matrix: each text backbone with CLIP, and SigLIP (also SigLIP2's fixed-resolution checkpoints, model_type
"siglip") with Qwen3. The README's backbone table lists these pairs.
"""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open

from hub.export_llava_hf import export
from modeling_allava import TEXT_BACKBONES, AllavaConfig, AllavaForConditionalGeneration, AllavaProcessor
from modeling_allava.configuration_allava import END_OF_TURN
from recipes.collator import AllavaCollator
from recipes.tiny.models import build_tiny_tokenizer, save_tiny_backbones, tiny_config
from tests.recipes.test_packing import chat_rows


PAIRS = [(text, "clip_vision_model") for text in TEXT_BACKBONES] + [("qwen3", "siglip_vision_model")]

RELOAD = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForImageTextToText
    folder, inputs = sys.argv[1], torch.load(sys.argv[2])
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.save(logits, sys.argv[3])
    print("REPORT" + json.dumps({"class": type(model).__name__, "imported_package": "modeling_allava" in sys.modules}))
    """
)


@pytest.mark.parametrize(("text_backbone", "vision_type"), PAIRS, ids=[f"{t}-{v.split('_')[0]}" for t, v in PAIRS])
def test_compose_train_save_reload_export(tmp_path, text_backbone, vision_type):
    vision_dir, text_dir = save_tiny_backbones(tmp_path, text_backbone, vision_type=vision_type)
    model = AllavaForConditionalGeneration.from_backbones(str(vision_dir), str(text_dir))
    processor = AllavaProcessor.from_backbones(str(vision_dir), str(text_dir))
    with safe_open(vision_dir / "model.safetensors", "pt") as full:  # the vision half of a full CLIP / SigLIP
        saved = full.get_tensor("vision_model.embeddings.patch_embedding.weight")
    tower = model.model.vision_tower.state_dict()  # CLIP's tower keeps a `vision_model.` level, SigLIP's does not
    patch = tower.get("vision_model.embeddings.patch_embedding.weight", tower.get("embeddings.patch_embedding.weight"))
    torch.testing.assert_close(patch, saved)
    has_cls = vision_type == "clip_vision_model"
    assert model.config.vision_feature_select_strategy == ("default" if has_cls else "full")
    assert model.config.image_seq_length == processor.image_seq_length == 16  # 4x4 patches, CLS dropped or absent
    # generation stops at the template's end of turn (a base LM's own config knows only its eos)
    end = END_OF_TURN[TEXT_BACKBONES[text_backbone].chat_template] or processor.tokenizer.eos_token
    assert processor.tokenizer.convert_tokens_to_ids(end) in model.generation_config.eos_token_id

    model.set_trainable_modules("allava")
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = AllavaCollator(processor, 256)(chat_rows(4, seed=0))
    losses = []
    for _ in range(2):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    model.eval()
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")

    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        expected = model(**inputs).logits
    torch.save(inputs, tmp_path / "inputs.pt")
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, str(tmp_path / "ckpt"), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.split("REPORT", 1)[1])
    assert report == {"class": "AllavaForConditionalGeneration", "imported_package": False}
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, rtol=0, atol=1e-5)

    if model.config.lm_head_bias:  # Phi-2: Llava's head has no bias, so the exporter refuses and says why
        with pytest.raises(ValueError, match="LM head has a bias, which LlavaForConditionalGeneration cannot hold"):
            export(tmp_path / "ckpt", tmp_path / "llava")
        return
    assert export(tmp_path / "ckpt", tmp_path / "llava") <= 1e-5
    from transformers import LlavaForConditionalGeneration

    native = LlavaForConditionalGeneration.from_pretrained(tmp_path / "llava").eval()
    with torch.no_grad():
        torch.testing.assert_close(native(**inputs).logits, expected, rtol=0, atol=1e-5)


def test_siglip_processor_normalises_and_resizes_as_siglip(tmp_path):
    """mean = std = 0.5, resized straight to the square (no crop); with `pad` the padding is SigLIP's mean grey."""
    from PIL import Image

    tokenizer = build_tiny_tokenizer(text_backbone="qwen3")
    config = tiny_config("qwen3", tokenizer, vision_type="siglip_vision_model", image_aspect_ratio="resize")
    processor = AllavaProcessor.from_config(config, tokenizer)
    image = Image.new("RGB", (112, 28), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 56, 28))  # left half black, right half white
    pixels = processor.image_processor(image, return_tensors="np")["pixel_values"][0]
    assert pixels.shape == (3, 56, 56)
    assert pixels[:, :, 0].max() == pytest.approx(-1.0) and pixels[:, :, -1].min() == pytest.approx(1.0)  # not cropped
    padded = AllavaProcessor.from_config(
        tiny_config("qwen3", tokenizer, vision_type="siglip_vision_model"), tokenizer
    ).image_processor(Image.new("RGB", (112, 28), (255, 255, 255)), return_tensors="np")["pixel_values"][0]
    assert padded[:, 0, 0] == pytest.approx([127 / 255 * 2 - 1] * 3, abs=1e-6)


def test_siglip2_naflex_tower_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="NaFlex.*pixel_attention_mask.*fixed-resolution"):
        AllavaConfig(vision_config={"model_type": "siglip2_vision_model"}, text_config={"model_type": "qwen3"})


@pytest.mark.parametrize("table", ["MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "MODEL_MAPPING_NAMES"])
def test_a_backbone_llava_cannot_build_is_refused_with_the_reason(tmp_path, monkeypatch, table):
    """Llava builds its parts through the Auto tables: a type missing there is refused before anything is written."""
    import hub.export_llava_hf as exporter
    from recipes.tiny.models import build_tiny_model_and_processor

    model, processor = build_tiny_model_and_processor("qwen3")
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    missing = "qwen3" if table == "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES" else "clip_vision_model"
    monkeypatch.setattr(exporter, table, {k: v for k, v in getattr(exporter, table).items() if k != missing})
    with pytest.raises(ValueError, match=f"cannot be exported to native Llava: .*{missing!r} has no Auto"):
        export(tmp_path / "ckpt", tmp_path / "llava")
    assert not (tmp_path / "llava").exists()
