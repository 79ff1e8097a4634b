import subprocess
import sys
from pathlib import Path

from huggingface_hub import DatasetCard

from hub.cards import build_dataset_card, size_category


STATS = {
    "kind": "synthesized",
    "subsets": {"caption_laion": 1200, "instruct_laion": 1200, "text": 30},
    "modes": ["caption-qa", "text"],
    "strategies": ["one-call"],
    "teacher_models": ["gpt-4o"],
    "prompt_versions": ["v1"],
    "prompt_hashes": ["0123456789abcdef"],
    "sampling": [{"max_tokens": 2048, "temperature": 0.7}],
    "prompts": {"caption_qa": "Prompt id: allava/caption_qa/v1\nLook at the image."},
    "requests": 1300,
    "tokens": {"prompt": 900000, "completion": 300000},
    "cost_usd": 5.25,
    "rejected": {"refusal": 3, "candidates": 2},
    "skipped": {"unreachable": 40},
    "duplicates_dropped": 1,
    "sources": ["evol", "laion"],
}


def test_dataset_card_documents_the_data(tmp_path):
    card = build_dataset_card(STATS, repo_id="org/allava-mine", license="cc-by-4.0")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["size_categories"] == "1K<n<10K"
    files = [{"split": "train", "path": "caption_laion/train-*"}]
    assert data["configs"][0] == {"config_name": "caption_laion", "data_files": files}
    text = card.text
    for expected in ("| caption_laion | 1200 |", "| refusal | 3 |", "| unreachable | 40 |", "`gpt-4o`", "$5.2500",
                     "0123456789abcdef", 'load_dataset("org/allava-mine"', "Look at the image.", "licences"):
        assert expected in text, expected
    assert "Shapes-world" not in text
    card.save(tmp_path / "README.md")
    assert DatasetCard.load(tmp_path / "README.md").data.to_dict()["configs"] == data["configs"]


def test_unpriced_runs_say_so_instead_of_a_zero_cost():
    unpriced = build_dataset_card(STATS | {"cost_usd": None}).text
    assert "cost: no price configured" in unpriced and "$0" not in unpriced
    assert "cost: $5.2500 (from the configured price table)" in build_dataset_card(STATS).text


def test_import_and_shapes_variants():
    stats = {"kind": "allava-4v-import", "subsets": {"text": 5}, "skipped": {"missing_image": 2}}
    imported = build_dataset_card(stats)
    assert "original ALLaVA-4V release" in imported.text and "| missing_image | 2 |" in imported.text
    shapes = build_dataset_card({"subsets": {"caption_shapes": 3}, "sources": ["shapes"]})
    assert "Shapes-world data" in shapes.text and "| (none) | 0 |" in shapes.text


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 50_000, 500_000, 5_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M",
    ]  # fmt: skip


def test_module_import_is_light():
    code = "import sys, hub.cards; print('huggingface_hub' in sys.modules, 'datasets' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True
    )
    assert result.stdout.split() == ["False", "False"]
