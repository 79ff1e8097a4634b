import asyncio
import email.utils
import json
import random

import pytest

from dataset_scripts.limits import (
    BudgetExhausted,
    BudgetGate,
    CostMeter,
    Price,
    TokenBucket,
    backoff_delay,
    estimate_image_tokens,
    parse_retry_after,
    resolve_price,
)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.now += seconds


def test_token_bucket_paces_requests_without_real_sleeping():
    clock = FakeClock()
    bucket = TokenBucket(120, clock=clock, sleep=clock.sleep)  # 2 per second, burst 2

    async def take(n):
        for _ in range(n):
            await bucket.acquire()

    asyncio.run(take(12))
    assert clock.now - 100.0 == pytest.approx(5.0)  # 2 free, then 10 more at 2/s


def test_token_bucket_lets_big_requests_through_in_debt_and_refunds():
    clock = FakeClock()
    bucket = TokenBucket(6000, clock=clock, sleep=clock.sleep)  # 100/s, capacity 100
    asyncio.run(bucket.acquire(1000))  # bigger than the capacity: allowed, leaves a debt
    assert bucket.level == pytest.approx(-900)
    waited = asyncio.run(bucket.acquire(50))
    assert waited == pytest.approx(9.5)  # debt repaid until 50 are available
    bucket.refund(30)
    assert bucket.level == pytest.approx(30)


def test_backoff_has_full_jitter_and_a_cap():
    rng = random.Random(0)
    delays = [backoff_delay(attempt, base=0.5, cap=4.0, rng=rng) for attempt in range(10) for _ in range(20)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert len(set(round(d, 6) for d in delays)) > 100
    assert max(backoff_delay(0, base=0.5, rng=rng) for _ in range(50)) <= 0.5


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=1_000_000) == pytest.approx(30)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_image_token_estimates_follow_the_tile_rule():
    assert estimate_image_tokens(4000, 3000, "low") == 85
    assert estimate_image_tokens(512, 512, "high") == 85 + 170
    assert estimate_image_tokens(1024, 1024, "high") == 85 + 170 * 4  # scaled to 768x768: 2x2 tiles
    assert estimate_image_tokens(2048, 4096, "auto") == 85 + 170 * 6  # 1024x2048 -> 768x1536: 2x3 tiles


def test_price_resolution(tmp_path):
    assert resolve_price("gpt-4o-2024-08-06") == Price(2.50, 10.00, 1.25)
    assert resolve_price("gpt-4o-mini") == Price(0.15, 0.60, 0.075)
    assert resolve_price("my-vllm-model") is None
    assert resolve_price("my-vllm-model", input_per_m=1, output_per_m=2) == Price(1, 2)
    assert resolve_price("gpt-4o", output_per_m=20) == Price(2.50, 20, 1.25)
    with pytest.raises(ValueError, match="--price-input"):
        resolve_price("my-vllm-model", input_per_m=1)
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"my-vllm-model": [0.5, 1.5]}))
    assert resolve_price("my-vllm-model", table) == Price(0.5, 1.5)


def test_cost_meter_never_lets_reservations_exceed_the_budget():
    meter = CostMeter(Price(1000, 1000), max_cost=1.0)  # $0.001 per token
    estimate = meter.estimate(100, 200)
    assert estimate == pytest.approx(0.3)
    reservations = [meter.try_reserve(estimate) for _ in range(5)]
    assert reservations == [True, True, True, False, False]
    assert meter.settle(0.3, 100, 50) == pytest.approx(0.15)
    assert meter.spent + meter.reserved <= 1.0
    assert CostMeter(None, None).try_reserve(10**6)


def run_billing_simulation(concurrency, max_cost, estimate=(10, 10), billed=(60, 10)):
    """`concurrency` workers against a meter; each request bills `billed` tokens where `estimate` was reserved.

    Replies come back oldest first; returns (final spend, requests made)."""
    meter = CostMeter(Price(1e6, 1e6), max_cost=max_cost)  # $1 per token
    in_flight, requests = [], 0
    while True:
        while len(in_flight) < concurrency:
            amount = meter.estimate(*estimate)
            if not meter.try_reserve(amount):
                break
            in_flight.append(amount)
            requests += 1
        if not in_flight:
            return meter.spent, requests
        meter.settle(in_flight.pop(0), *billed, expected=estimate)


def test_cost_meter_learns_billed_usage_and_stops_before_the_cap():
    # Billed 70 per request where 20 was estimated: without learning, the requests in flight near the cap overshoot
    # it by 2.5x their reservations; once the first reply is in, reservations cover the billed usage.
    spent, requests = run_billing_simulation(concurrency=4, max_cost=1000)
    assert spent <= 1000 and requests == 1000 // 70
    # The worst case: a first wave of `concurrency` requests, all sent before any reply reveals the billing.
    spent, requests = run_billing_simulation(concurrency=32, max_cost=1000)
    assert requests >= 32 and 1000 < spent <= 1000 + 32 * 70
    meter = CostMeter(Price(1e6, 1e6), max_cost=None)
    meter.settle(0, 5, 3, expected=(10, 10))  # billed below the estimate: estimates are never lowered
    assert meter.estimate(10, 10) == 20


def test_cached_input_and_batch_prices():
    price = Price(2.0, 8.0, 0.5)
    assert price.cost(1_000_000, 0, cached_tokens=400_000) == 0.6 * 2.0 + 0.4 * 0.5
    assert Price(2.0, 8.0).cost(1_000_000, 0, cached_tokens=400_000) == 2.0  # no cached rate known: full price
    assert price.scaled(0.5) == Price(1.0, 4.0, 0.25)
    assert resolve_price("my-vllm-model", input_per_m=1, output_per_m=2, cached_input_per_m=0.1) == Price(1, 2, 0.1)
    with pytest.raises(ValueError, match="--price-input"):
        resolve_price("my-vllm-model", cached_input_per_m=0.1)


def test_a_reservation_that_does_not_fit_waits_for_those_in_flight():
    async def scenario():
        gate = BudgetGate(CostMeter(Price(1e6, 1e6), max_cost=10.0))
        await gate.reserve(6.0)  # in flight
        waiting = asyncio.create_task(gate.reserve(6.0))
        await asyncio.sleep(0)
        assert not waiting.done()  # 6 + 6 > 10: it waits instead of stopping the run
        gate.settle(6.0, 1, 0)  # billed $1, not $6: room for the second
        await waiting
        assert gate.meter.spent == 1.0 and gate.meter.reserved == 6.0
        gate.settle(6.0, 2, 0)
        with pytest.raises(BudgetExhausted):  # nothing in flight and it still does not fit
            await gate.reserve(8.0)

    asyncio.run(scenario())
