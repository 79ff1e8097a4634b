"""recipes/tiny/loss_curve.py: the legend only uses characters the default font can draw."""

import json

from PIL import ImageDraw, ImageFont

from recipes.tiny.loss_curve import plot_loss_curves


def test_the_legend_has_no_missing_glyph_boxes(tmp_path, monkeypatch):
    for stage, offset in (("stage1", 0), ("stage2", 1)):
        (tmp_path / stage).mkdir()
        history = [{"step": step, "loss": 3.0 - 0.1 * step - offset} for step in range(1, 10)]
        (tmp_path / stage / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    drawn = []
    original = ImageDraw.ImageDraw.text

    def recording(self, xy, text, *args, **kwargs):
        drawn.append(text)
        return original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", recording)
    plot_loss_curves({"stage 1": tmp_path / "stage1", "stage 2": tmp_path / "stage2"}, tmp_path / "curve.png")

    font = ImageFont.load_default()
    missing = bytes(font.getmask("\ue000"))  # a private-use character: the font's missing-glyph box

    def has_glyph(char: str) -> bool:
        return char == " " or bytes(font.getmask(char)) != missing

    assert "stage 1" in "".join(drawn) and "stage 2" in "".join(drawn)
    assert [char for text in drawn for char in text if not has_glyph(char)] == []
