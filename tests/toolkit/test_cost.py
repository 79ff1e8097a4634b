"""toolkit/cost.py: cost text and money sums that agree whatever the order."""

import random

from toolkit.cost import NO_PRICE, add_usd, cost_text


def test_cost_text_names_a_missing_price_instead_of_zero():
    assert cost_text(None) == NO_PRICE and cost_text(0.01675) == "$0.0168"


def test_sums_on_the_grid_agree_in_any_order_where_float_sums_do_not():
    costs = [round(random.Random(seed).uniform(0, 0.01), 8) for seed in range(400)]
    float_sums, grid_sums = set(), set()
    for shuffle in range(20):
        order = random.Random(shuffle).sample(costs, len(costs))
        float_sums.add(sum(order))
        total = 0.0
        for cost in order:
            total = add_usd(total, cost)
        grid_sums.add(total)
    assert len(float_sums) > 1  # plain float addition depends on the order
    assert len(grid_sums) == 1 and round(grid_sums.pop(), 8) == round(sum(costs), 8)
