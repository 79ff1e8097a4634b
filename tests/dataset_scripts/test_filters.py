"""Quality filters at build time: near-duplicate images (dHash), answer length, reply script, answer in caption."""

import io
import json
import random
import tracemalloc

import pytest
from PIL import Image

from dataset_scripts.build_dataset import build, main
from dataset_scripts.filters import FilterOptions, QualityFilters, script_share
from dataset_scripts.near_duplicates import NearDuplicateIndex, Signature
from dataset_scripts.shards import OutputDir, read_image
from tests.dataset_scripts.helpers_synthesis import records


def reencoded(data: bytes, size: int, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").resize((size, size)).save(buffer, fmt, quality=70)
    return buffer.getvalue()


def solid(colour, size=64, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, fmt)
    return buffer.getvalue()


def test_near_duplicates_are_found_and_distinct_images_are_not(shapes_dir):
    images = [path.read_bytes() for path in sorted(shapes_dir.glob("*.png"))]
    index = NearDuplicateIndex(4)
    assert [index.first_copy_of(data, f"scene{n}") for n, data in enumerate(images)] == [None] * 24  # distinct scenes
    assert index.first_copy_of(reencoded(images[3], 100), "copy") == "scene3"  # the same picture, smaller, as JPEG
    assert index.first_copy_of(reencoded(images[3], 100), "copy2") == "scene3"  # a copy is never added itself


def test_solid_colour_images_of_different_colours_are_not_near_duplicates():
    """dHash is 0 for every flat image; the colour check tells them apart and still catches a re-encoded copy."""
    index = NearDuplicateIndex(4)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (128, 128, 128), (0, 0, 0), (255, 255, 255)]
    assert [index.first_copy_of(solid(colour), str(colour)) for colour in colours] == [None] * 6
    assert index.first_copy_of(solid((30, 200, 30), 48, "JPEG"), "jpeg") == str((30, 200, 30))
    gradient = Image.linear_gradient("L").resize((64, 64))  # low texture: the same brightness steps in two colours
    tinted = [Image.merge("RGB", (gradient, gradient.point(lambda v: v // 4), gradient.point(lambda v: v // 4)))]
    tinted.append(Image.merge("RGB", (gradient.point(lambda v: v // 4), gradient.point(lambda v: v // 4), gradient)))
    encoded = []
    for image in tinted:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    assert index.first_copy_of(encoded[0], "red ramp") is None and index.first_copy_of(encoded[1], "blue ramp") is None
    assert index.first_copy_of(reencoded(encoded[1], 60), "blue ramp copy") == "blue ramp"


@pytest.mark.parametrize("distance", [0, 4, 31])
def test_banded_lookup_agrees_with_a_full_scan(distance):
    rng = random.Random(distance)
    flat = bytes(48)
    base = [rng.getrandbits(256) for _ in range(50)]
    flips = [rng.randrange(2 * distance + 2) for _ in base]
    probes = [value ^ sum(1 << rng.randrange(256) for _ in range(n)) for value, n in zip(base, flips)]
    index = NearDuplicateIndex(distance)
    kept = {str(n): value for n, value in enumerate(base) if index.first_copy(Signature(value, flat), str(n)) is None}
    for probe in probes:
        close = [name for name, other in kept.items() if (probe ^ other).bit_count() <= distance]
        assert index.match(Signature(probe, flat)) in (close or [None])


def test_a_shared_plain_area_does_not_crowd_one_bucket():
    """dHash bits of a plain area are all 0: 1,000 images plain in their top half (random below) must not all land
    in one bucket, or every lookup scans every image kept (O(n) lookups for flat-backed photos)."""
    rng = random.Random(0)
    index = NearDuplicateIndex(4)
    for n in range(1000):
        index.add(Signature(rng.getrandbits(128), bytes(48)), str(n))  # the top 8 of 16 hash rows are 0
    assert max(len(index.bucket(key)) for key in index.buckets) <= 3  # strips: all 1,000


def test_the_index_holds_rows_not_objects():
    """A run keeps every image it has seen (ALLaVA: ~700,000): a Signature and a list per band took 1.34 KB each."""
    rng = random.Random(1)
    index = NearDuplicateIndex(4)
    tracemalloc.start()
    try:
        for n in range(5000):  # the signature and id made here, as a run parses them from its rows
            index.add(Signature(rng.getrandbits(256), rng.randbytes(48)), f"{n:020x}")
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / 5000 < 800


def record(answer="The red circle sits to the left of the blue square.", description="A red circle and a square."):
    return {"key": "k", "mode": "caption-qa", "description": description, "answer": answer}


def rows_of(filters, rec):
    rows = [("caption_laion", {}), ("instruct_laion", {})]
    return [subset for subset, _ in filters.keep(rec, None, rows)]


def test_row_filters_and_their_counts():
    filters = QualityFilters(FilterOptions())
    assert rows_of(filters, record()) == ["caption_laion", "instruct_laion"]
    assert rows_of(filters, record(answer="Yes.")) == ["caption_laion"]
    assert rows_of(filters, record(answer="x" * 10_001)) == ["caption_laion"]
    assert rows_of(filters, record(answer="Красный круг слева от синего квадрата.")) == ["caption_laion"]
    assert rows_of(filters, record(description="画像には赤い円と青い四角があります。")) == ["instruct_laion"]
    caption = "A red circle. The circle is to the LEFT of the blue square. Nothing else."
    assert rows_of(filters, record(answer="the circle is to the left of  the blue square.", description=caption)) == [
        "caption_laion"
    ]
    assert filters.report()["dropped_rows"] == {
        "answer_too_short": 1,
        "answer_too_long": 1,
        "wrong_language": 2,
        "answer_in_caption": 1,
    }
    off = QualityFilters(FilterOptions(length=False, language=None, answer_in_caption=False))
    assert rows_of(off, record(answer="Красный")) == ["caption_laion", "instruct_laion"]
    assert script_share("Tokyo 東京です", ("CJK", "HIRAGANA", "KATAKANA")) == 4 / 9
    assert script_share("42!", ("LATIN",)) is None


def with_near_duplicate(out):
    """Append a copy of the first record whose image is the same picture re-encoded (another key, another file)."""
    first = records(out)[0]
    folder = OutputDir(out)
    folder.open()
    try:
        image = folder.store_image(reencoded(read_image(out, first), 96, "PNG"))
        folder.append("records", first | {"key": "f" * 32, "item_id": "copy"} | image)
    finally:
        folder.close()


def test_build_drops_near_duplicate_images_and_reports_the_counts(synth, shapes_dir, tmp_path):
    out = tmp_path / "out"
    synth("--mode", "caption-qa", "--input", str(shapes_dir), "--source-name", "shapes", output=out)
    with_near_duplicate(out)
    stats = build([out], tmp_path / "ds")
    assert stats["subsets"] == {"caption_shapes": 24, "instruct_shapes": 24}
    assert stats["filtered"]["dropped_rows"] == {"near_duplicate_image": 2}
    assert stats["filtered"]["settings"]["hash_distance"] == 4
    assert "near_duplicate_image | 2" in (tmp_path / "ds" / "README.md").read_text()
    assert main(["--input", str(out), "--output", str(tmp_path / "ds2"), "--no-dedup-images"]) == 0
    saved = json.loads((tmp_path / "ds2" / "stats.json").read_text())
    assert saved["subsets"] == {"caption_shapes": 25, "instruct_shapes": 25}
    assert saved["filtered"]["dropped_rows"] == {}


def test_unknown_language_is_a_usage_error(synth, shapes_dir, tmp_path, capsys):
    out = tmp_path / "out"
    synth("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "2", output=out)
    assert main(["--input", str(out), "--output", str(tmp_path / "ds"), "--language", "xx"]) == 2
    assert "--language 'xx'" in capsys.readouterr().err


def test_wrong_script_is_the_language_filter_rule():
    from dataset_scripts.filters import wrong_script

    assert wrong_script("The picture shows a square.", "zh")
    assert not wrong_script("图片中有一个绿色的方块。", "zh")
    mixed = "图中写着 OPEN 和一个方块以及一棵树"  # 14 of 18 letters CJK: 78%
    assert wrong_script(mixed, "zh") and not wrong_script(mixed, "zh", min_share=0.75)
    assert not wrong_script("42!", "en") and not wrong_script(None, "en")
