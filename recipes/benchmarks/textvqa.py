"""TextVQA validation: questions that need reading text in the image; VQA accuracy over 10 human answers.

Rows (lmms-lab/textvqa, split `validation`): `question_id`, `question`, `image`, `answers` (10 strings),
`ocr_tokens` (Rosetta OCR words; used by the `ocr_tokens` variant). Scores move by several points between the two
prompt variants, which is why the variant is stored with the score.

Scorer followed: haotian-liu/LLaVA llava/eval/eval_textvqa.py with llava/eval/m4c_evaluator.py (TextVQA/mmf's
evaluator; ported in metrics/vqa_accuracy), applied to the answer stripped of surrounding white space as
llava/eval/model_vqa_loader.py writes it.
"""

from .benchmark import Benchmark
from .common import SHORT_ANSWER, Sample, require, row_image, rule_aggregate


SCORER = "haotian-liu/LLaVA llava/eval/m4c_evaluator.py (TextVQAAccuracyEvaluator)"


def make_samples(rows, variant: str) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"textvqa row {index}"
        require(row, ("question_id", "question", "image", "answers"), where)
        prompt = row["question"]
        if variant == "ocr_tokens":
            require(row, ("ocr_tokens",), where)
            prompt += f"\nReference OCR token: {', '.join(row['ocr_tokens'] or [])}"
        samples.append(
            Sample(
                id=str(row["question_id"]),
                prompt=f"{prompt}\n{SHORT_ANSWER}",
                images=[row_image(rows, index, "image", f"{where} image")],
                target={"answers": list(row["answers"])},
            )
        )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    return raw_answer.strip()


aggregate = rule_aggregate(parse_answer, SCORER, reference="answers", metric="vqa_accuracy")


BENCHMARK = Benchmark(
    name="textvqa",
    paper_column="TextVQA",
    dataset_id="lmms-lab/textvqa",
    dataset_config=None,
    split="validation",
    prompt_variants={
    "ocr_tokens": f"question + '\\nReference OCR token: w1, w2, ...' + '\\n{SHORT_ANSWER}' (LLaVA-1.5 eval)",
    "no_ocr": f"question + '\\n{SHORT_ANSWER}'",
},
    default_variant="ocr_tokens",
    max_new_tokens=16,
    metric="vqa_accuracy",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="rule",
    parse_answer=parse_answer,
)
