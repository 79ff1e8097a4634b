"""What eval_benchmarks.py needs to know about a benchmark, in one explicit record per benchmark.

Each benchmark module builds its `Benchmark` from its own functions (MME and MMBench build two, one per part or
language); recipes/eval_benchmarks.py lists them in the paper's order. A benchmark is scored either by rule
(`parse_answer` reads each answer, `aggregate` scores them) or by a judge model (`judge` asks it about each answer).
A rule-scored benchmark whose official protocol ends with a GPT call describes that call in `judge_step` (see
fallback.py).
"""

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .common import Sample


# open_split(config, split) -> rows: how a benchmark's `load_rows` reads the Hub or a local copy (data.py).
OpenSplit = Callable[[str | None, str], Any]


@dataclass(frozen=True)
class JudgeScoring:
    """How a judged benchmark asks its judge: a template in prompts/, the messages for one answer, the verdict."""

    prompt: str
    messages: Callable[[Sample, str, str], list[dict]]  # (sample, answer, template)
    parse: Callable[[str, Sample], tuple]  # (reply, sample) -> (parsed, score); ValueError: ask again


@dataclass(frozen=True)
class JudgeStep:
    """The optional GPT call at the end of a rule-scored benchmark's official protocol."""

    prompt: str
    applies: Callable[[dict, str], bool]  # (target, raw_answer): whether the protocol asks GPT about this answer
    messages: Callable[[dict, str, str], list[dict]]  # (target, raw_answer, template)
    parse: Callable[[str, dict], tuple]  # (reply, target) -> (parsed, None); ValueError: ask again


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its data lives, how questions are put, how answers are scored, and what is unconfirmed.

    `make_samples(rows, variant)` turns dataset rows into samples; a benchmark with a single prompt variant takes
    `make_samples(rows)` instead, so no builder receives a choice it cannot make. `load_rows(open_split, limit)`
    replaces the plain read of `dataset_config`/`split` when rows need joining or filtering first.
    """

    name: str
    paper_column: str
    dataset_id: str | None  # None: local copy only (--dataset-path)
    dataset_config: str | None
    split: str
    prompt_variants: Mapping[str, str]  # variant -> description, stored with the score
    default_variant: str
    max_new_tokens: int
    metric: str
    make_samples: Callable[..., list[Sample]]
    aggregate: Callable[[list[dict]], dict]  # records -> {"value", "details", "per_sample"}
    kind: Literal["rule", "judged"]
    parse_answer: Callable[[dict, str], Any] | None = None  # rule: (target, raw_answer) -> parsed answer
    judge: JudgeScoring | None = None  # judged
    judge_step: JudgeStep | None = None  # rule, optional
    load_rows: Callable[[OpenSplit, int | None], Any] | None = None
    unconfirmed: str | None = None  # what about the data is not confirmed: shown by --list, stored in results.json

    def __post_init__(self) -> None:
        rule = self.kind == "rule" and self.parse_answer is not None and self.judge is None
        judged = self.kind == "judged" and self.judge is not None and self.parse_answer is None
        if not (rule or judged) or (self.judge_step is not None and not rule):
            raise TypeError(f"{self.name}: a rule benchmark has parse_answer (maybe judge_step), a judged one judge")
        if self.default_variant not in self.prompt_variants:
            raise TypeError(f"{self.name}: default variant {self.default_variant!r} is not in prompt_variants")

    @property
    def judged(self) -> bool:
        return self.kind == "judged"

    @property
    def module_file(self) -> str:
        """The file whose `make_samples` reads the rows (its docstring describes the row schema)."""
        reader = getattr(self.make_samples, "func", self.make_samples)  # a functools.partial: the function it wraps
        return sys.modules[reader.__module__].__file__

    def samples(self, rows, variant: str) -> list[Sample]:
        """The samples for `variant` (one of `prompt_variants`)."""
        if variant not in self.prompt_variants:
            choices = ", ".join(self.prompt_variants)
            raise ValueError(f"{self.name}: no prompt variant {variant!r}; choose from {choices}")
        return self.make_samples(rows, variant) if len(self.prompt_variants) > 1 else self.make_samples(rows)
