"""Packed batches train exactly like padded ones: same per-sample losses, same gradients, no attention across samples.

Tolerance: float32 on CPU, per-sample losses within 1e-5 and gradients within atol 1e-6 / rtol 1e-4 (observed
differences are ~3e-7: the same sums in another order).
"""

import tempfile

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from modeling_allava import TEXT_BACKBONES
from recipes.collator import IGNORE_INDEX, AllavaCollator
from recipes.packing import SDPA_PER_SAMPLE, PackedAllavaCollator, use_per_sample_attention
from recipes.tiny.models import build_tiny_model_and_processor
from recipes.trainer import AllavaSFTTrainer
from tests.recipes.test_packing import chat_rows, segments


def per_sample_losses(logits: torch.Tensor, labels: torch.Tensor, spans) -> list[torch.Tensor]:
    """Mean next-token loss of each sample, from its own span of the logits."""
    losses = []
    for row, start, end in spans:
        target = labels[row, start + 1 : end]
        if (target != IGNORE_INDEX).any():
            losses.append(F.cross_entropy(logits[row, start : end - 1].float(), target, ignore_index=IGNORE_INDEX))
    return losses


def forward(model, batch: dict) -> torch.Tensor:
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    return model(**inputs, use_cache=False).logits


def loss_and_gradients(model, batch: dict) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Per-sample losses, and the gradients of the token-mean loss of the whole batch."""
    model.zero_grad(set_to_none=True)
    logits = forward(model, batch)
    labels = batch["labels"]
    if "attention_mask" in batch:  # padded: one sample per row
        spans = [(row, 0, int(length)) for row, length in enumerate(batch["attention_mask"].sum(1))]
    else:
        spans = segments(batch)
    shifted = labels[:, 1:].reshape(-1)
    total = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), shifted, ignore_index=IGNORE_INDEX)
    total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return [loss.detach() for loss in per_sample_losses(logits.detach(), labels, spans)], grads


PACKING_CASES = (
    [(backbone, images, "sdpa") for backbone in ("phi", "phi3", "stablelm") for images in (True, False)]
    + [(backbone, True, SDPA_PER_SAMPLE) for backbone in ("phi", "phi3", "stablelm")]
    # The other 1-D RoPE backbones of the table (SmolLM3 with a RoPE-less layer, Gemma-3 with a sliding-window one).
    + [(backbone, True, "sdpa") for backbone in ("llama", "qwen2", "qwen3", "smollm3", "gemma3_text")]
    + [(backbone, True, SDPA_PER_SAMPLE) for backbone in ("llama", "qwen2", "qwen3", "smollm3")]
)


@pytest.mark.parametrize(("backbone", "expected"), [("qwen3", SDPA_PER_SAMPLE), ("gemma3_text", "sdpa")])
def test_sliding_window_models_train_packed_with_plain_sdpa(backbone, expected):
    """sdpa_per_sample refuses samples longer than a sliding window (Gemma-3's 512 < one SigLIP image + answer);
    plain sdpa's mask handles them, and the packed == padded case above covers it with samples longer than the
    tiny model's window of 8."""
    model, _ = build_tiny_model_and_processor(backbone)
    assert use_per_sample_attention(model) == expected
    assert model.config.text_config._attn_implementation == expected


def test_every_packable_backbone_is_tested_here():
    """The table's `packable` is a claim this file backs: a backbone marked packable must be in the cases below."""
    assert {name for name, backbone in TEXT_BACKBONES.items() if backbone.packable} == {c[0] for c in PACKING_CASES}


@pytest.mark.parametrize("backbone, with_images, attention", PACKING_CASES)
def test_packed_and_padded_batches_give_the_same_losses_and_gradients(backbone, with_images, attention):
    model, processor = build_tiny_model_and_processor(backbone)
    model.set_trainable_modules("full")  # the vision tower too: its gradients depend on the image order
    model.train()
    rows = chat_rows(7, seed=1, text_every=3 if with_images else 1)
    assert any(row["images"] for row in rows) == with_images
    padded = AllavaCollator(processor, 256)(rows)
    packed = PackedAllavaCollator(processor, 256, attn_implementation=attention)(rows)
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]

    padded_losses, padded_grads = loss_and_gradients(model, padded)
    model.set_attn_implementation({"text_config": attention})
    packed_losses, packed_grads = loss_and_gradients(model, packed)
    # Samples come out in another order when packed: compare as sorted sets, then check the mean exactly.
    torch.testing.assert_close(sorted(packed_losses), sorted(padded_losses), rtol=0, atol=1e-5)
    assert padded_grads.keys() == packed_grads.keys()
    assert with_images == any(name.startswith("model.vision_tower") for name in padded_grads)
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("attention", ["sdpa", "eager", SDPA_PER_SAMPLE])
def test_no_attention_crosses_sample_boundaries(attention):
    model, processor = build_tiny_model_and_processor("stablelm")
    model.set_attn_implementation({"text_config": attention})
    collator = PackedAllavaCollator(processor, 256, attn_implementation=attention)
    batch = collator(chat_rows(7, seed=2))
    # Perturb the first sample of a row that holds several, in its tokens and its image: later samples could see it.
    spans = segments(batch)
    row, start, end = next(span for span, after in zip(spans, spans[1:]) if span[0] == after[0] and span[1] == 0)
    image_id = model.config.image_token_index
    assert (batch["input_ids"][row, start:end] == image_id).any(), "the perturbed sample should carry an image"
    images_before = int((batch["input_ids"][:row] == image_id).sum()) // collator.image_tokens_per_image
    perturbed = {key: value.clone() for key, value in batch.items()}
    text = (perturbed["input_ids"][row, start:end] != image_id).nonzero().flatten()[3:] + start
    perturbed["input_ids"][row, text] = (perturbed["input_ids"][row, text] + 7) % 200 + 10
    perturbed["pixel_values"][images_before] = torch.randn_like(perturbed["pixel_values"][images_before])

    with torch.no_grad():
        before, after = forward(model, batch), forward(model, perturbed)
        leaky = model(**{k: v for k, v in perturbed.items() if k != "labels"}).logits  # cache on: no packing
    others = torch.ones(batch["input_ids"].shape, dtype=torch.bool)
    others[row, start:end] = False
    assert not torch.allclose(before[row, start:end], after[row, start:end], atol=1e-3)  # the perturbation bites
    torch.testing.assert_close(after[others], before[others], rtol=0, atol=1e-6)
    if attention == SDPA_PER_SAMPLE:  # its spans come from position_ids alone, so a cache changes nothing
        torch.testing.assert_close(leaky[others], before[others], rtol=0, atol=1e-6)
    else:  # the same check catches leaks: with a cache, transformers does not look for packed rows
        assert not torch.allclose(leaky[others], before[others], atol=1e-3)


def sft_trainer(model, processor, trainer_class=SFTTrainer, **kwargs) -> SFTTrainer:
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=6,
        max_length=256,
        report_to=[],
        use_cpu=True,
        bf16=False,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    return trainer_class(
        model=model,
        args=args,
        data_collator=PackedAllavaCollator(processor, 256),
        train_dataset=Dataset.from_list(chat_rows(12, seed=4)),
        processing_class=processor,
        **kwargs,
    )


def model_with_head_bias():
    model, processor = build_tiny_model_and_processor("phi", lm_head_bias=True)
    with torch.no_grad():
        model.lm_head.bias.normal_()  # a head bias the fused loss must not drop
    return model.train(), processor


def test_sft_trainer_fused_loss_is_the_same_packed_or_padded_and_builds_no_full_logits():
    """TRL's fused LM-head loss (bias included) on packed batches: the model's own loss, without [tokens, vocab]."""
    model, processor = model_with_head_bias()
    rows = chat_rows(6, seed=3)
    trainer = sft_trainer(model, processor)
    head_calls = []
    hook = model.lm_head.register_forward_hook(lambda *_: head_calls.append(1))
    losses, batches = {}, {}
    for name, collator in (
        ("padded", AllavaCollator(processor, 256)),
        ("packed", PackedAllavaCollator(processor, 256)),
    ):
        batches[name] = batch = collator(rows)
        targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        losses[name] = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=targets)
        losses[name].backward()
    hook.remove()
    assert head_calls == []  # the fused loss reads lm_head's weights in tiles; the full-logits head never runs
    torch.testing.assert_close(losses["packed"], losses["padded"], rtol=1e-5, atol=1e-6)
    for name, batch in batches.items():  # and it is the model's own loss, computed from the full logits
        torch.testing.assert_close(losses[name], model(**batch, use_cache=False).loss, rtol=1e-5, atol=1e-6)


def test_plain_loss_option_gives_the_fused_loss_and_gradients():
    """sft.py's `fused_lm_head_loss: false` (the model's own cross-entropy) trains what TRL's fused head does."""
    model, processor = model_with_head_bias()
    batch = PackedAllavaCollator(processor, 256)(chat_rows(6, seed=3))
    targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    results = {}
    for fused in (True, False):
        trainer = sft_trainer(model, processor, AllavaSFTTrainer, fused_lm_head_loss=fused)
        model.zero_grad()
        loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=targets)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results[fused] = loss.detach(), grads
    torch.testing.assert_close(results[False][0], results[True][0], rtol=1e-5, atol=1e-6)
    assert results[False][1].keys() == results[True][1].keys() and "lm_head.bias" in results[True][1]
    for name, grad in results[True][1].items():
        torch.testing.assert_close(results[False][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_sdpa_per_sample_is_plain_sdpa_outside_packed_rows_and_is_not_saved(tmp_path):
    model, processor = build_tiny_model_and_processor("phi3")
    padded = AllavaCollator(processor, 256)(chat_rows(4, seed=7))
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    prompts = tokenizer(["[INST] describe a red circle [/INST] ", "[INST] hello [/INST] "], padding=True)
    prompts = {key: torch.tensor(value) for key, value in prompts.items()}
    results = {}
    with torch.no_grad():
        for attention in ("sdpa", SDPA_PER_SAMPLE):
            model.set_attn_implementation({"text_config": attention})
            results[attention] = (
                model(**padded).logits,
                model.generate(**prompts, max_new_tokens=4, do_sample=False),
            )
    torch.testing.assert_close(results[SDPA_PER_SAMPLE][0], results["sdpa"][0], rtol=0, atol=0)
    assert torch.equal(results[SDPA_PER_SAMPLE][1], results["sdpa"][1])
    model.save_pretrained(tmp_path)  # a runtime choice: the checkpoint loads with the default attention
    assert SDPA_PER_SAMPLE not in (tmp_path / "config.json").read_text()
