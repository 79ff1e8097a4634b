"""The summary a synthesis run writes (summary-<shard>.json) and prints: the shard's totals over all runs, what this
run did, and how it ended (outcome.py). Without a configured price every cost reads "no price configured", not $0."""

from __future__ import annotations

from collections import Counter

from dataset_scripts.limits import CostMeter
from dataset_scripts.outcome import Ending
from dataset_scripts.teacher_client import TeacherClient
from dataset_scripts.usage import ShardTotals, Usage, usage_report
from toolkit.cost import NO_PRICE, add_usd


def _by_name(counts: Counter, name: str) -> dict:
    """The counts `name:<what>` as {what: n}."""
    prefix = name + ":"
    return dict(sorted((key.removeprefix(prefix), n) for key, n in counts.items() if key.startswith(prefix)))


def run_summary(
    describe_run: dict,
    totals: ShardTotals,
    ending: Ending,
    left: int,
    *,
    this_run: Counter,
    failed: Counter,
    meter: CostMeter,
    spent_before: float,
    client: TeacherClient,
    by_endpoint: dict[str, Usage],
    wall_time: float,
) -> dict:
    """The summary dict; `by_endpoint` is this run's billed usage per endpoint name."""
    priced = meter.price is not None
    stats = client.stats
    endpoints = {
        endpoint.name: usage_report(by_endpoint.get(endpoint.name, Usage()), priced)
        | {
            "sent": endpoint.stats["requests"],
            "failures": endpoint.stats["failures"],
            "taken_out": endpoint.stats["ejections"],
        }
        for endpoint in client.pool.endpoints
    }
    return {
        **describe_run,
        "done": totals.done,
        "rejected": totals.rejected,
        "skipped": totals.skipped,
        "tokens": {
            "prompt": totals.usage.prompt_tokens,
            "cached": totals.usage.cached_tokens,
            "completion": totals.usage.completion_tokens,
        },
        "requests": totals.usage.requests,
        "cost_usd": round(totals.usage.cost_usd, 6) if priced else None,
        "cost": f"${totals.usage.cost_usd:.4f}" if priced else NO_PRICE,
        "by_subset": {label: usage_report(usage, priced) for label, usage in sorted(totals.by_subset.items())},
        "near_duplicates": totals.saved.report(priced),  # skipped before any request: what that saved
        "max_cost_usd": meter.max_cost,
        "ended": ending.kind,
        "inputs_left": left,
        "stopped": ending.reason,
        "outcome": ending.line,
        "exit_code": ending.exit_code,
        "this_run": {
            "done": this_run["done"],
            "resumed": this_run["resumed"],
            "rejected": _by_name(this_run, "rejected"),
            "skipped": _by_name(this_run, "skipped"),
            "parse_retries": _by_name(this_run, "retry"),
            **({"batch": _by_name(this_run, "batch")} if describe_run.get("api") == "batch" else {}),
            "failed": dict(failed),
            "api_retries": dict(stats.retries),
            "retry_after_honoured": stats.retry_after_honoured,
            "backoff_seconds": round(stats.backoff_seconds, 3),
            "cost_usd": round(add_usd(meter.spent, -spent_before), 6) if priced else None,
            "by_endpoint": endpoints,
            "wall_time_s": round(wall_time, 3),
        },
    }
