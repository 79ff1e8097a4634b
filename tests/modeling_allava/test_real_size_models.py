"""Each shipped recipe at its real widths, heads, vocabulary, RoPE and image size, cut to 2 text and 2 vision layers:
compose from backbone folders -> one packed training step at the recipe's max_length -> save -> reload through remote
code in a fresh process -> generate -> export to native Llava with equal logits.

What tiny widths hide shows up here: partial rotary (Phi-2 0.4, StableLM-2 0.25), Phi-3's LongRoPE tables at a
4096-token packed row, SigLIP's 27 x 27 = 729-token grid, and position embeddings at 336 / 384 px.
Float32 on CPU; about 4-8 GB of memory per model. The step uses SGD: AdamW's two moments would add 2x the weights
and teach nothing more about the model.
"""

import gc
import json
import tempfile

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from trl import SFTConfig

from hub.export_llava_hf import export
from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor
from recipes.packing import PackedAllavaCollator
from recipes.sft import AllavaSFTTrainer
from recipes.tiny.models import build_tiny_tokenizer
from tests.hub.processes import run_python
from tests.modeling_allava.real_models import RECIPES, real_config


pytestmark = pytest.mark.slow
SETTINGS = {
    "text_config": (
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "rope_parameters",
        "max_position_embeddings",
        "hidden_act",
        "tie_word_embeddings",
    ),
    "vision_config": (
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "image_size",
        "patch_size",
        "hidden_act",
    ),
}

RELOAD = """
import json, sys
import numpy as np, torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
folder, image_path, out = sys.argv[1:]
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
messages = [{"role": "user", "content": [{"type": "image", "image": Image.open(image_path)},
                                         {"type": "text", "text": "What is in the picture?"}]}]
inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                       return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits[0, -2:]
generated = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
torch.save({"class": type(model).__name__, "module": type(model).__module__, "logits": logits,
            "generated": generated[0], "input_ids": inputs["input_ids"][0],
            "imported_package": "modeling_allava" in sys.modules}, out)
"""


def _photo(path, size=(500, 375), seed=0) -> Image.Image:
    """A ~500 px JPEG, as ALLaVA's LAION images are."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1] // 25, size[0] // 25, 3), dtype=np.uint8)
    Image.fromarray(pixels).resize(size, Image.BILINEAR).save(path, quality=90)
    return Image.open(path)


def _write_backbones(folder, recipe: str):
    """A vision-only checkpoint and a causal LM + tokenizer, shaped like the hub repos the recipe composes (each in
    its published dtype: the LM's config names it)."""
    config = real_config(recipe, layers=2)
    tokenizer = build_tiny_tokenizer(text_backbone=config.text_config.model_type)
    torch.manual_seed(0)
    AutoModel.from_config(config.vision_config).save_pretrained(folder / "vision")
    text_config = AutoConfig.for_model(**config.text_config.to_dict())
    causal_lm = AutoModelForCausalLM.from_config(text_config)
    if causal_lm.get_output_embeddings().bias is not None:  # Phi-2's head bias: a real one, not zeros
        torch.nn.init.normal_(causal_lm.get_output_embeddings().bias, std=0.02)
    causal_lm.save_pretrained(folder / "text")
    tokenizer.save_pretrained(folder / "text")
    del causal_lm
    return folder / "vision", folder / "text"


def _rows_filling(processor, max_length: int, image: Image.Image) -> list[dict]:
    """A multimodal row and a text row whose tokens add up to exactly `max_length`: one full packed row."""
    collator = PackedAllavaCollator(processor, max_length)

    def row(index, words, with_image):
        user = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": "Describe the picture."}]
        answer = " ".join(["red circle left"] * (words // 3) + ["blue"] * (words % 3))
        messages = [
            {"role": "user", "content": user},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
        return {"id": f"row-{index}", "messages": messages, "images": [image] if with_image else []}

    text_row = row(1, 30, False)
    budget = max_length - len(collator.encode([text_row])[0])
    words = 1
    while True:  # grow the answer towards the budget (about two tokens a word), then fill the last token or two
        length = len(collator.encode([row(0, words, True)])[0])
        if length >= budget - 1:
            break
        words += max(1, (budget - 1 - length) // 2)
    image_row = row(0, words, True)
    if length > budget:
        image_row = row(0, words - 1, True)
    length = len(collator.encode([image_row])[0])
    text_row = row(1, 30, False)
    while len(collator.encode([text_row])[0]) < max_length - length:
        text_row["messages"][1]["content"][0]["text"] += "."
    return [image_row, text_row]


def _train_one_packed_step(model, processor, rows, max_length: int) -> tuple[float, dict]:
    collator = PackedAllavaCollator(processor, max_length)
    batch = collator(rows)
    assert batch["input_ids"].shape == (1, max_length)
    assert int((batch["input_ids"] == model.config.image_token_index).sum()) == model.config.image_seq_length
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=2,
        max_steps=1,
        max_length=max_length,
        optim="sgd",
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        logging_steps=1,
    )
    trainer = AllavaSFTTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
    )
    before = {name: p.detach().clone() for name, p in model.named_parameters() if "layers.1." in name}
    result = trainer.train()
    changed = {name: not torch.equal(before[name], p) for name, p in model.named_parameters() if name in before}
    model.zero_grad(set_to_none=True)
    del trainer
    gc.collect()
    return result.training_loss, changed


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_real_size_model_end_to_end(recipe, tmp_path):
    max_length = RECIPES[recipe].max_length
    vision_dir, text_dir = _write_backbones(tmp_path, recipe)
    torch.manual_seed(1)
    model = AllavaForConditionalGeneration.from_backbones(str(vision_dir), str(text_dir), dtype=torch.float32)
    processor = AllavaProcessor.from_backbones(str(vision_dir), str(text_dir))
    published = real_config(recipe, layers=2)
    for part, keys in SETTINGS.items():  # composing kept every published setting that shapes the computation
        composed, expected = getattr(model.config, part), getattr(published, part)
        assert {key: getattr(composed, key, None) for key in keys} == {k: getattr(expected, k, None) for k in keys}
    assert processor.image_seq_length == model.config.image_seq_length == published.image_seq_length
    image = _photo(tmp_path / "photo.jpg")

    model.set_trainable_modules("allava")
    rows = _rows_filling(processor, max_length, image)
    loss, changed = _train_one_packed_step(model.train(), processor, rows, max_length)
    assert np.isfinite(loss) and loss > 0
    text_moved = {name: moved for name, moved in changed.items() if "language_model" in name}
    assert text_moved and all(text_moved.values()), [name for name, moved in text_moved.items() if not moved]
    assert not any(moved for name, moved in changed.items() if "vision_tower" in name)  # frozen

    model.eval().save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": "What is in the picture?"}],
        }
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        expected_logits = model(**inputs).logits[0, -2:]
    expected_ids = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)[0]
    head_bias = model.lm_head.bias.detach().abs().max().item() if model.lm_head.bias is not None else 0.0
    del model
    gc.collect()

    run_python(
        ["-c", RELOAD, str(tmp_path / "ckpt"), str(tmp_path / "photo.jpg"), str(tmp_path / "fresh.pt")], cwd=tmp_path
    )
    fresh = torch.load(tmp_path / "fresh.pt")
    assert fresh["class"] == "AllavaForConditionalGeneration" and not fresh["imported_package"]
    assert fresh["module"].startswith("transformers_modules.")  # the checkpoint's own code, not this package
    assert torch.equal(fresh["input_ids"], inputs["input_ids"][0])
    torch.testing.assert_close(fresh["logits"], expected_logits, rtol=0, atol=1e-5)
    assert torch.equal(fresh["generated"], expected_ids)

    change = export(tmp_path / "ckpt", tmp_path / "llava", drop_lm_head_bias=head_bias > 0)
    # Native Llava has no LM-head bias: Phi-2's export changes each logit by exactly its bias, every other one by 0.
    assert change == pytest.approx(head_bias, abs=1e-5)
    assert json.loads((tmp_path / "llava" / "config.json").read_text())["model_type"] == "llava"
