"""HallusionBench (image split): yes/no questions on original and edited figures; rule-scored.

Rows (lmms-lab/HallusionBench, split `image`): `category` ("VD" visual dependent / "VS" visual supplement),
`subcategory`, `set_id`, `figure_id`, `question_id`, `question`, `gt_answer` ("1" yes / "0" no),
`gt_answer_details`, `visual_input`, `filename`, `image` (None for questions asked without a figure).

Scorer followed: tianyi-lab/HallusionBench utils.py (`assign_correctness`, `get_eval_all`, `get_eval_fig`,
`get_eval_pair_all`) as evaluation.py calls them. Officially GPT-4 grades each answer correct / incorrect / unclear
against `gt_answer_details`; with --judge-model that grading runs (prompts/hallusionbench_grading.txt, our wording;
the reply read as the official code reads it: "incorrect" in it, else "correct" in it, else unclear). Without a
judge, the deterministic stand-in (stated in results.json as `answer_rule`): the answer reads as yes or no when its
first word is "yes"/"no" or exactly one of the two words occurs in it; a reading equal to the gold answer is
correct, a different one incorrect, no reading unclear. The rest is the official arithmetic: an unclear answer to a
VS question asked without a figure (figure_id 0) counts as correct ("the model does not know"); aAcc is per
question, fAcc per figure (every question on it right, VS questions without a figure skipped), qAcc per question
across its figures. aAcc is the headline; which of the three the paper's column reports is not confirmed.
"""

from collections import Counter
from string import Template

from .answers import extract_yes_no
from .benchmark import Benchmark, JudgeStep
from .common import Sample, mean_percent, parse_all, record_paths, require, row_image
from .fallback import judge_verdict


SCORER = "tianyi-lab/HallusionBench utils.py (aAcc, fAcc, qAcc); answers graded by rule instead of GPT-4"
ANSWER_RULE = "yes/no: the first word, else the only one of the two words present; none -> unclear"


def make_samples(rows, variant: str) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"hallusionbench row {index}"
        fields = ("category", "subcategory", "set_id", "figure_id", "question_id", "question", "gt_answer", "image")
        require(row, fields, where)
        key = "_".join(str(row[name]) for name in ("category", "subcategory", "set_id"))
        prompt = row["question"] if variant == "plain" else f"{row['question']}\nAnswer yes or no."
        samples.append(
            Sample(
                id=f"{key}_{row['figure_id']}_{row['question_id']}",
                prompt=prompt,
                images=[row_image(rows, index, "image", f"{where} image")] if row["image"] is not None else [],
                target={
                    "answer": "yes" if str(row["gt_answer"]).strip() == "1" else "no",
                    "question_text": row["question"],
                    "reference": str(row.get("gt_answer_details") or ""),
                    "figure": f"{key}_{row['figure_id']}",
                    "question": f"{key}_{row['question_id']}",
                    # VS questions asked without a figure: unclear counts as correct, and fAcc skips them.
                    "no_figure_vs": row["category"] == "VS" and str(row["figure_id"]) == "0",
                },
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    return extract_yes_no(raw_answer)


def needs_judge(target: dict, raw_answer: str) -> bool:
    return True  # the official protocol grades every answer with GPT-4


def judge_step_messages(target: dict, raw_answer: str, template: str) -> list[dict]:
    reference = target["reference"] or target["answer"]
    text = Template(template).substitute(question=target["question_text"], reference=reference, answer=raw_answer)
    return [{"role": "user", "content": text}]


def parse_judge_step(reply: str, target: dict) -> tuple[str, None]:
    lowered = reply.lower()
    return ("incorrect" if "incorrect" in lowered else "correct" if "correct" in lowered else "unclear"), None


def _grade(record: dict, parsed: str) -> tuple[str, str]:
    """(grade, path): the judge's grade when it ran, else the rule's."""
    verdict = judge_verdict(record)
    if verdict:
        return verdict, "gpt_graded"
    path = "gpt_grading_failed" if "judge" in record else "rule"
    return ("unclear" if not parsed else "correct" if parsed == record["target"]["answer"] else "incorrect"), path


def _all_right(records: list[dict], correct: list[int], key: str) -> float:
    groups: dict[str, list[int]] = {}
    for record, right in zip(records, correct):
        groups.setdefault(record["target"][key], []).append(right)
    return mean_percent([float(all(values)) for values in groups.values()])


def aggregate(records: list[dict]) -> dict:
    graded = [_grade(record, parsed) for record, parsed in zip(records, parse_all(parse_answer, records))]
    grades = [grade for grade, _ in graded]
    correct = [
        int(grade == "correct" or (grade == "unclear" and r["target"]["no_figure_vs"]))
        for grade, r in zip(grades, records)
    ]
    with_figure = [(r, c) for r, c in zip(records, correct) if not r["target"]["no_figure_vs"]]
    details = {
        "fAcc": _all_right([r for r, _ in with_figure], [c for _, c in with_figure], "figure"),
        "qAcc": _all_right(records, correct, "question"),
        "grades": dict(Counter(grades)),
        "scorer": SCORER,
        "answer_rule": ANSWER_RULE,
        "scoring_paths": record_paths(records, [path for _, path in graded]),
    }
    per_sample = [float(c) for c in correct]
    return {"value": mean_percent(per_sample), "details": details, "per_sample": per_sample}


BENCHMARK = Benchmark(
    name="hallusionbench",
    paper_column="HallB",
    dataset_id="lmms-lab/HallusionBench",
    dataset_config=None,
    split="image",
    prompt_variants={"plain": "the question as given", "yes_no": "question + '\\nAnswer yes or no.'"},
    default_variant="plain",
    max_new_tokens=64,
    metric="aAcc",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="rule",
    parse_answer=parse_answer,
    judge_step=JudgeStep("hallusionbench_grading.txt", needs_judge, judge_step_messages, parse_judge_step),
)
