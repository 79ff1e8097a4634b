import pytest

from dataset_scripts.schema import (
    COLUMNS,
    FEATURES,
    conversations_to_messages,
    make_row,
    messages_to_conversations,
    subset_name,
    validate_row,
)


IMAGE_TURNS = [{"from": "human", "value": "<image>\nWhat colour is it?"}, {"from": "gpt", "value": "Red."}]
PROVENANCE = dict(
    source="laion", teacher_model="t", prompt_version="v1", prompt_hash="abc", origin="a.png", original_caption=None
)


def test_image_conversation_becomes_typed_messages():
    assert conversations_to_messages(IMAGE_TURNS, has_image=True) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Red."}]},
    ]


def test_image_token_anywhere_in_first_turn_moves_first():
    turns = [{"from": "human", "value": "Look at this <image> and describe it"}, {"from": "gpt", "value": "ok"}]
    content = conversations_to_messages(turns, has_image=True)[0]["content"]
    assert content == [{"type": "image"}, {"type": "text", "text": "Look at this\nand describe it"}]


def test_text_only_and_multi_turn():
    turns = [
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "2+2?"},
        {"from": "gpt", "value": "4"},
    ]
    messages = conversations_to_messages(turns, has_image=False)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert all(part["type"] == "text" for m in messages for part in m["content"])
    assert messages_to_conversations(messages) == turns


def test_round_trip_with_image_and_parquet_style_parts():
    messages = conversations_to_messages(IMAGE_TURNS, has_image=True)
    assert messages_to_conversations(messages) == IMAGE_TURNS
    stored = [{"role": m["role"], "content": [{"text": None, **p} for p in m["content"]]} for m in messages]
    assert messages_to_conversations(stored) == IMAGE_TURNS


@pytest.mark.parametrize(
    ("turns", "has_image", "field"),
    [
        (IMAGE_TURNS, False, "conversations[0].value"),
        ([{"from": "human", "value": "no token"}, {"from": "gpt", "value": "x"}], True, "image"),
        ([{"from": "user", "value": "<image>\nq"}, {"from": "gpt", "value": "x"}], True, "conversations[0].from"),
        ([{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": "<image>"}], True, "conversations[1]"),
        ([{"from": "human", "value": "q"}, {"from": "human", "value": "q"}], False, "conversations[1].from"),
        ([{"from": "human", "value": 3}], False, "conversations[0].value"),
        ([], False, "conversations"),
    ],
)
def test_errors_name_row_and_field(turns, has_image, field):
    with pytest.raises(ValueError) as error:
        conversations_to_messages(turns, has_image, row_id="row-42")
    assert "row-42" in str(error.value) and field in str(error.value)


def test_messages_to_conversations_rejects_unknown_role():
    with pytest.raises(ValueError, match="messages\\[0\\].role"):
        messages_to_conversations([{"role": "system", "content": "x"}], row_id="r")


def test_make_row_encodes_with_features_and_validates():
    row = make_row("r1", IMAGE_TURNS, b"\x89PNG fake", **PROVENANCE)
    assert list(row) == list(COLUMNS) == list(FEATURES)
    assert row["images"] == [row["image"]] and row["image"]["bytes"] == b"\x89PNG fake"
    encoded = FEATURES.encode_example(row)
    assert encoded["image"]["bytes"] == b"\x89PNG fake"
    text_row = make_row("t1", [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], None, **PROVENANCE)
    assert text_row["image"] is None and text_row["images"] == []


def test_validate_row_names_problems():
    row = make_row("r1", IMAGE_TURNS, b"img", **PROVENANCE)
    with pytest.raises(ValueError, match="'r1'.*images"):
        validate_row({**row, "images": []}, "file.parquet#3")
    with pytest.raises(ValueError, match="file.parquet#3.*messages"):
        validate_row({**row, "messages": row["messages"][:1]}, "file.parquet#3")
    with pytest.raises(ValueError, match="missing field"):
        validate_row({k: v for k, v in row.items() if k != "origin"}, "here")
    with pytest.raises(ValueError, match="source name"):
        validate_row({**row, "source": "LAION-5B"}, "here")


def test_subset_names():
    assert subset_name("caption", "laion") == "caption_laion"
    assert subset_name("instruct", "shapes") == "instruct_shapes"
    assert subset_name("text", "evol") == "text"
    with pytest.raises(ValueError):
        subset_name("pretrain", "laion")
