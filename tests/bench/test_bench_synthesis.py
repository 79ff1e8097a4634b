"""The synthesis bench runs end to end on a short latency and prints one table row per level."""

import subprocess
import sys

from tests.dataset_scripts.helpers_synthesis import REPO


def test_the_bench_prints_a_row_per_level_with_its_ratios():
    command = [sys.executable, "bench/bench_synthesis.py", "--levels", "4", "8", "--median", "0.05", "--p95", "0.2"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    rows = [line.split("|")[1:-1] for line in lines]
    header, *levels = rows
    assert "achieved / ideal" in [cell.strip() for cell in header]
    assert [int(row[0]) for row in levels] == [4, 8] and [int(row[1]) for row in levels] == [12, 24]  # 3 waves each
    for row in levels:
        assert all(0 < float(row[column]) for column in (5, 6, 7))  # achieved / ideal, CPU ms/request (steady, all)
