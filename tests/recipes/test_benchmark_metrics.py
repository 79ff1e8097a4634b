"""The shipped `evaluate` metric modules, loaded by path, against hand-computed expectations."""

import pytest

from recipes.benchmarks.common import load_metric


@pytest.fixture(scope="module")
def vqa():
    return load_metric("vqa_accuracy")


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("two", "2"),  # number words become digits
        ("Ten.", "10"),
        ("none", "0"),
        ("a dog", "dog"),  # articles dropped
        ("The Red Car", "red car"),  # case
        ("dont", "don't"),  # contractions restored
        ("isnt it", "isn't it"),
        ("yes!", "yes"),  # trailing punctuation
        ("t-shirt", "t shirt"),  # punctuation inside a word splits it
        ("1,000", "1000"),  # thousands separator removed
        ("3.5", "3.5"),  # decimal point kept
        ("coca-cola, inc", "coca cola inc"),  # comma next to a space: removed; hyphen inside a word: a space
    ],
)
def test_vqa_normalisation_makes_answers_equal(vqa, prediction, reference):
    assert vqa.compute(predictions=[prediction], references=[[reference] * 10])["vqa_accuracy"] == 1.0


@pytest.mark.parametrize(("prediction", "reference"), [("well", "we'll"), ("3.5", "35"), ("dog", "dogs")])
def test_vqa_normalisation_keeps_different_answers_apart(vqa, prediction, reference):
    assert vqa.compute(predictions=[prediction], references=[[reference] * 10])["vqa_accuracy"] == 0.0


def test_vqa_accuracy_averages_min_matches_over_three_across_annotator_subsets(vqa):
    # 3 of 10 annotators said "2": leaving out one of them leaves 2 matches (2/3), leaving out another
    # annotator leaves 3 matches (1.0): (3 * 2/3 + 7 * 1) / 10 = 0.9.
    answers = ["2"] * 3 + ["3"] * 7
    result = vqa.compute(predictions=["two", "3", "4"], references=[answers] * 3)
    assert result["per_sample"] == pytest.approx([0.9, 1.0, 0.0])
    # One matching annotator: 9 subsets hold it once (1/3), the one leaving it out holds none: 9/30 = 0.3.
    one = vqa.compute(predictions=["cat"], references=[["cat"] + ["dog"] * 9])["vqa_accuracy"]
    assert one == pytest.approx(0.3)
    assert result["vqa_accuracy"] == pytest.approx((0.9 + 1.0 + 0.0) / 3)


def test_vqa_normaliser_follows_the_m4c_evaluator_not_the_vqa_challenge_rules(vqa):
    # Commas are deleted before the punctuation pass, so the hyphen between numbers becomes a space; "'s" is split.
    assert vqa.compute(predictions=["10,000-20,000"], references=[["10000 20000"] * 10])["vqa_accuracy"] == 1.0
    assert vqa.compute(predictions=["John's"], references=[["john"] * 10])["vqa_accuracy"] == 0.0


def test_multiple_choice_group_accuracy_needs_every_item_of_a_group_right():
    metric = load_metric("multiple_choice_accuracy")
    result = metric.compute(
        predictions=["A", "c", "", "B", "D"],
        references=["A", "C", "B", "B", "A"],
        groups=["q1", "q1", "q2", "q3", "q3"],
    )
    assert result["per_sample"] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["group_accuracy"] == pytest.approx(1 / 3)
    assert result["num_groups"] == 3
    with pytest.raises(ValueError, match="groups"):
        metric.compute(predictions=["A"], references=["A"], groups=["a", "b"])


def test_yes_no_accuracy_f1_and_accuracy_plus():
    metric = load_metric("yes_no_accuracy")
    result = metric.compute(
        predictions=["yes", "no", "yes", "yes", "", "no"],
        references=["yes", "no", "no", "yes", "no", "Yes"],
        groups=["img1", "img1", "img2", "img2", "img3", "img3"],
    )
    assert result["per_sample"] == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert result["accuracy"] == pytest.approx(0.5)
    # yes predicted 3 times, 2 right; 3 gold yes: precision 2/3, recall 2/3.
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["yes_ratio"] == pytest.approx(0.5)
    assert result["accuracy_plus"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"predictions\[0\]"):
        metric.compute(predictions=["maybe"], references=["yes"])
