"""LLaVA-Bench (In-the-Wild): 60 open questions on 24 images, GPT-4 judged against GPT-4's reference answers.

Rows (lmms-lab/llava-bench-in-the-wild, split `train`): `question_id`, `question`, `image`, `caption` (a human
description the text-only judge reads instead of the image), `gpt_answer` (the reference), `category`
("conv" / "detail" / "complex"), `image_id`. The judge scores reference and answer 1-10; the score is
100 * sum(answer scores) / sum(reference scores), over the samples the judge scored.
"""

from .benchmark import Benchmark, JudgeScoring
from .common import Sample, mean_percent
from .judged import parse_reference_scores, reference_messages, reference_samples


def make_samples(rows) -> list[Sample]:
    return reference_samples("llava_w", rows, "question_id", "caption", "gpt_answer")


def relative(records: list[dict]) -> float | None:
    reference = sum(r["judge"]["parsed"][0] for r in records)
    return 100.0 * sum(r["judge"]["parsed"][1] for r in records) / reference if reference else None


def aggregate(records: list[dict]) -> dict:
    scored = [r for r in records if r["score"] is not None]
    categories = sorted({r["target"]["category"] for r in scored})
    details = {
        "by_category": {c: relative([r for r in scored if r["target"]["category"] == c]) for c in categories},
        "answer_mean": mean_percent([r["score"] for r in scored]) / 100,
    }
    return {"value": relative(scored), "details": details, "per_sample": [r["score"] for r in records]}


BENCHMARK = Benchmark(
    name="llava_w",
    paper_column="LLaVA-W",
    dataset_id="lmms-lab/llava-bench-in-the-wild",
    dataset_config=None,
    split="train",
    prompt_variants={"plain": "the question as given"},
    default_variant="plain",
    max_new_tokens=1024,
    metric="relative_score",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="judged",
    judge=JudgeScoring("llava_w.txt", reference_messages, parse_reference_scores),
)
