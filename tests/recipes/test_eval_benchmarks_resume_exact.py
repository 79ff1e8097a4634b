"""A resumed evaluation gives every sample the answer of an uninterrupted run; a cache made otherwise is refused.

Greedy answers depend slightly on a sample's batch mates (left padding), so these tests stand in a generator whose
answer names the whole batch: any regrouping on resume shows up as a different answer.
"""

import json
import shutil
from pathlib import Path

import pytest

from recipes import eval_benchmarks
from recipes.tiny.models import build_tiny_model_and_processor
from tests.recipes import benchmark_fixtures


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resume")
    return {
        "model": benchmark_fixtures.save_tiny_model(root / "model"),
        "data": benchmark_fixtures.write_all(root / "data", ["gqa", "mmbench_en"]),
    }


@pytest.fixture
def calls(monkeypatch) -> list[list[str]]:
    """Batches given to generation, by sample id; each answer names its batch mates."""
    seen = []

    def generate(model, processor, samples, max_new_tokens):
        ids = [sample.id for sample in samples]
        seen.append(ids)
        return [f"{sample_id} in {'+'.join(ids)}" for sample_id in ids]

    monkeypatch.setattr(eval_benchmarks, "generate", generate)
    return seen


def run(workspace, output: Path, *extra: str, model: Path | None = None) -> int:
    argv = ["--model", str(model or workspace["model"]), "--benchmarks", "mmbench_en", "--output", str(output)]
    argv += ["--max-new-tokens", "4", *benchmark_fixtures.dataset_path_args(workspace["data"]), *extra]
    return eval_benchmarks.main(argv)


def answers(output: Path) -> dict[str, str]:
    lines = (output / "samples" / "mmbench_en.jsonl").read_text().splitlines()
    return {sample["id"]: sample["raw_answer"] for sample in map(json.loads, lines)}


def test_resume_from_a_batch_cut_short_by_a_kill_reproduces_the_uninterrupted_answers(workspace, tmp_path, calls):
    run(workspace, tmp_path / "clean", "--batch-size", "4")
    batches = list(calls)
    assert [len(batch) for batch in batches] == [4, 2]

    cache = tmp_path / "killed" / "cache" / "mmbench_en.jsonl"
    cache.parent.mkdir(parents=True)
    clean_lines = (tmp_path / "clean" / "cache" / "mmbench_en.jsonl").read_bytes().splitlines(keepends=True)
    # Killed while appending the first batch: header, 3 of its 4 records, and half of the 4th.
    cache.write_bytes(b"".join(clean_lines[:4]) + clean_lines[4][:20])
    calls.clear()
    run(workspace, tmp_path / "killed", "--batch-size", "4")
    assert calls == batches  # the cut batch is generated again whole, with the same batch mates
    assert answers(tmp_path / "killed") == answers(tmp_path / "clean")
    assert len(cache.read_bytes().splitlines()) == 1 + 6  # 3 saved answers came out the same: kept as they were


def test_raising_the_limit_gives_the_answers_of_one_full_run(workspace, tmp_path, calls):
    run(workspace, tmp_path / "clean", "--batch-size", "3")
    run(workspace, tmp_path / "grown", "--batch-size", "3", "--limit", "1")  # question 0: four rotations
    calls.clear()
    run(workspace, tmp_path / "grown", "--batch-size", "3")
    assert calls == [["0/shift3", "1/shift0", "1/shift1"]]  # the smaller run's short last batch is made whole
    assert answers(tmp_path / "grown") == answers(tmp_path / "clean")


def test_a_cache_made_with_other_weights_dtype_or_generation_settings_is_refused(tmp_path, calls, capsys):
    model = benchmark_fixtures.save_tiny_model(tmp_path / "model")
    workspace = {"model": model, "data": benchmark_fixtures.write_all(tmp_path / "data", ["mmbench_en"])}
    output = tmp_path / "out"
    run(workspace, output, "--limit", "1")
    cache = output / "cache" / "mmbench_en.jsonl"
    before = cache.read_bytes()
    capsys.readouterr()

    def refused(*extra: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            run(workspace, output, "--limit", "1", *extra)
        assert exit_info.value.code == 2
        message = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(message) == 1 and message[0].startswith(f"error: {cache}: ")  # one line, no traceback
        assert cache.read_bytes() == before
        return message[0]

    assert "(dtype differ: dtype was 'torch.float32', now 'torch.bfloat16')" in refused("--dtype", "bfloat16")
    assert "(batch_size differ: batch_size was 8, now 2)" in refused("--batch-size", "2")
    assert "(max_new_tokens differ: " in refused("--max-new-tokens", "5")
    retrained, processor = build_tiny_model_and_processor("phi", seed=1)
    retrained.save_pretrained(model)  # new weights at the same path
    assert "(weights differ: weights was '" in refused()
    shutil.rmtree(output / "cache")
    run(workspace, output, "--limit", "1")  # a fresh cache is fine
