"""Model-card pieces of hub/cards.py: results.json validation and the card built without optional inputs."""

import pytest

from hub.cards import build_model_card, scored_benchmarks
from modeling_allava.tiny import tiny_config


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
