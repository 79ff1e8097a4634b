"""Length-sorted batches, the same for every process count; the counts table printed before generating."""

from recipes.benchmarks.batching import batch_key, length_batches, prompt_lengths, share
from recipes.benchmarks.common import Sample
from recipes.benchmarks.progress import plan_table


def samples(images: list[int]) -> list[Sample]:
    return [Sample(id=f"s{i}", prompt="p", images=[object()] * count) for i, count in enumerate(images)]


def test_batches_group_image_count_then_prompt_length_longest_first_ties_in_sample_order():
    items = samples([0, 1, 0, 1, 0, 0])
    lengths = [5, 9, 30, 9, 5, 12]
    batches = length_batches(items, lengths, 2)
    assert [batch.positions for batch in batches] == [(1, 3), (2, 5), (0, 4)]
    assert batches[0].key == batch_key(["s1", "s3"]) != batch_key(["s3", "s1"])
    assert sorted(p for batch in batches for p in batch.positions) == list(range(6))  # every sample exactly once


def test_prompt_lengths_in_chunks_are_the_lengths_of_each_prompt():
    calls = []

    def tokenizer(prompts, add_special_tokens):
        calls.append(len(prompts))
        return {"input_ids": [prompt.split() for prompt in prompts]}

    prompts = ["a b", "c", "d e f", "g h i j", "k"]
    assert prompt_lengths(tokenizer, prompts, chunk=2) == [2, 1, 3, 4, 1] and calls == [2, 2, 1]
    assert prompt_lengths(tokenizer, []) == []


def test_shares_deal_batches_in_turn_and_together_make_all_batches_for_any_process_count():
    batches = length_batches(samples([0] * 7), [7, 6, 5, 4, 3, 2, 1], 2)
    for world_size in (1, 2, 3, 5):
        shares = [share(batches, rank, world_size) for rank in range(world_size)]
        assert sorted(b.positions for s in shares for b in s) == sorted(b.positions for b in batches)
    assert [b.positions for b in share(batches, 1, 2)] == [(2, 3), (6,)]


def test_the_table_counts_generations_per_benchmark_and_per_process():
    table = plan_table({"gqa": (12578, 12578), "mme_perception": (2374, 374)}, world_size=8)
    lines = table.splitlines()
    assert lines[1].split() == ["gqa", "12578", "12578"]
    assert lines[2].split() == ["mme_perception", "2374", "374"]
    assert (
        lines[3].startswith("total")
        and "12952" in lines[3]
        and "(2000 cached, about 1619 per process on 8)" in lines[3]
    )
