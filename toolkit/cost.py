"""Teacher cost as people read it: one wording for stdout, summaries, reports and cards."""

from __future__ import annotations


NO_PRICE = "no price configured"  # what every cost reads when no price was known: never a misleading $0


def cost_text(cost_usd: float | None) -> str:
    """A teacher cost for people: dollars, or `no price configured` (None: the runs had no price)."""
    return NO_PRICE if cost_usd is None else f"${cost_usd:.4f}"
