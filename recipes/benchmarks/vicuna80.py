"""Vicuna-80: 80 text-only questions (writing, role-play, math, coding ...), judged pairwise against a reference.

Rows: `question_id`, `category`, `turns` (list; the first turn is asked) or `text`, and `reference` (the answer to
compare with, e.g. GPT-4's, as a string). FastChat ships the questions as vicuna_bench/question.jsonl and
reference answers separately; no Hub dataset id for the pair is confirmed, so pass --dataset-path
vicuna80=FOLDER (JSON lines or parquet with the columns above). The judge picks the better reply or a tie; the
answer and the reference swap sides per sample. Score: win rate, 100 * (wins + ties / 2) / judged. The paper's
reference model and tie handling are not confirmed.
"""

from .benchmark import Benchmark, JudgeScoring
from .common import Sample, require
from .judged import pairwise_messages, parse_pairwise, win_rate


def make_samples(rows) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"vicuna80 row {index}"
        require(row, ("question_id", "reference"), where)
        if row.get("turns"):
            question = row["turns"][0]
        elif row.get("text"):
            question = row["text"]
        else:
            raise ValueError(f"{where}: needs a non-empty `turns` list or `text`.")
        samples.append(
            Sample(
                id=str(row["question_id"]),
                prompt=question,
                target={"question": question, "reference": row["reference"], "category": row.get("category")},
            )
        )
    return samples


BENCHMARK = Benchmark(
    name="vicuna80",
    paper_column="Vic-80",
    dataset_id=None,
    dataset_config=None,
    split="train",
    prompt_variants={"plain": "the first turn as given, no image"},
    default_variant="plain",
    max_new_tokens=1024,
    metric="win_rate",
    make_samples=make_samples,
    aggregate=win_rate,
    kind="judged",
    judge=JudgeScoring("vicuna80.txt", pairwise_messages, parse_pairwise),
    unconfirmed="the reference answers and tie handling the paper used; no Hub copy with references",
)
