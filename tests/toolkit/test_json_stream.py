"""toolkit/json_stream.py: the same items as json.load, whatever the chunk size; the same errors."""

import json

import pytest

from toolkit.json_stream import NotAJsonArray, iter_json_array


ITEMS = [
    {"id": "allava_laion_cap_1", "conversations": [{"from": "human", "value": '<image>\nDescribe é ✓ \\" ]},'}]},
    12345678901234567890,
    -1.5e-3,
    "a string with [brackets], commas and \\u00e9",
    [],
    {},
    None,
    True,
    [[1, 2], {"a": [3]}],
]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_items_equal_json_load_for_every_chunk_size(tmp_path, chunk_size, indent):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ITEMS, indent=indent, ensure_ascii=False), encoding="utf-8")
    assert list(iter_json_array(path, chunk_size)) == json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("text", ["[]", "  [ ]\n", "[\n]"])
def test_empty_arrays(tmp_path, text):
    path = tmp_path / "rows.json"
    path.write_text(text)
    assert list(iter_json_array(path, 2)) == []


@pytest.mark.parametrize("text", ['{"rows": []}', '"x"', "", "7"])
def test_a_file_that_is_no_array_is_refused(tmp_path, text):
    path = tmp_path / "rows.json"
    path.write_text(text)
    with pytest.raises(NotAJsonArray):
        list(iter_json_array(path))


@pytest.mark.parametrize("text", ["[1, 2", "[1 2]", "[1,]", "[1] x", '[{"a": 1]', "[1], [2]"])
def test_invalid_json_is_an_error(tmp_path, text):
    path = tmp_path / "rows.json"
    path.write_text(text)
    with pytest.raises(json.JSONDecodeError):
        list(iter_json_array(path, 2))
