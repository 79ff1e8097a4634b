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


def conversation(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


def test_chinese_file_names_go_to_zh_subsets():
    assert subset_of("ALLaVA-Caption-LAION-4V_Chinese.json") == "caption_laion_zh"
    assert subset_of("ALLaVA-Instruct-VFLAN-4V_Chinese.json") == "instruct_vflan_zh"
    assert subset_of("ALLaVA-Instruct-LAION-4V.json") == "instruct_laion"


def test_version_named_from_row_count_and_superseded_files_warned(tmp_path, capsys):
    """Files with the row counts the release README gave: 505,588 (first LAION files) is superseded, 489,044 (the
    re-issue) is not; the two files also describe different images, which one release never does."""
    root = tmp_path / "release"
    (root / "allava_laion" / "images").mkdir(parents=True)
    (root / "allava_laion" / "images" / "0.jpeg").write_bytes(jpeg((200, 10, 10)))
    real = {"image": "allava_laion/images/0.jpeg", "conversations": conversation("Describe it.", "A red picture.")}
    first = [{"id": "allava_laion_cap_0", **real}] + [{"id": f"allava_laion_cap_{n}"} for n in range(1, 505_588)]
    reissue = [{"id": "allava_laion_inst_0", **real}] + [{"id": f"allava_laion_inst_{n}"} for n in range(1, 489_044)]
    (root / "allava_laion" / "ALLaVA-Caption-LAION-4V.json").write_text(json.dumps(first))
    (root / "allava_laion" / "ALLaVA-Instruct-LAION-4V.json").write_text(json.dumps(reissue))
    out = tmp_path / "ds"
    assert main(["--root", str(root), "--output", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    release = {entry["subset"]: entry for entry in stats["release"]}
    assert release["caption_laion"]["rows"] == 505_588 and release["caption_laion"]["superseded"]
    assert release["caption_laion"]["version"] == "the first release files"
    assert release["instruct_laion"]["version"] == "the re-issue of 2024-04-28"
    assert not release["instruct_laion"]["superseded"]
    assert stats["subsets"] == {"caption_laion": 1, "instruct_laion": 1}
    err = capsys.readouterr().err
    assert "ALLaVA-Caption-LAION-4V.json has 505,588 rows: the first release files" in err
    assert "describe different images (16,544 only in the caption file, 0 only in the instruct file)" in err
    assert len(stats["release_warnings"]) == 2
    card = (out / "README.md").read_text()
    assert "505588 rows, the first release files — **superseded**" in card
    assert "489044 rows, the re-issue of 2024-04-28\n" in card


def test_unknown_count_is_named_unknown_without_warning(tmp_path, capsys):
    make_release(tmp_path / "release")
    out = tmp_path / "ds"
    files = [
        "caption_laion=allava_laion/ALLaVA-Caption-LAION-4V.json",
        "instruct_vflan=allava_vflan/ALLaVA-Instruct-VFLAN-4V.json",
    ]
    assert (
        main(["--root", str(tmp_path / "release"), "--output", str(out), "--file", files[0], "--file", files[1]]) == 0
    )
    stats = json.loads((out / "stats.json").read_text())
    assert {entry["version"] for entry in stats["release"]} == {"unknown (a row count the release README never gave)"}
    assert stats["release_warnings"] == [] and "warning" not in capsys.readouterr().err
    digests = {entry["subset"]: entry["ids_sha256"] for entry in stats["release"]}
    assert len(digests["caption_laion"]) == 16 and digests["caption_laion"] != digests["instruct_vflan"]


def test_laion_caption_and_instruct_files_of_different_images_are_warned(tmp_path, capsys):
    make_release(tmp_path / "release")  # captions for images 0-3, instructions for image 0 (and a row with no number)
    out = tmp_path / "ds"
    assert main(["--root", str(tmp_path / "release"), "--output", str(out)]) == 0
    warnings = json.loads((out / "stats.json").read_text())["release_warnings"]
    assert warnings == [
        "the LAION caption and instruct files describe different images (3 only in the caption file, 0 only in the "
        "instruct file); one release shares one image set between them, so these files likely come from different "
        "versions"
    ]
    assert f"warning: {warnings[0]}" in capsys.readouterr().err


def test_missing_images_are_listed_in_a_file(tmp_path):
    make_release(tmp_path / "release")
    out = tmp_path / "ds"
    assert main(["--root", str(tmp_path / "release"), "--output", str(out)]) == 0
    listed = [json.loads(line) for line in (out / "missing_images.jsonl").read_text().splitlines()]
    assert listed == [{"where": "ALLaVA-Caption-LAION-4V.json[3]", "image": "allava_laion/images/3.jpeg"}]
    assert "listed in `missing_images.jsonl`" in (out / "README.md").read_text()


def make_chinese_release(root):
    (root / "allava_laion" / "images").mkdir(parents=True)
    (root / "allava_laion" / "images" / "0.jpeg").write_bytes(jpeg((0, 90, 10)))
    rows = [
        ("allava_laion_cap_0", conversation("请详细描述这张图片。", "图片中有一个绿色的方块，位于画面中央。")),
        (
            "allava_laion_cap_1",
            conversation("请详细描述这张图片。", "The picture shows a green square in the middle."),
        ),
        ("allava_laion_cap_2", conversation("Describe the image in detail.", "图片中有一个绿色的方块。")),
        ("allava_laion_cap_3", conversation("请描述图片。", "图中的标牌写着 OPEN，旁边有一个绿色的方块和一棵树。")),
    ]
    entries = [{"id": i, "image": "allava_laion/images/0.jpeg", "conversations": c} for i, c in rows]
    (root / "allava_laion" / "ALLaVA-Caption-LAION-4V_Chinese.json").write_text(json.dumps(entries))


def test_chinese_rows_that_are_not_mostly_chinese_are_dropped_and_counted(tmp_path):
    make_chinese_release(tmp_path / "release")
    out = tmp_path / "ds"
    assert main(["--root", str(tmp_path / "release"), "--output", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["subsets"] == {"caption_laion_zh": 2} and stats["skipped"] == {"failed_translation": 2}
    table = datasets.load_dataset(str(out), "caption_laion_zh", split="train")
    assert table.cast_column("image", datasets.Image(decode=False))["id"] == [
        "allava_laion_cap_0",
        "allava_laion_cap_3",
    ]
    assert table[0]["source"] == "laion"
    card = (out / "README.md").read_text()
    assert "2 rows whose text was not mostly Chinese (failed translations: under 80% of the letters" in card
    assert "- zh" in card.split("---")[1]


def test_language_filter_can_be_turned_off(tmp_path):
    make_chinese_release(tmp_path / "release")
    out = tmp_path / "ds"
    assert main(["--root", str(tmp_path / "release"), "--output", str(out), "--no-language-filter"]) == 0
    assert json.loads((out / "stats.json").read_text())["subsets"] == {"caption_laion_zh": 4}
    assert "the language filter was off" in (out / "README.md").read_text()
