import logging

import pytest
import torch
from PIL import Image
from transformers import AutoModelForCausalLM, CLIPVisionModel

from modeling_allava import TEXT_BACKBONES, AllavaForConditionalGeneration, AllavaProcessor
from recipes.tiny.models import build_tiny_model_and_processor, save_tiny_backbones


def _image(colour=(255, 0, 0), size=(80, 40)):
    return Image.new("RGB", size, colour)


def _inputs(processor, question="What colour is it?", image=True, answer=None):
    content = ([{"type": "image", "image": _image()}] if image else []) + [{"type": "text", "text": question}]
    messages = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return processor.apply_chat_template(
        messages, add_generation_prompt=answer is None, tokenize=True, return_dict=True, return_tensors="pt"
    )


@pytest.mark.parametrize("backbone", TEXT_BACKBONES)
def test_forward_loss_and_generate_for_every_backbone(backbone):
    model, processor = build_tiny_model_and_processor(backbone)
    inputs = _inputs(processor, answer="Red.")
    out = model(**inputs, labels=inputs["input_ids"])
    assert torch.isfinite(out.loss)
    assert out.logits.shape[:2] == inputs["input_ids"].shape
    generated = model.generate(**_inputs(processor), max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1] - 3


def test_image_features_change_the_logits():
    model, processor = build_tiny_model_and_processor("phi")
    red = _inputs(processor)
    blue = dict(red)
    blue["pixel_values"] = processor.image_processor(_image((0, 0, 255)), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        assert not torch.allclose(model(**red).logits[:, -1], model(**blue).logits[:, -1])


def test_lm_head_bias_is_used_and_survives_save_load(tmp_path):
    model, processor = build_tiny_model_and_processor("phi", lm_head_bias=True)
    assert model.lm_head.bias is not None
    with torch.no_grad():
        model.lm_head.bias.normal_()
    model.save_pretrained(tmp_path)
    reloaded = AllavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded.lm_head.bias, model.lm_head.bias)
    inputs = _inputs(processor)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits)
        without_bias = model(**inputs).logits - model.lm_head.bias
    assert not torch.allclose(without_bias, model(**inputs).logits)


def test_linear_projector_has_one_layer():
    model, processor = build_tiny_model_and_processor("phi", projector_type="linear")
    names = {name for name, _ in model.model.multi_modal_projector.named_parameters()}
    assert names == {"linear_1.weight", "linear_1.bias"}
    assert torch.isfinite(model(**_inputs(processor)).logits).all()


@pytest.mark.parametrize("backbone", ["phi", "phi3", "stablelm"])
def test_from_backbones_keeps_text_logits_of_the_source_lm(tmp_path, backbone):
    vision_dir, text_dir = save_tiny_backbones(tmp_path, backbone)
    model = AllavaForConditionalGeneration.from_backbones(str(vision_dir), str(text_dir)).eval()
    processor = AllavaProcessor.from_backbones(str(vision_dir), str(text_dir))
    source = AutoModelForCausalLM.from_pretrained(text_dir).eval()
    assert model.config.lm_head_bias == (source.lm_head.bias is not None)
    assert model.config.image_token_index == processor.image_token_id
    ids = processor.tokenizer("[INST] describe a red circle [/INST] ", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, source(input_ids=ids).logits, rtol=0, atol=0)
    out = model(**_inputs(processor))  # the composed model also takes images
    assert torch.isfinite(out.logits).all()
    model.save_pretrained(tmp_path / "composed")
    reloaded = AllavaForConditionalGeneration.from_pretrained(tmp_path / "composed").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, source(input_ids=ids).logits, rtol=0, atol=0)


def test_from_backbones_initialises_the_projector_like_llava(tmp_path):
    # LLaVA's projector keeps torch's Linear init, uniform in +-1/sqrt(fan_in), not the LM's normal(0, 0.02).
    vision_dir, text_dir = save_tiny_backbones(tmp_path, "phi", text_hidden_size=128)
    torch.manual_seed(0)
    model = AllavaForConditionalGeneration.from_backbones(str(vision_dir), str(text_dir))
    projector = model.model.multi_modal_projector
    for layer, fan_in in ((projector.linear_1, 64), (projector.linear_2, 128)):
        bound = fan_in**-0.5
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
        torch.testing.assert_close(layer.weight.std().item(), bound / 3**0.5, rtol=0.05, atol=0)
        assert layer.bias.abs().max() > 0.5 * bound


def test_from_backbones_loads_the_vision_half_of_a_full_clip_quietly(tmp_path):
    """The tiny CLIP is saved whole (text tower included, as openai/clip-* is): its unused half is no news."""
    vision_dir, text_dir = save_tiny_backbones(tmp_path, "phi")
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    try:
        model = AllavaForConditionalGeneration.from_backbones(str(vision_dir), str(text_dir))
    finally:
        transformers_logger.removeHandler(handler)
    assert not [message for message in records if "UNEXPECTED" in message or "text_model" in message]
    tower = model.model.vision_tower
    assert type(tower) is CLIPVisionModel
    source = CLIPVisionModel.from_pretrained(vision_dir).state_dict()  # the noisy, plain way
    assert source.keys() == tower.state_dict().keys()
    for name, tensor in tower.state_dict().items():
        assert torch.equal(tensor, source[name]), name


def test_phi_backbone_bias_is_kept_by_from_backbones(tmp_path):
    vision_dir, text_dir = save_tiny_backbones(tmp_path, "phi")
    model = AllavaForConditionalGeneration.from_backbones(str(vision_dir), str(text_dir))
    assert model.lm_head.bias is not None and model.config.lm_head_bias


@pytest.mark.parametrize(
    ("stage", "trained"),
    [
        ("allava", {"multi_modal_projector", "language_model", "lm_head"}),
        ("projector_only", {"multi_modal_projector"}),
        ("full", {"vision_tower", "multi_modal_projector", "language_model", "lm_head"}),
    ],
)
def test_set_trainable_modules(stage, trained):
    model, _ = build_tiny_model_and_processor("phi")
    counts = model.set_trainable_modules(stage)
    assert {name for name, count in counts.items() if count > 0} == trained
    with pytest.raises(ValueError, match="stage must be"):
        model.set_trainable_modules("vision_only")


def _gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
    model, processor = build_tiny_model_and_processor("phi")
    model.set_trainable_modules("allava")
    model.train()
    if checkpointing:
        model.activation_checkpointing_enable()
        assert model.model.language_model.gradient_checkpointing
    inputs = _inputs(processor, answer="It is red.")
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    return {name: param.grad for name, param in model.named_parameters()}


def test_gradients_reach_projector_and_lm_not_vision_with_and_without_checkpointing():
    plain, checkpointed = _gradients(False), _gradients(True)
    for grads in (plain, checkpointed):
        assert all(grads[n] is None for n in grads if ".vision_tower." in n)
        projector = [g for n, g in grads.items() if "multi_modal_projector" in n]
        language = [g for n, g in grads.items() if ".language_model.layers." in n]
        assert projector and all(g is not None and g.abs().sum() > 0 for g in projector)
        assert language and all(g is not None and g.abs().sum() > 0 for g in language)
    for name, grad in plain.items():
        if grad is not None:
            torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("stage", ["allava", "projector_only"])
def test_a_frozen_vision_tower_builds_no_graph_even_with_input_grads_enabled(stage):
    """LoRA / projector-only runs call enable_input_require_grads, which also hooks CLIP's patch embedding: without
    no_grad the frozen tower would record its whole graph. Gradients of the trained parts stay the same."""
    model, processor = build_tiny_model_and_processor("phi")
    model.set_trainable_modules(stage)
    model.enable_input_require_grads()
    model.train()
    seen = []
    model.model.vision_tower.register_forward_hook(lambda module, args, output: seen.append(output.last_hidden_state))
    inputs = _inputs(processor, answer="It is red.")
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    assert len(seen) == 1 and not seen[0].requires_grad and seen[0].grad_fn is None
    grads = {name: param.grad for name, param in model.named_parameters() if param.grad is not None}
    assert grads and all(
        "multi_modal_projector" in name or "language_model" in name or "lm_head" in name for name in grads
    )

    reference, _ = build_tiny_model_and_processor("phi")
    reference.load_state_dict(model.state_dict())
    reference.set_trainable_modules(stage)
    reference.model.vision_tower.embeddings.patch_embedding.weight.requires_grad_(True)  # not frozen: a graph
    reference.train()
    reference(**inputs, labels=inputs["input_ids"]).loss.backward()
    for name, grad in grads.items():
        torch.testing.assert_close(dict(reference.named_parameters())[name].grad, grad)
    assert all(param.grad is None for param in model.model.vision_tower.parameters())


def test_vision_tower_keeps_its_graph_when_it_trains():
    model, processor = build_tiny_model_and_processor("phi")
    model.set_trainable_modules("full")
    inputs = _inputs(processor, answer="It is red.")
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    assert model.model.vision_tower.embeddings.patch_embedding.weight.grad is not None


def test_sdpa_and_eager_agree():
    model, processor = build_tiny_model_and_processor("phi")
    assert model.config._attn_implementation == "sdpa"
    inputs = _inputs(processor)
    with torch.no_grad():
        sdpa = model(**inputs).logits
        model.set_attn_implementation("eager")
        torch.testing.assert_close(model(**inputs).logits, sdpa, rtol=1e-4, atol=1e-5)


def test_greedy_generation_same_with_and_without_cache():
    model, processor = build_tiny_model_and_processor("phi", seed=3)
    inputs = _inputs(processor)
    cached = model.generate(**inputs, max_new_tokens=12, do_sample=False, min_new_tokens=12)
    uncached = model.generate(**inputs, max_new_tokens=12, do_sample=False, min_new_tokens=12, use_cache=False)
    torch.testing.assert_close(cached, uncached)


def test_sampling_is_seeded_and_differs_from_greedy():
    model, processor = build_tiny_model_and_processor("phi", seed=3)
    inputs = _inputs(processor)
    settings = {"max_new_tokens": 12, "min_new_tokens": 12, "do_sample": True, "temperature": 1.5, "top_k": 0}
    torch.manual_seed(0)
    first = model.generate(**inputs, **settings)
    torch.manual_seed(0)
    assert torch.equal(model.generate(**inputs, **settings), first)
    greedy = model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert not torch.equal(first, greedy)


@pytest.mark.parametrize("backbone", ["phi", "phi3"])
def test_batched_left_padded_generation_equals_unbatched(backbone):
    model, processor = build_tiny_model_and_processor(backbone, seed=1)
    processor.tokenizer.padding_side = "left"
    conversations = [
        [{"role": "user", "content": [{"type": "image", "image": _image()}, {"type": "text", "text": "Colour?"}]}],
        [{"role": "user", "content": [{"type": "text", "text": "Write a long list of words about shapes."}]}],
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": _image((0, 0, 255))}, {"type": "text", "text": "Hi"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "A blue square."}]},
            {"role": "user", "content": [{"type": "text", "text": "How many are there?"}]},
        ],
    ]
    settings = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False}
    batch = processor.apply_chat_template(
        conversations, add_generation_prompt=True, tokenize=True, return_dict=True, padding=True, return_tensors="pt"
    )
    assert (batch["attention_mask"] == 0).any()
    batched = model.generate(**batch, **settings)[:, batch["input_ids"].shape[1] :]
    for row, conversation in enumerate(conversations):
        single = processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        alone = model.generate(**single, **settings)[:, single["input_ids"].shape[1] :]
        assert torch.equal(batched[row], alone[0]), f"row {row}"


def test_text_only_generation_without_pixel_values():
    model, processor = build_tiny_model_and_processor("phi")
    inputs = _inputs(processor, question="What is 3 plus 4?", image=False)
    assert "pixel_values" not in inputs
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_text_longer_than_context_is_refused():
    model, processor = build_tiny_model_and_processor("phi", seed=0)
    limit = model.config.text_config.max_position_embeddings
    ids = torch.full((1, limit + 1), processor.tokenizer.eos_token_id)
    with pytest.raises(ValueError, match=f"needs {limit + 1} positions but the text model's context is {limit}"):
        model(input_ids=ids)
    prompt = torch.full((1, limit - 2), processor.tokenizer.eos_token_id)
    with pytest.raises(ValueError, match="context"):
        model.generate(input_ids=prompt, max_new_tokens=10, min_new_tokens=10, do_sample=False)


def test_image_token_count_mismatch_in_model_inputs():
    model, processor = build_tiny_model_and_processor("phi")
    inputs = _inputs(processor)
    keep = torch.ones_like(inputs["input_ids"], dtype=torch.bool)
    keep[0, (inputs["input_ids"][0] == processor.image_token_id).nonzero()[0]] = False  # one of 16 image tokens
    inputs["input_ids"] = inputs["input_ids"][keep][None]
    inputs["attention_mask"] = inputs["attention_mask"][keep][None]
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model(**inputs)


def test_from_backbones_dtype_and_attention_backend(tmp_path):
    vision_dir, text_dir = save_tiny_backbones(tmp_path, "phi")
    model = AllavaForConditionalGeneration.from_backbones(
        str(vision_dir), str(text_dir), dtype=torch.bfloat16, attn_implementation="eager"
    )
    assert {param.dtype for param in model.parameters()} == {torch.bfloat16}
    assert model.config.text_config._attn_implementation == "eager"
    assert model.config.vision_config._attn_implementation == "eager"


def test_from_backbones_without_dtype_gives_one_dtype_when_the_checkpoints_differ(tmp_path):
    """The hub's CLIP-L/336 is saved in float32 and StableLM-2 in bfloat16 (Phi-2 in float16); transformers loads each
    in its saved dtype, so the composed model must settle on one (the LM's) or the projector meets two."""
    vision_dir, text_dir = save_tiny_backbones(tmp_path, "stablelm")
    AutoModelForCausalLM.from_pretrained(text_dir).to(torch.bfloat16).save_pretrained(text_dir)
    model = AllavaForConditionalGeneration.from_backbones(str(vision_dir), str(text_dir)).eval()
    processor = AllavaProcessor.from_backbones(str(vision_dir), str(text_dir))
    assert {param.dtype for param in model.parameters()} == {torch.bfloat16}
    inputs = _inputs(processor)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()
