"""The append-only JSONL store shared by synthesis shards and the evaluation cache, and the one atomic writer."""

import json
import os
import threading

import pytest

from toolkit.jsonl_store import JsonlError, JsonlStore, atomic_write, iter_jsonl


def lines(path):
    return path.read_bytes().split(b"\n")


@pytest.mark.parametrize(
    "tail",
    [
        '{"id": 3, "text": "日'.encode()[:-1],  # cut inside a multi-byte character
        json.dumps({"id": 3}).encode(),  # a whole row, cut just before its newline
        b"{",
    ],
)
def test_a_torn_tail_is_skipped_by_readers_and_cut_before_the_next_append(tmp_path, tail):
    path = tmp_path / "rows.jsonl"
    with JsonlStore(path) as store:
        store.open()
        store.append({"id": 1, "text": "é"})
        store.append({"id": 2, "text": "日本"})
    path.write_bytes(path.read_bytes() + tail)
    assert [row["id"] for row in iter_jsonl(path, strict=True)] == [1, 2]
    inode = path.stat().st_ino
    with JsonlStore(path) as store:
        store.open()
        store.append({"id": 4})
    assert path.stat().st_ino == inode  # cut in place, never rewritten
    assert [row["id"] for row in iter_jsonl(path, strict=True)] == [1, 2, 4]
    assert lines(path)[-1] == b""


def test_a_header_is_written_only_into_a_file_without_complete_lines(tmp_path):
    path = tmp_path / "sub" / "cache.jsonl"
    with JsonlStore(path) as store:
        store.open(header={"settings": 1})
        store.append({"id": "a"})
    with JsonlStore(path) as store:
        store.open(header={"settings": 2})  # the caller compares the header it reads back
    assert list(iter_jsonl(path)) == [{"settings": 1}, {"id": "a"}]
    path.write_bytes(b'{"settings": 1, "mo')  # a header cut by a kill
    with JsonlStore(path) as store:
        store.open(header={"settings": 3})
    assert list(iter_jsonl(path)) == [{"settings": 3}]


def test_a_damaged_complete_line_is_skipped_or_named_with_strict(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": 1}\n\xff\xfe\n[1, 2]\n{"id": 2}\n')
    assert list(iter_jsonl(path)) == [{"id": 1}, {"id": 2}]
    with pytest.raises(JsonlError, match=r"rows.jsonl, line 2: "):
        list(iter_jsonl(path, strict=True))
    path.write_bytes(b'{"id": 1}\n[1, 2]\n')
    with pytest.raises(JsonlError, match=r"rows.jsonl, line 2: not a JSON object"):
        list(iter_jsonl(path, strict=True))


def test_appends_from_many_threads_stay_whole_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    with JsonlStore(path) as store:
        store.open()

        def work(worker):
            for number in range(50):
                store.append({"worker": worker, "number": number, "pad": "x" * 500})

        threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rows = list(iter_jsonl(path, strict=True))
    assert sorted((row["worker"], row["number"]) for row in rows) == [(w, n) for w in range(4) for n in range(50)]


def test_append_before_open_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="not open"):
        JsonlStore(tmp_path / "rows.jsonl").append({"id": 1})


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write(path, "old\n")
    atomic_write(path, "new ☃\n")
    assert path.read_text(encoding="utf-8") == "new ☃\n"

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, b"never seen")
    assert path.read_text(encoding="utf-8") == "new ☃\n"
    assert [entry.name for entry in tmp_path.iterdir()] == ["results.json"]  # no temporary left behind
