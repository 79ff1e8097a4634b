"""Where benchmark rows come from: the Hub at a recorded commit, or a local copy; clear errors otherwise."""

import huggingface_hub
import pytest
from datasets import Dataset, DatasetDict

from recipes.benchmarks import data, gqa, textvqa, vicuna80


class FakeApi:
    def __init__(self, sha=None):
        self.sha = sha

    def __call__(self):
        return self

    def dataset_info(self, dataset_id, revision=None):
        if self.sha is None:
            raise huggingface_hub.errors.OfflineModeIsEnabled("offline")
        return type("Info", (), {"sha": self.sha})()


def test_hub_rows_are_loaded_at_the_commit_that_is_recorded(monkeypatch):
    calls = []

    def load_dataset(path, config, split, revision):
        calls.append((path, config, split, revision))
        return Dataset.from_dict({"question_id": [1, 2, 3]})

    monkeypatch.setattr(data.datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi("abc123"))
    rows, provenance = data.load_rows(textvqa.BENCHMARK, None, None, limit=2)
    assert len(rows) == 2
    assert calls == [("lmms-lab/textvqa", None, "validation", "abc123")]
    assert provenance["dataset_id"] == "lmms-lab/textvqa" and provenance["dataset_revision"] == "abc123"
    assert provenance["source"] == "hub" and provenance["split"] == "validation"

    calls.clear()
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi(None))  # offline: a pinned revision is still recorded
    _, provenance = data.load_rows(textvqa.BENCHMARK, None, "v1.0", limit=None)
    assert calls[0][3] == "v1.0" and provenance["dataset_revision"] == "v1.0"


def test_benchmarks_without_a_hub_copy_and_missing_local_data_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="--dataset-path vicuna80=FOLDER"):
        data.load_rows(vicuna80.BENCHMARK, None, None, None)
    Dataset.from_dict({"id": ["1"], "imageId": ["n1"]}).save_to_disk(str(tmp_path / "testdev_balanced_instructions"))
    with pytest.raises(ValueError, match="config 'testdev_balanced_images'"):
        data.load_rows(gqa.BENCHMARK, str(tmp_path), None, None)
    DatasetDict({"train": Dataset.from_dict({"a": [1]})}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match=r"no split 'validation'; it has \['train'\]"):
        data.load_rows(textvqa.BENCHMARK, str(tmp_path / "dd"), None, None)


def test_a_local_benchmark_copy_rebuilt_in_place_is_read_fresh(tmp_path):
    """A local copy with a README `configs:` block is cached by folder name only unless we key the cache ourselves."""
    folder = tmp_path / "textvqa"

    def write_copy(ids: list[int]) -> None:
        (folder / "data").mkdir(parents=True, exist_ok=True)
        Dataset.from_dict({"question_id": ids}).to_parquet(folder / "data" / "validation-00000-of-00001.parquet")
        (folder / "README.md").write_text(
            "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: validation\n"
            "    path: data/validation-*\n---\n"
        )

    write_copy([1, 2, 3])
    assert data.load_rows(textvqa.BENCHMARK, str(folder), None, None)[0]["question_id"] == [1, 2, 3]
    write_copy([7, 8])
    assert data.load_rows(textvqa.BENCHMARK, str(folder), None, None)[0]["question_id"] == [7, 8]


def test_benchmark_images_pass_the_pixel_budget_before_decoding(tmp_path):
    """`datasets` would decode an image cell on access; rows keep the bytes so the shared check comes first."""
    from types import SimpleNamespace

    from datasets import Features, Image, List, Value

    from modeling_allava.processing_allava import ImageTooLargeError
    from recipes.benchmarks.common import row_image
    from tests.image_fixtures import bomb_png

    features = Features({"id": Value("string"), "image": Image(), "images": List(Image())})
    cell = {"bytes": bomb_png(), "path": None}
    Dataset.from_dict({"id": ["q0"], "image": [cell], "images": [[cell]]}, features=features).save_to_disk(
        str(tmp_path / "bench")
    )
    benchmark = SimpleNamespace(name="bench", dataset_config=None, split="test", load_rows=None)
    rows, _ = data.load_rows(benchmark, str(tmp_path / "bench"), None, None)
    assert rows.features["image"].decode is False and rows.features["images"].feature.decode is False
    for column in ("image", "images"):
        with pytest.raises(ImageTooLargeError, match=f"q0 {column}: image is 13000x13000 pixels"):
            row_image(rows, 0, column, f"q0 {column}")()
