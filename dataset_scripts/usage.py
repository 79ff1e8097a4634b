"""What requests cost, summed per record, per endpoint and per subset for the summary."""

from __future__ import annotations

from dataclasses import dataclass


USAGE_FIELDS = ("prompt_tokens", "cached_tokens", "completion_tokens", "requests")


@dataclass
class Usage:
    prompt_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, served from the provider's prefix cache
    completion_tokens: int = 0
    requests: int = 0
    cost_usd: float = 0.0

    def add(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int, cost: float) -> None:
        self.prompt_tokens += prompt_tokens
        self.cached_tokens += cached_tokens
        self.completion_tokens += completion_tokens
        self.requests += 1
        self.cost_usd += cost

    def as_dict(self) -> dict:
        return {**self.__dict__, "cost_usd": round(self.cost_usd, 8)}


def subsets_label(mode: str, strategy: str, source: str) -> str:
    """The dataset subsets a record of this recipe feeds (build_dataset.py), as one label for cost reports."""
    if mode == "text":
        return "text"
    kinds = ("instruct",) if strategy == "direct" else ("caption", "instruct")
    return "+".join(f"{kind}_{source}" for kind in kinds)
