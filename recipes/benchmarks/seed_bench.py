"""SEED-Bench, image questions only (SEED-img): four-option multiple choice, accuracy.

Rows (lmms-lab/SEED-Bench, split `test`): `question_id`, `question`, `choice_a`..`choice_d`, `answer` (letter),
`data_type` ("image" or "video"; video rows are dropped), `question_type_id`, `image` (a list of images; one for
image questions).

Scorer: SEED-Bench's own evaluation ranks the options by likelihood, which a generated answer cannot follow, so
there is no official rule for reading a generated answer. The rule used (ANSWER_RULE, also in results.json): the
option letter read by answers.extract_choice (a bare or leading letter, "the answer is X", a single "(X)", else the
one option whose text the answer holds). LLaVA-1.5's scripts/convert_seed_for_submission.py instead counts only an
answer that is exactly the letter; that stricter figure is in details as `llava_exact_letter_accuracy`.
"""

from .answers import extract_choice, options_block
from .benchmark import Benchmark
from .common import LETTER_ANSWER, Sample, mean_percent, require, row_image, rule_aggregate


DATASET_CONFIG = None
SPLIT = "test"
SCORER = "no official rule for generated answers (SEED-Bench ranks options by likelihood); see ANSWER_RULE"
ANSWER_RULE = "option letter by answers.extract_choice: bare/leading letter, 'answer is X', one '(X)', option text"


def load_rows(open_split, limit):
    rows = open_split(DATASET_CONFIG, SPLIT)
    keep = [index for index, data_type in enumerate(rows["data_type"]) if data_type == "image"]
    return rows.select(keep[:limit] if limit is not None else keep)


def make_samples(rows) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"seed_bench row {index}"
        require(
            row, ("question_id", "question", "choice_a", "choice_b", "choice_c", "choice_d", "answer", "image"), where
        )
        options = {letter: str(row[f"choice_{letter.lower()}"]) for letter in "ABCD"}
        samples.append(
            Sample(
                id=str(row["question_id"]),
                prompt=f"{row['question']}\n{options_block(options)}\n{LETTER_ANSWER}",
                images=[row_image(rows, index, "image", f"{where} image[0]")],
                target={"answer": row["answer"].strip().upper(), "options": options},
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    return extract_choice(raw_answer, target["options"])


def exact_letters(records: list[dict]) -> dict:
    """LLaVA-1.5's stricter reading (only an answer that is exactly the letter counts), and the rule used."""
    exact = [float(r["raw_answer"].strip() == r["target"]["answer"]) for r in records]
    return {"llava_exact_letter_accuracy": mean_percent(exact), "answer_rule": ANSWER_RULE}


aggregate = rule_aggregate(parse_answer, SCORER, metric="multiple_choice_accuracy", details=exact_letters)


BENCHMARK = Benchmark(
    name="seed_bench",
    paper_column="SEED-img",
    dataset_id="lmms-lab/SEED-Bench",
    dataset_config=DATASET_CONFIG,
    split=SPLIT,
    prompt_variants={"letter": f"question + '\\nA. ...\\nD. ...' + '\\n{LETTER_ANSWER}'"},
    default_variant="letter",
    max_new_tokens=16,
    metric="accuracy",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="rule",
    parse_answer=parse_answer,
    load_rows=load_rows,
)
