"""`python recipes/evaluate.py` as a script, SIGKILLed mid-benchmark, then resumed without redoing finished samples."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from datasets import Dataset, DatasetDict, load_from_disk

from recipes import evaluate
from tests.recipes import benchmark_fixtures, benchmark_rows_open
from tests.recipes.fake_judge import FakeJudge, default_reply


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "sk-test-script-7"


def test_sigkill_mid_benchmark_then_resume(tmp_path, monkeypatch):
    model = benchmark_fixtures.save_tiny_model(tmp_path / "model")
    small = load_from_disk(str(benchmark_rows_open.mmvet(tmp_path / "small")))["test"]
    rows = [{**small[i % 2], "question_id": f"v1_{i}"} for i in range(8)]  # 8 questions, slow to judge
    data = tmp_path / "mmvet"
    DatasetDict({"test": Dataset.from_list(rows, features=small.features)}).save_to_disk(str(data))

    def slow(request, call_number):
        time.sleep(0.3)
        return default_reply(request, call_number)

    output = tmp_path / "out"
    args = [
        "--model",
        str(model),
        "--benchmarks",
        "mmvet",
        "--output",
        str(output),
        "--max-new-tokens",
        "4",
        "--batch-size",
        "1",
        "--judge-concurrency",
        "1",
        "--dataset-path",
        f"mmvet={data}",
        "--judge-model",
        "fake-judge",
    ]
    cache = output / "cache" / "mmvet.jsonl"
    env = {**os.environ, "OPENAI_API_KEY": SECRET, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    with FakeJudge(slow) as judge:
        process = subprocess.Popen(
            [sys.executable, "recipes/evaluate.py", *args, "--judge-base-url", judge.url],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            if cache.exists() and len(cache.read_text().splitlines()) >= 3:  # settings + 2 finished samples
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        output_text = process.communicate()[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, output_text
    finished = [json.loads(line) for line in cache.read_text().splitlines()[1:]]
    assert 2 <= len(finished) < 8
    assert not (output / "results.json").exists()

    generated = []
    real_generate = evaluate.generate
    monkeypatch.setattr(evaluate, "generate", lambda *a: generated.extend(s.id for s in a[2]) or real_generate(*a))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeJudge() as judge:
        results = evaluate.main([*args, "--judge-base-url", judge.url])
    done = {record["id"] for record in finished}
    assert sorted(generated) == sorted(f"v1_{i}" for i in range(8) if f"v1_{i}" not in done)
    assert len(judge.requests) == len(generated)
    entry = results["benchmarks"]["mmvet"]
    assert entry["num_samples"] == 8 and entry["judge_failures"] == 0
    assert entry["value"] == pytest.approx(40.0)
    samples = {s["id"]: s for s in map(json.loads, (output / "samples" / "mmvet.jsonl").read_text().splitlines())}
    for record in finished:  # answers from before the kill are kept as they were
        assert samples[record["id"]]["raw_answer"] == record["raw_answer"]

    # The same folder in another dtype: refused in one line with exit code 2, the cache untouched.
    before = cache.read_bytes()
    refused = subprocess.run(
        [sys.executable, "recipes/evaluate.py", *args, "--judge-base-url", "http://127.0.0.1:9", "--dtype", "float16"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert f"error: {cache}: cached answers were made with other settings (dtype differ: " in refused.stderr
    assert cache.read_bytes() == before
