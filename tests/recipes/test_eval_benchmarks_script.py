"""`python recipes/eval_benchmarks.py` as a script, SIGKILLed mid-benchmark, then resumed without redoing finished
samples."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from datasets import Dataset, DatasetDict, load_from_disk

from recipes import eval_benchmarks
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
            [sys.executable, "recipes/eval_benchmarks.py", *args, "--judge-base-url", judge.url],
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
    assert len({record["id"] for record in finished}) >= 2
    assert not (output / "results.json").exists()

    generated = []
    real_generate = eval_benchmarks.generate
    monkeypatch.setattr(
        eval_benchmarks, "generate", lambda *a: generated.extend(s.id for s in a[2]) or real_generate(*a)
    )
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeJudge() as judge:
        assert eval_benchmarks.main([*args, "--judge-base-url", judge.url]) == 0
    results = json.loads((output / "results.json").read_text())
    done = {record["id"] for record in finished}
    assert sorted(generated) == sorted(f"v1_{i}" for i in range(8) if f"v1_{i}" not in done)
    judged = {r["id"] for r in finished if r.get("judge") and not r["judge"]["error"]}  # the main process judges
    assert len(judge.requests) == 8 - len(judged)  # after a benchmark's generation, each sample once
    entry = results["benchmarks"]["mmvet"]
    assert entry["num_samples"] == 8 and entry["judge_failures"] == 0
    assert entry["value"] == pytest.approx(40.0)
    samples = {s["id"]: s for s in map(json.loads, (output / "samples" / "mmvet.jsonl").read_text().splitlines())}
    for record in finished:  # answers from before the kill are kept as they were
        assert samples[record["id"]]["raw_answer"] == record["raw_answer"]

    # The same folder in another dtype: refused in one line with exit code 2, the cache untouched.
    before = cache.read_bytes()
    refused = subprocess.run(
        [
            sys.executable,
            "recipes/eval_benchmarks.py",
            *args,
            "--judge-base-url",
            "http://127.0.0.1:9",
            "--dtype",
            "float16",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert f"error: {cache}: cached answers were made with other settings (dtype differ: " in refused.stderr
    assert cache.read_bytes() == before


def script(*args: str, cwd=REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "eval_benchmarks.py"), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": "", **(env or {})},
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("model", ["./no-such-checkpoint/stage2", "/no/such/checkpoint", "runs/no/stage2"])
def test_a_mistyped_local_model_path_is_named_at_once(model, tmp_path):
    refused = script("--model", model, "--benchmarks", "gqa", "--output", str(tmp_path / "out"))
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [refused.stderr.strip()]  # one line
    assert refused.stderr.startswith(f"error: --model {model}: no such local path (")
    assert not (tmp_path / "out").exists()


def test_a_relative_path_under_an_existing_folder_is_a_path_not_a_hub_id(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    refused = script("--model", "checkpoints/stage2", "--benchmarks", "gqa", "--output", "out", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == (
        "error: --model checkpoints/stage2: no such local path (no such file or folder); "
        "a Hub id looks like org/name\n"
    )


def test_a_missing_dataset_folder_is_named_and_debug_adds_the_traceback(tmp_path):
    argv = ["--model", "org/name", "--benchmarks", "gqa", "--output", str(tmp_path), "--dataset-path", "gqa=./nope"]
    refused = script(*argv)
    assert refused.returncode == 2 and refused.stderr == "error: --dataset-path gqa=./nope: no such folder\n"
    debug = script(*argv, env={"LOGLEVEL": "DEBUG"})
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == "error: --dataset-path gqa=./nope: no such folder"
    (tmp_path / "file").write_text("")
    refused = script("--model", "org/name", "--benchmarks", "gqa", "--output", str(tmp_path / "file"))
    assert refused.returncode == 2
    assert refused.stderr == f"error: --output {tmp_path / 'file'}: is a file, not a folder\n"


def test_path_and_usage_errors_come_before_the_heavy_imports():
    """The script stops before torch, transformers or datasets are imported (they take seconds)."""
    probe = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_path('recipes/eval_benchmarks.py', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    heavy = sorted(name for name in ('torch', 'transformers', 'datasets') if name in sys.modules)\n"
        "    print(exit.code, heavy)\n"
    )
    for argv in (["--model", "./typo", "--benchmarks", "gqa", "--output", "o"], ["--benchmarks", "nope"], ["--help"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv], cwd=REPO, capture_output=True, text=True, env=os.environ
        )
        assert done.stdout.splitlines()[-1] in ("2 []", "0 []"), (argv, done.stdout, done.stderr)


def test_usage_errors_are_one_line_and_help_opens_with_a_summary_and_an_example():
    refused = script("--model", "m", "--output", "o", "--benchmarks", "gqa,nope")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [refused.stderr.strip()]
    assert refused.stderr.startswith("error: unknown benchmark(s) ['nope']; choose from vicuna80, gqa,")
    bad_url = script("--model", "m", "--output", "o", "--benchmarks", "gqa", "--judge-base-url", "u:p@host?key=k")
    assert bad_url.returncode == 2 and bad_url.stderr.startswith("error: --judge-base-url: expected http(s)://")
    assert "key=k" not in bad_url.stderr and "u:p" not in bad_url.stderr
    helped = script("--help")
    after_usage = helped.stdout.split("\n\n")[1:]  # the shared layout: usage, summary, example, options
    assert helped.returncode == 0
    assert after_usage[0] == eval_benchmarks.__doc__.splitlines()[0]
    assert after_usage[1].startswith("example:\n  python recipes/eval_benchmarks.py --model ")
