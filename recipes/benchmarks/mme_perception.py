"""MME-P: the 10 perception subtasks of MME (scoring and schema in mme.py)."""

from .mme import (  # noqa: F401  (re-exported: this module is the benchmark)
    DATASET_CONFIG,
    DATASET_ID,
    DEFAULT_VARIANT,
    MAX_NEW_TOKENS,
    METRIC,
    PERCEPTION,
    PROMPT_VARIANTS,
    SPLIT,
    aggregate,
    load_subset,
    make_samples,
    parse_answer,
)


NAME = "mme_perception"
PAPER_COLUMN = "MME-P"


def load_rows(open_split, limit):
    return load_subset(open_split, limit, PERCEPTION)
