"""Synthesis throughput against the offline teacher with a fixed injected latency, at concurrency 1 ... 256.

    python bench/bench_synthesis.py [--latency 0.5] [--levels 1 2 4 ... 256]

The teacher runs in its own process (so its CPU time does not share our GIL); the client side is the real CLI code
path (`synthesize.main`, caption-qa, one call per image, records fsync'd). With latency L and concurrency c the ideal
rate is c / L requests per second; the table reports how close the client gets, and the client's CPU time per
request (which, unlike the rate, hardly depends on what else the machine is running). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dataset_scripts import shapes_world
from dataset_scripts.synthesize import main as synthesize


HEADER = "| concurrency | items | wall s | achieved req/s | ideal req/s (c/L) | achieved / ideal | client CPU ms/req |"


def start_teacher(latency: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dataset_scripts.offline_teacher", "--port", "0", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    return process, line.rsplit(" ", 1)[1].strip()


def run_level(images: Path, base_url: str, concurrency: int, items: int, workdir: Path) -> dict:
    out = workdir / f"c{concurrency}"
    argv = [
        "--mode", "caption-qa", "--input", str(images), "--output", str(out), "--base-url", base_url,
        "--model", "bench", "--concurrency", str(concurrency), "--limit", str(items), "--quiet",
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = synthesize(argv)
    summary = json.loads(next(out.glob("summary-*.json")).read_text())
    if code != 0 or summary["done"] != items:
        raise RuntimeError(f"concurrency {concurrency}: exit {code}, {summary['done']}/{items} done")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the teacher waits before answering")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    parser.add_argument("--min-items", type=int, default=16, help="items per level: max(min-items, 4 x concurrency)")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "bench-key")
    counts = {level: max(args.min_items, 4 * level) for level in args.levels}
    teacher, base_url = start_teacher(args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="allava-bench-") as tmp:
            workdir = Path(tmp)
            images = workdir / "images"
            shapes_world.write_scenes(images, max(counts.values()), seed=0)
            machine = f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
            print(f"latency {args.latency}s, caption-qa one-call; {machine}\n")
            print(HEADER)
            print("|---:|---:|---:|---:|---:|---:|---:|")
            for level, items in counts.items():
                cpu = time.process_time()
                summary = run_level(images, base_url, level, items, workdir)
                cpu_ms = (time.process_time() - cpu) * 1000 / summary["requests"]
                wall = summary["this_run"]["wall_time_s"]
                rate, ideal = summary["requests"] / wall, level / args.latency
                cells = [level, items, f"{wall:.2f}", f"{rate:.1f}", f"{ideal:.1f}", f"{rate / ideal:.2f}"]
                print("| " + " | ".join(map(str, cells)) + f" | {cpu_ms:.1f} |", flush=True)
            print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        teacher.terminate()
        teacher.wait()


if __name__ == "__main__":
    main()
