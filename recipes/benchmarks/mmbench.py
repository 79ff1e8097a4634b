"""MMBench dev with CircularEval. Shared by mmbench_en.py and mmbench_cn.py.

Rows (lmms-lab/MMBench, configs `en` / `cn`, split `dev`): `index`, `question`, `hint` (may be None or "nan"),
`A`..`D` (missing options None/"nan"), `answer` (letter), `category`, `L2-category`, `source`, `split`, `image`.
The published files already hold each question's circular copies at `index + k * 1_000_000`; we keep the
originals (index < 1e6) and make every rotation of the options ourselves, so a copy with or without the
circular rows scores the same. A question counts only if every rotation is answered right.
"""

from .answers import extract_choice, options_block
from .common import Sample, load_metric, mean_percent, require, row_image, text_or_empty


DATASET_ID = "lmms-lab/MMBench"
SPLIT = "dev"
MAX_NEW_TOKENS = 16
METRIC = "circular_accuracy"
CIRCULAR_OFFSET = 1_000_000


def load_originals(open_split, config: str, limit):
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
                        "category": row.get("category"),
                    },
                )
            )
    return samples


def parse_answer(target: dict, raw_answer: str) -> str:
    return extract_choice(raw_answer, target["options"])


def aggregate(records: list[dict]) -> dict:
    result = load_metric("multiple_choice_accuracy").compute(
        predictions=[r["parsed_answer"] for r in records],
        references=[r["target"]["answer"] for r in records],
        groups=[str(r["target"]["question"]) for r in records],
    )
    single = [s for s, r in zip(result["per_sample"], records) if r["id"].endswith("/shift0")]
    details = {"single_pass_accuracy": mean_percent(single), "num_questions": result["num_groups"]}
    return {"value": 100 * result["group_accuracy"], "details": details, "per_sample": result["per_sample"]}
