"""MMVP: 150 CLIP-blind image pairs, one two-option question per image; pair accuracy is the headline.

Rows (columns of MMVP's Questions.csv joined with the images, as in lmms-lab-eval/MMVP, split `train`):
`Index` (1-based; images 2k-1 and 2k form a pair), `Question`, `Options` ("(a) Open (b) Closed"),
`Correct Answer` ("(a)"), `image`. ID not certain: `MMVP/MMVP` publishes an image folder plus Questions.csv rather
than joined rows, so the default is the joined copy (which also fixes two swapped answer pairs, indices 99-100 and
279-280); point --dataset-path at your own join to score against the original labels.

Scorer: MMVP's own evaluation (tsb0601/MMVP, scripts/gpt_grader.py) asks GPT-4 whether each answer is correct and
accepts only a reply that is exactly "yes" or "no" (anything else counts as not correct); with --judge-model that
grading runs (prompts/mmvp_grading.txt, our wording; `gpt_graded`). Without a judge there is no official rule, so the
rule used (ANSWER_RULE, also in results.json) is the option letter read by answers.extract_choice. A pair counts only
when both of its questions are right, as in MMVP.
"""

import re
from string import Template

from .answers import extract_choice, options_block
from .benchmark import Benchmark, JudgeStep
from .common import LETTER_ANSWER, Sample, load_metric, mean_percent, parse_all, record_paths, require, row_image
from .fallback import judge_verdict


SCORER = "MMVP pair accuracy; answers read by rule (MMVP's own grader asks GPT-4); see ANSWER_RULE"
ANSWER_RULE = "option letter by answers.extract_choice: bare/leading letter, 'answer is X', one '(X)', option text"
_YES_NO_REPLY = re.compile(r"^(yes|no)$", re.IGNORECASE)  # gpt_grader.py's check of the judge's reply
_OPTION = re.compile(r"\(([a-z])\)\s*(.*?)\s*(?=\([a-z]\)|$)", re.IGNORECASE | re.DOTALL)


def parse_options(text: str, where: str) -> dict[str, str]:
    """'(a) Open (b) Closed' -> {'A': 'Open', 'B': 'Closed'}."""
    options = {letter.upper(): option.strip() for letter, option in _OPTION.findall(text)}
    if len(options) < 2:
        raise ValueError(f"{where}: cannot read options from {text!r} (expected '(a) ... (b) ...').")
    return options


def make_samples(rows) -> list[Sample]:
    samples = []
    for position, row in enumerate(rows):
        where = f"mmvp row {position}"
        require(row, ("Index", "Question", "Options", "Correct Answer", "image"), where)
        options = parse_options(row["Options"], f"{where} Options")
        answer = re.sub(r"[()\s]", "", row["Correct Answer"]).upper()
        if answer not in options:
            raise ValueError(f"{where}: Correct Answer {row['Correct Answer']!r} is not one of the options.")
        index = int(row["Index"])
        samples.append(
            Sample(
                id=str(index),
                prompt=f"{row['Question']}\n{options_block(options)}\n{LETTER_ANSWER}",
                images=[row_image(rows, position, "image", f"{where} image")],
                target={
                    "answer": answer,
                    "options": options,
                    "pair": (index - 1) // 2,
                    "question_text": row["Question"],
                },
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    return extract_choice(raw_answer, target["options"])


def needs_judge(target: dict, raw_answer: str) -> bool:
    return True  # MMVP's grader asks GPT-4 about every answer


def judge_step_messages(target: dict, raw_answer: str, template: str) -> list[dict]:
    options = " ".join(f"({letter.lower()}) {text}" for letter, text in target["options"].items())
    correct = f"({target['answer'].lower()}) {target['options'][target['answer']]}"
    text = Template(template).substitute(
        question=target.get("question_text", ""), options=options, correct=correct, answer=raw_answer
    )
    return [{"role": "user", "content": text}]


def parse_judge_step(reply: str, target: dict) -> tuple[str, None]:
    match = _YES_NO_REPLY.match(reply)
    return (match.group(1).lower() if match else "undetermined"), None


def _graded(record: dict, parsed: str) -> tuple[str, str]:
    """(letter scored, path): the gold letter when the judge said yes, "" otherwise; the rule's letter without one."""
    if "judge" not in record:
        return parsed, "rule"
    verdict = judge_verdict(record)
    if verdict is None:
        return "", "gpt_grading_failed"
    return (record["target"]["answer"] if verdict == "yes" else ""), "gpt_graded"


def aggregate(records: list[dict]) -> dict:
    graded = [_graded(record, parsed) for record, parsed in zip(records, parse_all(parse_answer, records))]
    result = load_metric("multiple_choice_accuracy").compute(
        predictions=[letter for letter, _ in graded],
        references=[r["target"]["answer"] for r in records],
        groups=[str(r["target"]["pair"]) for r in records],
    )
    details = {
        "question_accuracy": mean_percent(result["per_sample"]),
        "num_pairs": result["num_groups"],
        "scorer": SCORER,
        "answer_rule": ANSWER_RULE,
        "scoring_paths": record_paths(records, [path for _, path in graded]),
    }
    return {"value": 100 * result["group_accuracy"], "details": details, "per_sample": result["per_sample"]}


BENCHMARK = Benchmark(
    name="mmvp",
    paper_column="MMVP",
    dataset_id="lmms-lab-eval/MMVP",  # unconfirmed as the paper's source; see the module docstring
    dataset_config=None,
    split="train",
    prompt_variants={"letter": f"question + '\\nA. ...\\nB. ...' + '\\n{LETTER_ANSWER}'"},
    default_variant="letter",
    max_new_tokens=16,
    metric="pair_accuracy",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="rule",
    parse_answer=parse_answer,
    judge_step=JudgeStep("mmvp_grading.txt", needs_judge, judge_step_messages, parse_judge_step),
)
