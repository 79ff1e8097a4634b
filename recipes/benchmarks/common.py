"""What every benchmark module shares: the Sample record, LLaVA-1.5 prompt suffixes, metrics and image decoding."""

import base64
import binascii
import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import evaluate
from PIL import Image

from modeling_allava import load_image


METRICS_DIR = Path(__file__).parent / "metrics"
PROMPTS_DIR = Path(__file__).parent / "prompts"
# LLaVA-1.5's evaluation suffixes, which most published small-VLM numbers (ALLaVA's included) were produced with.
SHORT_ANSWER = "Answer the question using a single word or phrase."
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."
LETTER_ANSWER_CN = "请直接回答选项字母。"


@dataclass
class Sample:
    """One model query: the user text, its images (none for text-only) and what scoring needs (JSON-able).

    Images may be given as zero-argument loaders (see `row_image`): a benchmark's thousands of images are then
    decoded one batch at a time, never all at once.
    """

    id: str
    prompt: str
    images: list[Image.Image | Callable[[], Image.Image]] = field(default_factory=list)
    target: dict = field(default_factory=dict)

    def load_images(self) -> list[Image.Image]:
        return [image() if callable(image) else image for image in self.images]

    def messages(self, with_pixels: bool = True) -> list[dict]:
        """Single-turn chat in content-part form, images first (ALLaVA places `<image>` before the text)."""
        images = self.load_images() if with_pixels else [None] * len(self.images)
        parts = [{"type": "image", "image": image} if image else {"type": "image"} for image in images]
        return [{"role": "user", "content": [*parts, {"type": "text", "text": self.prompt}]}]


@functools.cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """One of our `evaluate` metric modules, loaded by path (hub metrics are unreachable offline)."""
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def to_image(value, where: str) -> Image.Image:
    """A dataset cell as an RGB PIL image: PIL, {"bytes"/"path"} dicts, raw bytes, paths or base64 text."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, str) and not Path(value).is_file():
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError(f"{where}: neither an existing file nor base64 image data.") from error
    if value is None:
        raise ValueError(f"{where}: the image is missing.")
    return load_image(value, where=where)


def row_image(rows, index: int, column: str, where: str) -> Callable[[], Image.Image]:
    """A loader for the image in `rows[index][column]` (the first, if the cell holds a list), read when called."""

    def load() -> Image.Image:
        value = rows[index][column]
        if isinstance(value, list):
            if not value:
                raise ValueError(f"{where}: the image list is empty.")
            value = value[0]
        return to_image(value, where)

    return load


def text_or_empty(value) -> str:
    """Dataset text cells that may be None, NaN or the string 'nan' (MMBench hints) -> str."""
    if value is None or (isinstance(value, float) and value != value) or str(value).strip().lower() == "nan":
        return ""
    return str(value).strip()


def require(row: dict, fields: tuple[str, ...], where: str) -> None:
    """Fail with the row and the missing field names when a dataset does not have the expected schema."""
    missing = [name for name in fields if name not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; the row has {sorted(row)}.")


def mean_percent(values: list[float]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


def parse_all(parse_answer: Callable[[dict, str], str], records: list[dict]) -> list[str]:
    """Parse every record's raw answer again with the current scorer (cached records may predate a scorer change);
    the refreshed `parsed_answer` (and `scoring_path` "rule") is what the per-sample output shows."""
    for record in records:
        record["parsed_answer"] = parse_answer(record["target"], record["raw_answer"])
        record["scoring_path"] = "rule"
    return [record["parsed_answer"] for record in records]


def record_paths(records: list[dict], paths: list[str]) -> dict[str, int]:
    """Store each record's scoring path (shown per sample) and count them for results.json's `scoring_paths`."""
    for record, path in zip(records, paths, strict=True):
        record["scoring_path"] = path
    return dict(Counter(paths))


def rule_aggregate(
    parse_answer: Callable[[dict, str], str],
    scorer: str,
    reference: str = "answer",
    metric: str | None = None,
    details: Callable[[list[dict]], dict] | None = None,
) -> Callable[[list[dict]], dict]:
    """The `aggregate` of a benchmark scored by rule alone: every answer parsed again (`parse_all`) and scored
    against `target[reference]` by one of our metrics (`metric`; None: exact match), the value their mean in percent.
    `details(records)` adds the benchmark's own figures to the scorer and the scoring paths."""

    def aggregate(records: list[dict]) -> dict:
        predictions = parse_all(parse_answer, records)
        references = [record["target"][reference] for record in records]
        if metric is None:
            per_sample = [float(prediction == gold) for prediction, gold in zip(predictions, references, strict=True)]
        else:
            per_sample = load_metric(metric).compute(predictions=predictions, references=references)["per_sample"]
        extra = details(records) if details else {}
        summary = {**extra, "scorer": scorer, "scoring_paths": {"rule": len(records)}}
        return {"value": mean_percent(per_sample), "details": summary, "per_sample": per_sample}

    return aggregate
