"""Teacher cost as people read it: one wording for stdout, summaries, reports and cards."""

from __future__ import annotations


NO_PRICE = "no price configured"  # what every cost reads when no price was known: never a misleading $0


def cost_text(cost_usd: float | None) -> str:
    """A teacher cost for people: dollars, or `no price configured` (None: the runs had no price)."""
    return NO_PRICE if cost_usd is None else f"${cost_usd:.4f}"


USD_GRID = 10**8  # money is summed in units of 1e-8 dollars, the precision every stored cost has


def add_usd(total: float, amount: float) -> float:
    """`total + amount` on the 1e-8-dollar grid: exact, so sums of the same costs agree in any order (a summary's
    totals, read back from the files, and the run's own meter)."""
    return (round(total * USD_GRID) + round(amount * USD_GRID)) / USD_GRID
