"""Staying inside what the provider and the wallet allow: rate buckets, backoff, token estimates and cost.

Everything here is pure bookkeeping with an injectable clock, so it is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from toolkit.cost import add_usd


# USD per 1M tokens (input, output, cached input), list prices at the time of writing; override with --prices /
# --price-*. Cached input is what prompt tokens served from the provider's prefix cache cost.
DEFAULT_PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-4o": (2.50, 10.00, 1.25),
    "gpt-4o-mini": (0.15, 0.60, 0.075),
    "gpt-4.1": (2.00, 8.00, 0.50),
    "gpt-4.1-mini": (0.40, 1.60, 0.10),
    "gpt-4.1-nano": (0.10, 0.40, 0.025),
    "gpt-4-turbo": (10.00, 30.00, 10.00),
}
BACKOFF_BASE = 0.5  # seconds: the default base of backoff_delay (--backoff-base)
BATCH_DISCOUNT = 0.5  # the Batch API bills half the synchronous price, cached input included
CHARS_PER_TOKEN = 3.0  # deliberately pessimistic (English averages ~4), so budgets are not overrun


class TokenBucket:
    """Refills `per_minute` units per minute up to `capacity`; a request may take the bucket into debt.

    Debt (rather than refusing requests larger than the capacity) keeps the long-run rate exact while still letting
    one big request through; later callers wait until the debt is repaid.
    """

    def __init__(
        self,
        per_minute: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("rate must be positive")
        self.rate = per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, self.rate)
        self.level = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> float:
        """Wait until `amount` (capped at capacity) is available, take it; returns the seconds waited."""
        waited = 0.0
        async with self._lock:  # first come, first served
            while True:
                self._refill()
                need = min(amount, self.capacity) - self.level
                if need <= 0:
                    self.level -= amount
                    return waited
                delay = need / self.rate
                await self.sleep(delay)
                waited += delay

    def refund(self, amount: float) -> None:
        """Give back units reserved but not used (e.g. estimated tokens above the actual usage)."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


def backoff_delay(
    attempt: int, base: float = BACKOFF_BASE, cap: float = 30.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt)) seconds."""
    rng = rng or random
    return rng.uniform(0.0, min(cap, base * 2.0 ** max(0, attempt)))


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds, fractional allowed, or an HTTP date)."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def estimate_text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) + 4


def estimate_image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's tile rule: 85 for low detail; else fit in 2048, shortest side to 768, 170 per 512-px tile + 85."""
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


@dataclass(frozen=True)
class Price:
    input_per_m: float
    output_per_m: float
    cached_input_per_m: float | None = None  # None: cached tokens cost the full input price

    def cost(self, prompt_tokens: float, completion_tokens: float, cached_tokens: float = 0) -> float:
        """USD for one request; `cached_tokens` (part of `prompt_tokens`) at the cached rate."""
        cached_rate = self.input_per_m if self.cached_input_per_m is None else self.cached_input_per_m
        fresh = prompt_tokens - cached_tokens
        return (fresh * self.input_per_m + cached_tokens * cached_rate + completion_tokens * self.output_per_m) / 1e6

    def scaled(self, factor: float) -> Price:
        """The same price list times `factor` (e.g. the Batch API's discount)."""
        cached = None if self.cached_input_per_m is None else self.cached_input_per_m * factor
        return Price(self.input_per_m * factor, self.output_per_m * factor, cached)

    def as_list(self) -> list[float | None]:
        return [self.input_per_m, self.output_per_m, self.cached_input_per_m]


def resolve_price(
    model: str,
    prices_file: str | Path | None = None,
    input_per_m: float | None = None,
    output_per_m: float | None = None,
    cached_input_per_m: float | None = None,
) -> Price | None:
    """Price of `model`: explicit flags, else the JSON table (`{"model": [in, out(, cached in)]}`), else defaults;
    None if unknown.

    Dated snapshots (`gpt-4o-2024-08-06`) fall back to their family's entry, longest matching prefix first. A cached
    input price not known is the full input price (no discount is assumed).
    """
    table: dict[str, tuple] = dict(DEFAULT_PRICES)
    if prices_file is not None:
        loaded = json.loads(Path(prices_file).read_text(encoding="utf-8"))
        table.update({name: tuple(float(value) for value in entry[:3]) for name, entry in loaded.items()})
    base = None
    for name in sorted(table, key=len, reverse=True):
        if model == name or model.startswith(name + "-"):
            base = table[name]
            break
    if input_per_m is None and output_per_m is None:
        if base is None:
            if cached_input_per_m is not None:
                raise ValueError(f"no price known for {model!r}: give --price-input and --price-output too")
            return None
        cached = cached_input_per_m if cached_input_per_m is not None else (base[2] if len(base) > 2 else None)
        return Price(base[0], base[1], cached)
    if base is None and (input_per_m is None or output_per_m is None):
        raise ValueError(f"no price known for {model!r}: give both --price-input and --price-output")
    if cached_input_per_m is None and base is not None and input_per_m is None and len(base) > 2:
        cached_input_per_m = base[2]  # the input price is the table's, so its cached rate still applies
    return Price(
        input_per_m if input_per_m is not None else base[0],
        output_per_m if output_per_m is not None else base[1],
        cached_input_per_m,
    )


class CostMeter:
    """Spent plus in-flight reservations, so concurrent requests can never jointly exceed the budget.

    Each request reserves its estimated cost (estimated prompt + max completion tokens). When the provider bills more
    tokens than estimated, every later reservation is scaled up by the largest billed/estimated ratio seen so far, so
    the next request is refused before it could cross the cap. Only requests already in flight when the first such
    reply arrives can overshoot: at worst `concurrency` requests' worth of extra tokens.
    """

    def __init__(self, price: Price | None, max_cost: float | None, spent: float = 0.0) -> None:
        self.price = price
        self.max_cost = max_cost
        self.spent = spent
        self.reserved = 0.0
        self.prompt_factor = 1.0  # largest billed / estimated prompt tokens seen
        self.completion_factor = 1.0  # largest billed / max completion tokens seen

    def estimate(self, prompt_tokens: int, max_completion_tokens: int) -> float:
        if not self.price:
            return 0.0
        return self.price.cost(prompt_tokens * self.prompt_factor, max_completion_tokens * self.completion_factor)

    def try_reserve(self, amount: float) -> bool:
        """Reserve `amount` USD if it fits under the budget; False means: start no new request."""
        if self.max_cost is not None and self.spent + self.reserved + amount > self.max_cost:
            return False
        self.reserved += amount
        return True

    def settle(
        self,
        reserved: float,
        prompt_tokens: int,
        completion_tokens: int,
        expected: tuple[int, int] | None = None,
        cached_tokens: int = 0,
    ) -> float:
        """Replace a reservation by the billed cost (cached prompt tokens at the cached rate); returns that cost.

        `expected` (estimated prompt tokens, max completion tokens) lets the meter learn how far billing exceeds
        the estimates, so later reservations cover it.
        """
        actual = self.price.cost(prompt_tokens, completion_tokens, cached_tokens) if self.price else 0.0
        self.reserved -= reserved
        self.spent = add_usd(self.spent, actual)
        if expected is not None:
            estimated_prompt, max_completion = expected
            if estimated_prompt > 0:
                self.prompt_factor = max(self.prompt_factor, prompt_tokens / estimated_prompt)
            if max_completion > 0:
                self.completion_factor = max(self.completion_factor, completion_tokens / max_completion)
        return actual


class BudgetExhausted(Exception):
    """The next request could push the cost past --max-cost."""


class BudgetGate:
    """A CostMeter shared by concurrent requests: a reservation that does not fit waits while other requests are in
    flight (their billed cost usually settles below their reservation, freeing budget), as batch mode waits for its
    running batches; only when none is in flight and it still does not fit is the budget spent (BudgetExhausted)."""

    def __init__(self, meter: CostMeter) -> None:
        self.meter = meter
        self.in_flight = 0
        self._freed = asyncio.Event()

    async def reserve(self, amount: float) -> None:
        while not self.meter.try_reserve(amount):
            if not self.in_flight:
                raise BudgetExhausted
            self._freed.clear()
            await self._freed.wait()
        self.in_flight += 1

    def settle(self, reserved: float, prompt_tokens: int = 0, completion_tokens: int = 0, **billed) -> float:
        """CostMeter.settle of one reserved request; wakes the requests waiting for budget."""
        self.in_flight -= 1
        self._freed.set()
        return self.meter.settle(reserved, prompt_tokens, completion_tokens, **billed)
