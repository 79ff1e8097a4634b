"""MathVista testmini: visual math reasoning; accuracy.

Rows (AI4Math/MathVista, split `testmini`): `pid`, `question`, `query` (the question with its hint and choices,
as the authors prompt it), `decoded_image` (PIL; `image` is only a relative path), `choices` (list or None),
`answer` (text of the right choice, or the value), `question_type` ("multi_choice" / "free_form"), `answer_type`
("text" / "integer" / "float" / "list"), `precision` (decimals for floats), `unit`.

Scorer followed: lupantech/MathVista evaluation/extract_answer.py (`extract_answer` with its rule-based
`quick_extract`) and evaluation/calculate_score.py (`normalize_extracted_answer`, `safe_equal`). Extraction: an
empty answer stays empty; a multiple-choice answer that is exactly one of the choices is kept; an integer answer
that int() reads and a float answer that float() reads are kept; `The answer is "..."`. gives the quoted text.
Anything else goes to the official GPT extractor: without --judge-model such answers get the empty extraction the
official code returns when its extractor call fails, and results.json counts them (`needs_gpt_extraction`); with it
the judge extracts the answer (prompts/mathvista_extraction.txt, our wording of the task; `gpt_extracted`, or
`gpt_extraction_failed` with the empty extraction).
Normalisation: a choice letter, "(b)" included, names its choice, any other multiple-choice extraction (the empty
one too) becomes the choice nearest by edit distance; integers are int(float(x)), floats are rounded to the
answer's precision; the result must equal the dataset's answer string exactly ("-3" is not "3", "2.0" is not "2").
"""

import re
from string import Template

from .benchmark import Benchmark, JudgeStep
from .common import Sample, mean_percent, record_paths, require, row_image
from .fallback import judge_verdict


SCORER = "lupantech/MathVista evaluation/extract_answer.py (rules) + evaluation/calculate_score.py"
_QUICK = re.compile(r'The answer is "(.*)"\.')
_LETTER_IN_PARENTHESES = re.compile(r"\(([a-zA-Z])\)")


def make_samples(rows) -> list[Sample]:
    samples = []
    for index, row in enumerate(rows):
        where = f"mathvista row {index}"
        require(row, ("pid", "query", "decoded_image", "choices", "answer", "question_type", "answer_type"), where)
        target = {
            "answer": str(row["answer"]),
            "question_type": row["question_type"],
            "answer_type": row["answer_type"],
            "precision": row.get("precision"),
            "choices": [str(choice) for choice in row["choices"]] if row["choices"] else None,
            "query": row["query"],
        }
        if row["question_type"] == "multi_choice" and not target["choices"]:
            raise ValueError(f"{where}: a multi_choice question without choices.")
        samples.append(
            Sample(
                id=str(row["pid"]),
                prompt=row["query"],
                images=[row_image(rows, index, "decoded_image", f"{where} decoded_image")],
                target=target,
            )
        )
    return samples


def extract(target: dict, response: str) -> tuple[str, str]:
    """(extraction, path) as extract_answer.py's rules give it; the GPT step yields "" (its failure value)."""
    if response == "":
        return "", "rule"
    if target["question_type"] == "multi_choice" and response in target["choices"]:
        return response, "rule"
    for answer_type, read in (("integer", int), ("float", float)):
        if target["answer_type"] == answer_type:
            try:
                return str(read(response)), "rule"
            except ValueError:
                pass
    quoted = _QUICK.search(response)
    if quoted:
        return quoted.group(1), "rule"
    return "", "needs_gpt_extraction"


def edit_distance(first: str, second: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), as the `Levenshtein` package computes it."""
    previous = list(range(len(second) + 1))
    for i, char in enumerate(first, 1):
        current = [i]
        for j, other in enumerate(second, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other)))
        previous = current
    return previous[-1]


def normalize(target: dict, extraction: str) -> str | None:
    """calculate_score.normalize_extracted_answer: the prediction compared with the answer (None: unreadable)."""
    if target["question_type"] == "multi_choice":
        choices = target["choices"]
        extraction = extraction.strip()
        letters = _LETTER_IN_PARENTHESES.findall(extraction)
        if letters:
            extraction = letters[0].upper()
        sequential = [chr(ord("A") + i) for i in range(len(choices))]
        if extraction in sequential:
            return choices[sequential.index(extraction)]
        distances = [edit_distance(extraction, choice) for choice in choices]
        return choices[distances.index(min(distances))]
    try:
        if target["answer_type"] == "integer":
            return str(int(float(extraction)))
        if target["answer_type"] == "float":
            return str(round(float(extraction), int(target["precision"])))
    except (ValueError, TypeError, OverflowError):
        return None
    if target["answer_type"] == "list":
        return str(extraction)
    raise ValueError(f"mathvista: answer_type {target['answer_type']!r} of a free_form question has no official rule.")


def parse_answer(target: dict, raw_answer: str) -> str | None:
    """The normalised prediction of the raw response (not stripped: the official scripts take it as generated)."""
    return normalize(target, extract(target, raw_answer)[0])


def needs_judge(target: dict, raw_answer: str) -> bool:
    return extract(target, raw_answer)[1] == "needs_gpt_extraction"


def judge_step_messages(target: dict, raw_answer: str, template: str) -> list[dict]:
    return [{"role": "user", "content": Template(template).substitute(query=target["query"], response=raw_answer)}]


def parse_judge_step(reply: str, target: dict) -> tuple[str, None]:
    """The extracted answer; an empty one is asked again (extract_answer.verify_extraction)."""
    if not reply.strip():
        raise ValueError("empty extraction")
    return reply.strip(), None


def aggregate(records: list[dict]) -> dict:
    per_sample, paths = [], []
    for record in records:
        extraction, path = extract(record["target"], record["raw_answer"])
        if path == "needs_gpt_extraction" and "judge" in record:
            extraction = judge_verdict(record) or ""
            path = "gpt_extracted" if extraction else "gpt_extraction_failed"
        record["parsed_answer"] = normalize(record["target"], extraction)
        per_sample.append(float(record["parsed_answer"] == record["target"]["answer"]))
        paths.append(path)
    details = {"scorer": SCORER, "scoring_paths": record_paths(records, paths)}
    return {"value": mean_percent(per_sample), "details": details, "per_sample": per_sample}


BENCHMARK = Benchmark(
    name="mathvista",
    paper_column="MathVista",
    dataset_id="AI4Math/MathVista",
    dataset_config=None,
    split="testmini",
    prompt_variants={"query": "the dataset's own `query` (hint + question + choices)"},
    default_variant="query",
    max_new_tokens=256,
    metric="accuracy",
    make_samples=make_samples,
    aggregate=aggregate,
    kind="rule",
    parse_answer=parse_answer,
    judge_step=JudgeStep("mathvista_extraction.txt", needs_judge, judge_step_messages, parse_judge_step),
)
