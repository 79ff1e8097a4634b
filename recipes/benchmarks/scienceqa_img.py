"""ScienceQA-IMG test: science multiple choice with an image; accuracy.

Rows (lmms-lab/ScienceQA, config `ScienceQA-IMG`, split `test`): `question`, `choices` (list of strings),
`answer` (index into choices), `hint` (context, may be empty), `image`, plus task/grade/subject/topic/category/
skill/lecture/solution (unused). The dataset has no id column, so samples are numbered by row.

Scorer followed: haotian-liu/LLaVA llava/eval/eval_science_qa.py, on the answer stripped as
llava/eval/model_vqa_science.py writes it. Only its three patterns are read: the answer is exactly a letter A-E,
or starts with a letter followed by ". " ("B. dark red"), or holds exactly one "The answer is X" followed by any
character. Everything else is FAILED there and wrong here: "(B)", "B.", "Answer: B", "b", the option text. A letter
beyond the question's choices is wrong too.
"""

import re

from .answers import LETTERS, options_block
from .benchmark import Benchmark
from .common import LETTER_ANSWER, Sample, require, row_image, rule_aggregate, text_or_empty


SCORER = "haotian-liu/LLaVA llava/eval/eval_science_qa.py"
_OFFICIAL_LETTERS = tuple("ABCDE")  # the script's fixed --options list
# "." matches any character, as in the script: "The answer is B," counts, a bare "The answer is B" does not.
_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def make_samples(rows) -> list[Sample]:
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
    """The letter eval_science_qa.py reads, or "" where it reports FAILED or the letter is not a choice."""
    text = raw_answer.strip()
    if text in _OFFICIAL_LETTERS:
        letter = text
    elif len(text) >= 3 and text[0] in _OFFICIAL_LETTERS and text[1:3] == ". ":
        letter = text[0]
    else:
        found = _ANSWER_IS.findall(text)
        letter = found[0] if len(found) == 1 else ""
    return letter if letter in _OFFICIAL_LETTERS[: len(target["options"])] else ""


aggregate = rule_aggregate(parse_answer, SCORER, metric="multiple_choice_accuracy")


BENCHMARK = Benchmark(
    name="scienceqa_img",
    paper_column="SQA-img",
    dataset_id="lmms-lab/ScienceQA",
    dataset_config="ScienceQA-IMG",
    split="test",
    prompt_variants={
    "context_letter": f"['Context: ' + hint + '\\n'] question + '\\nA. ...' + '\\n{LETTER_ANSWER}' (LLaVA-1.5 eval)"
},
    default_variant="context_letter",
    max_new_tokens=16,
    metric="accuracy",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="rule",
    parse_answer=parse_answer,
)
