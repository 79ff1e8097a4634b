"""MMMU validation: college-level questions, multiple choice and open answers; accuracy.

Rows (lmms-lab/MMMU, split `validation`): `id`, `question` (may reference "<image 1>"), `options` (a Python-list
string, "[]" for open questions), `answer` (a letter, or the open answer / a list-string of accepted answers),
`question_type` ("multiple-choice" / "open"), `image_1` .. `image_7` (unused ones None), `subfield`, `img_type`.
ALLaVA was trained on one image per sample, so only `image_1` is shown (questions with more images are counted in
details).

Scorer followed: MMMU-Benchmark/MMMU mmmu/utils/eval_utils.py (`parse_multi_choice_response`,
`parse_open_response`, `eval_multi_choice`, `eval_open`), ported rule for rule, quirks included: a bracketed letter
"(B)" beats a bare one, a bare letter must stand between spaces after the answer's outer punctuation is stripped,
option text is only searched in answers longer than five words, several candidates resolve to the one that occurs
last; open answers are read after the indicator words ("is ", "so ", "answer ", "=" in the last line ...), numbers
compare after rounding to 2 decimals, text golds must occur in the read answer, golds may be a list. Where nothing
parses the official code picks a random option; here the pick is seeded by the sample id (reproducible) and counted
as `random_choice` in results.json.
"""

import ast
import random
import re

from .answers import LETTERS, options_block
from .benchmark import Benchmark
from .common import LETTER_ANSWER, SHORT_ANSWER, Sample, mean_percent, record_paths, require, row_image


SCORER = "MMMU-Benchmark/MMMU mmmu/utils/eval_utils.py"
_OUTER_PUNCTUATION = [",", ".", "!", "?", ";", ":", "'"]
_INDICATORS = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
_TRIVIAL = [":", ",", ".", "!", "?", ";", "'"]
# eval_utils.extract_numbers: comma-grouped, scientific and plain numbers, each found separately.
_NUMBER_PATTERNS = [
    re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b"),
    re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+"),
    re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])"),
]


def _literal_list(text, where: str) -> list:
    if isinstance(text, list):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise ValueError(f"{where}: not a list literal: {text!r}.") from error
    return list(value) if isinstance(value, (list, tuple)) else [value]


def make_samples(rows) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"mmmu_val row {index}"
        require(row, ("id", "question", "options", "answer", "question_type", "image_1"), where)
        if row["image_1"] is None:
            raise ValueError(f"{where}: image_1 is empty.")
        extra_images = sum(row.get(f"image_{n}") is not None for n in range(2, 8))
        if row["question_type"] == "multiple-choice":
            options = {
                LETTERS[i]: str(text) for i, text in enumerate(_literal_list(row["options"], f"{where} options"))
            }
            prompt = f"{row['question']}\n{options_block(options)}\n{LETTER_ANSWER}"
            answer = str(row["answer"]).strip()
            golds = _literal_list(answer, f"{where} answer") if answer.startswith("[") else answer
            target = {"type": "choice", "answer": golds, "options": options}
        else:
            answer = str(row["answer"]).strip()
            accepted = _literal_list(answer, f"{where} answer") if answer.startswith("[") else [answer]
            prompt = f"{row['question']}\n{SHORT_ANSWER}"
            target = {"type": "open", "answers": [str(a) for a in accepted]}
        target["extra_images"] = extra_images
        target["sample_id"] = str(row["id"])  # seeds the official random pick when no option can be read
        samples.append(
            Sample(
                id=str(row["id"]),
                prompt=prompt,
                images=[row_image(rows, index, "image_1", f"{where} image_1")],
                target=target,
            )
        )
    return samples


def parse_choice(target: dict, raw_answer: str) -> tuple[str, str]:
    """(letter, path): eval_utils.parse_multi_choice_response, its random pick seeded by the sample id."""
    letters = list(target["options"])
    response = raw_answer
    for mark in _OUTER_PUNCTUATION:
        response = response.strip(mark)
    response = f" {response} "
    found = [letter for letter in letters if f"({letter})" in response]
    position = lambda letter: response.rfind(f"({letter})")  # noqa: E731
    if not found:
        found = [letter for letter in letters if f" {letter} " in response]
        position = lambda letter: response.rfind(f" {letter} ")  # noqa: E731
    if not found and len(response.split()) > 5:
        lowered = response.lower()
        found = [letter for letter in letters if target["options"][letter].lower() in lowered]
        position = lambda letter: lowered.rfind(target["options"][letter].lower())  # noqa: E731
    if not found:
        return random.Random(f"mmmu/{target['sample_id']}").choice(letters), "random_choice"
    # The candidate that occurs last; on equal positions the first listed (numpy argmax).
    best = max(range(len(found)), key=lambda index: (position(found[index]), -index))
    return found[best], "parsed"


def _key_answers(response: str) -> list[str]:
    """The tails of the answer after its indicator words, one per line (eval_utils.get_key_subresponses)."""
    response = response.strip().strip(".").lower()
    # The official split also cuts at ". " before a capital letter, which never occurs in lower-cased text.
    lines = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for index, line in enumerate(lines):
        indicators = _INDICATORS + (["="] if index == len(lines) - 1 else [])
        shortest = None
        for indicator in indicators:
            if indicator in line:
                tail = line.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):  # an empty tail is replaced, as officially
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            keys.append(shortest)
    return keys or [response]


def _normalize(text: str) -> list:
    """eval_utils.normalize_str: a number (anything float() reads once commas go) rounded to 2 decimals, else the
    lower-cased text, padded with a space on either side when it is a single character."""
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        text = text.lower()
        return [f" {text}", f"{text} "] if len(text) == 1 else [text]


def parse_open(raw_answer: str) -> list:
    """eval_utils.parse_open_response: the key answers and every number in them, normalised, without repeats."""
    keys = _key_answers(raw_answer)
    found = keys + [number for key in keys for pattern in _NUMBER_PATTERNS for number in pattern.findall(key)]
    return list(dict.fromkeys(value for text in found for value in _normalize(text)))


def open_answer_correct(predictions: list, golds: list[str]) -> bool:
    """eval_utils.eval_open: a read number equals a gold number, or a gold text occurs in a read text."""
    normalized = [value for gold in golds for value in _normalize(gold)]
    for prediction in predictions:
        if isinstance(prediction, str):
            if any(isinstance(gold, str) and gold in prediction for gold in normalized):
                return True
        elif prediction in normalized:
            return True
    return False


def parse_answer(target: dict, raw_answer: str):
    if target["type"] == "choice":
        return parse_choice(target, raw_answer)[0]
    return parse_open(raw_answer)


def aggregate(records: list[dict]) -> dict:
    per_sample, paths = [], []
    for record in records:
        target = record["target"]
        if target["type"] == "choice":
            letter, path = parse_choice(target, record["raw_answer"])
            golds = target["answer"] if isinstance(target["answer"], list) else [target["answer"]]
            correct = letter in golds
        else:
            prediction, path = parse_open(record["raw_answer"]), "parsed"
            correct = open_answer_correct(prediction, target["answers"])
        record["parsed_answer"] = letter if target["type"] == "choice" else prediction
        paths.append(f"{target['type']}_{path}")
        per_sample.append(float(correct))
    kinds = [r["target"]["type"] for r in records]
    details = {
        "multiple_choice_accuracy": mean_percent([s for s, kind in zip(per_sample, kinds) if kind == "choice"]),
        "open_accuracy": mean_percent([s for s, kind in zip(per_sample, kinds) if kind == "open"]),
        "questions_with_unseen_images": sum(r["target"]["extra_images"] > 0 for r in records),
        "scorer": SCORER,
        "scoring_paths": record_paths(records, paths),
    }
    return {"value": mean_percent(per_sample), "details": details, "per_sample": per_sample}


BENCHMARK = Benchmark(
    name="mmmu_val",
    paper_column="MMMU-val",
    dataset_id="lmms-lab/MMMU",
    dataset_config=None,
    split="validation",
    prompt_variants={
    "first_image": f"question + options + '\\n{LETTER_ANSWER}' (open: '\\n{SHORT_ANSWER}'); image_1 only"
},
    default_variant="first_image",
    max_new_tokens=32,
    metric="accuracy",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="rule",
    parse_answer=parse_answer,
)
