"""MME-C: the 4 cognition subtasks of MME (scoring and schema in mme.py)."""

from .mme import (  # noqa: F401  (re-exported: this module is the benchmark)
    COGNITION,
    DATASET_CONFIG,
    DATASET_ID,
    DEFAULT_VARIANT,
    MAX_NEW_TOKENS,
    METRIC,
    PROMPT_VARIANTS,
    SPLIT,
    aggregate,
    load_subset,
    make_samples,
    parse_answer,
)


NAME = "mme_cognition"
PAPER_COLUMN = "MME-C"


def load_rows(open_split, limit):
    return load_subset(open_split, limit, COGNITION)
