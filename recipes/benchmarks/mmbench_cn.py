"""MMBench-cn dev with CircularEval (schema and scoring in mmbench.py)."""

from .common import LETTER_ANSWER_CN
from .mmbench import (  # noqa: F401
    DATASET_ID,
    JUDGE_STEP_PROMPT,
    MAX_NEW_TOKENS,
    METRIC,
    SPLIT,
    aggregate,
    judge_step_messages,
    load_originals,
    make_circular_samples,
    needs_judge,
    parse_answer,
    parse_judge_step,
)


NAME = "mmbench_cn"
PAPER_COLUMN = "MMB-cn"
DATASET_CONFIG = "cn"
PROMPT_VARIANTS = {"letter": f"[hint + '\\n'] question + '\\nA. ...' + '\\n{LETTER_ANSWER_CN}', every option rotation"}
DEFAULT_VARIANT = "letter"


def load_rows(open_split, limit):
    return load_originals(open_split, DATASET_CONFIG, limit)


def make_samples(rows, variant: str):
    return make_circular_samples(rows, LETTER_ANSWER_CN, NAME)
