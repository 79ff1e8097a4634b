"""MLLM-Bench: open-ended image requests across capability levels, judged pairwise by a vision judge (GPT-4V).

Rows (FreedomIntelligence/MLLM-Bench; the schema below is our assumption, not confirmed): `question_id` (or `id`),
`image`, `question`, `reference` (the answer to compare with, e.g. GPT-4V's), optional `capability`. The judge
sees the image and both replies, sides swapped per sample; score: win rate, 100 * (wins + ties / 2) / judged.
"""

from .benchmark import Benchmark, JudgeScoring
from .common import Sample, require, row_image
from .judged import pairwise_messages, parse_pairwise, win_rate


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
    aggregate=win_rate,
    kind="judged",
    judge=JudgeScoring("mllm_bench.txt", pairwise_messages, parse_pairwise),
    unconfirmed="the row schema (question, image, reference) of the Hub copy",
)
