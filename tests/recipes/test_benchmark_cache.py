"""The resumable per-sample cache: settings check, torn last line after a kill, corrupt lines."""

import json

import pytest

from recipes.benchmarks.cache import SampleCache


SETTINGS = {"model": "m", "prompt_variant": "plain", "max_new_tokens": 4}


def test_records_survive_reopening_and_later_records_win(tmp_path):
    path = tmp_path / "cache" / "gqa.jsonl"
    cache = SampleCache(path, SETTINGS)
    cache.append({"id": "1", "raw_answer": "a"})
    cache.append({"id": "2", "raw_answer": "b"})
    cache.append({"id": "1", "raw_answer": "c"})
    reopened = SampleCache(path, SETTINGS)
    assert reopened.records == {"1": {"id": "1", "raw_answer": "c"}, "2": {"id": "2", "raw_answer": "b"}}
    assert json.loads(path.read_text().splitlines()[0]) == {"settings": SETTINGS}


def test_a_torn_last_line_is_dropped_and_the_file_stays_appendable(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = SampleCache(path, SETTINGS)
    cache.append({"id": "1", "raw_answer": "a"})
    with path.open("a") as handle:
        handle.write('{"id": "2", "raw_ans')  # killed mid-write
    reopened = SampleCache(path, SETTINGS)
    assert list(reopened.records) == ["1"]
    reopened.append({"id": "2", "raw_answer": "b"})
    assert list(SampleCache(path, SETTINGS).records) == ["1", "2"]


def test_a_corrupt_line_in_the_middle_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "c.jsonl"
    SampleCache(path, SETTINGS).append({"id": "1"})
    with path.open("a") as handle:
        handle.write("garbage\n" + json.dumps({"id": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"c.jsonl, line 3"):
        SampleCache(path, SETTINGS)


def test_other_settings_refuse_to_mix_results(tmp_path):
    path = tmp_path / "c.jsonl"
    SampleCache(path, SETTINGS).append({"id": "1"})
    with pytest.raises(ValueError, match="max_new_tokens, prompt_variant differ"):
        SampleCache(path, {**SETTINGS, "prompt_variant": "no_ocr", "max_new_tokens": 8})
