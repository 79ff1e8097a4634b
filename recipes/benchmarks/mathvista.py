"""MathVista testmini: visual math reasoning; accuracy with rule-based answer extraction.

Rows (AI4Math/MathVista, split `testmini`): `pid`, `question`, `query` (the question with its hint and choices,
as the authors prompt it), `decoded_image` (PIL; `image` is only a relative path), `choices` (list or None),
`answer` (text of the right choice, or the value), `question_type` ("multi_choice" / "free_form"), `answer_type`
("text" / "integer" / "float" / "list"), `precision` (decimals for floats), `unit`.
The official scorer extracts answers with GPT; we extract by rule (option letter or text, last number), so
numbers are comparable between our runs but can sit below GPT-extracted ones.
"""

from .answers import LETTERS, extract_choice, extract_numbers
from .common import Sample, load_metric, mean_percent, require, row_image


NAME = "mathvista"
PAPER_COLUMN = "MathVista"
DATASET_ID = "AI4Math/MathVista"
DATASET_CONFIG = None
SPLIT = "testmini"
PROMPT_VARIANTS = {"query": "the dataset's own `query` (hint + question + choices)"}
DEFAULT_VARIANT = "query"
MAX_NEW_TOKENS = 256
METRIC = "accuracy"


def make_samples(rows, variant: str) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"mathvista row {index}"
        require(row, ("pid", "query", "decoded_image", "choices", "answer", "question_type", "answer_type"), where)
        target = {"answer": str(row["answer"]), "answer_type": row["answer_type"], "precision": row.get("precision")}
        if row["question_type"] == "multi_choice":
            target["options"] = {LETTERS[i]: str(choice) for i, choice in enumerate(row["choices"] or [])}
        samples.append(
            Sample(
                id=str(row["pid"]),
                prompt=row["query"],
                images=[row_image(rows, index, "decoded_image", f"{where} decoded_image")],
                target=target,
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    """The chosen option's text, or the last number (rounded to the answer's precision), or the text."""
    if "options" in target:
        letter = extract_choice(raw_answer, target["options"])
        return target["options"][letter] if letter else ""
    if target["answer_type"] in ("integer", "float"):
        numbers = extract_numbers(raw_answer)
        if not numbers:
            return ""
        if target["answer_type"] == "integer":
            return str(int(round(numbers[-1])))
        return f"{numbers[-1]:.{int(target['precision'] or 0)}f}"
    return raw_answer.strip()


def _canonical(text: str, answer_type: str) -> str:
    if answer_type == "float" and extract_numbers(text):
        return f"{extract_numbers(text)[0]:g}"
    return " ".join(text.lower().split())


def aggregate(records: list[dict]) -> dict:
    # Option texts and numbers were already made canonical by parse_answer; exact match does the rest.
    result = load_metric("vqa_accuracy").compute(
        predictions=[_canonical(r["parsed_answer"], r["target"]["answer_type"]) for r in records],
        references=[[_canonical(r["target"]["answer"], r["target"]["answer_type"])] for r in records],
        mode="exact",
    )
    return {"value": mean_percent(result["per_sample"]), "details": {}, "per_sample": result["per_sample"]}
