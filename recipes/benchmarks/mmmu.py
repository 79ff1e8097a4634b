"""MMMU validation: college-level questions, multiple choice and open answers; accuracy.

Rows (lmms-lab/MMMU, split `validation`): `id`, `question` (may reference "<image 1>"), `options` (a Python-list
string, "[]" for open questions), `answer` (a letter, or the open answer / a list-string of accepted answers),
`question_type` ("multiple-choice" / "open"), `image_1` .. `image_7` (unused ones None), `subfield`, `img_type`.
ALLaVA was trained on one image per sample, so only `image_1` is shown (questions with more images are counted in
details). Parsing is deterministic (MMMU's reference scorer guesses a random option when it cannot parse; we score
that as wrong), one reason MMMU numbers differ between harnesses.
"""

import ast
import re

from .answers import LETTERS, extract_choice, extract_numbers, options_block
from .common import LETTER_ANSWER, SHORT_ANSWER, Sample, load_metric, mean_percent, require, row_image


NAME = "mmmu_val"
PAPER_COLUMN = "MMMU-val"
DATASET_ID = "lmms-lab/MMMU"
DATASET_CONFIG = None
SPLIT = "validation"
PROMPT_VARIANTS = {
    "first_image": f"question + options + '\\n{LETTER_ANSWER}' (open: '\\n{SHORT_ANSWER}'); image_1 only"
}
DEFAULT_VARIANT = "first_image"
MAX_NEW_TOKENS = 32
METRIC = "accuracy"
_NUMBER_ONLY = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def _literal_list(text, where: str) -> list:
    if isinstance(text, list):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise ValueError(f"{where}: not a list literal: {text!r}.") from error
    return list(value) if isinstance(value, (list, tuple)) else [value]


def make_samples(rows, variant: str) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"mmmu_val row {index}"
        require(row, ("id", "question", "options", "answer", "question_type", "image_1"), where)
        if row["image_1"] is None:
            raise ValueError(f"{where}: image_1 is empty.")
        extra_images = sum(row.get(f"image_{n}") is not None for n in range(2, 8))
        if row["question_type"] == "multiple-choice":
            options = {
                LETTERS[i]: str(text) for i, text in enumerate(_literal_list(row["options"], f"{where} options"))
            }
            prompt = f"{row['question']}\n{options_block(options)}\n{LETTER_ANSWER}"
            target = {"type": "choice", "answer": str(row["answer"]).strip(), "options": options}
        else:
            answer = str(row["answer"]).strip()
            accepted = _literal_list(answer, f"{where} answer") if answer.startswith("[") else [answer]
            prompt = f"{row['question']}\n{SHORT_ANSWER}"
            target = {"type": "open", "answers": [str(a) for a in accepted]}
        target["extra_images"] = extra_images
        samples.append(
            Sample(
                id=str(row["id"]),
                prompt=prompt,
                images=[row_image(rows, index, "image_1", f"{where} image_1")],
                target=target,
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    if target["type"] == "choice":
        return extract_choice(raw_answer, target["options"])
    return raw_answer.strip()


def open_answer_correct(answer: str, accepted: list[str]) -> bool:
    """Numeric golds match any number in the answer after rounding to 2 decimals; text golds must appear in it."""
    numbers = {round(number, 2) for number in extract_numbers(answer)}
    for gold in (text.strip() for text in accepted):
        if _NUMBER_ONLY.fullmatch(gold):
            if round(extract_numbers(gold)[0], 2) in numbers:
                return True
        elif gold and gold.lower() in answer.lower():
            return True
    return False


def aggregate(records: list[dict]) -> dict:
    choice = [r for r in records if r["target"]["type"] == "choice"]
    choice_scores = load_metric("multiple_choice_accuracy").compute(
        predictions=[r["parsed_answer"] for r in choice], references=[r["target"]["answer"] for r in choice]
    )["per_sample"]
    by_id = dict(zip((r["id"] for r in choice), choice_scores))
    per_sample = [
        by_id[r["id"]]
        if r["target"]["type"] == "choice"
        else float(open_answer_correct(r["parsed_answer"], r["target"]["answers"]))
        for r in records
    ]
    details = {
        "multiple_choice_accuracy": mean_percent(choice_scores),
        "open_accuracy": mean_percent([s for s, r in zip(per_sample, records) if r["target"]["type"] == "open"]),
        "questions_with_unseen_images": sum(r["target"]["extra_images"] > 0 for r in records),
    }
    return {"value": mean_percent(per_sample), "details": details, "per_sample": per_sample}
