"""ScienceQA-IMG test: science multiple choice with an image; accuracy.

Rows (lmms-lab/ScienceQA, config `ScienceQA-IMG`, split `test`): `question`, `choices` (list of strings),
`answer` (index into choices), `hint` (context, may be empty), `image`, plus task/grade/subject/topic/category/
skill/lecture/solution (unused). The dataset has no id column, so samples are numbered by row.
"""

from .answers import LETTERS, extract_choice, options_block
from .common import LETTER_ANSWER, Sample, load_metric, mean_percent, require, row_image, text_or_empty


NAME = "scienceqa_img"
PAPER_COLUMN = "SQA-img"
DATASET_ID = "lmms-lab/ScienceQA"
DATASET_CONFIG = "ScienceQA-IMG"
SPLIT = "test"
PROMPT_VARIANTS = {
    "context_letter": f"['Context: ' + hint + '\\n'] question + '\\nA. ...' + '\\n{LETTER_ANSWER}' (LLaVA-1.5 eval)"
}
DEFAULT_VARIANT = "context_letter"
MAX_NEW_TOKENS = 16
METRIC = "accuracy"


def make_samples(rows, variant: str) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"scienceqa_img row {index}"
        require(row, ("question", "choices", "answer", "hint", "image"), where)
        options = {LETTERS[i]: str(choice) for i, choice in enumerate(row["choices"])}
        if not 0 <= int(row["answer"]) < len(options):
            raise ValueError(f"{where}: answer index {row['answer']} is outside the {len(options)} choices.")
        hint = text_or_empty(row["hint"])
        context = f"Context: {hint}\n" if hint else ""
        samples.append(
            Sample(
                id=str(index),
                prompt=f"{context}{row['question']}\n{options_block(options)}\n{LETTER_ANSWER}",
                images=[row_image(rows, index, "image", f"{where} image")] if row["image"] is not None else [],
                target={"answer": LETTERS[int(row["answer"])], "options": options},
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    return extract_choice(raw_answer, target["options"])


def aggregate(records: list[dict]) -> dict:
    result = load_metric("multiple_choice_accuracy").compute(
        predictions=[r["parsed_answer"] for r in records], references=[r["target"]["answer"] for r in records]
    )
    return {"value": mean_percent(result["per_sample"]), "details": {}, "per_sample": result["per_sample"]}
