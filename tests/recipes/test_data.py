"""Dataset mixtures: local folders, take_fraction / epochs, the release layout, and errors that name the culprit."""

import re

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Image, List, Value

from dataset_scripts.schema import FEATURES, conversations_to_messages, make_row
from recipes import data, sft
from recipes.collator import AllavaCollator
from recipes.data import TRAINING_FEATURES, load_mixture, local_cache_dir, parse_mixture
from recipes.row_checks import check_rows, drop_or_refuse
from recipes.streaming import stream_mixture
from recipes.tiny.models import build_tiny_processor
from tests.recipes.conftest import PROVENANCE, REPO, mixture_args, quick_args, shapes_rows, write_dataset_folder
from toolkit.cli import InputError


def test_mixture_applies_take_fraction_and_epochs(shapes_dataset):
    mixture = [
        {"path": str(shapes_dataset), "name": "caption_shapes", "take_fraction": 0.5},
        {"path": str(shapes_dataset), "name": "text", "split": "train", "epochs": 2},
    ]
    dataset = load_mixture(mixture, seed=0)
    assert dataset.features == TRAINING_FEATURES
    ids = dataset["id"]
    captions = [i for i in ids if i.startswith("caption")]
    texts = [i for i in ids if i.startswith("text")]
    assert len(captions) == len(set(captions)) == 24  # half of 48, no repeats
    assert len(texts) == 48 and len(set(texts)) == 24  # every text row twice
    row = dataset[ids.index(captions[0])]
    assert set(row["images"][0]) == {"bytes", "path"}  # left encoded for the collator
    assert row["messages"][0]["content"][0]["type"] == "image"
    assert load_mixture(mixture, seed=0)["id"] == ids  # the subset is seeded


def test_local_folders_are_read_fresh(tmp_path):
    """datasets caches a local folder by its name and subset only: a rebuilt or same-named folder must not be stale."""
    first, second = tmp_path / "a" / "dataset", tmp_path / "b" / "dataset"
    write_dataset_folder(first, {"caption_shapes": shapes_rows("caption", 4, seed=1)})
    write_dataset_folder(second, {"caption_shapes": shapes_rows("caption", 6, seed=2)})
    assert len(load_mixture([{"path": str(first), "name": "caption_shapes"}])) == 4
    assert len(load_mixture([{"path": str(second), "name": "caption_shapes"}])) == 6
    write_dataset_folder(first, {"caption_shapes": shapes_rows("caption", 5, seed=3)})  # rebuilt in place
    assert load_mixture([{"path": str(first), "name": "caption_shapes"}])["id"] == [
        row["id"] for row in shapes_rows("caption", 5, seed=3)
    ]


def test_a_folder_is_walked_once_per_mixture(tmp_path, monkeypatch):
    """Hashing a folder stats every file in it: two subsets of one folder must not pay for it twice."""
    folder = write_dataset_folder(
        tmp_path / "dataset",
        {"caption_shapes": shapes_rows("caption", 3, seed=1), "text": shapes_rows("caption", 2, seed=2)},
    )
    walked = []
    monkeypatch.setattr(data, "local_cache_dir", lambda path: walked.append(path) or local_cache_dir(path))
    mixture = load_mixture([{"path": str(folder), "name": "caption_shapes"}, {"path": str(folder), "name": "text"}])
    assert len(mixture) == 5 and walked == [folder]


def parts(messages: list[dict]) -> list:
    """Messages without the `text: None` Arrow adds to image parts."""
    return [(m["role"], [(p["type"], p.get("text")) for p in m["content"]]) for m in messages]


def test_release_layout_and_plain_chat_datasets_are_converted(tmp_path, shapes_dataset):
    source = Dataset.from_parquet(str(shapes_dataset / "caption_shapes" / "train-00000-of-00001.parquet"))
    release = source.select_columns(["id", "image", "conversations"]).select(range(4))
    release.to_parquet(tmp_path / "release" / "train.parquet")
    chats = Dataset.from_dict({"messages": [[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]] * 3})
    chats.to_parquet(tmp_path / "chats" / "train.parquet")
    dataset = load_mixture([{"path": str(tmp_path / "release")}, {"path": str(tmp_path / "chats")}])
    assert len(dataset) == 7
    expected = conversations_to_messages(release[0]["conversations"], True, release[0]["id"])
    assert parts(dataset[0]["messages"]) == parts(expected)
    assert dataset[0]["id"] == release[0]["id"] and len(dataset[0]["images"]) == 1
    assert dataset[4]["images"] == [] and dataset[4]["id"].endswith("#0")  # generated ids name path and index


def test_each_image_is_cached_once(tmp_path, monkeypatch):
    """A built dataset holds each image in `image` and `images`; training's cache must hold it once (reading every
    column and casting the image lists afterwards cached it four times: about 200 GB more for ALLaVA's images)."""
    import io
    import random

    import datasets as hf_datasets
    from PIL import Image as PILImage

    monkeypatch.setattr(hf_datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    rows = shapes_rows("caption", 6, seed=4)
    for n, row in enumerate(rows):  # noise images (~28 KB PNGs), large enough to dominate every other column
        buffer = io.BytesIO()
        PILImage.frombytes("RGB", (96, 96), random.Random(n).randbytes(96 * 96 * 3)).save(buffer, format="PNG")
        row["image"] = {"bytes": buffer.getvalue(), "path": None}
        row["images"] = [row["image"]]
    folder = write_dataset_folder(tmp_path / "built", {"caption_shapes": rows})
    release = tmp_path / "release"  # the ALLaVA release layout, converted by the loader
    Dataset.from_list(rows, features=data.FEATURES).select_columns(["id", "image", "conversations"]).to_parquet(
        release / "train.parquet"
    )
    image_bytes = sum(len(row["image"]["bytes"]) for row in rows)
    for path, name in ((folder, "caption_shapes"), (release, None)):
        dataset = load_mixture([{"path": str(path), "name": name}])
        assert dataset.features == TRAINING_FEATURES and dataset[0]["images"][0]["bytes"] == rows[0]["image"]["bytes"]
        cached = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*.arrow"))
        assert image_bytes < cached < 2.3 * image_bytes  # one copy (the release layout: its read, then converted)
        for arrow in (tmp_path / "cache").rglob("*.arrow"):
            arrow.unlink()


@pytest.mark.parametrize(
    "mixture, message",
    [
        ([{"path": "x", "weight": 2}], r"dataset_mixture\[0\]: unknown key\(s\) \['weight'\]"),
        ([{"name": "text"}], r"dataset_mixture\[0\]: 'path'"),
        ([{"path": "x"}, {"path": "y", "take_fraction": 1.5}], r"dataset_mixture\[1\]: 'take_fraction' must be"),
        # TRL's `fraction` (a share of the whole mixture) is not ours: refused, pointing to `take_fraction`
        (
            [{"path": "x"}, {"path": "y", "fraction": 0.3}],
            r"^dataset_mixture\[1\]: 'fraction' is TRL's share of the "
            r"whole mixture.*write 'take_fraction: 0.3'",
        ),
        ([{"path": "x", "epochs": 0.5}], r"dataset_mixture\[0\]: 'epochs'"),
        ([], r"non-empty list"),
        ({"path": "x"}, r"non-empty list"),
    ],
)
def test_bad_mixture_entries_are_named(mixture, message):
    with pytest.raises(ValueError, match=message):
        parse_mixture(mixture)


def test_missing_dataset_and_wrong_columns_are_named(tmp_path, shapes_dataset):
    with pytest.raises(ValueError, match=r"dataset_mixture\[1\] \('.*no-such-dataset', name=None.*no such folder"):
        load_mixture([{"path": str(shapes_dataset), "name": "text"}, {"path": str(tmp_path / "no-such-dataset")}])
    Dataset.from_dict({"question": ["q"], "answer": ["a"]}).to_parquet(tmp_path / "qa" / "train.parquet")
    with pytest.raises(
        ValueError, match=r"dataset_mixture\[0\].*'conversations'.*found columns \['answer', 'question'\]"
    ):
        load_mixture([{"path": str(tmp_path / "qa")}])
    bad_images = Features({"messages": TRAINING_FEATURES["messages"], "images": Value("string")})
    messages = [[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]]
    Dataset.from_dict({"messages": messages, "images": ["x.png"]}, features=bad_images).to_parquet(
        tmp_path / "odd" / "train.parquet"
    )
    with pytest.raises(ValueError, match=r"dataset_mixture\[0\].*do not match the ALLaVA schema"):
        load_mixture([{"path": str(tmp_path / "odd")}])


@pytest.mark.parametrize("streaming", [False, True])
def test_a_parquet_file_without_rows_is_named(tmp_path, streaming):
    """pyarrow writes a table without rows as one empty row group, which `datasets` cannot read (its batch size
    becomes 0): a traceback when loading, and mid-run when streaming if the file is not the first."""
    rows = shapes_rows("text", 6, seed=4)
    folder = tmp_path / "with-an-empty-file"
    folder.mkdir()
    Dataset.from_list(rows, features=FEATURES).to_parquet(folder / "train-00000-of-00002.parquet")
    pq.write_table(FEATURES.arrow_schema.empty_table(), folder / "train-00001-of-00002.parquet")
    read = (lambda m: list(stream_mixture(m, seed=0, shuffle_buffer=4))) if streaming else load_mixture
    with pytest.raises(InputError, match=r"dataset_mixture\[0\].*train-00001-of-00002.parquet starts with an empty"):
        read([{"path": str(folder)}])
    writer = pq.ParquetWriter(folder / "train-00001-of-00002.parquet", FEATURES.arrow_schema)
    writer.close()  # no row group at all: datasets skips such a file, and so do we
    assert len(read([{"path": str(folder)}])) == 6


def test_broken_release_row_is_named(tmp_path):
    features = Features(
        {
            "id": Value("string"),
            "image": Image(),
            "conversations": List({"from": Value("string"), "value": Value("string")}),
        }
    )
    rows = {
        "id": ["good_1", "broken_2"],
        "image": [None, None],
        "conversations": [
            [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}],
            [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A cat."}],
        ],
    }
    Dataset.from_dict(rows, features=features).to_parquet(tmp_path / "rel" / "train.parquet")
    with pytest.raises(ValueError, match=r"row 'broken_2'.*<image>"):
        load_mixture([{"path": str(tmp_path / "rel")}])


def rows_with_three_bad_ones() -> list[dict]:
    """Four good caption rows, one too long for max_length 256, one with an undecodable image, one whose image has
    no place in its messages."""
    png = shapes_rows("caption", 1, seed=9)[0]["image"]["bytes"]
    rows = shapes_rows("caption", 4, seed=8)
    ask = {"from": "human", "value": "<image>\nDescribe the image."}
    rows.append(make_row("long_1", [ask, {"from": "gpt", "value": "red " * 300}], png, source="shapes", **PROVENANCE))
    rows.append(make_row("broken_2", [ask, {"from": "gpt", "value": "A shape."}], b"not an image", source="shapes",
                         **PROVENANCE))  # fmt: skip
    unplaced = make_row("unplaced_3", [ask, {"from": "gpt", "value": "A shape."}], png, source="shapes", **PROVENANCE)
    question = unplaced["messages"][0]
    question["content"] = [part for part in question["content"] if part["type"] != "image"]
    return [*rows, unplaced]


def test_every_bad_row_is_reported_before_the_model_loads(tmp_path, tiny_backbones, monkeypatch):
    folder = write_dataset_folder(tmp_path / "data", {"caption_shapes": rows_with_three_bad_ones()})
    vision, text = tiny_backbones
    argv = ["--config", str(REPO / "recipes/tiny/pretrain.yaml"), "--vision_model_name_or_path", str(vision)]
    argv += ["--text_model_name_or_path", str(text), *mixture_args(folder, "caption_shapes")]
    argv += quick_args(tmp_path / "out", 2)
    monkeypatch.setattr(sft, "load_model", lambda *args: pytest.fail("the model loaded before the rows were checked"))
    with pytest.raises(InputError) as error:
        sft.train(argv)
    message = str(error.value)
    assert message.startswith("3 training row(s) cannot be used")
    assert re.search(r"row 'long_1': \d+ tokens .* exceed max_length=256", message)
    assert re.search(r"row 'broken_2' images\[0\]: cannot read image", message)
    assert "row 'unplaced_3'" in message
    assert len((tmp_path / "out" / "bad_rows.jsonl").read_text().splitlines()) == 3


def test_drop_bad_rows_drops_and_counts_them_and_checks_are_cached(tmp_path, caplog):
    folder = write_dataset_folder(tmp_path / "data", {"caption_shapes": rows_with_three_bad_ones()})
    dataset = load_mixture([{"path": str(folder), "name": "caption_shapes", "epochs": 2}])
    collator = AllavaCollator(build_tiny_processor("phi"), max_length=256)
    problems = check_rows(dataset, collator)
    assert sum(bool(problem) for problem in problems) == 6  # 3 bad rows, each twice (epochs: 2)
    kept, dropped = drop_or_refuse(dataset, problems, drop=True, report_dir=tmp_path / "out")
    assert (len(kept), dropped) == (8, 6)
    assert sorted(set(kept["id"])) == sorted(f"caption_shapes_8_{index}" for index in range(4))
    assert "dropped 6 of 14 training rows (3 distinct" in caplog.text

    calls = []
    encode = collator.encode
    collator.encode = lambda rows: calls.append(len(rows)) or encode(rows)
    assert check_rows(dataset, collator) == problems and calls == []  # same data, same settings: from the cache
