"""GQA testdev-balanced: compositional questions about real images, short answers, exact match.

Scorer followed: haotian-liu/LLaVA scripts/convert_gqa_for_eval.py (the answer, already stripped of surrounding
white space by llava/eval/model_vqa_loader.py, loses its trailing periods and is lower-cased) and then GQA's own
eval.py accuracy, `prediction == gold`. Nothing else is normalised: no articles dropped, no number words mapped, no
other punctuation removed ("yes ." and "Yes!" are wrong for "yes").

Rows (lmms-lab/GQA, config `testdev_balanced_instructions`, split `testdev`): `id`, `imageId`, `question`,
`answer` (plus fullAnswer, types, semantic ... unused). Images live in config `testdev_balanced_images`
(split `testdev`): `id`, `image`; rows are joined on `imageId`. For a local copy, put the two configs in
sub-folders named after them.
"""

from .benchmark import Benchmark
from .common import SHORT_ANSWER, Sample, require, row_image, rule_aggregate


DATASET_CONFIG = "testdev_balanced_instructions"
IMAGES_CONFIG = "testdev_balanced_images"
SPLIT = "testdev"
SCORER = "haotian-liu/LLaVA scripts/convert_gqa_for_eval.py + GQA eval.py (exact match)"


def load_rows(open_split, limit):
    """Questions (first `limit`) with their image attached from the images config."""
    questions = open_split(DATASET_CONFIG, SPLIT)
    if limit is not None:
        questions = questions.select(range(min(limit, len(questions))))
    images = open_split(IMAGES_CONFIG, SPLIT)
    position = {image_id: index for index, image_id in enumerate(images["id"])}
    needed = sorted({position[image_id] for image_id in questions["imageId"] if image_id in position})
    by_id = {row["id"]: row["image"] for row in images.select(needed)}
    missing = [image_id for image_id in questions["imageId"] if image_id not in by_id]
    if missing:
        raise ValueError(
            f"gqa: {len(missing)} questions name images absent from {IMAGES_CONFIG}, e.g. {missing[0]!r}."
        )
    return [{**row, "image": by_id[row["imageId"]]} for row in questions]


def make_samples(rows) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"gqa row {index}"
        require(row, ("id", "question", "answer", "image"), where)
        samples.append(
            Sample(
                id=str(row["id"]),
                prompt=f"{row['question']}\n{SHORT_ANSWER}",
                images=[row_image(rows, index, "image", f"{where} image")],
                target={"answer": row["answer"]},
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    """The prediction as the converter writes it: stripped, trailing periods removed, lower-cased."""
    return raw_answer.strip().rstrip(".").lower()


aggregate = rule_aggregate(parse_answer, SCORER)


BENCHMARK = Benchmark(
    name="gqa",
    paper_column="GQA",
    dataset_id="lmms-lab/GQA",
    dataset_config=DATASET_CONFIG,
    split=SPLIT,
    prompt_variants={"short_answer": f"question + '\\n{SHORT_ANSWER}' (LLaVA-1.5)"},
    default_variant="short_answer",
    max_new_tokens=16,
    metric="exact_match",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="rule",
    parse_answer=parse_answer,
    load_rows=load_rows,
)
