"""The two judged shapes four benchmarks share; each of those modules names only its columns and its prompt.

Reference scoring (LLaVA-W, TouchStone): a text-only judge reads a human description of the image (`context`), the
question, a reference answer and the model's answer, and scores reference and answer 1-10 on its first line.
Pairwise (Vicuna-80, MLLM-Bench): the judge sees the question (and the image, if there is one) with the answer and a
reference, sides swapped per sample, and picks the better reply or a tie; the score is a win rate,
100 * (wins + ties / 2) / judged.
"""

from string import Template

from .common import Sample, mean_percent, require, row_image
from .judge import image_part, model_is_first, pairwise_score, parse_score_pair, parse_verdict


def reference_samples(name: str, rows, id_column: str, context_column: str, reference_column: str) -> list[Sample]:
    """Samples of a reference-scored benchmark: one image, the question, and for the judge the context column
    (what it reads instead of the image) and the reference answer column."""
    samples = []
    for index, row in enumerate(rows):
        where = f"{name} row {index}"
        require(row, (id_column, "question", "image", context_column, reference_column, "category"), where)
        samples.append(
            Sample(
                id=str(row[id_column]),
                prompt=row["question"],
                images=[row_image(rows, index, "image", f"{where} image")],
                target={
                    "question": row["question"],
                    "context": row[context_column],
                    "reference": row[reference_column],
                    "category": row["category"],
                },
            )
        )
    return samples


def reference_messages(sample: Sample, answer: str, template: str) -> list[dict]:
    """The judge prompt: context, question, reference and answer filled into the benchmark's template."""
    target = sample.target
    text = Template(template).substitute(
        context=target["context"], question=target["question"], reference=target["reference"], answer=answer
    )
    return [{"role": "user", "content": text}]


def parse_reference_scores(reply: str, sample: Sample) -> tuple:
    """([reference score, answer score], answer score) from the judge's first line."""
    reference_score, answer_score = parse_score_pair(reply)
    return [reference_score, answer_score], answer_score


def pairwise_messages(sample: Sample, answer: str, template: str) -> list[dict]:
    """The judge prompt with the answer and the reference on this sample's sides; the image first, if any."""
    first, second = (answer, sample.target["reference"])
    if not model_is_first(sample.id):
        first, second = second, first
    text = Template(template).substitute(question=sample.target["question"], answer_a=first, answer_b=second)
    if not sample.images:
        return [{"role": "user", "content": text}]
    return [{"role": "user", "content": [image_part(sample.load_images()[0]), {"type": "text", "text": text}]}]


def parse_pairwise(reply: str, sample: Sample) -> tuple:
    """(verdict, 1 / 0.5 / 0 for a win / tie / loss of the evaluated answer)."""
    verdict = parse_verdict(reply)
    return verdict, pairwise_score(verdict, model_is_first(sample.id))


def win_rate(records: list[dict]) -> dict:
    """The win rate over the judged samples, with wins, ties and losses counted."""
    scored = [r["score"] for r in records if r["score"] is not None]
    details = {"wins": scored.count(1.0), "ties": scored.count(0.5), "losses": scored.count(0.0)}
    return {
        "value": mean_percent(scored) if scored else None,
        "details": details,
        "per_sample": [r["score"] for r in records],
    }
