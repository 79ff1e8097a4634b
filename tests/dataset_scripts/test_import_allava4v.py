import io
import json

import datasets
import pytest
from PIL import Image

from dataset_scripts.import_allava4v import main, subset_of
from dataset_scripts.schema import FEATURES
from tests.image_fixtures import bomb_png


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 16), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_release(root):
    """A miniature of the release layout: JSON lists with relative image paths, one image folder per source."""
    for source in ("laion", "vflan"):
        (root / f"allava_{source}" / "images").mkdir(parents=True)
        for n in range(3):
            (root / f"allava_{source}" / "images" / f"{n}.jpeg").write_bytes(jpeg((n * 60, 10, 10)))
    laion_cap = [
        {
            "id": f"allava_laion_cap_{n}",
            "image": f"allava_laion/images/{n}.jpeg",
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe the image."},
                {"from": "gpt", "value": f"A picture number {n}."},
            ],
            "original_caption": f"alt text {n}",
            "url": f"http://example.com/{n}.jpg",
        }
        for n in range(4)  # image 3 is missing, as dead LAION links are
    ]
    laion_inst = [
        {
            "id": "allava_laion_inst_0",
            "image": "allava_laion/images/0.jpeg",
            "conversations": [{"from": "human", "value": "<image>\nWhy?"}, {"from": "gpt", "value": "Because."}],
        },
        {"id": "bad", "image": "allava_laion/images/1.jpeg", "conversations": [{"from": "robot", "value": "x"}]},
    ]
    vflan_inst = [
        {
            "id": "allava_vflan_inst_2",
            "image": "allava_vflan/images/2.jpeg",
            "conversations": [{"from": "human", "value": "<image>\nCount."}, {"from": "gpt", "value": "Two."}],
        }
    ]
    text = [{"idx": 7, "conversations": [{"from": "human", "value": "Hello?"}, {"from": "gpt", "value": "Hi."}]}]
    (root / "allava_laion" / "ALLaVA-Caption-LAION-4V.json").write_text(json.dumps(laion_cap))
    (root / "allava_laion" / "ALLaVA-Instruct-LAION-4V.json").write_text(json.dumps(laion_inst))
    (root / "allava_vflan" / "ALLaVA-Instruct-VFLAN-4V.json").write_text(json.dumps(vflan_inst))
    (root / "allava_text").mkdir()
    (root / "allava_text" / "Evol-Instruct-GPT4-Turbo-143K.json").write_text(json.dumps(text))


def test_subset_names_from_release_file_names():
    assert subset_of("ALLaVA-Caption-LAION-4V.json") == "caption_laion"
    assert subset_of("ALLaVA-Instruct-VFLAN-4V.json") == "instruct_vflan"
    assert subset_of("Evol-Instruct-GPT4-Turbo-143K.json") == "text"
    assert subset_of("notes.json") is None


def test_import_release_into_the_same_format(tmp_path, capsys):
    make_release(tmp_path / "release")
    out = tmp_path / "ds"
    assert main(["--root", str(tmp_path / "release"), "--output", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["subsets"] == {"caption_laion": 3, "instruct_laion": 1, "instruct_vflan": 1, "text": 1}
    assert stats["skipped"] == {"malformed": 1, "missing_image": 1}
    caption = datasets.load_dataset(str(out), "caption_laion", split="train")
    assert caption.features == FEATURES
    row = caption.cast_column("image", datasets.Image(decode=False))[0]
    assert row["id"] == "allava_laion_cap_0" and row["image"]["bytes"] == jpeg((0, 10, 10))
    assert row["origin"] == "http://example.com/0.jpg" and row["original_caption"] == "alt text 0"
    assert row["teacher_model"] == "gpt-4v" and row["prompt_version"] == "allava-4v-release"
    assert row["messages"][0]["content"][0] == {"type": "image", "text": None}
    text = datasets.load_dataset(str(out), "text", split="train")[0]
    assert text["id"] == "allava_text_7" and text["image"] is None and text["images"] == []
    assert "ALLaVA-4V (imported)" in (out / "README.md").read_text()


def test_explicit_files_and_limit(tmp_path):
    make_release(tmp_path / "release")
    out = tmp_path / "ds"
    code = main(
        ["--root", str(tmp_path / "release"), "--output", str(out), "--limit", "2",
         "--file", "caption_laion=allava_laion/ALLaVA-Caption-LAION-4V.json"]
    )  # fmt: skip
    assert code == 0
    assert json.loads((out / "stats.json").read_text())["subsets"] == {"caption_laion": 2}


def test_nothing_to_import(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "--output", str(tmp_path / "ds")]) == 2
    assert "no release JSON" in capsys.readouterr().err


def test_images_outside_root_or_not_images_are_skipped_and_counted(tmp_path, capsys):
    """The release JSON must not choose which files get embedded (and pushed): paths stay under --root and the
    bytes must decode as an image within the pixel budget."""
    root = tmp_path / "release"
    (root / "allava_laion" / "images").mkdir(parents=True)
    (root / "allava_laion" / "images" / "ok.jpeg").write_bytes(jpeg((0, 0, 0)))
    (root / "allava_laion" / "images" / "notes.jpeg").write_text("not an image")
    (root / "allava_laion" / "images" / "bomb.png").write_bytes(bomb_png())
    (tmp_path / "secret.txt").write_text("password")
    (root / "allava_laion" / "images" / "link.jpeg").symlink_to(tmp_path / "secret.txt")
    names = {
        "ok": "allava_laion/images/ok.jpeg",
        "absolute": str(tmp_path / "secret.txt"),
        "dotdot": "../secret.txt",
        "symlink": "allava_laion/images/link.jpeg",
        "text": "allava_laion/images/notes.jpeg",
        "bomb": "allava_laion/images/bomb.png",
    }
    rows = [
        {"id": key, "image": name, "conversations": [{"from": "human", "value": "<image>\nHi?"},
                                                     {"from": "gpt", "value": "Hello."}]}
        for key, name in names.items()
    ]  # fmt: skip
    (root / "allava_laion" / "ALLaVA-Caption-LAION-4V.json").write_text(json.dumps(rows))
    out = tmp_path / "ds"
    assert main(["--root", str(root), "--output", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["subsets"] == {"caption_laion": 1}
    assert stats["skipped"] == {"oversized_image": 1, "outside_root": 3, "unreadable_image": 1}
    assert any("../secret.txt is outside" in example for example in stats["skipped_examples"])
    table = datasets.load_dataset(str(out), "caption_laion", split="train")
    assert table.cast_column("image", datasets.Image(decode=False))["id"] == ["ok"]


def test_a_failed_dataset_push_hides_the_token(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    from dataset_scripts.dataset_writer import push_to_hub

    token = "hf_DatasetPushToken0123456789abcd"
    monkeypatch.setenv("HF_TOKEN", token)

    def echoing_failure(self, *args, **kwargs):
        raise OSError(f"401 for token {token}")

    monkeypatch.setattr(HfApi, "create_repo", echoing_failure)
    with pytest.raises(SystemExit) as exit_info:
        push_to_hub(tmp_path, "tester/data", private=False)
    assert str(exit_info.value.code) == "error: pushing to dataset tester/data@main failed: OSError: 401 for token ***"
