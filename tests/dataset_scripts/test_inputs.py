import json
import tracemalloc

import pytest

from dataset_scripts.images import SkipImage
from dataset_scripts.inputs import InputError, load_items, select_shard


def test_folder_manifest_and_shards(tmp_path, shapes_dir):
    items = load_items(str(shapes_dir), "caption-qa", "shapes")
    assert len(items) == 24 and all(item.origin.endswith(".png") for item in items)
    assert items[0].read_image(1.0, 10**7) == (shapes_dir / items[0].origin).read_bytes()
    shards = [select_shard(items, 3, index) for index in range(3)]
    ids = [item.item_id for shard in shards for item in shard]
    assert sorted(ids) == sorted(item.item_id for item in items) and len(set(ids)) == len(ids)
    assert len(select_shard(items, 3, 0, limit=2)) == 2
    with pytest.raises(InputError, match="--shard-index"):
        select_shard(items, 3, 3)


def test_a_folder_is_listed_part_by_part_in_little_memory(tmp_path):
    """Inputs keep the order `Path`s sort in ("a/x" before "a-b/x"), and one input holds a few hundred bytes (ALLaVA
    lists ~1.4M): each carried its own reader and `Path`, 0.87 KB, before, and pathlib's interned names more."""
    names = [f"{folder}/{n:05d}.jpg" for folder in ("a-b", "a", "a b") for n in range(1000)]
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    tracemalloc.start()
    try:
        items = load_items(str(tmp_path), "caption-qa", "laion")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = [path.relative_to(tmp_path).as_posix() for path in sorted(tmp_path / name for name in names)]
    assert [item.origin for item in items] == expected and expected[0].startswith("a/")
    assert held / len(items) < 400
    assert items[0].read_image(1.0, 10) == b"" and len({id(item.images) for item in items}) == 1


def test_a_folder_lists_image_files_as_rglob_would(tmp_path):
    """Image suffixes in any case, hidden folders included, a symlinked file included, a symlinked folder not
    entered, broken links and non-images left out."""
    for name in ("a/x.jpg", "a/b/y.PNG", ".hidden/h.png", "top.webp", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / "link.jpg").symlink_to(tmp_path / "a" / "x.jpg")
    (tmp_path / "linked-folder").symlink_to(tmp_path / "a")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "folder.jpg").mkdir()
    origins = [item.origin for item in load_items(str(tmp_path), "caption-qa", "laion")]
    assert origins == [".hidden/h.png", "a/b/y.PNG", "a/x.jpg", "link.jpg", "top.webp"]


def test_manifests_in_every_format(tmp_path, shapes_dir):
    name = sorted(shapes_dir.glob("*.png"))[0].name
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"image": str(shapes_dir / name), "question": "Where are the shapes?", "caption": "alt"}) + "\n"
    )
    (tmp_path / "m.csv").write_text(f"image,question,source\n{shapes_dir / name},How many shapes are there?,shapes\n")
    (tmp_path / "m.json").write_text(json.dumps([{"url": str(shapes_dir / name), "instruction": "Describe."}]))
    (tmp_path / "m.txt").write_text("What is 2 plus 3?\n\nSpell the word cat backwards.\n")
    jsonl = load_items(str(tmp_path / "m.jsonl"), "vflan", "vflan")[0]
    assert jsonl.question == "Where are the shapes?" and jsonl.original_caption == "alt" and jsonl.source == "vflan"
    assert load_items(str(tmp_path / "m.csv"), "vflan", "vflan")[0].source == "shapes"
    assert load_items(str(tmp_path / "m.json"), "caption-qa", "laion")[0].question is None
    text = load_items(str(tmp_path / "m.txt"), "text", "evol")
    assert [item.question for item in text] == ["What is 2 plus 3?", "Spell the word cat backwards."]
    evol = tmp_path / "evol.jsonl"
    evol.write_text(json.dumps({"idx": 1, "conversations": [{"from": "human", "value": "Hi?"}]}) + "\n")
    assert load_items(str(evol), "text", "evol")[0].question == "Hi?"


@pytest.mark.parametrize(
    ("name", "content", "mode", "message"),
    [
        ("bad.jsonl", '{"image": "a.png"}\n{oops\n', "caption-qa", r"bad.jsonl:2: not valid JSON"),
        ("noimage.jsonl", '{"question": "q"}\n', "caption-qa", r"noimage.jsonl:1: no image"),
        ("noq.jsonl", '{"image": "a.png"}\n', "vflan", r"noq.jsonl:1: vflan mode needs an instruction"),
        ("notext.jsonl", '{"image": "a.png"}\n', "text", r"notext.jsonl:1: no instruction"),
        ("empty.jsonl", "\n", "caption-qa", r"no rows"),
        ("empty.csv", "", "caption-qa", r"empty CSV"),
        ("list.json", '{"image": "a.png"}', "caption-qa", r"expected a JSON list"),
        ("source.jsonl", '{"image": "a.png", "source": "LAION 5B"}\n', "caption-qa", r"source.jsonl:1: source name"),
        ("row.jsonl", "[1, 2]\n", "caption-qa", r"row.jsonl:1: expected an object"),
        ("i.txt", "x\n", "caption-qa", r"only fits --mode text"),
        ("data.parquet", "x", "caption-qa", r"unknown input type"),
    ],
)
def test_bad_manifests_say_where_and_why(tmp_path, name, content, mode, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        load_items(str(tmp_path / name), mode, "laion")


def test_missing_input_and_folder_mode_mismatch(tmp_path, shapes_dir):
    with pytest.raises(InputError, match="does not exist"):
        load_items(str(tmp_path / "nope"), "caption-qa", "laion")
    with pytest.raises(InputError, match="needs a manifest"):
        load_items(str(shapes_dir), "vflan", "vflan")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        load_items(str(tmp_path / "empty"), "caption-qa", "laion")


def test_hf_inputs_from_a_local_dataset(tmp_path, shapes_dir):
    import datasets

    paths = sorted(shapes_dir.glob("*.png"))[:3]
    table = datasets.Dataset.from_dict(
        {"image": [str(p) for p in paths], "question": ["Where are the shapes?"] * 3},
        features=datasets.Features({"image": datasets.Image(), "question": datasets.Value("string")}),
    )
    table = table.cast_column("image", datasets.Image(decode=False))
    table = table.map(lambda row: {"image": {"bytes": open(row["image"]["path"], "rb").read(), "path": None}})
    (tmp_path / "hfdata").mkdir()
    table.to_parquet(str(tmp_path / "hfdata" / "train.parquet"))
    items = load_items(f"hf:{tmp_path / 'hfdata'}:train", "vflan", "shapes")
    assert len(items) == 3 and items[0].question == "Where are the shapes?"
    assert items[1].read_image(1.0, 10**7) == paths[1].read_bytes()
    assert items[0].origin == f"hf:{tmp_path / 'hfdata'}:train#0"
    with pytest.raises(InputError, match="expected hf:"):
        load_items("hf:justaname", "caption-qa", "laion")
    with pytest.raises(InputError, match="could not load"):
        load_items(f"hf:{tmp_path / 'nothing'}:train", "caption-qa", "laion")


def test_hf_string_cells_stay_inside_the_dataset(tmp_path, shapes_dir):
    """A dataset's image cell is a URL or a path inside that dataset, never any file on this machine."""
    import datasets

    folder = tmp_path / "hfdata"
    (folder / "images").mkdir(parents=True)
    inside = sorted(shapes_dir.glob("*.png"))[0]
    (folder / "images" / "a.png").write_bytes(inside.read_bytes())
    (tmp_path / "secret.txt").write_text("not for the teacher")
    cells = ["images/a.png", str(tmp_path / "secret.txt"), "../secret.txt", "images/../../secret.txt"]
    datasets.Dataset.from_dict({"image": cells}).to_parquet(str(folder / "train.parquet"))
    items = load_items(f"hf:{folder}:train", "caption-qa", "laion")
    assert items[0].read_image(1.0, 10**7) == inside.read_bytes()
    for item, cell in zip(items[1:], cells[1:]):
        with pytest.raises(SkipImage) as error:
            item.read_image(1.0, 10**7)
        assert error.value.reason == "refused" and f"{cell}: outside the dataset folder" in str(error.value)


def test_hub_dataset_path_cells_are_refused(monkeypatch, tmp_path):
    """A dataset from the Hub has no folder here: its string cells may be URLs, not paths on this machine."""
    import datasets

    (tmp_path / "secret.txt").write_text("not for the teacher")
    table = datasets.Dataset.from_dict({"image": [str(tmp_path / "secret.txt"), "images/a.png"]})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config, split: table)
    for item in load_items("hf:someone/photos:train", "caption-qa", "laion"):
        with pytest.raises(SkipImage) as error:
            item.read_image(1.0, 10**7)
        assert error.value.reason == "refused" and "a file path in a Hub dataset" in str(error.value)
