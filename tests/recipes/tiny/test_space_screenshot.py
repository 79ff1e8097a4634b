"""recipes/tiny/space_screenshot.py: the app serves a saved folder, headless Chromium asks about an image and the
page is saved once the answer has streamed in; a folder or image it cannot use is one error line."""

import shutil

import pytest
from PIL import Image

from recipes.tiny.models import build_tiny_model_and_processor
from recipes.tiny.space_screenshot import main
from toolkit.cli import run


@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="no `chromium` on PATH: install the Debian package (apt-get install -y chromium)",
)
def test_the_page_is_saved_with_the_streamed_answer(tmp_path, capsys):
    model, processor = build_tiny_model_and_processor("phi", seed=0)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    shot = tmp_path / "docs" / "shot.png"
    main(["--model", str(tmp_path / "model"), "--question", "What colour are the shapes?", "--output", str(shot)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Q: What colour are the shapes?" and lines[1].startswith("A: ") and len(lines[1]) > 3
    assert lines[-1] == f"saved {shot}"
    image = Image.open(shot)
    assert image.size == (1100, 900) and image.convert("L").getextrema()[0] < 100  # text drawn
    assert [path.name for path in shot.parent.iterdir()] == ["shot.png"]  # no browser profile left beside it


def test_a_missing_model_or_image_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = [
        (["--model", str(tmp_path / "nope")], f"--model: {tmp_path / 'nope'}: no such folder"),
        (["--model", str(tmp_path / "empty")], f"--model: {tmp_path / 'empty'}: no config.json"),
        (["--model", str(tmp_path), "--image", str(tmp_path / "no.png")], f"--image: {tmp_path / 'no.png'}: no such"),
    ]
    (tmp_path / "config.json").write_text("{}")
    for argv, message in cases:
        assert run(main, argv + ["--output", str(tmp_path / "shot.png")]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: {message}") and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "shot.png").exists()
