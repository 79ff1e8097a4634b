import io

import numpy as np
import pytest
from PIL import Image

import modeling_allava.processing_allava as processing
from modeling_allava import TEXT_BACKBONES, AllavaProcessor, build_image_processor
from modeling_allava.configuration_allava import END_OF_TURN
from recipes.tiny.models import build_tiny_processor, build_tiny_tokenizer
from tests.image_fixtures import bomb_png
from tests.modeling_allava.byte_bpe import build_byte_level_processor


CONVERSATION = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A red circle."}]},
    {"role": "user", "content": [{"type": "text", "text": "How many?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "One."}]},
]


@pytest.fixture(scope="module")
def processors():
    return {backbone: build_tiny_processor(backbone) for backbone in TEXT_BACKBONES}


def _image(size=(80, 40), colour=(255, 0, 0), mode="RGB"):
    return Image.new(mode, size, colour)


@pytest.mark.parametrize("backbone", ["phi", "stablelm"])
def test_allava_template_exact_string(processors, backbone):
    text = processors[backbone].apply_chat_template(CONVERSATION)
    assert text == (
        "[INST] <image>\nWhat is this? [/INST] A red circle.<|endoftext|>[INST] How many? [/INST] One.<|endoftext|>"
    )
    prompt = processors[backbone].apply_chat_template(CONVERSATION[:1], add_generation_prompt=True)
    assert prompt == "[INST] <image>\nWhat is this? [/INST] "


def test_phi3_template_exact_string(processors):
    text = processors["phi3"].apply_chat_template(CONVERSATION)
    assert text == (
        "<|user|>\n<image>\nWhat is this?<|end|>\n<|assistant|>\nA red circle.<|end|>\n"
        "<|user|>\nHow many?<|end|>\n<|assistant|>\nOne.<|end|>\n"
    )
    prompt = processors["phi3"].apply_chat_template(CONVERSATION[:1], add_generation_prompt=True)
    assert prompt == "<|user|>\n<image>\nWhat is this?<|end|>\n<|assistant|>\n"


OWN_FORMATS = {
    "chatml": (
        "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\nA red circle.<|im_end|>\n"
        "<|im_start|>user\nHow many?<|im_end|>\n<|im_start|>assistant\nOne.<|im_end|>\n",
        "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n",
    ),
    "llama3": (
        "<|endoftext|><|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is this?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA red circle.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHow many?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nOne.<|eot_id|>",
        "<|endoftext|><|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is this?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "gemma": (
        "<|endoftext|><start_of_turn>user\n<image>\nWhat is this?<end_of_turn>\n<start_of_turn>model\n"
        "A red circle.<end_of_turn>\n<start_of_turn>user\nHow many?<end_of_turn>\n"
        "<start_of_turn>model\nOne.<end_of_turn>\n",
        "<|endoftext|><start_of_turn>user\n<image>\nWhat is this?<end_of_turn>\n<start_of_turn>model\n",
    ),
}


@pytest.mark.parametrize("backbone", ["qwen2", "qwen3", "smollm3", "llama", "gemma3_text"])
def test_backbones_own_template_exact_string_and_exact_assistant_mask(backbone):
    """Each backbone speaks its own chat format; the mask covers exactly the answers and their end-of-turn tokens."""
    processor = build_tiny_processor(backbone)
    full, prompt = OWN_FORMATS[TEXT_BACKBONES[backbone].chat_template]
    assert processor.apply_chat_template(CONVERSATION) == full
    assert processor.apply_chat_template(CONVERSATION[:1], add_generation_prompt=True) == prompt
    out = processor.apply_chat_template(
        CONVERSATION,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        processor_kwargs={"images": [_image()]},
    )
    ids, mask = out["input_ids"][0], out["assistant_masks"][0]
    answers = processor.tokenizer.decode([token for token, keep in zip(ids, mask) if keep])
    end = END_OF_TURN[TEXT_BACKBONES[backbone].chat_template]
    assert answers == f"A red circle.{end}One.{end}"
    assert processor.tokenizer.convert_tokens_to_ids(end) in ids  # one special token, not text pieces


def test_smollm2_a_llama_model_with_a_chatml_tokenizer_gets_chatml():
    from modeling_allava import backbone_template

    assert backbone_template("llama", build_tiny_tokenizer(text_backbone="qwen2")) == "chatml"
    assert backbone_template("llama", build_tiny_tokenizer(text_backbone="llama")) == "llama3"
    assert backbone_template("llama", build_tiny_tokenizer()) == "phi3"  # the tiny tokenizer speaks Phi-3
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "?": 1}, unk_token="?")))
    with pytest.raises(ValueError, match="needs the special tokens <\\|start_header_id\\|>"):
        backbone_template("llama", bare)


def test_system_message_goes_into_first_user_turn(processors):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert (
        processors["phi"].apply_chat_template(messages, add_generation_prompt=True)
        == "[INST] Be brief.\n\nHi [/INST] "
    )


@pytest.mark.parametrize("backbone", ["phi", "phi3"])
def test_assistant_mask_covers_answers_and_end_tokens(processors, backbone):
    processor = processors[backbone]
    conversation = [dict(m) for m in CONVERSATION]
    conversation[0] = {
        "role": "user",
        "content": [{"type": "image", "image": _image()}, CONVERSATION[0]["content"][1]],
    }
    out = processor.apply_chat_template(
        conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    ids = out["input_ids"][0]
    mask = out["assistant_masks"][0].bool()
    end = "<|endoftext|>" if backbone == "phi" else "<|end|>"
    assert processor.tokenizer.decode(ids[mask]) == f"A red circle.{end}One.{end}"


def test_image_token_count_matches_vision_tower(processors):
    processor = processors["phi"]
    out = processor(images=[_image()], text=["<image>\nhi"], return_tensors="pt")
    assert (out["input_ids"] == processor.image_token_id).sum() == 16  # (56 / 14)^2, CLS dropped
    assert out["pixel_values"].shape == (1, 3, 56, 56)


def test_full_size_processor_gives_576_image_tokens():
    processor = AllavaProcessor(image_processor=build_image_processor(336), tokenizer=build_tiny_tokenizer())
    out = processor(images=[_image((640, 480))], text="<image>\nDescribe.", return_tensors="pt")
    assert (out["input_ids"] == processor.image_token_id).sum() == 576
    assert out["pixel_values"].shape == (1, 3, 336, 336)


def test_pad_to_square_uses_clip_mean_colour(processors):
    image_processor = processors["phi"].image_processor
    wide = np.zeros((20, 80, 3), dtype=np.uint8)  # black band, padded above and below
    pixels = image_processor(Image.fromarray(wide), return_tensors="np")["pixel_values"][0]
    mean, std = np.array(image_processor.image_mean), np.array(image_processor.image_std)
    corner = pixels[:, 0, 0] * std + mean  # back to [0, 1]
    np.testing.assert_allclose(corner * 255, [122, 116, 104], atol=1.5)
    centre = pixels[:, 28, 28] * std + mean
    np.testing.assert_allclose(centre, 0, atol=0.01)


def test_literal_image_text_in_chat_does_not_break_count(processors):
    processor = processors["phi"]
    conversation = [
        {
            "role": "user",
            "content": [{"type": "image", "image": _image()}, {"type": "text", "text": "What does <image> mean?"}],
        }
    ]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert text == "[INST] <image>\nWhat does  mean? [/INST] "
    out = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert out["input_ids"][0].count(processor.image_token_id) == 16


@pytest.mark.parametrize(
    "backbone, prompt",
    [
        ("phi", "[INST] <image>\nWhat does  mean,  or < image>? [/INST] Strike <s>it</s>  . <|endoftext|>"),
        (
            "phi3",
            "<|user|>\n<image>\nWhat does  mean,  or < image>?<|end|>\n<|assistant|>\nStrike <s>it</s>  . <|end|>\n",
        ),
    ],
)
def test_typed_tags_are_removed_and_user_text_is_stripped(processors, backbone, prompt):
    """As ALLaVA's own code: user text loses `<s>`, `</s>`, `<image>` and surrounding whitespace; answers stay verbatim
    but for `<image>`, which no text may type (a tag rebuilt by a removal is written `< image>`)."""
    typed = " \n<s>What does <image> mean, <ima<s>ge> or <ima<image>ge>?</s>  \n"
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": typed}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Strike <s>it</s> <image> . "}]},
    ]
    assert processors[backbone].apply_chat_template(conversation) == prompt


def test_plain_string_content_keeps_its_placeholder_but_is_cleaned(processors):
    messages = [{"role": "system", "content": " Be brief. </s>"}, {"role": "user", "content": "  <image>\n<s>Hi?  "}]
    assert processors["phi"].apply_chat_template(messages, add_generation_prompt=True) == (
        "[INST] Be brief.\n\n<image>\nHi? [/INST] "
    )


@pytest.mark.parametrize("template", ["allava", "phi3"])
def test_multi_turn_prompt_is_tokenised_turn_by_turn(template):
    """With a GPT-2-style BPE, tokenising the chat as one string merges the space after `[/INST]` into the history
    answer (`'ĠA'`); ALLaVA's code and our training rows tokenise each turn alone (`'Ġ'`, `'A'`), so must inference."""
    processor = build_byte_level_processor(template)
    tokenizer = processor.tokenizer
    assert tokenizer.tokenize(" [/INST] A red")[-2:] == ["ĠA", "Ġred"]  # the merge the test is about
    messages = [dict(message) for message in CONVERSATION[:3]]
    messages[0] = {"role": "user", "content": [{"type": "image", "image": _image()}, CONVERSATION[0]["content"][1]]}
    ids = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    if template == "allava":
        turns = ["[INST] <image>\nWhat is this? [/INST] ", "A red circle.<|endoftext|>", "[INST] How many? [/INST] "]
    else:
        turns = [
            "<|user|>\n<image>\nWhat is this?<|end|>\n<|assistant|>\n",
            "A red circle.<|end|>",
            "\n<|user|>\nHow many?<|end|>\n<|assistant|>\n",
        ]
    expected = []
    for turn in turns:
        for token in tokenizer.encode(turn, add_special_tokens=False):
            expected.extend([token] * (16 if token == processor.image_token_id else 1))
    assert ids["input_ids"][0] == expected
    whole = processor(text=processor.apply_chat_template(messages, add_generation_prompt=True), images=[_image()])
    assert np.array_equal(ids["pixel_values"][0], whole["pixel_values"][0])
    if template == "allava":  # what tokenising the rendered string whole gives ([phi3]'s turns end in a newline)
        assert whole["input_ids"][0] != expected


def test_batched_prompts_pad_left_with_aligned_masks():
    processor = build_byte_level_processor("allava")
    short = [{"role": "user", "content": [{"type": "text", "text": "How many?"}]}]
    batch = processor.apply_chat_template(
        [short, CONVERSATION[:2]],
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        return_assistant_tokens_mask=True,
        processor_kwargs={"padding": True, "padding_side": "left", "images": [[], [_image()]]},
    )
    alone = processor.apply_chat_template(short, tokenize=True, return_dict=True)["input_ids"][0]
    pad = batch["input_ids"].shape[1] - len(alone)
    assert batch["input_ids"][0, pad:].tolist() == alone and batch["attention_mask"][0, :pad].sum() == 0
    answer = batch["input_ids"][1][batch["assistant_masks"][1].bool()]
    assert processor.tokenizer.decode(answer) == "A red circle.<|endoftext|>"
    assert batch["pixel_values"].shape == (1, 3, 56, 56)


def test_tokenized_chat_refuses_truncation_and_image_count_mismatch(processors):
    messages = [{"role": "user", "content": "<image>\nWhat is this?"}]
    with pytest.raises(ValueError, match="conversation 0: the chat template wrote 1 image placeholder"):
        processors["phi"].apply_chat_template(messages, tokenize=True)
    with pytest.raises(ValueError, match="does not take truncation"):
        processors["phi"].apply_chat_template(
            messages, tokenize=True, processor_kwargs={"truncation": True, "max_length": 4, "images": [_image()]}
        )


def test_placeholder_and_image_count_mismatch(processors):
    with pytest.raises(ValueError, match="number of images"):
        processors["phi"](images=[_image(), _image()], text=["<image>\nonly one"])
    with pytest.raises(ValueError, match="no images were passed"):
        processors["phi"](text=["<image>\nno image given"])


def _png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image",
    [
        Image.new("CMYK", (30, 20), (0, 255, 255, 0)),
        Image.new("P", (30, 20), 3),
        Image.new("LA", (30, 20), (128, 200)),
        Image.new("RGBA", (30, 20), (255, 0, 0, 0)),
        Image.new("L", (30, 20), 77),
        Image.fromarray(np.full((20, 30), 65535, dtype=np.uint16)),
    ],
    ids=["CMYK", "P", "LA", "RGBA", "L", "16-bit"],
)
def test_odd_modes_become_rgb(processors, image):
    rgb = processing.load_image(image)
    assert rgb.mode == "RGB" and rgb.size == (30, 20)
    out = processors["phi"](images=[image], text=["<image>\nhi"], return_tensors="pt")
    assert out["pixel_values"].shape == (1, 3, 56, 56)


def test_sixteen_bit_is_scaled_not_clipped():
    half = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert processing.load_image(half).getpixel((0, 0)) == (127, 127, 127)


def test_transparent_pixels_composite_on_white():
    assert processing.load_image(Image.new("RGBA", (2, 2), (255, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_images_from_paths_and_bytes(tmp_path, processors):
    path = tmp_path / "red.png"
    _image().save(path)
    for source in (str(path), path.read_bytes()):
        out = processors["phi"](images=[source], text=["<image>\nhi"], return_tensors="pt")
        assert out["pixel_values"].shape == (1, 3, 56, 56)


def test_corrupt_image_bytes(processors):
    with pytest.raises(ValueError, match=r"images\[0\]: cannot read image"):
        processors["phi"](images=[b"not an image at all"], text=["<image>\nhi"])


def test_truncated_image(tmp_path, processors):
    data = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"images\[1\]: cannot read image"):
        processors["phi"](images=[_image(), str(path)], text=["<image><image>\nhi"])


def test_zero_size_image(processors):
    with pytest.raises(ValueError, match=r"images\[0\]: image has zero size \(0x10\)"):
        processors["phi"](images=[Image.new("RGB", (0, 10))], text=["<image>\nhi"])


def test_decompression_bomb_refused_before_decoding(monkeypatch, tmp_path):
    monkeypatch.setenv(processing.MAX_IMAGE_PIXELS_ENV, str(100 * 100))
    path = tmp_path / "big.png"
    Image.new("1", (200, 200)).save(path)
    with pytest.raises(ValueError, match="decompression-bomb guard"):
        processing.load_image(str(path), where="big.png")


def test_default_pixel_budget_refuses_a_bomb_below_pillows_own_error(processors):
    """13000x13000 (169 MP) is under Pillow's error threshold (~179 MP): only our budget (~89.5 MP) stops it."""
    assert processing.max_image_pixels() <= 90_000_000
    with pytest.raises(processing.ImageTooLargeError, match=r"images\[0\]: image is 13000x13000 pixels, over"):
        processors["phi"](images=[bomb_png()], text=["<image>\nhi"])
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow itself only warns
        lazy = Image.open(io.BytesIO(bomb_png()))  # opened, not decoded: the processor's check comes first
    with pytest.raises(processing.ImageTooLargeError, match=r"images\[0\]"):
        processors["phi"](images=[lazy], text=["<image>\nhi"])


def test_pixel_budget_is_configurable(monkeypatch):
    data = _png_bytes(Image.new("RGB", (40, 30)))
    monkeypatch.setenv(processing.MAX_IMAGE_PIXELS_ENV, "1199")
    with pytest.raises(processing.ImageTooLargeError, match="40x30 pixels, over the limit of 1199"):
        processing.open_image(data, "x.png")
    assert processing.open_image(data, "x.png", max_pixels=1200).size == (40, 30)
    monkeypatch.setenv(processing.MAX_IMAGE_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match="ALLAVA_MAX_IMAGE_PIXELS must be a positive integer"):
        processing.open_image(data, "x.png")


def _tokenizer_without_image_token():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"hello": 0, "<unk>": 1, "</s>": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>")


def test_tokenizer_without_image_token_rejected():
    with pytest.raises(ValueError, match="no '<image>' token; load it with load_tokenizer_with_image_token"):
        AllavaProcessor(image_processor=build_image_processor(56), tokenizer=_tokenizer_without_image_token())


def test_load_tokenizer_adds_single_image_token_and_pad(tmp_path):
    _tokenizer_without_image_token().save_pretrained(tmp_path)
    tokenizer = processing.load_tokenizer_with_image_token(str(tmp_path))
    assert tokenizer.pad_token == "</s>"
    assert len(tokenizer("<image>", add_special_tokens=False)["input_ids"]) == 1
    processor = AllavaProcessor(image_processor=build_image_processor(56), tokenizer=tokenizer)
    assert processor.image_token_id == tokenizer.convert_tokens_to_ids("<image>")


def test_string_content_keeps_llava_hf_placeholder(processors):
    """Serving engines and lmms-eval's llava_hf write `<image>` into plain-string content themselves."""
    messages = [{"role": "user", "content": "<image>\nWhat is this?"}]
    assert processors["phi"].apply_chat_template(messages, add_generation_prompt=True) == (
        "[INST] <image>\nWhat is this? [/INST] "
    )
    assert processors["phi3"].apply_chat_template(messages, add_generation_prompt=True) == (
        "<|user|>\n<image>\nWhat is this?<|end|>\n<|assistant|>\n"
    )
