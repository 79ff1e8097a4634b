"""Which samples are generated together, and by which process: the same for every process count and every resume.

Generation time is set by a batch's longest prompt and longest answer, so a benchmark's samples are ordered by image
count and prompt length (longest first: a batch that does not fit in memory fails at once) and cut into batches of
`batch_size`. Batch b goes to process b mod N. The batches themselves never depend on N or on what an earlier run
finished, and with left padding a greedy answer can depend on its batch mates; so every answer is the answer of a
one-process, uninterrupted run. Each cached answer records its batch (`batch_key`): an answer made in another batch
(a smaller --limit, another batch size) is made again.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .common import Sample


# How batches are made, stored with every cache's settings and in results.json's "generation".
BATCHING = "by_length"


@dataclass(frozen=True)
class Batch:
    """Sample positions (into the benchmark's sample list) generated together, and the key their records carry."""

    positions: tuple[int, ...]
    key: str


def batch_key(ids: Sequence[str]) -> str:
    """A short hash of a batch's sample ids, in generation order."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def prompt_lengths(tokenizer, prompts: Sequence[str], chunk: int = 512) -> list[int]:
    """Tokens per prompt, tokenized `chunk` prompts at a time: a fast tokenizer's encodings of a whole benchmark at
    once took ~12 KB a prompt (measured at 10,000 TextVQA prompts), and the allocator kept it after they were freed."""
    lengths = []
    for start in range(0, len(prompts), chunk):
        encoded = tokenizer(list(prompts[start : start + chunk]), add_special_tokens=False)["input_ids"]
        lengths += [len(ids) for ids in encoded]
    return lengths


def length_batches(samples: Sequence[Sample], prompt_lengths: Sequence[int], batch_size: int) -> list[Batch]:
    """Batches of similar prompts: by image count, then prompt tokens, both descending; ties keep sample order."""
    order = sorted(range(len(samples)), key=lambda i: (-len(samples[i].images), -prompt_lengths[i], i))
    batches = []
    for start in range(0, len(order), batch_size):
        positions = tuple(order[start : start + batch_size])
        batches.append(Batch(positions, batch_key([samples[i].id for i in positions])))
    return batches


def share(batches: Sequence[Batch], rank: int, world_size: int) -> list[Batch]:
    """This process's batches: every world_size-th, so long and short batches are spread evenly."""
    return list(batches[rank::world_size])
