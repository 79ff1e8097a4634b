"""Dataset pushes against the fake Hub: `DatasetDict.push_to_hub` + card, and a built dataset folder through the
shared `hub.upload.upload_folder`; both load back with `load_dataset(repo, subset)`."""

import io

import numpy as np
from datasets import Dataset, DatasetDict
from PIL import Image

from dataset_scripts.schema import FEATURES, make_row
from hub.cards import build_dataset_card
from tests.hub.fake_hub import FakeHub
from tests.hub.processes import run_python


TOKEN = "hf_DatasetPushToken9876543210fedcba"
DRIVER = """
import sys
from pathlib import Path
from datasets import load_dataset, load_from_disk
from huggingface_hub import DatasetCard
from hub.upload import upload_folder

root = Path(sys.argv[1])
load_from_disk(root / "dataset_dict").push_to_hub("tester/dd", config_name="caption_shapes", data_dir="caption_shapes")
DatasetCard((root / "folder" / "README.md").read_text()).push_to_hub("tester/dd", repo_type="dataset")
for _ in range(2):
    print(upload_folder(root / "folder", "tester/folder", repo_type="dataset", commit_message="Upload dataset"))
for repo in ("tester/dd", "tester/folder"):
    rows = load_dataset(repo, "caption_shapes", split="train")
    print(repo, rows.num_rows, rows[0]["id"], rows[0]["image"].size, rows[0]["messages"][0]["content"][0]["type"])
"""


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_dataset_pushes_round_trip_through_the_fake_hub(tmp_path):
    rows = [
        make_row(
            f"shapes_cap_{i}",
            [{"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": f"{i} circles."}],
            _png(i),
            source="shapes",
            teacher_model="offline-teacher",
            prompt_version="v1",
            prompt_hash="abc123",
            origin="shapes-world",
        )
        for i in range(2)
    ]
    dataset = Dataset.from_list(rows, features=FEATURES)
    DatasetDict({"train": dataset}).save_to_disk(tmp_path / "dataset_dict")
    folder = tmp_path / "folder"
    (folder / "caption_shapes").mkdir(parents=True)
    dataset.to_parquet(folder / "caption_shapes" / "train-00000-of-00001.parquet")
    card = build_dataset_card({"subsets": {"caption_shapes": 2}, "sources": ["shapes"]}, repo_id="tester/dd")
    card.save(folder / "README.md")

    with FakeHub(TOKEN) as hub:
        result = run_python(["-c", DRIVER, str(tmp_path)], env=hub.client_env(tmp_path / "hf_home"))
        pushed = hub.commits("tester/dd", "dataset")
        built = hub.commits("tester/folder", "dataset")

    # DatasetDict.push_to_hub: one data commit (parquet + its generated card), then our card replaces the README.
    assert [commit.message for commit in pushed[1:]] == ["Upload dataset", "Upload README.md with huggingface_hub"]
    assert pushed[-1].files["README.md"].decode() == str(card)
    assert any(path.startswith("caption_shapes/") and path.endswith(".parquet") for path in pushed[-1].lfs)
    # The builder's folder: one commit, and pushing it again changes nothing.
    assert len(built) == 2 and set(built[-1].files) == {"README.md", "caption_shapes/train-00000-of-00001.parquet"}
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Pushed dataset tester/folder@main") and lines[1].startswith("No changes")
    assert lines[2:] == ["tester/dd 2 shapes_cap_0 (32, 24) image", "tester/folder 2 shapes_cap_0 (32, 24) image"]
    assert TOKEN not in result.stdout + result.stderr
