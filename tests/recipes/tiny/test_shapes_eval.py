import json
import random

from PIL import Image

from recipes.tiny import shapes_eval, shapes_world
from recipes.tiny.loss_curve import plot_loss_curves, read_losses
from recipes.tiny.shapes_eval import score_caption, score_questions


SCENE = shapes_world.Scene(colour="red", shape="circle", count=2, size="large", position="left")


def test_question_scoring_needs_exactly_the_true_keyword():
    answers = ["The shapes are red.", "They are red or blue.", "Blue.", "no idea", "REDS everywhere"]
    assert score_questions(answers, ["red"] * 5, "colour") == 2 / 5


def test_caption_scoring_counts_true_and_invented_facts():
    assert score_caption(shapes_world.describe(SCENE), SCENE) == (5, 0)
    # colour wrong, count missing, shape right (plural), position right, size wrong
    assert score_caption("Some small blue circles on the left.", SCENE) == (2, 2)
    assert score_caption("", SCENE) == (0, 0)


def test_every_generated_scene_is_fully_described():
    rng = random.Random(0)
    for _ in range(50):
        scene = shapes_world.random_scene(rng)
        assert score_caption(shapes_world.describe(scene), scene) == (5, 0)
        for qtype in shapes_world.QUESTION_TYPES:
            _, answer = shapes_world.ask(scene, qtype)
            assert score_questions([answer], [shapes_world.answer_keyword(scene, qtype)], qtype) == 1.0


def test_answers_come_from_the_benchmark_generator_in_fixed_batches(monkeypatch):
    """shapes_eval uses eval_benchmarks.py's batched greedy generator and its batches by position."""
    batches = []

    def fake_generate(model, processor, samples, max_new_tokens):
        batches.append([(len(sample.images), sample.prompt, max_new_tokens) for sample in samples])
        return [f"{sample.prompt}!" for sample in samples]

    monkeypatch.setattr(shapes_eval, "generate", fake_generate)
    processor = type("Processor", (), {"tokenizer": type("Tokenizer", (), {"padding_side": "right"})()})()
    image = Image.new("RGB", (4, 4))
    prompts = [(image, "a"), (None, "b"), (image, "c"), (None, "d"), (image, "e")]
    assert shapes_eval.generate_answers(None, processor, prompts, 2, 7) == ["a!", "b!", "c!", "d!", "e!"]
    assert batches == [[(1, "a", 7), (0, "b", 7)], [(1, "c", 7), (0, "d", 7)], [(1, "e", 7)]]
    assert processor.tokenizer.padding_side == "left"


def _trainer_state(folder, losses):
    folder.mkdir(parents=True)
    history = [{"step": 10 * (i + 1), "loss": loss} for i, loss in enumerate(losses)] + [{"train_runtime": 1.0}]
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))


def test_loss_curve_chains_stages(tmp_path):
    _trainer_state(tmp_path / "stage1", [3.0, 2.0, 1.5])
    _trainer_state(tmp_path / "stage2" / "checkpoint-20", [1.4, 0.9])
    assert read_losses(tmp_path / "stage2") == [(10, 1.4), (20, 0.9)]
    png = plot_loss_curves({"stage 1": tmp_path / "stage1", "stage 2": tmp_path / "stage2"}, tmp_path / "loss.png")
    image = Image.open(png)
    assert image.size == (720, 420)
    colours = {colour for _, colour in image.getcolors(720 * 420)}
    assert (31, 119, 180) in colours and (214, 39, 40) in colours  # both stages drawn
