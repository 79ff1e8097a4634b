"""recipes/tiny/answer.py, the demo's last step: a saved folder answers about a shapes-world image beside its truth;
a folder or image it cannot use is one error line."""

import random

from PIL import Image

from recipes.tiny import shapes_world
from recipes.tiny.answer import QUESTIONS, main
from recipes.tiny.models import build_tiny_model_and_processor
from toolkit.cli import run


SCENE = shapes_world.random_scene(random.Random(2026))


def test_a_saved_folder_answers_every_question_and_the_truth_is_printed(tmp_path, capsys):
    model, processor = build_tiny_model_and_processor("phi", seed=3)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    shapes_world.save_png(SCENE, tmp_path / "scene.png", 56)
    main(["--model", str(tmp_path / "model"), "--image", str(tmp_path / "scene.png")])
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("  Q: ")] == [f"  Q: {question}" for question in QUESTIONS]
    assert sum(line.startswith("  A: ") for line in lines) == 3
    assert lines[-1] == f"  (truth: {shapes_world.describe(SCENE)})"


def test_a_missing_folder_an_unreadable_or_a_foreign_image_is_one_line(tmp_path, capsys):
    shapes_world.save_png(SCENE, tmp_path / "scene.png", 56)
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    cases = [
        (tmp_path / "model", tmp_path / "scene.png", f"--model: {tmp_path / 'model'}: no such folder"),
        (tmp_path, tmp_path / "missing.png", f"--image: {tmp_path / 'missing.png'}: no such file"),
        (tmp_path, tmp_path / "plain.png", f"--image: {tmp_path / 'plain.png'}: no shapes-world scene in the PNG"),
    ]
    for model, image, message in cases:
        assert run(main, ["--model", str(model), "--image", str(image)]) == 2
        assert capsys.readouterr().err.startswith(f"error: {message}")
