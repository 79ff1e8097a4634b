"""TouchStone: 908 open dialogue questions; a text-only GPT-4 judge reads human image annotations.

Rows (the released TouchStone TSV loaded as a table): `index`, `image` (PIL, or base64 text as in the TSV; a list
for multi-image questions), `question`, `human_annotation`, `gpt4_ha_answer` (GPT-4's reference answer written
from the annotation), `category`, `task_name`. No Hub copy is confirmed: the default id below is a guess; pass
--dataset-path touchstone=FOLDER with a local copy. ALLaVA takes one image, so multi-image questions show the
first. Score: 100 * mean judge score (1-10) of the answer, TouchStone's scale (GPT-4V ~ 800).
"""

from .benchmark import Benchmark, JudgeScoring
from .common import Sample, mean_percent
from .judged import parse_reference_scores, reference_messages, reference_samples


def make_samples(rows) -> list[Sample]:
    return reference_samples("touchstone", rows, "index", "human_annotation", "gpt4_ha_answer")


def aggregate(records: list[dict]) -> dict:
    scored = [r for r in records if r["score"] is not None]
    value = 100 * sum(r["score"] for r in scored) / len(scored) if scored else None
    details = {"reference_score": mean_percent([r["judge"]["parsed"][0] for r in scored])}
    return {"value": value, "details": details, "per_sample": [r["score"] for r in records]}


BENCHMARK = Benchmark(
    name="touchstone",
    paper_column="TouchSt",
    dataset_id="OFA-Sys/TouchStone",  # unconfirmed
    dataset_config=None,
    split="test",
    prompt_variants={"plain": "the question as given; first image only"},
    default_variant="plain",
    max_new_tokens=1024,
    metric="score",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="judged",
    judge=JudgeScoring("touchstone.txt", reference_messages, parse_reference_scores),
    unconfirmed="the Hub id (a guess; the release is a TSV): pass --dataset-path touchstone=FOLDER",
)
