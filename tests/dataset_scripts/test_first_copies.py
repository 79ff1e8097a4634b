"""Never pay twice for one picture: near-duplicate images are skipped before any request (first_copies.py)."""

import io
import json
import shutil
import time

import pytest
from PIL import Image, PngImagePlugin

from dataset_scripts import runner
from dataset_scripts.build_dataset import build
from dataset_scripts.first_copies import left_out_skips
from dataset_scripts.images import prepare
from dataset_scripts.inputs import Item, shard_of
from dataset_scripts.limits import Price, estimate_image_tokens, estimate_text_tokens
from dataset_scripts.prompt_set import load_prompt_set
from dataset_scripts.report import REPORT_NAME
from recipes.tiny import shapes_world as world
from tests.dataset_scripts.helpers_synthesis import records


PRICE = ["--price-input", "2.5", "--price-output", "10"]


def reencoded_jpeg(png: bytes) -> bytes:
    """The same picture as another file: smaller, JPEG at quality 70 (its scene metadata is gone)."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").resize((100, 100)).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def solid_png(colour: tuple[int, int, int], scene_of: bytes) -> bytes:
    """A solid-colour picture that the offline teacher still answers (it carries a scene's metadata)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(world.PNG_KEY, Image.open(io.BytesIO(scene_of)).text[world.PNG_KEY])
    buffer = io.BytesIO()
    Image.new("RGB", (112, 112), colour).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def answerable_copy(first, path):
    """The same picture as another file, a smaller PNG that keeps the scene, so the offline teacher answers it."""
    png = Image.open(first)
    info = PngImagePlugin.PngInfo()
    info.add_text(world.PNG_KEY, png.text[world.PNG_KEY])
    png.resize((100, 100)).save(path, pnginfo=info)


@pytest.fixture
def pictures(shapes_dir, tmp_path):
    """The 24 scenes, a JPEG re-encode of the first one (listed last) and a red and a blue solid image."""
    folder = tmp_path / "pictures"
    shutil.copytree(shapes_dir, folder)
    first = sorted(folder.glob("*.png"))[0]
    (folder / "zz-copy.jpg").write_bytes(reencoded_jpeg(first.read_bytes()))
    (folder / "solid-red.png").write_bytes(solid_png((200, 30, 30), first.read_bytes()))
    (folder / "solid-blue.png").write_bytes(solid_png((30, 30, 200), first.read_bytes()))
    return folder, first


def skips(out):
    return records(out, "skipped")


def item_id(origin: str) -> str:
    return Item(origin, "laion").item_id


def expected_saving(jpeg: bytes) -> float:
    """What the budget reserves for the one caption_qa request of the re-encode: estimated prompt tokens (its
    text, its image by the tile rule) plus max_tokens, at the price given."""
    image = prepare(jpeg, 768, 10**8)
    text = load_prompt_set("v1").templates["caption_qa"]
    prompt = estimate_text_tokens(text) + estimate_image_tokens(image.width, image.height)
    return Price(2.5, 10).cost(prompt, 2048)


def test_a_reencoded_picture_is_skipped_before_any_request_and_a_rerun_sends_nothing(
    synth, teacher, pictures, tmp_path, capsys
):
    folder, first = pictures
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--input", str(folder), *PRICE, output=out)
    assert teacher.stats["requests"] == summary["requests"] == 26  # 24 scenes and both solid images
    assert summary["done"] == 26 and summary["skipped"] == {"near_duplicate": 1}
    [skip] = skips(out)
    assert skip["origin"] == "zz-copy.jpg" and skip["reason"] == "near_duplicate"
    assert skip["first_copy"] == item_id(first.name) and first.name in skip["detail"]
    assert {r["origin"] for r in records(out)} >= {"solid-red.png", "solid-blue.png", first.name}
    saving = expected_saving((folder / "zz-copy.jpg").read_bytes())
    assert summary["near_duplicates"] == {
        "inputs": 1, "requests": 1, "cost_usd": round(saving, 6), "cost": f"${saving:.4f}"
    }  # fmt: skip
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["near_duplicates"] == summary["near_duplicates"]

    _, again = synth("--mode", "caption-qa", "--input", str(folder), *PRICE, output=out)
    assert teacher.stats["requests"] == 26 and again["this_run"]["skipped"] == {"near_duplicate": 1}
    assert again["near_duplicates"] == summary["near_duplicates"] and skips(out) == [skip]


def test_without_a_price_the_saving_says_so(synth, pictures, tmp_path):
    folder, _ = pictures
    _, summary = synth("--mode", "caption-qa", "--strategy", "two-call", "--input", str(folder), output=tmp_path / "o")
    assert summary["near_duplicates"] == {"inputs": 1, "requests": 2, "cost_usd": None, "cost": "no price configured"}


def test_input_order_decides_which_copy_is_first_not_which_read_finished_first(
    synth, teacher, pictures, tmp_path, monkeypatch
):
    folder, _ = pictures
    (folder / "zz-copy.jpg").unlink()
    first = sorted(folder.glob("scene-*.png"))[-1]  # the original is read in another batch than its copy
    answerable_copy(first, folder / "aa-copy.png")  # listed before the original
    read = runner.Synthesis._read_image

    def slow_copy(self, item):
        if item.origin == "aa-copy.png":
            time.sleep(0.3)  # every other image is read, and would be decided, before this one
        return read(self, item)

    monkeypatch.setattr(runner.Synthesis, "_read_image", slow_copy)
    out = tmp_path / "out"
    synth("--mode", "caption-qa", "--input", str(folder), "--concurrency", "32", output=out)
    [skip] = skips(out)
    assert skip["origin"] == first.name and skip["first_copy"] == item_id("aa-copy.png")
    assert "aa-copy.png" in {r["origin"] for r in records(out)}


def test_a_first_copy_finished_by_an_earlier_run_is_remembered(synth, teacher, pictures, tmp_path):
    folder, first = pictures
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--input", str(folder), "--limit", "1", output=out)
    assert [r["origin"] for r in records(out)] == [first.name] and records(out)[0]["image_signature"]
    _, summary = synth("--mode", "caption-qa", "--input", str(folder), output=out)
    assert summary["this_run"]["resumed"] == 1 and summary["skipped"] == {"near_duplicate": 1}
    assert skips(out)[0]["first_copy"] == item_id(first.name) and teacher.stats["requests"] == 26


def test_across_shards_a_copy_recorded_by_another_shard_is_not_paid_again(synth, teacher, pictures, tmp_path):
    folder, first = pictures
    first_shard = shard_of(Item(first.name, "laion"), 2)
    name = next(f"copy-{n}.jpg" for n in range(100) if shard_of(Item(f"copy-{n}.jpg", "laion"), 2) != first_shard)
    (folder / "zz-copy.jpg").rename(folder / name)
    out = tmp_path / "out"
    for shard in (first_shard, 1 - first_shard):  # the shard holding the original finishes first
        synth("--mode", "caption-qa", "--input", str(folder), "--num-shards", "2", "--shard-index", str(shard),
              output=out, check=None)  # fmt: skip
    [skip] = skips(out)
    assert skip["origin"] == name and skip["first_copy"] == item_id(first.name)


def test_no_dedup_images_sends_every_picture(synth, teacher, pictures, tmp_path):
    folder, first = pictures
    (folder / "zz-copy.jpg").unlink()
    answerable_copy(first, folder / "zz-copy.png")
    _, summary = synth("--mode", "caption-qa", "--input", str(folder), "--no-dedup-images", output=tmp_path / "o")
    assert teacher.stats["requests"] == 27 and summary["skipped"] == {}
    assert summary["near_duplicates"]["inputs"] == 0


def test_the_same_picture_with_another_instruction_is_its_own_request(synth, pictures, tmp_path):
    folder, first = pictures
    question, other = world.QUESTIONS[world.QUESTION_TYPES[0]], world.QUESTIONS[world.QUESTION_TYPES[1]]
    manifest = folder / "vflan.jsonl"
    answerable_copy(first, folder / "copy.png")
    rows = [(first.name, question), ("copy.png", question), ("copy.png", other)]
    manifest.write_text("".join(json.dumps({"image": path, "question": q}) + "\n" for path, q in rows))
    _, summary = synth("--mode", "vflan", "--input", str(manifest), output=tmp_path / "o")
    assert summary["done"] == 2 and summary["skipped"] == {"near_duplicate": 1}
    [skip] = skips(tmp_path / "o")
    assert skip["origin"] == "copy.png" and skip["first_copy"] == Item(first.name, "vflan", question).item_id


def test_batch_mode_skips_near_duplicates_too(synth, pictures, tmp_path):
    folder, first = pictures
    out = tmp_path / "out"
    batch = ["--api", "batch", "--batch-poll-interval", "0.02", "--model", "gpt-4o"]
    _, summary = synth("--mode", "caption-qa", "--input", str(folder), *batch, output=out)
    assert summary["done"] == 26 and summary["requests"] == 26 and summary["skipped"] == {"near_duplicate": 1}
    assert summary["near_duplicates"]["cost_usd"] > 0  # at the batch price of gpt-4o
    assert skips(out)[0]["first_copy"] == item_id(first.name)


def test_image_hash_distance_out_of_range_is_a_usage_error(synth, pictures, tmp_path, capsys):
    folder, _ = pictures
    code, _ = synth("--mode", "caption-qa", "--input", str(folder), "--image-hash-distance", "40",
                    output=tmp_path / "o", check=2)  # fmt: skip
    assert "--image-hash-distance" in capsys.readouterr().err


def test_the_data_report_shows_the_count_and_the_saving(synth, pictures, tmp_path):
    folder, _ = pictures
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--input", str(folder), *PRICE, output=out)
    stats = build([out], tmp_path / "ds")
    assert stats["skipped"] == {"near_duplicate": 1} and stats["near_duplicates"] == summary["near_duplicates"]
    page = (tmp_path / "ds" / REPORT_NAME).read_text()
    cost = summary["near_duplicates"]["cost"]
    assert f"<b>1 · {cost}</b><span>requests and USD saved: 1 near-duplicate images not sent</span>" in page


def test_left_out_skips_counts_each_inputs_last_skip_unless_finished_or_rejected_since():
    rows = [
        {"item_id": "a", "reason": "unreadable"},
        {"item_id": "a", "reason": "near_duplicate", "saved": {"requests": 2, "cost_usd": 0.5}},  # the last one counts
        {"item_id": "b", "reason": "near_duplicate", "saved": {"requests": 2, "cost_usd": 0.25}},
        {"item_id": "c", "reason": "near_duplicate", "saved": {"requests": 2, "cost_usd": 1.0}},  # finished since
        {"item_id": "d", "reason": "unreadable"},  # rejected since
        {"item_id": "e", "reason": "unreadable", "detail": "x" * 100},
    ]
    counts, saving = left_out_skips(iter(rows), finished={"c"}, rejected={"d": "refusal"})
    assert counts == {"near_duplicate": 2, "unreadable": 1}
    assert (saving.inputs, saving.requests, saving.cost_usd) == (2, 4, 0.75)
