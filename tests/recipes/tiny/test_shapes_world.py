import io
import itertools
import random
import re

import pytest
from PIL import Image

from recipes.tiny import shapes_world as world


ALL_SCENES = [
    world.Scene(colour, shape, count, size, position, layout_seed=seed)
    for seed, (colour, shape, count, size, position) in enumerate(
        itertools.product(world.COLOURS, world.SHAPES, (1, 2, 3), world.SIZES, world.POSITIONS)
    )
]


def test_random_scene_is_deterministic_and_round_trips():
    first = [world.random_scene(random.Random(5)) for _ in range(3)]
    assert first == [world.random_scene(random.Random(5)) for _ in range(3)]
    scene = first[0]
    assert world.Scene.from_dict(scene.to_dict()) == scene
    with pytest.raises(ValueError):
        world.Scene("pink", "circle", 1, "small", "left")
    with pytest.raises(ValueError):
        world.Scene("red", "circle", 4, "small", "left")


def test_png_metadata_round_trip(tmp_path):
    scene = world.random_scene(random.Random(1))
    path = tmp_path / "s.png"
    world.save_png(scene, path, size=56)
    image = Image.open(path)
    assert image.size == (56, 56) and image.mode == "RGB"
    assert world.scene_from_image(image) == scene
    assert world.scene_from_image(path.read_bytes()) == scene
    assert world.png_bytes(scene) == world.png_bytes(scene)  # rendering is a pure function of the scene
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")  # a re-encoded copy loses the scene
    assert world.scene_from_image(buffer.getvalue()) is None
    assert world.scene_from_image(b"not an image") is None


def test_photo_like_jpegs_carry_their_scene_in_the_comment(tmp_path):
    """JPEG has no tEXt chunk: the scene rides in its comment segment, so the offline teacher can read photo-sized
    JPEGs too; the pixels alone carry no scene."""
    (path,) = world.write_scenes(tmp_path, 1, seed=3, size=200, grain=40.0)
    scene = world.random_scene(random.Random(3))
    image = Image.open(path)
    assert path.suffix == ".jpeg" and image.format == "JPEG" and image.size == (200, 200)
    assert world.scene_from_image(image) == scene and world.scene_from_image(path.read_bytes()) == scene
    pixels = Image.new("RGB", image.size)
    pixels.paste(image)
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=85)
    assert world.scene_from_image(buffer.getvalue()) is None


def test_shapes_are_drawn_in_their_third_in_their_colour():
    for scene in ALL_SCENES[::7]:
        pixels = world.render(scene, 112).load()
        target = world.COLOURS[scene.colour]
        columns = [0, 0, 0]
        for x in range(112):
            for y in range(112):
                if sum(abs(a - b) for a, b in zip(pixels[x, y], target)) < 60:
                    columns[min(2, x * 3 // 112)] += 1
        assert columns.index(max(columns)) == world.POSITIONS.index(scene.position), scene
        assert sum(columns) - max(columns) == 0, scene


def test_describe_and_facts_name_every_fact():
    for scene in ALL_SCENES:
        text = world.describe(scene)
        facts = world.scene_facts(scene)
        assert set(facts) == {"colour", "shape", "count", "position", "size"}
        for qtype, word in facts.items():
            assert world.match_keyword(text, qtype) == word, (text, qtype)


def test_ask_answers_contain_exactly_the_right_keyword():
    for scene in ALL_SCENES:
        for qtype in world.QUESTION_TYPES:
            question, answer = world.ask(scene, qtype)
            keyword = world.answer_keyword(scene, qtype)
            assert keyword in world.CHOICES[qtype]
            assert world.match_keyword(answer, qtype) == keyword
            assert len(re.findall(rf"\b{keyword}\b", answer.lower())) == 1
            assert world.question_type(question) == qtype
    with pytest.raises(ValueError):
        world.ask(ALL_SCENES[0], "size of the universe")


def test_match_keyword_needs_exactly_one():
    assert world.match_keyword("They are red and blue.", "colour") is None
    assert world.match_keyword("Nothing here.", "colour") is None
    assert world.match_keyword("Three crosses.", "shape") == "cross"
    assert world.match_keyword("someone alone", "count") is None


def test_text_instructions_have_checkable_answers():
    rng = random.Random(0)
    for _ in range(200):
        instruction, answer = world.text_instruction(rng)
        assert world.solve_text_instruction(instruction) == answer
    assert world.solve_text_instruction("Write a poem about autumn.") is None
    assert world.solve_text_instruction("What is 3 plus 4?") == "3 plus 4 is 7."


def test_write_scenes_and_cli(tmp_path, capsys):
    train = world.write_scenes(tmp_path / "train", 5, seed=1, size=56)
    assert len(train) == 5 and all(p.exists() for p in train)
    world.main(["--output", str(tmp_path / "heldout"), "--num", "5", "--seed", "2", "--size", "56"])
    assert "wrote 5 scenes" in capsys.readouterr().out
    held = sorted((tmp_path / "heldout").glob("*.png"))
    assert {p.name for p in held}.isdisjoint(p.name for p in train)
    assert [world.scene_from_image(p.read_bytes()) for p in held] != [
        world.scene_from_image(p.read_bytes()) for p in train
    ]


def test_dataset_rows_grow_answers_to_at_least_min_words():
    provenance = {"teacher_model": None, "prompt_version": None, "prompt_hash": None, "origin": "bench"}
    rows = world.dataset_rows("detailed", 40, 1, image_size=28, max_words=150, min_words=120, **provenance)
    lengths = [len(row["conversations"][1]["value"].split()) for row in rows]
    assert min(lengths) >= 120 and max(lengths) <= 150 + max(len(filler.split()) for filler in world.FILLER)


def test_dataset_rows_say_what_their_images_show():
    """The one builder of ready-made rows (tests, benches): every answer is checked against the scene in its PNG."""
    provenance = {"teacher_model": None, "prompt_version": None, "prompt_hash": None, "origin": "bench"}
    rows = world.dataset_rows("detailed", 200, 0, text_fraction=0.15, max_words=60, id_prefix="b", **provenance)
    assert [row["id"] for row in rows] == [f"b_{index}" for index in range(200)]
    text_only = [row for row in rows if not row["images"]]
    assert 15 <= len(text_only) <= 45  # 15% of 200, give or take sampling
    for row in rows:
        question, answer = (turn["value"] for turn in row["conversations"])
        assert 10 <= len(answer.split()) <= 60 + max(len(filler.split()) for filler in world.FILLER)
        if not row["images"]:
            assert answer.startswith(world.solve_text_instruction(question))
            continue
        scene = world.scene_from_image(row["images"][0]["bytes"])
        question = question.removeprefix("<image>\n")
        assert answer.startswith(f"{world.describe(scene)} {world.ask(scene, world.question_type(question))[1]}")
    captions = world.dataset_rows("caption", 3, 5, image_size=56, **provenance)
    assert [row["id"] for row in captions] == ["caption_shapes_5_0", "caption_shapes_5_1", "caption_shapes_5_2"]
    for row in captions:
        assert row["conversations"][1]["value"] == world.describe(world.scene_from_image(row["images"][0]["bytes"]))
        assert Image.open(io.BytesIO(row["images"][0]["bytes"])).size == (56, 56)
    with pytest.raises(ValueError, match="unknown row kind 'photo'"):
        world.dataset_rows("photo", 1, 0, **provenance)
