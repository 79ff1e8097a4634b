"""Token-budget batches: within the budget, full, and every row kept in order."""

import random

import pytest

from recipes.token_budget import batch_cost, budget_batches, check_budget
from toolkit.cli import InputError


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batches_respect_the_budget_keep_every_row_and_are_full(packed, seed):
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(5, 40), rng.randint(200, 512)]) for _ in range(300)]  # short text, long image
    budget = 1024
    batches = list(budget_batches(range(len(lengths)), lengths.__getitem__, budget, packed))
    assert [row for batch in batches for row in batch] == list(range(len(lengths)))  # none lost, none reordered
    costs = [batch_cost([lengths[row] for row in batch], packed) for batch in batches]
    assert max(costs) <= budget
    for batch, following in zip(batches, batches[1:]):  # each batch closed only because the next row did not fit
        assert batch_cost([lengths[row] for row in [*batch, following[0]]], packed) > budget
    assert len({len(batch) for batch in batches}) > 1  # the row count follows the lengths


def test_costs_count_padding_only_for_padded_batches():
    assert batch_cost([10, 30, 20], packed=False) == 90
    assert batch_cost([10, 30, 20], packed=True) == 60


def test_a_budget_below_max_length_is_refused():
    check_budget(2048, 2048)
    with pytest.raises(InputError, match="max_tokens_per_batch=1000 is smaller than max_length=2048"):
        check_budget(1000, 2048)
    with pytest.raises(InputError, match="needs max_length"):
        check_budget(1000, None)
