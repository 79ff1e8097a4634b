"""What requests cost, summed per record, per endpoint and per subset for the summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dataset_scripts.first_copies import Saving, left_out_skips
from dataset_scripts.shards import OutputDir, iter_jsonl
from toolkit.cost import NO_PRICE, add_usd


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
        self.cost_usd = add_usd(self.cost_usd, cost)

    def as_dict(self) -> dict:
        return {**self.__dict__, "cost_usd": round(self.cost_usd, 8)}


def subsets_label(mode: str, strategy: str, source: str) -> str:
    """The dataset subsets a record of this recipe feeds (build_dataset.py), as one label for cost reports."""
    if mode == "text":
        return "text"
    kinds = ("instruct",) if strategy == "direct" else ("caption", "instruct")
    return "+".join(f"{kind}_{source}" for kind in kinds)


def usage_report(usage: Usage, priced: bool) -> dict:
    """A summary's usage entry; without a configured price the cost reads "no price configured", not a false $0."""
    report = {name: getattr(usage, name) for name in USAGE_FIELDS}
    return report | {"cost_usd": round(usage.cost_usd, 6) if priced else NO_PRICE}


@dataclass
class ShardTotals:
    """What a shard's files hold over all runs: inputs done, rejected and skipped (by reason), usage."""

    done: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    by_subset: dict[str, Usage] = field(default_factory=dict)
    saved: Saving = field(default_factory=Saving)  # by skipping near-duplicate images (first_copies.py)


UNFINISHED = "(inputs not finished)"  # the by_subset label of usage billed to inputs without a record or reject


def _add(usage: Usage, row_usage: dict) -> None:
    for name in USAGE_FIELDS:
        setattr(usage, name, getattr(usage, name) + row_usage.get(name, 0))
    usage.cost_usd = add_usd(usage.cost_usd, row_usage.get("cost_usd", 0.0))


def shard_totals(out: OutputDir) -> ShardTotals:
    """Read back one shard's records, rejects and skips; an input counts once, by its best outcome.

    The usage also counts what was billed for inputs not finished: `spent` rows (chat mode: an input given up after
    some billed requests; a rerun starts it afresh) and, in batch mode, the last `progress` row of each input without
    a record or reject (its record will carry that usage on: counted there once it is written).
    """
    totals = ShardTotals()
    done_items, rejected, finished_keys = set(), {}, set()
    for kind in ("records", "rejects"):
        for row in iter_jsonl(out.path(kind)):
            if kind == "records":
                done_items.add(row["item_id"])
            else:
                rejected[row["item_id"]] = row["reason"]
            finished_keys.add(row["key"])
            label = subsets_label(row["mode"], row["strategy"], row["source"])
            for usage in (totals.usage, totals.by_subset.setdefault(label, Usage())):
                _add(usage, row["usage"])
    unfinished = Usage()
    for row in iter_jsonl(out.path("spent")):
        _add(unfinished, row["usage"])
    progress = {row["key"]: row["usage"] for row in iter_jsonl(out.path("batches")) if row.get("event") == "progress"}
    for key, row_usage in progress.items():
        if key not in finished_keys:
            _add(unfinished, row_usage)
    if unfinished.requests:
        totals.by_subset[UNFINISHED] = unfinished
        _add(totals.usage, unfinished.as_dict())
    skipped, totals.saved = left_out_skips(iter_jsonl(out.path("skipped")), done_items, rejected)
    totals.done = len(done_items)
    totals.rejected = dict(Counter(reason for item, reason in rejected.items() if item not in done_items))
    totals.skipped = dict(skipped)
    return totals
