"""Synthesis throughput against a teacher with long-tailed latency, at 64, 256 and 1024 requests in flight.

    python bench/bench_synthesis.py [--median 8] [--p95 30] [--time-scale 1] [--levels 64 256 1024] [--waves 3]

The offline teacher runs in its own process (its CPU time does not share our GIL) and draws each request's latency
from a log-normal with the given median and 95th percentile (8 s and 30 s by default: sigma = ln(p95/median)/1.645),
multiplied by --time-scale (1 = real latency; 0.05 = x1/20, which needs 20x the CPU per second). The client side is
the real CLI code path (`synthesize.main`, caption-qa one-call, one request per image, records fsync'd).

Ideal rate = in-flight / mean latency (mean = median * exp(sigma^2 / 2)). Achieved rate is the steady-state rate:
records written per second between 30% and 60% of the items, while the queue is still full (each level runs
`waves` x in-flight items, so the queue empties only after (waves - 1) / waves of them) -- the run's end, where the
last slow requests finish alone, is not throughput. Also reported: the client's CPU per request (process time of
this process: client plus a 5 Hz file watcher) in that same steady window -- what each request of a long run costs --
and over the whole run, which adds the start (listing the inputs, opening one connection per in-flight request, each
used only `waves` times here) and the tail; and the load average, since the CPUs may be shared. Prints a markdown
table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dataset_scripts.synthesize import main as synthesize
from recipes.tiny import shapes_world


HEADER = (
    "| in flight | items | wall s | steady req/s | ideal req/s | achieved / ideal | client CPU ms/req, steady "
    "| client CPU ms/req, whole run | load (1 min) |"
)


def start_teacher(median: float, sigma: float) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "recipes.tiny.offline_teacher", "--port", "0", "--latency", str(median)]
    process = subprocess.Popen([*command, "--latency-sigma", str(sigma)], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    return process, line.rsplit(" ", 1)[1].strip()


class Watcher(threading.Thread):
    """Counts the lines of a growing records file a few times a second: (monotonic time, records) samples."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.samples: list[tuple[float, int, float]] = []  # (monotonic time, records, process CPU seconds)
        self.stopped = threading.Event()

    def run(self) -> None:
        offset, count = 0, 0
        while not self.stopped.wait(0.2):
            if self.path.exists():
                with self.path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
                count += chunk.count(b"\n")
            self.samples.append((time.monotonic(), count, time.process_time()))

    def between(self, low: int, high: int) -> tuple[float, float]:
        """(records per second, process CPU ms per record) from the first sample with >= low records to the first
        with >= high: the steady state, where as many requests start as finish."""
        start = next(sample for sample in self.samples if sample[1] >= low)
        end = next(sample for sample in self.samples if sample[1] >= high)
        records = end[1] - start[1]
        return records / max(end[0] - start[0], 1e-9), (end[2] - start[2]) * 1000 / max(records, 1)


def run_level(images: Path, base_url: str, in_flight: int, items: int, workdir: Path) -> tuple[dict, Watcher]:
    out = workdir / f"c{in_flight}"
    argv = [
        "--mode", "caption-qa", "--input", str(images), "--output", str(out), "--base-url", base_url,
        "--model", "bench", "--concurrency", str(in_flight), "--limit", str(items), "--timeout", "600", "--quiet",
    ]  # fmt: skip
    watcher = Watcher(out / "records-00000-of-00001.jsonl")
    watcher.start()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = synthesize(argv)
    finally:
        watcher.stopped.set()
        watcher.join()
    summary = json.loads(next(out.glob("summary-*.json")).read_text())
    if code != 0 or summary["done"] != items:
        raise RuntimeError(f"{in_flight} in flight: exit {code}, {summary['done']}/{items} done")
    return summary, watcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--median", type=float, default=8.0, help="median latency in seconds, before scaling")
    parser.add_argument("--p95", type=float, default=30.0, help="95th percentile latency in seconds, before scaling")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every latency by this (1 = real)")
    parser.add_argument("--levels", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--waves", type=int, default=3, help="items per level = waves x in-flight (default: 3)")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "bench-key")
    sigma = math.log(args.p95 / args.median) / 1.645
    median = args.median * args.time_scale
    mean = median * math.exp(sigma**2 / 2)
    teacher, base_url = start_teacher(median, sigma)
    try:
        with tempfile.TemporaryDirectory(prefix="allava-bench-") as tmp:
            workdir = Path(tmp)
            images = workdir / "images"
            shapes_world.write_scenes(images, args.waves * max(args.levels), seed=0)
            machine = f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
            print(
                f"latency log-normal: median {args.median:g} s, p95 {args.p95:g} s (sigma {sigma:.3f}), time scale "
                f"x{args.time_scale:g} -> median {median:.3g} s, mean {mean:.3g} s; caption-qa one-call; {machine}\n"
            )
            print(HEADER)
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for level in args.levels:
                items = args.waves * level
                cpu = time.process_time()
                summary, watcher = run_level(images, base_url, level, items, workdir)
                cpu_ms = (time.process_time() - cpu) * 1000 / summary["requests"]
                rate, steady_cpu_ms = watcher.between(int(0.3 * items), int(0.6 * items))
                ideal = level / mean
                wall = summary["this_run"]["wall_time_s"]
                cells = [level, items, f"{wall:.1f}", f"{rate:.1f}", f"{ideal:.1f}", f"{rate / ideal:.2f}"]
                cells += [f"{steady_cpu_ms:.1f}", f"{cpu_ms:.1f}", f"{os.getloadavg()[0]:.1f}"]
                print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    finally:
        teacher.terminate()
        teacher.wait()


if __name__ == "__main__":
    main()
