"""The output folder under faults: a full disk mid-run, and two processes pointed at one folder."""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest

from dataset_scripts.shards import OutputDir, OutputWriteError, ShardLockedError, read_image
from tests.dataset_scripts.helpers_synthesis import REPO, records


def fill_disk_after(monkeypatch, folder, writes):
    """Let `writes` writes into `folder` through, then fail like a full disk: half the bytes, then ENOSPC."""
    real_write, seen = os.write, []

    def write(fd, data):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if path.startswith(str(folder)) and "/.lock" not in path:
            seen.append(path)
            if len(seen) > writes:
                real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def pack_entries_end(pack) -> int:
    """Where the last whole entry of an image pack ends (40-byte header: digest, then little-endian length)."""
    data, offset = pack.read_bytes(), 0
    while offset + 40 <= len(data):
        length = int.from_bytes(data[offset + 32 : offset + 40], "little")
        if offset + 40 + length > len(data):
            break
        offset += 40 + length
    return offset


def test_a_full_disk_stops_with_a_message_and_keeps_what_was_saved(synth, shapes_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = ("--mode", "caption-qa", "--input", str(shapes_dir), "--concurrency", "4")
    with pytest.MonkeyPatch.context() as patch:
        fill_disk_after(patch, out, writes=12)  # an image and a record line each: a few records fit
        code, _ = synth(*args, output=out, check=None)
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "No space left on device" in captured.err and "rerun" in captured.err
    report = json.loads(captured.out.splitlines()[-1])  # the summary of what was saved, though its file is not
    saved = records(out)
    assert report["stopped"] == "disk" and 0 < report["done"] == len(saved) < 24
    lines = (out / "records-00000-of-00001.jsonl").read_bytes()
    assert lines.endswith(b"\n") and lines.count(b"\n") == len(saved)  # the torn line was undone
    assert all(read_image(out, record) for record in saved)
    pack = out / "images-00000-of-00001.pack"
    assert pack_entries_end(pack) == pack.stat().st_size  # the half-written images were cut off
    orphan = out / "summary-00000-of-00001.json.tmp-4242"  # as a kill -9 mid-write leaves one
    orphan.write_bytes(b"half a summary")
    _, summary = synth(*args, output=out)
    assert summary["done"] == 24 and summary["this_run"]["resumed"] == len(saved)
    assert not orphan.exists() and not list(out.rglob("*.tmp-*"))


def test_an_unwritable_output_folder_is_a_one_line_error(synth, shapes_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _ = synth("--mode", "caption-qa", "--input", str(shapes_dir), output=blocker / "out", check=1)
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"cannot write {blocker / 'out'}" in err


def test_another_num_shards_on_a_busy_folder_is_refused(synth, teacher, shapes_dir, tmp_path, capsys):
    out = tmp_path / "out"
    holder = OutputDir(out, 0, 1)
    holder.open()
    try:
        with pytest.raises(ShardLockedError):
            OutputDir(out, 1, 2).open()  # another layout would redo the holder's items
        args = ("--mode", "caption-qa", "--input", str(shapes_dir), "--num-shards", "2", "--shard-index", "0")
        synth(*args, output=out, check=2)
    finally:
        holder.close()
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out) in err and f"process {os.getpid()}" in err
    assert teacher.stats["requests"] == 0
    synth(*args, output=out)  # the holder is gone


def test_a_killed_holder_never_blocks_a_rerun(synth, teacher, shapes_dir, tmp_path, capsys):
    out = tmp_path / "out"
    hold = "from dataset_scripts.shards import OutputDir; import sys, time\n" + (
        f"OutputDir({str(out)!r}, 0, 1).open(); print('ready', flush=True); time.sleep(600)"
    )
    process = subprocess.Popen([sys.executable, "-c", hold], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        args = ("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "4", "--num-shards", "3")
        synth(*args, output=out, check=2)
        assert f"process {process.pid}" in capsys.readouterr().err
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    _, summary = synth(*args, output=out)  # its lock file is still there, its lock died with it
    assert summary["done"] > 0 and (out / ".lock-00000-of-00001").exists()


def test_a_group_write_stores_the_images_then_appends_the_rows_in_order(tmp_path):
    out = OutputDir(tmp_path / "out")
    out.open()
    first, second = b"\x89PNG first", b"\x89PNG second"
    rows = [("records", {"n": 1}, first), ("rejects", {"n": 2}, None), ("records", {"n": 3}, first)]
    out.write_group([*rows, ("records", {"n": 4}, second)])
    out.close()
    saved = records(tmp_path / "out")
    assert [row["n"] for row in saved] == [1, 3, 4]
    assert [row["n"] for row in records(tmp_path / "out", "rejects")] == [2]
    assert [read_image(tmp_path / "out", row) for row in saved] == [first, first, second]
    assert saved[0]["image_offset"] == saved[1]["image_offset"]  # the same bytes twice are stored once
    assert pack_entries_end(out.path("images")) == out.path("images").stat().st_size == 2 * 40 + len(first + second)


def test_a_group_write_that_fails_on_an_image_writes_no_row(tmp_path, monkeypatch):
    out = OutputDir(tmp_path / "out")
    out.open()
    out.write_group([("records", {"n": 0}, b"zero")])
    size = out.path("images").stat().st_size
    fill_disk_after(monkeypatch, tmp_path / "out", 0)  # the images' one write hits a full disk half-way
    with pytest.raises(OutputWriteError, match="No space left"):
        out.write_group([("records", {"n": 1}, b"one"), ("records", {"n": 2}, b"two")])
    monkeypatch.undo()
    out.write_group([("records", {"n": 3}, b"three")])  # the index holds no half-written entry
    out.close()
    assert [row["n"] for row in records(tmp_path / "out")] == [0, 3]
    assert read_image(tmp_path / "out", records(tmp_path / "out")[1]) == b"three"
    assert pack_entries_end(out.path("images")) == out.path("images").stat().st_size == size + 40 + 5
