"""Honest cost: the fixed prompt goes first (prefix caching), cached tokens at the cached rate, per subset/endpoint."""

import json

from dataset_scripts.limits import Price
from tests.dataset_scripts.helpers_synthesis import records
from toolkit.cost import NO_PRICE


def test_cached_prompt_tokens_are_priced_at_the_cached_rate(synth, shapes_dir, tmp_path, teacher):
    out = tmp_path / "out"
    prices = ["--price-input", "1000", "--price-output", "2000", "--price-cached-input", "100"]
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), "--concurrency", "1", *prices]
    _, summary = synth(*args, output=out)
    rows = records(out)
    price = Price(1000, 2000, 100)
    # the instruction comes before the image, so every request after the first starts with a prefix seen before
    assert sum(row["usage"]["cached_tokens"] > 0 for row in rows) == len(rows) - 1 == 23
    for row in rows:
        usage = row["usage"]
        expected = price.cost(usage["prompt_tokens"], usage["completion_tokens"], usage["cached_tokens"])
        assert abs(usage["cost_usd"] - expected) < 1e-6
    assert summary["tokens"]["cached"] == sum(row["usage"]["cached_tokens"] for row in rows) > 0
    by_subset = summary["by_subset"]["caption_laion+instruct_laion"]
    assert by_subset["requests"] == 24 and abs(by_subset["cost_usd"] - summary["cost_usd"]) < 1e-6
    endpoint = summary["this_run"]["by_endpoint"][teacher.base_url]
    assert endpoint["cached_tokens"] == summary["tokens"]["cached"] and endpoint["requests"] == 24
    full = sum(price.cost(r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"]) for r in rows)
    assert summary["cost_usd"] < full


def test_text_mode_system_prompt_is_cached(synth, tmp_path):
    instructions = tmp_path / "in.txt"
    instructions.write_text("What is 2 plus 5?\nWhat is 3 plus 4?\nWhat is 1 plus 1?\n")
    _, summary = synth("--mode", "text", "--input", str(instructions), "--concurrency", "1", output=tmp_path / "o")
    assert summary["tokens"]["cached"] > 0 and list(summary["by_subset"]) == ["text"]


def test_without_a_price_the_cost_says_so(synth, shapes_dir, tmp_path, capsys):
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--strategy", "direct", "--input", str(shapes_dir), output=out)
    assert summary["cost"] == NO_PRICE and summary["cost_usd"] is None and summary["this_run"]["cost_usd"] is None
    assert summary["by_subset"]["instruct_laion"]["cost_usd"] == NO_PRICE
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["cost"] == NO_PRICE and "$0" not in json.dumps(report)
