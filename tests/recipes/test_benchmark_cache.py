"""The resumable per-sample cache: settings check, torn lines and headers after a kill, corrupt lines, fingerprints."""

import json
import os
from pathlib import Path

import pytest

from recipes.benchmarks.cache import CacheError, SampleCache, weights_fingerprint


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


def test_a_cut_inside_a_multibyte_character_is_a_torn_line(tmp_path):
    path = tmp_path / "c.jsonl"
    with SampleCache(path, SETTINGS) as cache:
        cache.append({"id": "1", "raw_answer": "紅色"})
        cache.append({"id": "2", "raw_answer": "藍色"})
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex("藍".encode()) + 1])  # killed after the first byte of a 3-byte character
    with SampleCache(path, SETTINGS) as reopened:
        assert list(reopened.records) == ["1"]
        reopened.append({"id": "2", "raw_answer": "藍色"})
    assert SampleCache(path, SETTINGS).records["2"]["raw_answer"] == "藍色"


def test_a_last_record_without_its_newline_is_redone_not_glued_to_the_next(tmp_path):
    path = tmp_path / "c.jsonl"
    with SampleCache(path, SETTINGS) as cache:
        cache.append({"id": "1", "raw_answer": "a"})
    with path.open("a") as handle:
        handle.write(json.dumps({"id": "2", "raw_answer": "b"}))  # whole JSON, but the kill came before the newline
    with SampleCache(path, SETTINGS) as reopened:
        assert list(reopened.records) == ["1"]
        reopened.append({"id": "3", "raw_answer": "c"})
    assert list(SampleCache(path, SETTINGS).records) == ["1", "3"]
    assert all(json.loads(line) for line in path.read_text().splitlines())


@pytest.mark.parametrize("content", ['{"settings": {"model": "m", "prom', ""])
def test_a_cut_or_empty_header_starts_the_cache_over(tmp_path, content):
    path = tmp_path / "c.jsonl"
    path.write_text(content)  # killed while the header was being written, or while the file was being created
    with SampleCache(path, SETTINGS) as cache:
        cache.append({"id": "1"})
    assert json.loads(path.read_text().splitlines()[0]) == {"settings": SETTINGS}
    assert list(SampleCache(path, SETTINGS).records) == ["1"]


def test_repairing_a_torn_tail_never_rewrites_the_finished_records(tmp_path, monkeypatch):
    path = tmp_path / "c.jsonl"
    with SampleCache(path, SETTINGS) as cache:
        for number in range(3):
            cache.append({"id": str(number), "raw_answer": "x" * 100})
    with path.open("a") as handle:
        handle.write('{"id": "3", "raw_ans')
    real_open = Path.open

    def killed_after_truncating(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        if self == path and "w" in mode:  # the worst moment: the file was opened for rewriting, then the kill
            handle.close()
            raise KeyboardInterrupt("killed during the repair")
        return handle

    monkeypatch.setattr(Path, "open", killed_after_truncating)
    try:
        SampleCache(path, SETTINGS).close()
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(Path, "open", real_open)
    assert list(SampleCache(path, SETTINGS).records) == ["0", "1", "2"]


def test_a_settings_mismatch_names_the_field_and_both_values(tmp_path):
    path = tmp_path / "c.jsonl"
    SampleCache(path, {**SETTINGS, "dtype": "torch.float32"}).close()
    with pytest.raises(CacheError) as error:
        SampleCache(path, {**SETTINGS, "dtype": "torch.bfloat16"})
    message = str(error.value)
    assert "\n" not in message
    assert "(dtype differ: dtype was 'torch.float32', now 'torch.bfloat16')" in message


def test_weights_fingerprint_changes_with_new_weights_at_the_same_path(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"1" * 64)
    (folder / "results.json").write_text("{}")
    first = weights_fingerprint(str(folder))
    (folder / "results.json").write_text('{"gqa": 1}')  # an evaluation written next to the weights
    assert weights_fingerprint(str(folder)) == first
    (folder / "model.safetensors").write_bytes(b"2" * 64)  # same size, new bytes, new modification time
    os.utime(folder / "model.safetensors", ns=(1, 1))
    assert weights_fingerprint(str(folder)) not in (first, None)


def test_weights_fingerprint_of_a_hub_id_follows_the_cached_snapshot(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--model"
    for commit, size in (("a" * 40, 10), ("b" * 40, 20)):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
        (repo / "snapshots" / commit / "model.safetensors").write_bytes(b"0" * size)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    first = weights_fingerprint("someone/model")
    (repo / "refs" / "main").write_text("b" * 40)  # the Hub's main moved on and the new weights were downloaded
    assert weights_fingerprint("someone/model") not in (first, None)
    assert weights_fingerprint("someone/not-downloaded") is None
