"""MMBench dev with CircularEval: two benchmarks, MMBENCH_EN and MMBENCH_CN (configs `en` and `cn`).

Rows (lmms-lab/MMBench, configs `en` / `cn`, split `dev`): `index`, `question`, `hint` (may be None or "nan"),
`A`..`D` (missing options None/"nan"), `answer` (letter), `category`, `L2-category`, `source`, `split`, `image`.
The published files already hold each question's circular copies at `index + k * 1_000_000`; we keep the
originals (index < 1e6) and make every rotation of the options ourselves, so a copy with or without the
circular rows scores the same. A question counts only if every rotation is answered right.

Scorer followed: open-compass/VLMEvalKit vlmeval/utils/matching_util.py `can_infer` (the answer matching of
OpenCompass's MMBench evaluation) and vlmeval/dataset/utils/multiple_choice.py (`prefetch_circular_group`,
`extract_answer_from_item` under the exact-matching policy). A letter counts when it stands alone among the answer's
last four words once .()[],:;!*#{} are spaces ("I choose C") and no other option letter stands alone anywhere,
or after "answer is" ("The correct answer is **D**"); otherwise an option's text counts when it is the only option
text inside the answer (plain substring, so it works in Chinese) and the answer is at most twice as long as all the
option texts together. Refusals and a lone "Z" read as Z. What neither rule reads goes to OpenCompass's GPT matching
step: without --judge-model such answers count as Z (wrong), as OpenCompass does without a judge, and results.json
counts them (`needs_gpt_matching`); with it the judge maps them to an option (prompts/mmbench_matching.txt, our
wording), its reply read by the same matching (`gpt_matched`; `gpt_matching_failed` when no reply could be read,
counted as Z where OpenCompass would guess at random).
"""

import functools
import re
from string import Template

from .answers import options_block
from .benchmark import Benchmark, JudgeStep
from .common import (
    LETTER_ANSWER,
    LETTER_ANSWER_CN,
    Sample,
    load_metric,
    mean_percent,
    record_paths,
    require,
    row_image,
    text_or_empty,
)
from .fallback import judge_verdict


SPLIT = "dev"
CIRCULAR_OFFSET = 1_000_000
SCORER = "open-compass/VLMEvalKit vlmeval/utils/matching_util.py can_infer + CircularEval (exact matching)"
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SEPARATORS = re.compile(r"[.()\[\],:;!*#{}]")
_ANSWER_IS = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def load_originals(open_split, limit, config: str):
    rows = open_split(config, SPLIT)
    keep = [position for position, index in enumerate(rows["index"]) if int(index) < CIRCULAR_OFFSET]
    return rows.select(keep[:limit] if limit is not None else keep)


def make_circular_samples(rows, suffix: str, where_prefix: str) -> list[Sample]:
    samples = []
    for position, row in enumerate(rows):
        where = f"{where_prefix} row {position}"
        require(row, ("index", "question", "hint", "A", "B", "answer", "image"), where)
        present = [(letter, text_or_empty(row.get(letter))) for letter in "ABCDE"]
        letters = [letter for letter, text in present if text]
        texts = [text for _, text in present if text]
        if row["answer"].strip().upper() not in letters:
            raise ValueError(f"{where}: answer {row['answer']!r} is not one of the options {letters}.")
        answer_position = letters.index(row["answer"].strip().upper())
        image = row_image(rows, position, "image", f"{where} image")
        hint = text_or_empty(row["hint"])
        for shift in range(len(texts)):
            rotated = texts[shift:] + texts[:shift]
            options = {"ABCDE"[i]: text for i, text in enumerate(rotated)}
            answer = "ABCDE"[(answer_position - shift) % len(texts)]
            question = f"{hint}\n{row['question']}" if hint else row["question"]
            samples.append(
                Sample(
                    id=f"{row['index']}/shift{shift}",
                    prompt=f"{question}\n{options_block(options)}\n{suffix}",
                    images=[image],
                    target={
                        "answer": answer,
                        "options": options,
                        "question": int(row["index"]),
                        "question_text": question,
                        "category": row.get("category"),
                    },
                )
            )
    return samples


def infer_option(answer: str, options: dict[str, str]) -> str:
    """matching_util.can_infer_option: an option letter, "Z", or "" when no letter can be read."""
    if "Failed to obtain answer via API" in answer:
        return ""
    if any(refusal in answer for refusal in _REFUSALS):
        return "Z"
    words = _SEPARATORS.sub(" ", answer).split()
    standing = [letter for letter in options if letter in words]
    if len(standing) == 1 and words.index(standing[0]) > len(words) - 5:
        return standing[0]
    if not standing and "Z" in words:
        return "Z"
    match = _ANSWER_IS.search(answer)
    return match.group(1).upper() if match and match.group(1).upper() in options else ""


def infer_text(answer: str, options: dict[str, str]) -> str:
    """matching_util.can_infer_text: the one option whose text occurs in a not-too-long answer, or ""."""
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(text)) for text in options.values()):
        return ""
    found = [letter for letter, text in options.items() if str(text).lower() in answer]
    return found[0] if len(found) == 1 else ""


def match_answer(target: dict, raw_answer: str) -> tuple[str, str]:
    """(letter, path): can_infer's letter, or "Z" with path `needs_gpt_matching` where only the GPT step could."""
    letter = infer_option(raw_answer, target["options"]) or infer_text(raw_answer, target["options"])
    return (letter, "matched") if letter else ("Z", "needs_gpt_matching")


def parse_answer(target: dict, raw_answer: str) -> str:
    return match_answer(target, raw_answer)[0]


def needs_judge(target: dict, raw_answer: str) -> bool:
    return match_answer(target, raw_answer)[1] == "needs_gpt_matching"


def judge_step_messages(target: dict, raw_answer: str, template: str) -> list[dict]:
    text = Template(template).substitute(
        question=target.get("question_text", ""), options=options_block(target["options"]), answer=raw_answer
    )
    return [{"role": "user", "content": text}]


def parse_judge_step(reply: str, target: dict) -> tuple[str, None]:
    """The judge's letter, read with the same matching (Z included); ValueError asks again."""
    letter = infer_option(reply, {**target["options"], "Z": "none"}) or infer_text(reply, target["options"])
    if not letter:
        raise ValueError(f"no option letter in {reply[:80]!r}")
    return letter, None


def _scored(record: dict) -> tuple[str, str]:
    letter, path = match_answer(record["target"], record["raw_answer"])
    if path == "needs_gpt_matching" and "judge" in record:
        verdict = judge_verdict(record)
        return (verdict, "gpt_matched") if verdict else ("Z", "gpt_matching_failed")
    return letter, path


def aggregate(records: list[dict]) -> dict:
    matched = [_scored(r) for r in records]
    for record, (letter, _) in zip(records, matched):
        record["parsed_answer"] = letter
    result = load_metric("multiple_choice_accuracy").compute(
        predictions=[letter for letter, _ in matched],
        references=[r["target"]["answer"] for r in records],
        groups=[str(r["target"]["question"]) for r in records],
    )
    single = [s for s, r in zip(result["per_sample"], records) if r["id"].endswith("/shift0")]
    details = {
        "single_pass_accuracy": mean_percent(single),
        "num_questions": result["num_groups"],
        "scorer": SCORER,
        "scoring_paths": record_paths(records, [path for _, path in matched]),
    }
    return {"value": 100 * result["group_accuracy"], "details": details, "per_sample": result["per_sample"]}


def _language(name: str, paper_column: str, config: str, suffix: str) -> Benchmark:
    return Benchmark(
        name=name,
        paper_column=paper_column,
        dataset_id="lmms-lab/MMBench",
        dataset_config=config,
        split=SPLIT,
        prompt_variants={"letter": f"[hint + '\\n'] question + '\\nA. ...' + '\\n{suffix}', every option rotation"},
        default_variant="letter",
        max_new_tokens=16,
        metric="circular_accuracy",
        make_samples=functools.partial(make_circular_samples, suffix=suffix, where_prefix=name),
        aggregate=aggregate,
        kind="rule",
        parse_answer=parse_answer,
        judge_step=JudgeStep("mmbench_matching.txt", needs_judge, judge_step_messages, parse_judge_step),
        load_rows=functools.partial(load_originals, config=config),
    )


MMBENCH_EN = _language("mmbench_en", "MMB-en", "en", LETTER_ANSWER)
MMBENCH_CN = _language("mmbench_cn", "MMB-cn", "cn", LETTER_ANSWER_CN)
