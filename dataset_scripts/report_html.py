"""The data report as one static HTML page: inline CSS, inline SVG histograms, data: URI thumbnails, no script.

Captions, questions, answers, reject texts and origins come from an untrusted teacher or input list, so every string
from the data goes through `_e` (html.escape) before it reaches the page.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from toolkit.cost import cost_text


HISTOGRAM_BINS = 20
TOP_OPENINGS = 8


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
class Report:
    """Everything the page shows (collected by report.py)."""

    title: str
    stats: dict
    unit: str
    subsets: list[SubsetReport]
    # "rejected" / "skipped" -> reason -> up to report.EXAMPLES_PER_REASON {origin, detail, raw}
    examples: dict[str, dict[str, list[dict]]]
    examples_source: str


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; background: #f4f5f7;
  margin: 0; padding: 24px 32px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
.muted { color: #667085; }
section { background: #fff; border: 1px solid #e3e6eb; border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 10px; margin-top: 14px; }
.fact { background: #fff; border: 1px solid #e3e6eb; border-radius: 8px; padding: 8px 12px; }
.fact b { display: block; font-size: 18px; }
.fact span { color: #667085; font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px; border-bottom: 1px solid #eef0f3; }
th { font-size: 12px; color: #667085; font-weight: 600; }
.hists { display: flex; flex-wrap: wrap; gap: 24px; }
.hist { flex: 0 0 300px; }
.cols { display: flex; gap: 24px; flex-wrap: wrap; }
.cols > div { flex: 1 1 320px; }
.cols > .hists { flex: 2 1 640px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 10px; }
.card { display: flex; gap: 10px; border: 1px solid #eef0f3; border-radius: 6px; padding: 8px; }
.card img, .noimg { flex: 0 0 96px; width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated;
  background: #eef0f3; border-radius: 4px; }
.noimg { display: flex; align-items: center; justify-content: center; text-align: center; color: #98a2b3;
  font-size: 12px; }
.card .body { min-width: 0; }
.label { font-size: 11px; color: #667085; text-transform: uppercase; }
.text { white-space: pre-wrap; max-height: 8.8em; overflow: hidden; margin-bottom: 4px; }
.id { font: 11px monospace; color: #98a2b3; }
pre { white-space: pre-wrap; max-height: 6em; overflow: auto; background: #f7f8fa; border: 1px solid #eef0f3;
  border-radius: 4px; padding: 6px; font-size: 12px; margin: 4px 0; }
.bar { fill: #4f7cff; }
.axis { font-size: 10px; fill: #667085; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _listing(values: object) -> str:
    if not values:
        return "n/a"
    return ", ".join(str(v) for v in values) if isinstance(values, (list, tuple)) else str(values)


def _percentile(ordered: Sequence[int], fraction: float) -> int:
    return ordered[round(fraction * (len(ordered) - 1))]


def histogram_svg(values: Sequence[int], label: str, unit: str, width: int = 300, height: int = 120) -> str:
    """An inline SVG bar chart of integer lengths, with the range, the tallest bar and n / median / p95 / max."""
    if not values:
        return f'<div class="hist"><h3>{_e(label)}</h3><p class="muted">no rows</p></div>'
    ordered = sorted(values)
    low, high = ordered[0], ordered[-1]
    step = max(1, -(-(high - low + 1) // HISTOGRAM_BINS))
    counts = [0] * (-(-(high - low + 1) // step))
    for value in ordered:
        counts[(value - low) // step] += 1
    top, plot_h, bar_w = max(counts), height - 28, min((width - 8) / len(counts), 24)
    bars = []
    for index, count in enumerate(counts):
        bar_h = plot_h * count / top
        start = low + index * step
        bars.append(
            f'<rect class="bar" x="{4 + index * bar_w:.1f}" y="{14 + plot_h - bar_h:.1f}"'
            f' width="{max(bar_w - 1, 1):.1f}" height="{bar_h:.1f}">'
            f"<title>{start}-{start + step - 1}: {count} rows</title></rect>"
        )
    median, p95 = _percentile(ordered, 0.5), _percentile(ordered, 0.95)
    return (
        f'<div class="hist"><h3>{_e(label)} length</h3>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img"'
        f' aria-label="{_e(label)} length histogram">'
        f'<text class="axis" x="4" y="10">{top} rows</text>{"".join(bars)}'
        f'<line x1="4" y1="{14 + plot_h}" x2="{width - 4}" y2="{14 + plot_h}" stroke="#98a2b3"/>'
        f'<text class="axis" x="4" y="{height - 2}">{low}</text>'
        f'<text class="axis" x="{4 + len(counts) * bar_w:.1f}" y="{height - 2}" text-anchor="end">{high}</text></svg>'
        f'<div class="muted">n={len(ordered)} · median {median} · p95 {p95} · max {high} {_e(unit)}</div></div>'
    )


def _fact(value: object, label: str) -> str:
    return f'<div class="fact"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _overview(report: Report) -> str:
    stats = report.stats
    tokens = stats.get("tokens") or {}
    facts = [
        _fact(sum(s.rows for s in report.subsets), f"rows in {len(report.subsets)} subsets"),
        _fact(stats.get("records", "n/a"), "synthesis records kept"),
        _fact(stats.get("duplicates_dropped", "n/a"), "duplicates removed"),
        _fact(sum((stats.get("rejected") or {}).values()), "inputs rejected"),
        _fact(sum((stats.get("skipped") or {}).values()), "inputs skipped"),
        _fact(_listing(stats.get("teacher_models")), "teacher model(s)"),
        _fact(_listing(stats.get("prompt_versions")), "prompt version(s)"),
        _fact(cost_text(stats["cost_usd"]) if "cost_usd" in stats else "n/a", "teacher cost (USD)"),
        _fact(stats.get("requests", "n/a"), "teacher requests"),
        _fact(f"{tokens.get('prompt', 0)} / {tokens.get('completion', 0)}" if tokens else "n/a", "tokens in / out"),
    ]
    rows = "".join(
        f"<tr><td>{_e(s.name)}</td><td>{s.rows}</td>"
        + "<td>"
        + "; ".join(
            f"{_e(name)} median {_percentile(sorted(v), 0.5) if v else 'n/a'}" for name, v in s.lengths.items()
        )
        + f"</td><td>{_e(s.openings.most_common(1)[0][0]) + ' …' if s.openings else ''}</td></tr>"
        for s in report.subsets
    )
    return (
        f'<header><h1>Data report: {_e(report.title)}</h1><div class="muted">{_e(stats.get("kind", "dataset"))}'
        f" · prompt hash(es) {_e(_listing(stats.get('prompt_hashes')))} · strategies"
        f" {_e(_listing(stats.get('strategies')))} · lengths in {_e(report.unit)}</div>"
        f'<div class="facts">{"".join(facts)}</div></header>'
        f"<section><h2>Subsets</h2><table><tr><th>subset</th><th>rows</th><th>lengths ({_e(report.unit)})</th>"
        f"<th>most common question opening</th></tr>{rows}</table></section>"
    )


def _gallery(subset: SubsetReport) -> str:
    caption = subset.name.startswith("caption")
    prompt_label, response_label = ("caption request", "caption") if caption else ("question", "answer")
    cards = []
    for sample in subset.samples:
        image = ""
        if sample["thumbnail"]:
            image = f'<img src="{sample["thumbnail"]}" alt="{_e(sample["id"])}">'
        elif sample["has_image"]:
            image = '<div class="noimg">unreadable image</div>'
        extra = f'<div class="muted">+{sample["extra_turns"]} more turns</div>' if sample["extra_turns"] else ""
        cards.append(
            f'<div class="card">{image}<div class="body">'
            f'<div class="label">{prompt_label}</div><div class="text">{_e(sample["prompt"])}</div>'
            f'<div class="label">{response_label}</div><div class="text">{_e(sample["response"])}</div>'
            f'{extra}<div class="id">{_e(sample["id"])}</div></div></div>'
        )
    if not cards:
        return '<p class="muted">no rows sampled</p>'
    return f'<div class="gallery">{"".join(cards)}</div>'


def _openings(subset: SubsetReport) -> str:
    if not subset.openings:
        return ""
    rows = "".join(
        f"<tr><td>{_e(text)} …</td><td>{count}</td><td>{100 * count / subset.rows:.0f}%</td></tr>"
        for text, count in subset.openings.most_common(TOP_OPENINGS)
    )
    return f"<div><h3>Most common question openings</h3><table>{rows}</table></div>"


def _subset_section(subset: SubsetReport, unit: str) -> str:
    histograms = "".join(histogram_svg(values, name, unit) for name, values in subset.lengths.items())
    return (
        f'<section id="{_e(subset.name)}"><h2>{_e(subset.name)} <span class="muted">({subset.rows} rows,'
        f" {len(subset.samples)} sampled)</span></h2>"
        f'<div class="cols"><div class="hists">{histograms}</div>{_openings(subset)}</div>'
        f"<h3>Sampled rows</h3>{_gallery(subset)}</section>"
    )


def _left_out(report: Report, kind: str, title: str) -> str:
    counts = report.stats.get(kind) or {}
    examples = report.examples.get(kind) or {}
    if not counts and not examples:
        return f'<h3>{title}</h3><p class="muted">none</p>'
    rows = []
    for reason in [*counts, *(r for r in examples if r not in counts)]:
        shown = "".join(
            f'<div><span class="muted">{_e(ex["origin"])}</span> {_e(ex["detail"])}'
            + (f"<pre>{_e(ex['raw'])}</pre>" if ex["raw"] and ex["raw"].strip() != ex["detail"].strip() else "")
            + "</div>"
            for ex in examples.get(reason, [])
        )
        rows.append(f"<tr><td>{_e(reason)}</td><td>{_e(counts.get(reason, ''))}</td><td>{shown}</td></tr>")
    return f"<h3>{title}</h3><table><tr><th>reason</th><th>inputs</th><th>examples</th></tr>{''.join(rows)}</table>"


def render(report: Report) -> str:
    """The whole page as a string."""
    subsets = "".join(_subset_section(subset, report.unit) for subset in report.subsets)
    left_out = (
        f'<section id="left-out"><h2>Left out</h2><p class="muted">Counts from stats.json; raw examples from'
        f" {_e(report.examples_source)}.</p>{_left_out(report, 'rejected', 'Rejected replies')}"
        f"{_left_out(report, 'skipped', 'Skipped inputs')}</section>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Data report: {_e(report.title)}</title><style>{CSS}</style></head>"
        f"<body>{_overview(report)}{subsets}{left_out}</body></html>\n"
    )
