"""Vicuna-80: 80 text-only questions (writing, role-play, math, coding ...), judged pairwise against a reference.

Rows: `question_id`, `category`, `turns` (list; the first turn is asked) or `text`, and `reference` (the answer to
compare with, e.g. GPT-4's, as a string). FastChat ships the questions as vicuna_bench/question.jsonl and
reference answers separately; no Hub dataset id for the pair is confirmed, so pass --dataset-path
vicuna80=FOLDER (JSON lines or parquet with the columns above). The judge picks the better reply or a tie; the
answer and the reference swap sides per sample. Score: win rate, 100 * (wins + ties / 2) / judged. The paper's
reference model and tie handling are not confirmed.
"""

from string import Template

from .benchmark import Benchmark, JudgeScoring
from .common import Sample, mean_percent, require
from .judge import model_is_first, pairwise_score, parse_verdict


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


def judge_messages(sample: Sample, answer: str, template: str) -> list[dict]:
    first, second = (answer, sample.target["reference"])
    if not model_is_first(sample.id):
        first, second = second, first
    text = Template(template).substitute(question=sample.target["question"], answer_a=first, answer_b=second)
    return [{"role": "user", "content": text}]


def parse_judgement(reply: str, sample: Sample) -> tuple:
    verdict = parse_verdict(reply)
    return verdict, pairwise_score(verdict, model_is_first(sample.id))


def aggregate(records: list[dict]) -> dict:
    scored = [r["score"] for r in records if r["score"] is not None]
    details = {"wins": scored.count(1.0), "ties": scored.count(0.5), "losses": scored.count(0.0)}
    return {
        "value": mean_percent(scored) if scored else None,
        "details": details,
        "per_sample": [r["score"] for r in records],
    }


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
    aggregate=aggregate,
    kind="judged",
    judge=JudgeScoring("vicuna80.txt", judge_messages, parse_judgement),
    unconfirmed="the reference answers and tie handling the paper used; no Hub copy with references",
)
