"""MME: 14 yes/no subtasks, two questions per image: two benchmarks, MME_PERCEPTION and MME_COGNITION.

Rows (lmms-lab/MME, split `test`): `question_id` (the image file, shared by its two questions), `question`
(already ends in "Please answer yes or no."), `answer` ("Yes"/"No"), `category`, `image`.
Score per subtask = 100 * (accuracy + accuracy+), where accuracy+ counts images with both questions right;
MME-P sums the 10 perception subtasks (max 2000), MME-C the 4 cognition subtasks (max 800).

Scorer followed: MME's eval_tool/calculation.py (BradyFU/Awesome-Multimodal-Large-Language-Models, branch
Evaluation, tools/eval_tool.zip), applied to the answer stripped as llava/eval/model_vqa_loader.py writes it. The
answer is lower-cased; exactly "yes"/"no" is read as such, otherwise only its first four characters count: "yes" in
them means yes, else "no" in them means no, else the answer is "other" (wrong). So "Not sure", "nope" and even
"know" read as no, "eyes" as yes, and "I think yes" as other.
"""

import functools

from .benchmark import Benchmark
from .common import SHORT_ANSWER, Sample, load_metric, parse_all, require, row_image


SPLIT = "test"
SCORER = "MME eval_tool/calculation.py (acc + acc+ per subtask)"
PERCEPTION = "existence count position color posters celebrity scene landmark artwork OCR".split()
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def load_subset(open_split, limit, categories) -> list[dict]:
    rows = open_split(None, SPLIT)
    keep = [index for index, category in enumerate(rows["category"]) if category in categories]
    return rows.select(keep[:limit] if limit is not None else keep)


def make_samples(rows, variant: str) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"mme row {index}"
        require(row, ("question_id", "question", "answer", "category", "image"), where)
        question = row["question"].strip()
        samples.append(
            Sample(
                id=f"{row['category']}/{row['question_id']}/{question}",
                prompt=f"{question}\n{SHORT_ANSWER}" if variant == "short_answer" else question,
                images=[row_image(rows, index, "image", f"{where} image")],
                target={
                    "answer": row["answer"].strip().lower(),
                    "category": row["category"],
                    "image": row["question_id"],
                },
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    """'yes', 'no', or '' (the calculator's "other") read the way calculation.py reads an answer."""
    answer = raw_answer.strip().lower()
    if answer in ("yes", "no"):
        return answer
    if "yes" in answer[:4]:
        return "yes"
    return "no" if "no" in answer[:4] else ""


def aggregate(records: list[dict]) -> dict:
    metric = load_metric("yes_no_accuracy")
    per_sample = metric.compute(
        predictions=parse_all(parse_answer, records), references=[r["target"]["answer"] for r in records]
    )["per_sample"]
    subtasks = {}
    for category in sorted({r["target"]["category"] for r in records}):
        chosen = [r for r in records if r["target"]["category"] == category]
        result = metric.compute(
            predictions=[r["parsed_answer"] for r in chosen],
            references=[r["target"]["answer"] for r in chosen],
            groups=[r["target"]["image"] for r in chosen],
        )
        subtasks[category] = {
            "score": 100 * (result["accuracy"] + result["accuracy_plus"]),
            "accuracy": 100 * result["accuracy"],
            "accuracy_plus": 100 * result["accuracy_plus"],
        }
    value = sum(entry["score"] for entry in subtasks.values())
    details = {"subtasks": subtasks, "scorer": SCORER, "scoring_paths": {"rule": len(records)}}
    return {"value": value, "details": details, "per_sample": per_sample}


def _part(name: str, paper_column: str, categories) -> Benchmark:
    return Benchmark(
        name=name,
        paper_column=paper_column,
        dataset_id="lmms-lab/MME",
        dataset_config=None,
        split=SPLIT,
        prompt_variants={
            "short_answer": f"question + '\\n{SHORT_ANSWER}' (LLaVA-1.5 eval)",
            "plain": "the question as given (it already asks for yes or no)",
        },
        default_variant="short_answer",
        max_new_tokens=16,
        metric="mme_score",
        make_samples=make_samples,
        aggregate=aggregate,
        kind="rule",
        parse_answer=parse_answer,
        load_rows=functools.partial(load_subset, categories=categories),
    )


MME_PERCEPTION = _part("mme_perception", "MME-P", PERCEPTION)
MME_COGNITION = _part("mme_cognition", "MME-C", COGNITION)
