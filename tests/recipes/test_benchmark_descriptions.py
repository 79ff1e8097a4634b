"""Each benchmark is one explicit `Benchmark` description; eval_benchmarks.py runs exactly the ones it lists."""

import subprocess
import sys
from pathlib import Path

import pytest

from recipes import eval_benchmarks
from recipes.benchmarks import gqa, mmbench, mme, textvqa
from recipes.benchmarks.benchmark import Benchmark
from tests.recipes.fixture_media import picture


REPO = Path(__file__).resolve().parents[2]
JUDGED = {"vicuna80", "touchstone", "mmvet", "llava_w", "mllm_bench"}


def test_eval_benchmarks_lists_one_description_per_benchmark_in_the_paper_order():
    assert list(eval_benchmarks.BENCHMARKS) == list(eval_benchmarks.BENCHMARK_SOURCES)
    for name, benchmark in eval_benchmarks.BENCHMARKS.items():
        assert isinstance(benchmark, Benchmark) and benchmark.name == name
        assert (benchmark.kind == "judged") == (name in JUDGED), name
        assert (benchmark.parse_answer is None) == (benchmark.judge is not None), name
    unconfirmed = {name for name, benchmark in eval_benchmarks.BENCHMARKS.items() if benchmark.unconfirmed}
    assert unconfirmed == {"vicuna80", "touchstone", "mllm_bench"}


def test_the_parts_of_one_benchmark_are_two_descriptions_from_one_module():
    assert eval_benchmarks.BENCHMARKS["mme_perception"] is mme.MME_PERCEPTION
    assert eval_benchmarks.BENCHMARKS["mme_cognition"] is mme.MME_COGNITION
    assert eval_benchmarks.BENCHMARKS["mmbench_en"] is mmbench.MMBENCH_EN and mmbench.MMBENCH_CN.dataset_config == "cn"
    assert mme.MME_PERCEPTION.aggregate is mme.MME_COGNITION.aggregate
    for stub in ("mme_perception", "mme_cognition", "mmbench_en", "mmbench_cn"):
        assert not (REPO / "recipes" / "benchmarks" / f"{stub}.py").exists()


def test_only_benchmarks_with_a_choice_of_prompt_receive_the_variant():
    row = {"question_id": 1, "question": "Is it red?", "answer": "Yes", "category": "color", "image": picture(0)}
    assert mme.MME_PERCEPTION.samples([row], "plain")[0].prompt == "Is it red?"
    assert mme.MME_PERCEPTION.samples([row], "short_answer")[0].prompt.endswith("single word or phrase.")
    gqa_row = {"id": "q1", "question": "What colour?", "answer": "red", "image": picture(0)}
    assert gqa.BENCHMARK.samples([gqa_row], "short_answer")[0].id == "q1"
    with pytest.raises(ValueError, match="gqa: no prompt variant 'ocr_tokens'; choose from short_answer"):
        gqa.BENCHMARK.samples([gqa_row], "ocr_tokens")
    assert set(textvqa.BENCHMARK.prompt_variants) == {"ocr_tokens", "no_ocr"}


def test_a_description_that_mixes_rule_and_judge_scoring_is_refused():
    fields = dict(gqa.BENCHMARK.__dict__)
    with pytest.raises(TypeError, match="gqa: a rule benchmark has parse_answer"):
        Benchmark(**{**fields, "parse_answer": None})
    with pytest.raises(TypeError, match="gqa: a rule benchmark has parse_answer"):
        Benchmark(**{**fields, "kind": "judged"})
    with pytest.raises(TypeError, match="default variant 'plain' is not in prompt_variants"):
        Benchmark(**{**fields, "default_variant": "plain"})


def test_the_benchmark_loader_does_not_import_the_training_mixture():
    code = "import sys, recipes.benchmarks.data; print('recipes.data' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
