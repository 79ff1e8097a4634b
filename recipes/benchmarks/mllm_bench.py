"""MLLM-Bench: open-ended image requests across capability levels, judged pairwise by a vision judge (GPT-4V).

Rows (FreedomIntelligence/MLLM-Bench; the schema below is our assumption, not confirmed): `question_id` (or `id`),
`image`, `question`, `reference` (the answer to compare with, e.g. GPT-4V's), optional `capability`. The judge
sees the image and both replies, sides swapped per sample; score: win rate, 100 * (wins + ties / 2) / judged.
"""

from string import Template

from .benchmark import Benchmark, JudgeScoring
from .common import Sample, mean_percent, require, row_image
from .judge import image_part, model_is_first, pairwise_score, parse_verdict


def make_samples(rows) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"mllm_bench row {index}"
        require(row, ("image", "question", "reference"), where)
        sample_id = row.get("question_id", row.get("id"))
        if sample_id is None:
            raise ValueError(f"{where}: needs a `question_id` or `id` field.")
        samples.append(
            Sample(
                id=str(sample_id),
                prompt=row["question"],
                images=[row_image(rows, index, "image", f"{where} image")],
                target={
                    "question": row["question"],
                    "reference": row["reference"],
                    "capability": row.get("capability"),
                },
            )
        )
    return samples


def judge_messages(sample: Sample, answer: str, template: str) -> list[dict]:
    first, second = (answer, sample.target["reference"])
    if not model_is_first(sample.id):
        first, second = second, first
    text = Template(template).substitute(question=sample.target["question"], answer_a=first, answer_b=second)
    return [{"role": "user", "content": [image_part(sample.load_images()[0]), {"type": "text", "text": text}]}]


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
    name="mllm_bench",
    paper_column="MLLM-B",
    dataset_id="FreedomIntelligence/MLLM-Bench",  # unconfirmed id and schema
    dataset_config=None,
    split="test",
    prompt_variants={"plain": "the request as given"},
    default_variant="plain",
    max_new_tokens=1024,
    metric="win_rate",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="judged",
    judge=JudgeScoring("mllm_bench.txt", judge_messages, parse_judgement),
    unconfirmed="the row schema (question, image, reference) of the Hub copy",
)
