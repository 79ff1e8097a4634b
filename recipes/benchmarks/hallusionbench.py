"""HallusionBench (image split): yes/no questions on original and edited figures; rule-scored.

Rows (lmms-lab/HallusionBench, split `image`): `category` ("VD" visual dependent / "VS" visual supplement),
`subcategory`, `set_id`, `figure_id`, `question_id`, `question`, `gt_answer` ("1" yes / "0" no),
`gt_answer_details`, `visual_input`, `filename`, `image` (None for questions asked without a figure).
We read yes/no from the answer by rule (the official scorer asks GPT-4 to read it) and report all-question accuracy
(aAcc) as the headline with figure accuracy (fAcc) and question-pair accuracy (qAcc) in details. Which of the three
the paper's column reports is not confirmed.
"""

from .answers import extract_yes_no
from .common import Sample, load_metric, mean_percent, require, row_image


NAME = "hallusionbench"
PAPER_COLUMN = "HallB"
DATASET_ID = "lmms-lab/HallusionBench"
DATASET_CONFIG = None
SPLIT = "image"
PROMPT_VARIANTS = {"plain": "the question as given", "yes_no": "question + '\\nAnswer yes or no.'"}
DEFAULT_VARIANT = "plain"
MAX_NEW_TOKENS = 64
METRIC = "aAcc"


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
                    "figure": f"{key}_{row['figure_id']}",
                    "question": f"{key}_{row['question_id']}",
                },
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    return extract_yes_no(raw_answer)


def aggregate(records: list[dict]) -> dict:
    metric = load_metric("yes_no_accuracy")
    predictions = [r["parsed_answer"] for r in records]
    references = [r["target"]["answer"] for r in records]
    by_figure = metric.compute(
        predictions=predictions, references=references, groups=[r["target"]["figure"] for r in records]
    )
    by_question = metric.compute(
        predictions=predictions, references=references, groups=[r["target"]["question"] for r in records]
    )
    details = {
        "fAcc": 100 * by_figure["accuracy_plus"],
        "qAcc": 100 * by_question["accuracy_plus"],
        "f1": 100 * by_figure["f1"],
        "yes_ratio": by_figure["yes_ratio"],
    }
    return {"value": mean_percent(by_figure["per_sample"]), "details": details, "per_sample": by_figure["per_sample"]}
