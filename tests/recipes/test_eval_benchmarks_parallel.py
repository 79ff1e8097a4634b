"""Data-parallel evaluation: two gloo processes on CPU write what one process writes, and share one cache.

Benchmarks of every family: multiple choice (MMBench, four rotations), rule-scored open answers (GQA), a judged one
(MM-Vet, fake judge) and a rule-scored one with the optional GPT step (HallusionBench). Batch size 2 gives each
process several batches; greedy answers of the tiny random model are compared as they are.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipes import eval_benchmarks
from tests.recipes import benchmark_fixtures
from tests.recipes.conftest import REPO
from tests.recipes.fake_judge import FakeJudge
from tests.recipes.sharded import free_port


pytestmark = pytest.mark.slow
NAMES = ["mmbench_en", "gqa", "mmvet", "hallusionbench"]
SECRET = "sk-test-parallel"


def arguments(workspace: dict, output: Path, judge: FakeJudge | None, names: list[str] = NAMES) -> list[str]:
    return [*benchmark_fixtures.evaluator_args(workspace, output, names, 6, judge), "--batch-size", "2"]


def launch(launcher: list[str], argv: list[str]) -> str:
    env = {**os.environ, "OPENAI_API_KEY": SECRET, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, *launcher, "recipes/eval_benchmarks.py", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result.stdout


def outputs(folder: Path) -> dict[str, str]:
    """What a user reads: results.md, the per-sample files, and results.json's scores."""
    files = {path.name: path.read_text() for path in sorted((folder / "samples").iterdir())}
    files["results.md"] = (folder / "results.md").read_text()
    files["benchmarks"] = json.dumps(json.loads((folder / "results.json").read_text())["benchmarks"], sort_keys=True)
    return files


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("parallel")
    return {
        "model": benchmark_fixtures.save_tiny_model(root / "model"),
        "data": benchmark_fixtures.write_all(root / "data", NAMES),
    }


def test_two_processes_write_what_one_writes_and_share_its_cache(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeJudge() as judge:
        assert eval_benchmarks.main(arguments(workspace, tmp_path / "one", judge)) == 0
    one_process_calls = len(judge.requests)

    torchrun = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    with FakeJudge() as judge:
        printed = launch(torchrun, arguments(workspace, tmp_path / "two", judge))
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")
    assert len(judge.requests) == one_process_calls  # each sample judged once, by the main process
    assert printed.count("mmbench_en: ") == 1  # one report, from the main process
    assert "total" in printed and "about" in printed  # generations per benchmark and per process, before starting
    for name in NAMES:  # one writer per file
        assert (tmp_path / "two" / "cache" / f"{name}.jsonl").is_file()
        assert (tmp_path / "two" / "cache" / f"{name}.rank1.jsonl").is_file()

    # A kill while process 1 appended its first batch of GQA: its file keeps the header and half a line.
    rank1 = tmp_path / "two" / "cache" / "gqa.rank1.jsonl"
    lines = rank1.read_bytes().splitlines(keepends=True)
    rank1.write_bytes(lines[0] + lines[1][:30])
    # One process continues the two-process cache: it makes only process 1's lost GQA answers, asks no judge again.
    generated = []
    real_generate = eval_benchmarks.generate
    monkeypatch.setattr(
        eval_benchmarks, "generate", lambda *a: generated.append([s.id for s in a[2]]) or real_generate(*a)
    )
    with FakeJudge() as judge:
        assert eval_benchmarks.main(arguments(workspace, tmp_path / "two", judge)) == 0
    lost = [json.loads(line)["id"] for line in lines[1:]]
    assert sorted(sum(generated, [])) == sorted(lost)
    assert len(judge.requests) == 0
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")


def test_accelerate_launch_with_three_processes_resumes_a_one_process_cache(workspace, tmp_path):
    argv = arguments(workspace, tmp_path / "one", None, ["mmbench_en"])
    assert eval_benchmarks.main(argv) == 0
    clean = outputs(tmp_path / "one")
    cache = tmp_path / "one" / "cache" / "mmbench_en.jsonl"
    lines = cache.read_bytes().splitlines(keepends=True)
    cache.write_bytes(b"".join(lines[:3]) + lines[3][:10])  # killed after the first batch
    for path in [tmp_path / "one" / "results.json", *(tmp_path / "one" / "samples").iterdir()]:
        path.unlink()
    # The repo's DDP launcher config; on a machine without GPUs the processes talk over gloo.
    config = str(REPO / "recipes/accelerate_configs/ddp.yaml")
    accelerate = ["-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", "3"]
    launch([*accelerate, "--main_process_port", str(free_port())], argv)
    assert outputs(tmp_path / "one") == clean
    assert (tmp_path / "one" / "cache" / "mmbench_en.rank2.jsonl").is_file()
