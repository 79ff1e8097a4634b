"""The optional GPT step of rule-scored benchmarks (--judge-model): which answers it is asked about, how its reply
is read, that its verdicts are cached per sample, and the path each score took."""

from recipes.benchmarks import hallusionbench, mathvista, mmbench, mmvp
from recipes.benchmarks.fallback import run_judge_step


class ScriptedJudge:
    """In-process stand-in for judge.Judge: replies from a function of the prompt, parsed like Judge.ask."""

    def __init__(self, reply):
        self.reply = reply
        self.prompts: list[str] = []

    def describe(self, prompt_hash: str) -> dict:
        return {"model": "scripted", "temperature": 0.0, "prompt_hash": prompt_hash}

    def ask_many(self, requests):
        verdicts = []
        for messages, parse in requests:
            text = messages[0]["content"]
            self.prompts.append(text)
            reply = self.reply(text)
            try:
                parsed, score = parse(reply)
            except ValueError as failure:
                verdicts.append({"error": str(failure), "reply": reply, "attempts": 1})
                continue
            verdicts.append({"parsed": parsed, "score": score, "reply": reply, "attempts": 1})
        return verdicts


def _records(module, targets, answers):
    return [
        {"id": str(i), "target": t, "raw_answer": a, "parsed_answer": module.parse_answer(t, a)}
        for i, (t, a) in enumerate(zip(targets, answers))
    ]


def test_mmbench_asks_only_about_unmatched_answers_and_caches_the_verdicts(tmp_path):
    target = {"options": {"A": "cat", "B": "dog"}, "answer": "B", "question": 1, "question_text": "Which pet?"}
    answers = ["B", "It looks like a puppy to me, a young one"]
    judge = ScriptedJudge(lambda prompt: "B")
    records = _records(mmbench, [target, target], answers)
    info = run_judge_step(judge, mmbench.MMBENCH_EN.judge_step, "mmbench_en", records, tmp_path)
    assert info["model"] == "scripted" and len(judge.prompts) == 1
    assert "Which pet?" in judge.prompts[0] and "A. cat\nB. dog" in judge.prompts[0] and answers[1] in judge.prompts[0]
    records[0]["id"], records[1]["id"] = "1/shift0", "1/shift1"
    result = mmbench.aggregate(records)
    assert result["per_sample"] == [1.0, 1.0] and result["value"] == 100.0
    assert result["details"]["scoring_paths"] == {"matched": 1, "gpt_matched": 1}
    assert [record["scoring_path"] for record in records] == ["matched", "gpt_matched"]  # shown per sample
    # A rerun asks nothing again; a changed answer is asked about afresh.
    again = _records(mmbench, [target, target], answers)
    run_judge_step(judge, mmbench.MMBENCH_EN.judge_step, "mmbench_en", again, tmp_path)
    assert len(judge.prompts) == 1 and again[1]["judge"]["parsed"] == "B"
    changed = _records(mmbench, [target, target], ["B", "Surely a kitten, no doubt at all here"])
    run_judge_step(ScriptedJudge(lambda prompt: "A"), mmbench.MMBENCH_EN.judge_step, "mmbench_en", changed, tmp_path)
    assert changed[1]["judge"]["parsed"] == "A"


def test_without_a_judge_nothing_is_asked_and_unreadable_answers_take_the_deterministic_path(tmp_path):
    target = {"options": {"A": "cat", "B": "dog"}, "answer": "B", "question": 1, "question_text": "Which pet?"}
    records = _records(mmbench, [target], ["It looks like a puppy to me, a young one"])
    assert run_judge_step(None, mmbench.MMBENCH_EN.judge_step, "mmbench_en", records, tmp_path) is None
    assert "judge" not in records[0]
    assert mmbench.aggregate(records)["details"]["scoring_paths"] == {"needs_gpt_matching": 1}


def test_mmbench_judge_reply_without_a_letter_is_a_failure_scored_as_z(tmp_path):
    target = {"options": {"A": "cat", "B": "dog"}, "answer": "B", "question": 1, "question_text": "Which pet?"}
    records = _records(mmbench, [target], ["It looks like a puppy to me, a young one"])
    judge = ScriptedJudge(lambda prompt: "I cannot say")
    run_judge_step(judge, mmbench.MMBENCH_EN.judge_step, "mmbench_en", records, tmp_path)
    result = mmbench.aggregate([{**records[0], "id": "1/shift0"}])
    assert result["per_sample"] == [0.0] and result["details"]["scoring_paths"] == {"gpt_matching_failed": 1}


def test_mathvista_judge_extracts_only_what_the_rules_cannot(tmp_path):
    target = {
        "answer": "3",
        "question_type": "free_form",
        "answer_type": "integer",
        "precision": None,
        "choices": None,
        "query": "How many cubes?",
    }
    judge = ScriptedJudge(lambda prompt: " 3 ")
    records = _records(mathvista, [target, target], ["3", "There are three cubes, so the answer is 3."])
    run_judge_step(judge, mathvista.BENCHMARK.judge_step, "mathvista", records, tmp_path)
    assert len(judge.prompts) == 1 and "How many cubes?" in judge.prompts[0]
    result = mathvista.aggregate(records)
    assert result["per_sample"] == [1.0, 1.0]
    assert result["details"]["scoring_paths"] == {"rule": 1, "gpt_extracted": 1}


def test_hallusionbench_grades_every_answer_as_the_official_reply_reading(tmp_path):
    def target(figure_id):
        return {
            "answer": "yes",
            "question_text": "Is the left line longer?",
            "reference": "Yes, the left line is longer.",
            "figure": f"VD_illusion_0_{figure_id}",
            "question": "VD_illusion_0_0",
            "no_figure_vs": False,
        }

    replies = iter(["The prediction is incorrect.", "Correct."])
    judge = ScriptedJudge(lambda prompt: next(replies))
    records = _records(hallusionbench, [target("0"), target("1")], ["Yes", "No"])
    run_judge_step(judge, hallusionbench.BENCHMARK.judge_step, "hallusionbench", records, tmp_path)
    assert "Yes, the left line is longer." in judge.prompts[0]
    result = hallusionbench.aggregate(records)
    # "incorrect" is checked first, as utils.evaluate_by_chatgpt does; the rule would have said the opposite.
    assert result["per_sample"] == [0.0, 1.0]
    assert result["details"]["scoring_paths"] == {"gpt_graded": 2}
    assert result["details"]["grades"] == {"incorrect": 1, "correct": 1}


def test_mmvp_grader_accepts_only_a_bare_yes_or_no(tmp_path):
    def target(pair, answer):
        return {"answer": answer, "options": {"A": "Open", "B": "Closed"}, "pair": pair, "question_text": "Open?"}

    replies = iter(["Yes", "yes", "No", "Yes."])
    judge = ScriptedJudge(lambda prompt: next(replies))
    targets = [target(0, "A"), target(0, "B"), target(1, "A"), target(1, "B")]
    records = _records(mmvp, targets, ["A", "B", "B", "B"])
    run_judge_step(judge, mmvp.BENCHMARK.judge_step, "mmvp", records, tmp_path)
    assert "Correct option: (b) Closed" in judge.prompts[1]
    result = mmvp.aggregate(records)
    # "Yes." is not gpt_grader.py's ^(yes|no)$, so that answer is not counted correct.
    assert result["per_sample"] == [1.0, 1.0, 0.0, 0.0]
    assert result["value"] == 50.0 and result["details"]["scoring_paths"] == {"gpt_graded": 4}


def test_every_benchmark_whose_official_protocol_ends_with_gpt_offers_the_step():
    from recipes.eval_benchmarks import BENCHMARKS

    with_step = {name for name, benchmark in BENCHMARKS.items() if benchmark.judge_step is not None}
    assert with_step == {"mmbench_en", "mmbench_cn", "mathvista", "hallusionbench", "mmvp"}
    for name in with_step:
        step = BENCHMARKS[name].judge_step
        assert all(callable(f) for f in (step.applies, step.messages, step.parse))
