"""--api batch end to end against the offline teacher's Batch API: faults, splitting, batch price, kill -9 + resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dataset_scripts.limits import Price
from dataset_scripts.shards import iter_jsonl
from recipes.tiny import shapes_world as world
from tests.dataset_scripts.helpers_synthesis import API_KEY, REPO, records


BATCH = ["--api", "batch", "--batch-poll-interval", "0.02", "--model", "gpt-4o"]
GPT_4O_BATCH = Price(2.50, 10.00, 1.25).scaled(0.5)


def store(out):
    return list(iter_jsonl(out / "batches-00000-of-00001.jsonl"))


def assert_nothing_paid_twice(teacher):
    batches = teacher.batches
    assert batches.billed and set(batches.billed.values()) == {1}
    answered = sum(b["request_counts"]["completed"] for b in batches.batches.values())
    assert answered == sum(batches.billed.values())


@pytest.mark.parametrize("strategy", ["one-call", "two-call"])
def test_faults_are_resubmitted_and_nothing_is_paid_twice(synth, teacher, shapes_dir, tmp_path, strategy):
    teacher.batches.error_rate = 0.2
    teacher.batches.expire = {0}
    teacher.batches.slow = {1}
    teacher.batches.slow_seconds = 0.3
    teacher.set_faults({"malformed": 0.1})
    out = tmp_path / "out"
    args = ["--mode", "caption-qa", "--strategy", strategy, "--input", str(shapes_dir), "--batch-max-requests", "5"]
    # which request gets a malformed reply depends on the order batches finish: enough parse retries that none fails
    _, summary = synth(*args, "--max-parse-retries", "6", *BATCH, output=out)
    assert summary["done"] == 24 and len({r["key"] for r in records(out)}) == 24
    assert_nothing_paid_twice(teacher)
    uploaded = [row for row in store(out) if row["event"] == "uploaded"]
    assert max(len(row["custom_ids"]) for row in uploaded) == 5  # split at --batch-max-requests
    batch = summary["this_run"]["batch"]
    assert batch["expired"] == 1 and batch["resubmitted"] > 0 and summary["this_run"]["parse_retries"]
    assert sum(teacher.batches.submissions.values()) == batch["requests"] > 24 * (2 if strategy == "two-call" else 1)
    for record in records(out):  # billed at the batch price, cached tokens at its cached rate
        usage = record["usage"]
        cost = GPT_4O_BATCH.cost(usage["prompt_tokens"], usage["completion_tokens"], usage["cached_tokens"])
        # each request's cost is summed on the 1e-8-dollar grid (toolkit.cost.add_usd): half a unit off at most
        assert abs(usage["cost_usd"] - cost) <= usage["requests"] * 0.5e-8 + 1e-12


def test_input_files_are_split_by_size(synth, teacher, shapes_dir, tmp_path):
    limit = 40_000  # a few shapes images' requests
    out = tmp_path / "out"
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), "--batch-max-bytes", str(limit)]
    _, summary = synth(*args, *BATCH, output=out)
    assert summary["done"] == 24
    sizes = [len(teacher.batches.files[b["input_file_id"]]) for b in teacher.batches.batches.values()]
    assert len(sizes) > 2 and max(sizes) <= limit


def start(images, out, base_url):
    command = [
        sys.executable, "-m", "dataset_scripts.synthesize", "--mode", "caption-qa", "--strategy", "two-call",
        "--input", str(images), "--output", str(out), "--base-url", base_url, "--quiet", "--batch-max-requests", "4",
        *BATCH,
    ]  # fmt: skip
    env = {"OPENAI_API_KEY": API_KEY, "PATH": os.environ.get("PATH", "")}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_rows(out, event, count, process):
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if sum(row["event"] == event for row in store(out)) >= count:
            return
        time.sleep(0.005)


def test_kill_nine_while_batches_run_then_resume_polls_the_same_batches(tmp_path, teacher):
    images = tmp_path / "images"
    world.write_scenes(images, 12, seed=5, size=112)
    teacher.batches.seconds = 0.4
    out = tmp_path / "out"
    for event, count in (("uploaded", 1), ("created", 2), ("collected", 2), ("progress", 5)):
        process = start(images, out, teacher.base_url)
        wait_for_rows(out, event, count, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
    # as if killed between creating a batch and writing it down: the rerun finds it in the batch list. Upload rows
    # written after it stay (a kill cannot unwrite them; their batches may exist on the server too).
    rows = store(out)
    created = [i for i, row in enumerate(rows) if row["event"] == "created"]
    assert created
    lines = (out / "batches-00000-of-00001.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == len(rows)
    later = zip(lines[created[-1] + 1 :], rows[created[-1] + 1 :], strict=True)
    uploads_after = [line for line, row in later if row["event"] == "uploaded"]
    (out / "batches-00000-of-00001.jsonl").write_bytes(b"".join(lines[: created[-1]] + uploads_after))
    final = start(images, out, teacher.base_url)
    assert final.wait(timeout=120) == 0, final.stderr.read().decode()
    assert len({r["key"] for r in records(out)}) == 12 == len(records(out))
    assert set(teacher.batches.submissions.values()) == {1}  # no request was ever submitted twice
    assert_nothing_paid_twice(teacher)
    summary = json.loads((out / "summary-00000-of-00001.json").read_text())
    assert summary["done"] == 12 and summary["requests"] == 24


def test_budget_stops_batch_submission_and_a_rerun_finishes(synth, teacher, shapes_dir, tmp_path):
    out = tmp_path / "out"
    prices = ["--price-input", "1000", "--price-output", "1000", "--max-tokens", "300", "--batch-max-requests", "4"]
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), *prices, *BATCH]
    _, summary = synth(*args, "--max-cost", "5", output=out, check=3)
    assert summary["stopped"] == "budget" and 0 < summary["done"] < 24 and summary["cost_usd"] <= 5
    _, summary = synth(*args, "--max-cost", "100", output=out)
    assert summary["done"] == 24
    assert_nothing_paid_twice(teacher)


def test_progress_counts_inputs_as_batches_complete(teacher, shapes_dir, tmp_path, monkeypatch, capsys):
    from dataset_scripts import synthesize

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    argv = ["--mode", "caption-qa", "--input", str(shapes_dir), "--output", str(tmp_path / "out")]
    argv += ["--base-url", teacher.base_url, "--batch-max-requests", "8", *BATCH]
    assert synthesize.main(argv) == 0
    updates = capsys.readouterr().err.replace("\r", "\n").splitlines()
    bars = [line for line in updates if "/24 [" in line]
    counts = [line.split("/24", 1)[0].rsplit(" ", 1)[-1] for line in bars]
    assert counts[0] == "0" and counts[-1] == "24" and len(set(counts)) > 2  # several steps, one per batch collected
    assert "batches=0" in bars[-1] and "cost=$" in bars[-1] and "rejected=0" in bars[-1]  # gpt-4o has a price


def test_batch_mode_refuses_several_endpoints(synth, teacher, shapes_dir, tmp_path, capsys):
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), "--base-url", "http://127.0.0.1:9/v1", *BATCH]
    with pytest.raises(SystemExit) as stop:
        synth(*args, output=tmp_path / "out")
    error = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(error.splitlines()) == 1 and "one endpoint" in error
    assert not (tmp_path / "out").exists()
