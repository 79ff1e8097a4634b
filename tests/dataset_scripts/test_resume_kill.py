"""A run killed with SIGKILL at random moments and restarted with the same command loses and duplicates nothing."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from dataset_scripts.build_dataset import build
from dataset_scripts.shards import OutputDir, ShardLockedError
from recipes.tiny import shapes_world as world
from tests.dataset_scripts.helpers_synthesis import API_KEY, REPO, records


def count_lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def start(images, out, base_url):
    command = [
        sys.executable, "-m", "dataset_scripts.synthesize", "--mode", "caption-qa", "--input", str(images),
        "--output", str(out), "--base-url", base_url, "--model", "teacher-x", "--concurrency", "4", "--quiet",
        "--source-name", "shapes",
    ]  # fmt: skip
    env = {"OPENAI_API_KEY": API_KEY, "PATH": os.environ.get("PATH", "")}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def rows_by_id(folder):
    import datasets

    rows = {}
    for subset in ("caption_shapes", "instruct_shapes"):
        for row in datasets.load_dataset(str(folder), subset, split="train"):
            rows[row["id"]] = (row["conversations"], row["origin"], row["images"][0].tobytes())
    return rows


def test_kill_nine_at_random_points_then_resume(tmp_path, teacher, synth):
    images = tmp_path / "images"
    world.write_scenes(images, 40, seed=21)
    teacher.latency = 0.08
    out = tmp_path / "killed"
    records_file = out / "records-00000-of-00001.jsonl"
    rng = random.Random(1234)
    kills = 0
    process = start(images, out, teacher.base_url)  # first kill: during start-up, before any request
    time.sleep(rng.uniform(0.0, 0.5))
    process.send_signal(signal.SIGKILL)
    process.wait()
    for target in sorted(rng.sample(range(2, 38), 3)):
        process = start(images, out, teacher.base_url)
        deadline = time.monotonic() + 60
        while count_lines(records_file) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 2
    final = start(images, out, teacher.base_url)
    assert final.wait(timeout=120) == 0, final.stderr.read().decode()

    keys = [record["key"] for record in records(out)]
    assert len(keys) == 40 == len(set(keys))
    baseline = tmp_path / "baseline"
    synth("--mode", "caption-qa", "--input", str(images), "--source-name", "shapes", output=baseline)
    assert sorted(keys) == sorted(record["key"] for record in records(baseline))
    build([out], tmp_path / "ds_killed")
    build([baseline], tmp_path / "ds_baseline")
    assert rows_by_id(tmp_path / "ds_killed") == rows_by_id(tmp_path / "ds_baseline")


def test_torn_last_line_is_cut_and_redone(tmp_path, synth, shapes_dir):
    out = tmp_path / "out"
    synth("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "5", output=out)
    path = out / "records-00000-of-00001.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # as if killed mid-write
    _, summary = synth("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "5", output=out)
    assert summary["done"] == 5 and summary["this_run"] == summary["this_run"] | {"done": 1, "resumed": 4}
    assert path.read_bytes().endswith(b"\n") and len(records(out)) == 5


def test_one_writer_per_shard(tmp_path):
    first = OutputDir(tmp_path, 0, 2)
    first.open()
    try:
        with pytest.raises(ShardLockedError):
            OutputDir(tmp_path, 0, 2).open()
        other = OutputDir(tmp_path, 1, 2)  # another shard of the same folder is fine
        other.open()
        other.close()
    finally:
        first.close()
