"""MM-Vet: 218 open questions needing combined skills; a GPT-4 judge grades each answer 0-1 against ground truth.

Rows (lmms-lab/MMVet, split `test`): `question_id`, `question`, `image`, `answer` (may use "<AND>" / "<OR>"),
`capability` (skills involved), `image_source`. Score: 100 * mean grade over judged samples. The official grader
uses few-shot examples in its prompt; ours states the rules instead (prompt hash stored with the score).
"""

from string import Template

from .benchmark import Benchmark, JudgeScoring
from .common import Sample, mean_percent, require, row_image
from .judge import parse_unit_score


def make_samples(rows) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"mmvet row {index}"
        require(row, ("question_id", "question", "image", "answer"), where)
        samples.append(
            Sample(
                id=str(row["question_id"]),
                prompt=row["question"],
                images=[row_image(rows, index, "image", f"{where} image")],
                target={"question": row["question"], "reference": row["answer"]},
            )
        )
    return samples


def judge_messages(sample: Sample, answer: str, template: str) -> list[dict]:
    text = Template(template).substitute(
        question=sample.target["question"], reference=sample.target["reference"], answer=answer
    )
    return [{"role": "user", "content": text}]


def parse_judgement(reply: str, sample: Sample) -> tuple:
    score = parse_unit_score(reply)
    return score, score


def aggregate(records: list[dict]) -> dict:
    scored = [r["score"] for r in records if r["score"] is not None]
    return {
        "value": mean_percent(scored) if scored else None,
        "details": {},
        "per_sample": [r["score"] for r in records],
    }


BENCHMARK = Benchmark(
    name="mmvet",
    paper_column="MM-Vet",
    dataset_id="lmms-lab/MMVet",
    dataset_config=None,
    split="test",
    prompt_variants={"plain": "the question as given"},
    default_variant="plain",
    max_new_tokens=512,
    metric="gpt_score",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="judged",
    judge=JudgeScoring("mmvet.txt", judge_messages, parse_judgement),
)
