"""Exact label masks, image-token expansion, padding and row errors of recipes.collator."""

import io

import pytest
import torch
from PIL import Image

from recipes.collator import IGNORE_INDEX, AllavaCollator
from recipes.tiny.models import build_tiny_processor
from tests.modeling_allava.byte_bpe import build_byte_level_processor


RED, BLUE = Image.new("RGB", (80, 56), (215, 30, 30)), Image.new("RGB", (56, 90), (30, 70, 225))
END = {"phi": "<|endoftext|>", "stablelm": "<|endoftext|>", "phi3": "<|end|>"}


def chat(turns: list[tuple[str, str]], image: bool) -> list[dict]:
    messages = []
    for index, (question, answer) in enumerate(turns):
        content = [{"type": "text", "text": question}]
        if image and index == 0:
            content.insert(0, {"type": "image", "text": None})  # as datasets stores an image part
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def row(row_id: str, turns: list[tuple[str, str]], image: Image.Image | None = None) -> dict:
    return {"id": row_id, "messages": chat(turns, image is not None), "images": [image] if image else []}


def kept_runs(collator: AllavaCollator, batch: dict, index: int) -> list[str]:
    """Decode each contiguous run of trained positions of one row."""
    labels, input_ids = batch["labels"][index].tolist(), batch["input_ids"][index].tolist()
    runs, current = [], []
    for label, token in zip(labels, input_ids):
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            assert label == token  # a trained position predicts its own token (the model shifts)
            current.append(label)
    if current:
        runs.append(current)
    return [collator.processor.tokenizer.decode(run) for run in runs]


@pytest.fixture(scope="module", params=["phi", "stablelm", "phi3"])
def collator(request) -> AllavaCollator:
    return AllavaCollator(build_tiny_processor(request.param), max_length=256)


def backbone_of(collator: AllavaCollator) -> str:
    return "phi3" if "<|assistant|>" in collator.processor.chat_template else "phi"


def test_single_turn_image_row_trains_on_the_answer_and_end_token_only(collator):
    batch = collator([row("cap_1", [("What colour are the shapes?", "The shapes are red.")], RED)])
    end = END[backbone_of(collator)]
    assert kept_runs(collator, batch, 0) == [f"The shapes are red.{end}"]
    image_positions = batch["input_ids"][0] == collator.image_token_id
    assert int(image_positions.sum()) == 16 == collator.image_tokens_per_image  # 56 px / patch 14 -> 4x4
    assert (batch["labels"][0][image_positions] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape == (1, 3, 56, 56)


def test_the_prompt_is_tokenised_exactly_as_at_generation_time(collator):
    """Training sees the same prompt tokens the processor produces for inference (then the answer)."""
    question = [("How many shapes are there?", "There are two shapes.")]
    batch = collator([row("q_1", question, RED)])
    processor = collator.processor
    prompt = processor.apply_chat_template(
        chat(question, image=True)[:1],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        processor_kwargs={"images": [RED]},
    )["input_ids"][0]
    assert batch["input_ids"][0, : len(prompt)].tolist() == list(prompt)
    assert (batch["labels"][0, : len(prompt)] == IGNORE_INDEX).all()
    assert batch["labels"][0, len(prompt)] != IGNORE_INDEX  # the first answer token is trained
    assert torch.equal(batch["pixel_values"][0], processor.image_processor(RED, return_tensors="pt").pixel_values[0])


@pytest.mark.parametrize("template", ["allava", "phi3"])
def test_multi_turn_prompt_ids_are_the_training_row_prefix_with_byte_level_bpe(template):
    """With a GPT-2-style BPE (Phi-2's), inference on a history must see the ids training saw for that history."""
    collator = AllavaCollator(build_byte_level_processor(template))
    turns = [("What is this?", "A red circle."), ("How many shapes?", "A red circle."), ("Are you sure?", "Yes, one.")]
    batch = collator([row("m", turns, RED)])
    prompt = collator.processor.apply_chat_template(
        chat(turns, image=True)[:-1],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        processor_kwargs={"images": [RED]},
    )["input_ids"][0]
    assert batch["input_ids"][0, : len(prompt)].tolist() == prompt
    first_answer_token = collator.processor.tokenizer.encode("Yes")[0]
    assert batch["labels"][0, len(prompt)] == first_answer_token  # the last answer starts right after the prompt
    assert kept_runs(collator, batch, 0)[-1] == f"Yes, one.{END['phi3' if template == 'phi3' else 'phi']}"


def test_multi_turn_row_trains_on_every_answer_and_no_user_turn(collator):
    turns = [("What colour are the shapes?", "They are red."), ("Are you sure?", "Yes, they are red.")]
    batch = collator([row("multi_1", turns, RED)])
    end = END[backbone_of(collator)]
    assert kept_runs(collator, batch, 0) == [f"They are red.{end}", f"Yes, they are red.{end}"]
    text = collator.processor.tokenizer.decode(batch["input_ids"][0])
    assert "Are you sure?" in text and text.count("<image>") == 16


def test_text_only_row_has_no_image_tokens_and_no_pixel_values(collator):
    batch = collator([row("text_1", [("What is 2 plus 3?", "2 plus 3 is 5.")])])
    assert kept_runs(collator, batch, 0) == [f"2 plus 3 is 5.{END[backbone_of(collator)]}"]
    assert "pixel_values" not in batch
    assert not (batch["input_ids"] == collator.image_token_id).any()


def test_mixed_batch_pads_right_and_keeps_images_in_row_order(collator):
    rows = [row("t", [("Spell cat backwards.", "tac")]), row("r", [("Colour?", "Red.")], RED)]
    rows.append(row("b", [("Colour?", "The shapes are blue, all of them, every one.")], BLUE))
    batch = collator(rows)
    expected = collator.processor.image_processor([RED, BLUE], return_tensors="pt").pixel_values
    assert torch.equal(batch["pixel_values"], expected)
    for index in range(3):
        length = int(batch["attention_mask"][index].sum())
        assert batch["attention_mask"][index, :length].all()  # right padding
        assert (batch["input_ids"][index, length:] == collator.pad_token_id).all()
        assert (batch["labels"][index, length:] == IGNORE_INDEX).all()
    assert int((batch["input_ids"] == collator.image_token_id).sum()) == 32


def test_literal_image_tag_in_text_is_not_a_placeholder(collator):
    batch = collator([row("lit", [("What does <image> mean in HTML?", "An <image> tag.")])])
    assert not (batch["input_ids"] == collator.image_token_id).any()


def test_undecoded_dataset_images_and_pad_to_multiple_of():
    processor = build_tiny_processor("phi")
    buffer = io.BytesIO()
    RED.save(buffer, format="PNG")
    sample = row("bytes_1", [("Colour?", "Red.")])
    sample["messages"] = chat([("Colour?", "Red.")], image=True)
    sample["images"] = [{"bytes": buffer.getvalue(), "path": None}]
    batch = AllavaCollator(processor, pad_to_multiple_of=64)([sample])
    assert batch["input_ids"].shape[1] == 64
    assert torch.equal(batch["pixel_values"][0], processor.image_processor(RED, return_tensors="pt").pixel_values[0])


def test_row_longer_than_max_length_is_an_error_naming_the_row():
    collator = AllavaCollator(build_tiny_processor("phi"), max_length=20)
    with pytest.raises(ValueError, match=r"row 'long_7'.*exceed max_length=20"):
        collator([row("ok", [("Hi", "Yes.")]), row("long_7", [("Describe the image.", "A red circle.")], RED)])


@pytest.mark.parametrize(
    "broken, message",
    [
        (
            {"messages": chat([("Colour?", "Red.")], image=True), "images": []},
            r"row 'bad'.*0 image\(s\).*1 image part",
        ),
        ({"messages": chat([("Colour?", "Red.")], image=False), "images": [RED]}, r"row 'bad'.*1 image\(s\).*0 image"),
        ({"messages": chat([("Colour?", "Red.")], image=True), "images": [b"not a png"]}, r"row 'bad' images\[0\]"),
        ({"messages": [{"role": "user", "content": "Hi"}], "images": []}, r"row 'bad': no assistant turn"),
        ({"messages": [{"role": "robot", "content": "Hi"}], "images": []}, r"row 'bad'.*messages\[0\]\.role"),
        ({"messages": [], "images": []}, r"row 'bad'.*'messages' must be a non-empty list"),
    ],
)
def test_broken_rows_raise_errors_naming_the_row(broken, message):
    collator = AllavaCollator(build_tiny_processor("phi"))
    with pytest.raises(ValueError, match=message):
        collator([row("fine", [("Hi", "Hello.")]), {"id": "bad", **broken}])
