"""The synthesis bench runs end to end on a short latency and prints one table row per level."""

import asyncio
import subprocess
import sys
import time

from bench.bench_synthesis import PlainLoop, Watcher, event_loop, request_bodies
from dataset_scripts import synthesize as synthesize_module
from dataset_scripts.event_loop import PacedLoop
from dataset_scripts.synthesize import main as synthesize
from recipes.tiny import shapes_world
from recipes.tiny.offline_teacher import OfflineTeacher
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


def test_the_http_only_floor_prints_a_row_with_its_ratios():
    command = [sys.executable, "bench/bench_synthesis.py", "--levels", "4", "--median", "0.05", "--p95", "0.2"]
    result = subprocess.run([*command, "--http-only"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HTTP only" in result.stdout
    (row,) = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| 4 ")]
    assert int(row[1]) == 12 and all(0 < float(row[column]) for column in (5, 6, 7))


def test_the_http_only_bodies_are_the_ones_the_cli_sends(tmp_path, monkeypatch):
    images = tmp_path / "images"
    shapes_world.write_scenes(images, 3, seed=0)
    monkeypatch.setenv("OPENAI_API_KEY", "bench-key")
    sent = []
    with OfflineTeacher() as teacher:
        answer = teacher.completion
        teacher.completion = lambda raw, *rest: sent.append(raw) or answer(raw, *rest)
        argv = ["--mode", "caption-qa", "--input", str(images), "--output", str(tmp_path / "out"), "--quiet"]
        assert synthesize([*argv, "--base-url", teacher.base_url, "--model", "bench"]) == 0
    assert len(sent) == 3 and sorted(sent) == sorted(request_bodies(images, 3))


def test_the_steady_window_is_bracketed_by_the_samples_around_it_even_within_one_tick():
    watcher = Watcher(done=[])
    watcher.samples = [(0.0, 0, 0.0), (0.1, 2, 0.001), (0.2, 10, 0.009), (0.3, 12, 0.010)]
    rate, cpu_ms = watcher.between(3, 7)  # both counts passed between the second and third samples
    assert round(rate, 6) == 80.0 and round(cpu_ms, 6) == 1.0


def test_the_watchers_own_cpu_is_kept_out_of_the_clients():
    class CostlyCount(list):
        def __len__(self):  # each count burns ~5 ms of the watcher's thread
            deadline = time.thread_time() + 0.005
            while time.thread_time() < deadline:
                pass
            return super().__len__()

    watcher = Watcher(done=CostlyCount())
    watcher.start()
    time.sleep(0.5)  # the "client" (this thread) does nothing meanwhile
    watcher.stopped.set()
    watcher.join()
    client_cpu = watcher.samples[-1][2] - watcher.samples[0][2]
    assert watcher.own_cpu >= 0.02 and client_cpu < 0.25 * watcher.own_cpu


def test_the_loop_arm_runs_the_cli_on_the_stock_loop_and_puts_the_paced_one_back():
    command = [sys.executable, "bench/bench_synthesis.py", "--levels", "4", "--median", "0.05", "--p95", "0.2"]
    result = subprocess.run([*command, "--loop", "asyncio"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "event loop: asyncio" in result.stdout
    (row,) = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| 4 ")]
    assert int(row[1]) == 12 and all(0 < float(row[column]) for column in (5, 6, 7))
    with event_loop("asyncio"):
        plain = synthesize_module.PacedLoop()
        assert isinstance(plain, PlainLoop) and plain.run(asyncio.sleep(0, "ran")) == "ran"
    assert synthesize_module.PacedLoop is PacedLoop
