"""The data report as one static HTML page (report.html.jinja): inline CSS, inline SVG histograms, data: URI
thumbnails, no script.

Captions, questions, answers, reject texts and origins come from an untrusted teacher or input list; the template is
rendered with autoescape, so every string from the data is escaped before it reaches the page. This module holds
what the page shows (`Report`, filled in by report.py) and the figures the template draws.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from toolkit.cost import cost_text


HISTOGRAM_BINS = 20
TOP_OPENINGS = 8
TEMPLATE = "report.html.jinja"


@dataclass
class SubsetReport:
    """What the page shows of one subset (read by report.py)."""

    name: str
    rows: int = 0
    # length name ("caption", "question", "answer") -> one count per row
    lengths: dict[str, list[int]] = field(default_factory=dict)
    openings: Counter = field(default_factory=Counter)
    # sampled rows: id, has_image, thumbnail (data: URI, None if absent or undecodable), prompt, response, extra_turns
    samples: list[dict] = field(default_factory=list)


@dataclass
class AuditReport:
    """The image-text audit section (read by report.py from an audit folder)."""

    summary: dict  # audit.json: model, rule, margin, batch_size, seed, text, subsets -> counts, flagged, lowest
    dropped: dict[str, int]  # rows build_dataset --drop-mismatched removed, per subset
    # the lowest-margin rows shown: audit.json's fields, plus kept (image and text found in lowest.arrow),
    # thumbnail (data: URI or None), prompt, response, extra_turns
    rows: list[dict]
    ranked: int  # rows audit.json lists as lowest (rows holds the first report.AUDIT_ROWS of them)


@dataclass
class Report:
    """Everything the page shows (collected by report.py)."""

    title: str
    stats: dict
    unit: str
    subsets: list[SubsetReport]
    # "rejected" / "skipped" -> reason -> up to report.EXAMPLES_PER_REASON {origin, detail, raw}
    examples: dict[str, dict[str, list[dict]]]
    examples_source: str
    audit: AuditReport | None = None  # None when the dataset was not audited


def _listing(values: object) -> str:
    if not values:
        return "n/a"
    return ", ".join(str(v) for v in values) if isinstance(values, (list, tuple)) else str(values)


def _percentile(ordered: Sequence[int], fraction: float) -> int:
    return ordered[round(fraction * (len(ordered) - 1))]


def _median(values: Sequence[int]) -> int | str:
    return _percentile(sorted(values), 0.5) if values else "n/a"


def histogram(values: Sequence[int], width: int = 300, height: int = 120) -> dict | None:
    """The geometry of an SVG bar chart of integer lengths (None without values): bars of equal width over the
    range, in at most HISTOGRAM_BINS bins, scaled to the tallest; n / median / p95 for the caption."""
    if not values:
        return None
    ordered = sorted(values)
    low, high = ordered[0], ordered[-1]
    step = max(1, -(-(high - low + 1) // HISTOGRAM_BINS))
    counts = [0] * (-(-(high - low + 1) // step))
    for value in ordered:
        counts[(value - low) // step] += 1
    top, plot_h, bar_w = max(counts), height - 28, min((width - 8) / len(counts), 24)
    bars = [
        {
            "x": 4 + index * bar_w,
            "y": 14 + plot_h - plot_h * count / top,
            "width": max(bar_w - 1, 1),
            "height": plot_h * count / top,
            "start": low + index * step,
            "end": low + index * step + step - 1,
            "count": count,
        }
        for index, count in enumerate(counts)
    ]
    return {
        "width": width,
        "height": height,
        "top": top,
        "bars": bars,
        "baseline": 14 + plot_h,
        "low": low,
        "high": high,
        "right": 4 + len(counts) * bar_w,
        "n": len(ordered),
        "median": _percentile(ordered, 0.5),
        "p95": _percentile(ordered, 0.95),
    }


def _facts(report: Report) -> list[tuple[object, str]]:
    """The overview's (value, label) tiles."""
    stats = report.stats
    tokens = stats.get("tokens") or {}
    return [
        (sum(s.rows for s in report.subsets), f"rows in {len(report.subsets)} subsets"),
        (stats.get("records", "n/a"), "synthesis records kept"),
        (stats.get("duplicates_dropped", "n/a"), "duplicates removed"),
        (sum((stats.get("rejected") or {}).values()), "inputs rejected"),
        (sum((stats.get("skipped") or {}).values()), "inputs skipped"),
        (_listing(stats.get("teacher_models")), "teacher model(s)"),
        (_listing(stats.get("prompt_versions")), "prompt version(s)"),
        (cost_text(stats["cost_usd"]) if "cost_usd" in stats else "n/a", "teacher cost (USD)"),
        (stats.get("requests", "n/a"), "teacher requests"),
        (f"{tokens.get('prompt', 0)} / {tokens.get('completion', 0)}" if tokens else "n/a", "tokens in / out"),
    ]


def _left_out(report: Report, kind: str) -> list[tuple[str, object, list[dict]]]:
    """(reason, count from stats.json or "", raw examples) of the rejected or skipped inputs: counted reasons
    first, then reasons that only have examples."""
    counts = report.stats.get(kind) or {}
    examples = report.examples.get(kind) or {}
    reasons = [*counts, *(reason for reason in examples if reason not in counts)]
    return [(reason, counts.get(reason, ""), examples.get(reason, [])) for reason in reasons]


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def render(report: Report) -> str:
    """The whole page as a string."""
    return _ENVIRONMENT.get_template(TEMPLATE).render(
        report=report,
        stats=report.stats,
        facts=_facts(report),
        top_openings=TOP_OPENINGS,
        listing=_listing,
        median=_median,
        histogram_of=histogram,
        report_reasons=lambda kind: _left_out(report, kind),
    )
