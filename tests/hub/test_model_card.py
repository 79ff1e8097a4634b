"""Model-card pieces of hub/model_card.py: results.json validation and the card built without optional inputs."""

import pytest

from hub.model_card import build_model_card, incomplete_benchmarks, scored_benchmarks
from recipes.tiny.models import tiny_config


def test_results_json_problems_name_the_benchmark_and_field():
    with pytest.raises(ValueError, match=r"run/results.json: expected a 'benchmarks' object"):
        scored_benchmarks({"model": "x"}, "run/results.json")
    with pytest.raises(ValueError, match=r"benchmarks.gqa lacks dataset_id, split"):
        scored_benchmarks({"benchmarks": {"gqa": {"metric": "accuracy", "value": 1.0}}})
    with pytest.raises(ValueError, match=r"benchmarks.mme.value must be a number or null, got '1300'"):
        scored_benchmarks({"benchmarks": {"mme": {"metric": "mme", "value": "1300", "dataset_id": "d", "split": "s"}}})
    unscored = {"metric": "accuracy", "value": None, "dataset_id": "d", "split": "s"}
    assert scored_benchmarks({"benchmarks": {"mmmu": unscored}}) == {}


def test_card_without_results_or_training_says_so_and_has_no_model_index():
    config = tiny_config("phi3").to_dict()
    card = build_model_card(config, repo_id="org/allava-phi3", license="mit", prompt_example="<|user|>\n<image>\nhi")
    data = card.data.to_dict()
    assert "model-index" not in data and "base_model" not in data and data["license"] == "mit"
    assert "No evaluation results were recorded" in card.text and "No training summary was found" in card.text
    assert "Language model: `phi3`, 2 layers, width 64" in card.text and "16 image tokens" in card.text
    assert 'repo_id = "org/allava-phi3"' in card.text


def test_only_full_benchmark_runs_on_hub_datasets_reach_model_index():
    full = {"metric": "accuracy", "value": 50.0, "dataset_id": "lmms-lab/GQA", "split": "test", "limit": None}
    benchmarks = {
        "gqa": full,
        "smoke": {**full, "limit": 6},
        "local": {**full, "dataset_id": "/data/gqa", "dataset_source": "local"},
        "unrecorded": {key: value for key, value in full.items() if key != "limit"},
        "not_an_id": {**full, "dataset_id": "shapes world"},
    }
    reasons = incomplete_benchmarks(benchmarks)
    assert set(reasons) == {"smoke", "local", "unrecorded", "not_an_id"}
    assert "--limit 6" in reasons["smoke"] and "local copy (/data/gqa)" in reasons["local"]
    assert "does not record `limit`" in reasons["unrecorded"] and "not a Hub dataset id" in reasons["not_an_id"]
    card = build_model_card(
        tiny_config("phi").to_dict(), repo_id="o/m", license="mit", prompt_example="x", benchmarks=benchmarks
    )
    assert [result.dataset_name for result in card.data.eval_results] == ["gqa"]
    assert card.text.count("**partial**") == 4 and "Warning: partial results" in card.text
