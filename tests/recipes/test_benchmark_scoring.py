"""Answer extraction and per-benchmark scoring, with hand-computed expectations."""

import pytest

from recipes.benchmarks import hallusionbench, mathvista, mmbench, mme, mmmu, mmvet, mmvp, seed_bench
from recipes.benchmarks.answers import extract_choice, extract_yes_no
from recipes.benchmarks.judge import model_is_first, pairwise_score, parse_score_pair, parse_unit_score, parse_verdict
from recipes.benchmarks.paper import paper_scores
from recipes.benchmarks.report import results_markdown
from tests.recipes.fixture_media import picture


OPTIONS = {"A": "red", "B": "dark red", "C": "blue", "D": "green"}


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B) dark red", "B"),
        ("C. blue, because the sky", "C"),
        ("The answer is D.", "D"),
        ("Answer: (C)", "C"),
        ("I think option A is wrong, the correct answer is C", "C"),
        ("答案是B", "B"),
        ("It is (D) for sure", "D"),
        ("blue", "C"),  # option text
        ("The square is dark red.", "B"),  # the longer option text wins over the "red" inside it
        ("A cat sits on the mat", ""),  # a leading article is not a letter
        ("the answer is a cat", ""),
        ("E", ""),  # not an option
        ("", ""),
        ("red or blue", ""),  # two unrelated options: undecidable
    ],
)
def test_extract_choice(answer, letter):
    assert extract_choice(answer, OPTIONS) == letter


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Yes", "yes"),
        ("no.", "no"),
        ("Yes, there is a train.", "yes"),
        ("There is no train.", "no"),
        ("I am not sure", ""),
        ("no, yes", "no"),
        ("maybe yes maybe no", ""),
    ],
)
def test_extract_yes_no(answer, label):
    assert extract_yes_no(answer) == label


def _records(module, samples, answers):
    return [
        {"id": s.id, "target": s.target, "raw_answer": a, "parsed_answer": module.parse_answer(s.target, a)}
        for s, a in zip(samples, answers)
    ]


def _mme_row(category, image, question, answer):
    return {"question_id": image, "question": question, "answer": answer, "category": category, "image": picture(0)}


def test_mme_score_is_accuracy_plus_accuracy_plus_per_subtask_summed():
    rows = [
        _mme_row("existence", "1.jpg", "Is there a dog?", "Yes"),
        _mme_row("existence", "1.jpg", "Is there a cat?", "No"),
        _mme_row("existence", "2.jpg", "Is there a car?", "Yes"),
        _mme_row("existence", "2.jpg", "Is there a bus?", "No"),
        _mme_row("count", "3.jpg", "Are there two cups?", "Yes"),
        _mme_row("count", "3.jpg", "Are there three cups?", "No"),
    ]
    samples = mme.MME_PERCEPTION.samples(rows, "short_answer")
    assert samples[0].prompt.endswith("Answer the question using a single word or phrase.")
    result = mme.aggregate(_records(mme, samples, ["Yes", "No", "Yes", "Yes", "No", "No"]))
    # existence: 3/4 right = 75, one of two images fully right = 50 -> 125; count: 1/2 = 50, 0/1 images -> 50.
    assert result["details"]["subtasks"]["existence"]["score"] == pytest.approx(125.0)
    assert result["details"]["subtasks"]["count"]["score"] == pytest.approx(50.0)
    assert result["value"] == pytest.approx(175.0)
    assert result["per_sample"] == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]


def test_mmvp_pair_accuracy_and_question_accuracy():
    rows = [
        {
            "Index": i + 1,
            "Question": "Open or closed?",
            "Options": "(a) Open (b) Closed",
            "Correct Answer": "(a)" if i % 2 == 0 else "(b)",
            "image": picture(i),
        }
        for i in range(6)
    ]
    samples = mmvp.BENCHMARK.samples(rows, "letter")
    assert samples[0].prompt == (
        "Open or closed?\nA. Open\nB. Closed\nAnswer with the option's letter from the given choices directly."
    )
    # Pair 0 both right, pair 1 one right, pair 2 both right (second by option text).
    result = mmvp.aggregate(_records(mmvp, samples, ["A", "(B)", "A", "A", "The answer is A", "closed"]))
    assert result["details"]["question_accuracy"] == pytest.approx(100 * 5 / 6)
    assert result["value"] == pytest.approx(100 * 2 / 3)


def test_seed_bench_states_its_rule_and_reports_llava_exact_letter_accuracy():
    rows = [
        {
            "question_id": str(i),
            "question": "Which?",
            **{f"choice_{c}": f"option {c}" for c in "abcd"},
            "answer": "B",
            "image": [picture(i)],
        }
        for i in range(2)
    ]
    samples = seed_bench.BENCHMARK.samples(rows, "letter")
    result = seed_bench.aggregate(_records(seed_bench, samples, ["B", "The answer is B."]))
    assert result["value"] == 100.0 and result["details"]["llava_exact_letter_accuracy"] == 50.0
    assert result["details"]["answer_rule"] == seed_bench.ANSWER_RULE


def test_mmvp_rejects_unreadable_options():
    row = {"Index": 1, "Question": "q", "Options": "Open or Closed", "Correct Answer": "(a)", "image": picture(0)}
    with pytest.raises(ValueError, match="mmvp row 0 Options"):
        mmvp.BENCHMARK.samples([row], "letter")


def _mmbench_row(index, options, answer, hint="nan"):
    letters = dict(zip("ABCD", options + [None] * (4 - len(options))))
    return {
        "index": index,
        "question": "Which colour?",
        "hint": hint,
        **letters,
        "answer": answer,
        "category": "colour",
        "image": picture(0),
    }


def test_mmbench_circular_eval_rotates_options_and_needs_every_rotation_right():
    rows = [_mmbench_row(0, ["red", "green", "blue", "yellow"], "B"), _mmbench_row(7, ["cat", "dog"], "A", "A pet.")]
    samples = mmbench.MMBENCH_EN.samples(rows, "letter")
    assert [s.id for s in samples] == ["0/shift0", "0/shift1", "0/shift2", "0/shift3", "7/shift0", "7/shift1"]
    # The right option ("green") moves one letter up with every rotation.
    assert [s.target["answer"] for s in samples] == ["B", "A", "D", "C", "A", "B"]
    assert samples[1].prompt.startswith("Which colour?\nA. green\nB. blue\nC. yellow\nD. red\n")
    assert samples[4].prompt.startswith("A pet.\nWhich colour?\nA. cat\nB. dog\n")
    # Question 0 right in every rotation (by letter or by text); question 7 wrong in its second rotation.
    answers = ["B", "green", "D", "(C)", "A", "A"]
    result = mmbench.aggregate(_records(mmbench, samples, answers))
    assert result["value"] == pytest.approx(50.0)
    assert result["details"]["single_pass_accuracy"] == pytest.approx(100.0)
    assert result["details"]["num_questions"] == 2


def test_mmbench_rejects_an_answer_that_is_not_an_option():
    with pytest.raises(ValueError, match="mmbench_en row 0: answer 'C'"):
        mmbench.MMBENCH_EN.samples([_mmbench_row(0, ["cat", "dog"], "C")], "letter")


def test_hallusionbench_figure_and_question_pair_accuracy():
    def row(set_id, figure_id, question_id, gt):
        return {
            "category": "VD",
            "subcategory": "illusion",
            "set_id": set_id,
            "figure_id": figure_id,
            "question_id": question_id,
            "question": "Same size?",
            "gt_answer": gt,
            "image": picture(0),
        }

    rows = [row("0", "0", "0", "1"), row("0", "1", "0", "0"), row("0", "0", "1", "0"), row("0", "1", "1", "1")]
    samples = hallusionbench.BENCHMARK.samples(rows, "plain")
    result = hallusionbench.aggregate(_records(hallusionbench, samples, ["Yes", "No", "Yes", "Yes"]))
    assert result["value"] == pytest.approx(75.0)  # 3 of 4 questions
    # Figures: figure 0 has questions 0 (right) and 1 (wrong); figure 1 both right -> 1/2.
    assert result["details"]["fAcc"] == pytest.approx(50.0)
    # Question pairs across figures: question 0 right on both, question 1 wrong on figure 0 -> 1/2.
    assert result["details"]["qAcc"] == pytest.approx(50.0)


def test_hallusionbench_vs_questions_without_a_figure_follow_the_official_rules():
    def row(figure_id, gt):
        return {
            "category": "VS",
            "subcategory": "chart",
            "set_id": "3",
            "figure_id": figure_id,
            "question_id": "0",
            "question": "Is it 2020?",
            "gt_answer": gt,
            "image": None if figure_id == "0" else picture(0),
        }

    samples = hallusionbench.BENCHMARK.samples([row("0", "1"), row("1", "0")], "plain")
    # Without a figure an unclear answer counts as correct (utils.assign_correctness), and fAcc skips that question.
    result = hallusionbench.aggregate(_records(hallusionbench, samples, ["I cannot tell", "No"]))
    assert result["per_sample"] == [1.0, 1.0]
    assert result["details"]["fAcc"] == 100.0 and result["details"]["qAcc"] == 100.0
    assert result["details"]["grades"] == {"unclear": 1, "correct": 1}
    wrong_on_figure = hallusionbench.aggregate(_records(hallusionbench, samples, ["Yes", "Yes"]))
    assert wrong_on_figure["details"]["fAcc"] == 0.0  # the one figure counted is the edited one, answered wrong


def test_mmmu_choice_and_open_answers():
    def row(row_id, options, answer, question_type):
        return {
            "id": row_id,
            "question": "<image 1> Q?",
            "options": options,
            "answer": answer,
            "question_type": question_type,
            "image_1": picture(0),
            "image_2": picture(1) if row_id == "o2" else None,
        }

    rows = [
        row("c1", "['1', '2', '3']", "B", "multiple-choice"),
        row("o1", "[]", "12.5", "open"),
        row("o2", "[]", "['Paris', 'paris city']", "open"),
        row("o3", "[]", "1,000", "open"),
    ]
    samples = mmmu.BENCHMARK.samples(rows, "first_image")
    assert samples[0].prompt.endswith(
        "A. 1\nB. 2\nC. 3\nAnswer with the option's letter from the given choices directly."
    )
    assert samples[2].target["answers"] == ["Paris", "paris city"]
    result = mmmu.aggregate(_records(mmmu, samples, ["(B)", "x is about 12.50", "It is paris.", "999"]))
    assert result["per_sample"] == [1.0, 1.0, 1.0, 0.0]
    assert result["details"]["questions_with_unseen_images"] == 1


def test_mathvista_samples_keep_what_the_official_scorer_needs():
    def row(pid, question_type, answer_type, choices, answer, precision=None):
        return {
            "pid": pid,
            "query": "Q?",
            "decoded_image": picture(0),
            "choices": choices,
            "answer": answer,
            "question_type": question_type,
            "answer_type": answer_type,
            "precision": precision,
        }

    rows = [
        row("1", "multi_choice", "text", ["red", "green"], "green"),
        row("2", "free_form", "float", None, "1.2", 1.0),
    ]
    samples = mathvista.BENCHMARK.samples(rows, "query")
    assert samples[0].target["choices"] == ["red", "green"] and samples[1].target["precision"] == 1.0
    # An exact choice is kept; 1.23 rounds to the answer's precision. Free text would need the GPT extractor.
    result = mathvista.aggregate(_records(mathvista, samples, ["green", "1.23"]))
    assert result["per_sample"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="mathvista row 0: a multi_choice question without choices"):
        mathvista.BENCHMARK.samples([row("1", "multi_choice", "text", None, "a")], "query")


def test_judge_reply_parsers():
    assert parse_score_pair("8 6\nbecause") == (8.0, 6.0)
    assert parse_score_pair("\nScores: 7.5, 9") == (7.5, 9.0)
    assert parse_unit_score("0.7") == 0.7
    assert parse_verdict("A is better [[B]] no wait [[A]]") == "A"
    for parse, reply in [
        (parse_score_pair, "eight and six"),
        (parse_score_pair, "11 3"),
        (parse_unit_score, "1.5"),
        (parse_unit_score, "good"),
        (parse_verdict, "A is better"),
    ]:
        with pytest.raises(ValueError):
            parse(reply)


def test_pairwise_positions_balance_and_scores():
    firsts = [model_is_first(str(i)) for i in range(200)]
    assert 70 < sum(firsts) < 130
    assert model_is_first("42") == model_is_first("42")
    assert pairwise_score("A", True) == 1.0 and pairwise_score("B", False) == 1.0
    assert pairwise_score("A", False) == 0.0 and pairwise_score("C", True) == 0.5


def test_results_markdown_names_each_scorer_and_its_paths():
    entry = {
        "metric": "accuracy",
        "value": 50.0,
        "paper": paper_scores("MMMU-val"),
        "num_samples": 2,
        "prompt_variant": "first_image",
        "judge": None,
        "dataset_id": "lmms-lab/MMMU",
        "dataset_revision": None,
        "split": "validation",
        "details": {"scorer": mmmu.SCORER, "scoring_paths": {"choice_parsed": 1, "choice_random_choice": 1}},
    }
    markdown = results_markdown({"model": "m", "benchmarks": {"mmmu_val": entry}})
    assert f"- mmmu_val: {mmmu.SCORER} (choice_parsed 1, choice_random_choice 1)" in markdown
    assert "| **50.0** | 35.3 |" in markdown  # the paper's numbers stay next to ours


def test_paper_table():
    assert paper_scores("MME-P")["ALLaVA-Phi3"] == 1382.3
    assert paper_scores("SEED-img") == {
        "ALLaVA-Phi2": 65.2,
        "ALLaVA-StableLM2": 65.7,
        "ALLaVA-Phi3": 69.0,
        "LLaVA-1.5-7B": 66.1,
        "TinyLLaVA": 70.4,
    }


def test_images_are_decoded_only_when_needed_and_bad_ones_name_the_row():
    rows = [{"question_id": "v1_0", "question": "q", "answer": "a", "image": b"not an image"}]
    sample = mmvet.BENCHMARK.samples(rows, "plain")[0]  # building samples decodes nothing
    with pytest.raises(ValueError, match="mmvet row 0 image: cannot read image"):
        sample.load_images()
    assert sample.messages(with_pixels=False)[0]["content"][0] == {"type": "image"}
