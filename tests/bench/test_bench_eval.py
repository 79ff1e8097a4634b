"""bench/bench_eval.py at a tiny size (runs where the lmms-eval extra and decord are installed: CI's lmms-eval job)."""

import pytest

from tests.recipes.sharded import free_port


pytest.importorskip("lmms_eval", reason="the lmms-eval extra is not installed (pip install .[lmms-eval] decord)")
pytest.importorskip("decord", reason="lmms-eval's llava_hf imports decord (pip install decord)")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
DOCS = 4


def test_every_run_is_measured_and_gives_llava_hf_greedy_answers(capsys):
    from bench.bench_eval import main

    argv = ["--docs", str(DOCS), "--max-new-tokens", "3", "--batch-size", "2", "--rounds", "1"]
    results = main([*argv, "--port", str(free_port())])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    names = ["lmms-eval llava_hf", "lmms-eval + allava plugin", "our evaluator", "our evaluator, 2 processes"]
    assert [row[0].strip() for row in rows] == names
    baseline = results["lmms-eval llava_hf"]
    assert sorted(baseline["answers"]) == [str(doc) for doc in range(DOCS)]
    for row, name in zip(rows, names):
        rate = float(row[3])
        assert rate > 0 and row[3].strip() == f"{results[name]['rate']:.2f}"
        assert row[4].strip() == f"{results[name]['rate'] / baseline['rate']:.2f}x"
        # The same weights and prompts: greedy answers equal lmms-eval's llava_hf, whatever runs them.
        assert results[name]["answers"] == baseline["answers"]
        assert row[6].strip() == f"{DOCS}/{DOCS}"
    two, one = results["our evaluator, 2 processes"], results["our evaluator"]
    assert rows[3][5].strip() == f"{two['rate'] / one['rate']:.2f}x"
