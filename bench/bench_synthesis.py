"""Synthesis throughput against a teacher with long-tailed latency, at 64, 256 and 1024 requests in flight.

    python bench/bench_synthesis.py [--median 8] [--p95 30] [--time-scale 1] [--levels 64 256 1024] [--waves 3]
                                    [--http-only] [--loop paced|asyncio|uvloop]

The offline teacher runs in its own process (its CPU time does not share our GIL) and draws each request's latency
from a log-normal with the given median and 95th percentile (8 s and 30 s by default: sigma = ln(p95/median)/1.645),
multiplied by --time-scale (1 = real latency; 0.05 = x1/20, which needs 20x the CPU per second). The client side is
the real CLI code path (`synthesize.main`, caption-qa one-call, one request per image, records fsync'd).

Ideal rate = in-flight / mean latency (mean = median * exp(sigma^2 / 2)). Achieved rate is the steady-state rate:
records written per second between 30% and 60% of the items, while the queue is still full (each level runs `waves`
x in-flight items, so the queue empties only after (waves - 1) / waves of them) -- the run's end, where the last
slow requests finish alone, is not throughput. Also reported: the client's CPU per request (process time of this
process, less the thread time of the bench's own 10 Hz file watcher) in that same steady window -- what each request
of a long run costs -- and over the whole run, which adds the start (listing the inputs, opening one connection per
in-flight request, each used only `waves` times here) and the tail; and the load average, since the CPUs may be
shared. Prints a markdown table.

`--loop asyncio` / `--loop uvloop` run the same CLI on the stock asyncio loop or on uvloop (`pip install uvloop`)
instead of its paced loop (dataset_scripts/event_loop.py), to compare client CPU; run each arm in its own process.

`--http-only` sends the same requests (same bodies, same teacher, same in-flight counts) through the client's own
aiohttp session, on the client's own event loop (PacedLoop), and does nothing else: no image reads or checks, no
reply parsing, no writes. Its CPU per request is the floor the HTTP library and the event loop put under the
client's; the images are prepared before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import math
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from dataset_scripts import synthesize as synthesize_module
from dataset_scripts.endpoints import Endpoint
from dataset_scripts.images import prepare, read_file
from dataset_scripts.prompt_set import load_prompt_set
from dataset_scripts.synthesize import build_parser, sampling_parameters
from dataset_scripts.synthesize import main as synthesize
from dataset_scripts.tasks import TaskSpec
from dataset_scripts.teacher_client import chat_request
from modeling_allava.processing_allava import max_image_pixels
from recipes.tiny import shapes_world


HEADER = (
    "| in flight | items | wall s | steady req/s | ideal req/s | achieved / ideal | client CPU ms/req, steady "
    "| client CPU ms/req, whole run | load (1 min) | bench watcher ms/req (not counted) |"
)


def start_teacher(median: float, sigma: float) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "recipes.tiny.offline_teacher", "--port", "0", "--latency", str(median)]
    process = subprocess.Popen([*command, "--latency-sigma", str(sigma)], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    return process, line.rsplit(" ", 1)[1].strip()


class PlainLoop:
    """Stands in for the CLI's PacedLoop: the stock asyncio loop or uvloop, no pacing (the `--loop` comparison)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def observe(self, seconds: float) -> None:
        """Latencies pace nothing here."""

    def run(self, coroutine):
        if self.kind == "uvloop":
            import uvloop

            return uvloop.run(coroutine)
        return asyncio.run(coroutine)


def event_loop(kind: str) -> contextlib.AbstractContextManager:
    """The CLI (and the HTTP-only client) on loop `kind`: the shipped paced loop, or a plain one in its place."""
    if kind == "paced":
        return contextlib.nullcontext()
    return mock.patch.object(synthesize_module, "PacedLoop", lambda: PlainLoop(kind))


class Watcher(threading.Thread):
    """Counts finished requests a few times a second: (monotonic time, finished, client CPU seconds) samples.

    Finished requests are the lines of the growing records file, or `done` (a list the HTTP-only client appends to).
    Client CPU is this process's CPU time less this thread's own (`own_cpu`, the watcher's cost, kept out).
    """

    def __init__(self, path: Path | None = None, done: list | None = None) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.done = done
        self.samples: list[tuple[float, int, float]] = []
        self.own_cpu = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        offset, count = 0, 0
        while True:
            final = self.stopped.is_set()  # the run has ended: one last count, so every record is seen
            if self.done is not None:
                count = len(self.done)
            elif self.path.exists():
                with self.path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
                count += chunk.count(b"\n")
            self.own_cpu = time.thread_time()
            self.samples.append((time.monotonic(), count, time.process_time() - self.own_cpu))
            if final:
                return
            self.stopped.wait(0.1)

    def between(self, low: int, high: int) -> tuple[float, float]:
        """(records per second, client CPU ms per record) from the last sample with <= low records to the first
        with >= high: the steady state, where as many requests start as finish. The two samples bracket the window,
        so they differ even when a short run passes both counts within one tick."""
        start = [sample for sample in self.samples if sample[1] <= low][-1]
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


def request_bodies(images: Path, items: int) -> list[bytes]:
    """The chat request bodies the CLI sends for the first `items` images, with the options run_level gives it."""
    options = ["--mode", "caption-qa", "--input", str(images), "--output", "-", "--model", "bench"]
    args = build_parser().parse_args(options)
    prompts = load_prompt_set(args.prompt_version, args.prompt_dir)
    spec = TaskSpec(args.mode, args.strategy, args.model, prompts, sampling_parameters(args), args.image_detail)
    (template,) = spec.templates
    bodies = []
    for path in sorted(images.rglob("*.png"))[:items]:
        image = prepare(read_file(path, args.max_image_bytes), args.max_side, args.max_pixels or max_image_pixels())
        messages = spec.messages(template, image)
        bodies.append(json.dumps(chat_request(args.model, messages, spec.sampling)).encode("utf-8"))
    return bodies


async def send_all(
    base_url: str, in_flight: int, bodies: list[bytes], done: list, on_latency: Callable[[float], None]
) -> None:
    """Each body POSTed through the client's aiohttp session (Endpoint.session) by `in_flight` workers; each
    request's latency goes to `on_latency`, as the client reports it."""
    endpoint = Endpoint(
        base_url,
        api_key="bench-key",
        timeout=600,
        concurrency=in_flight,
        rpm=None,
        tpm=None,
        ssl_context=ssl.create_default_context(),
    )
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            body = queue.pop()
            started = time.monotonic()
            async with endpoint.session.post(endpoint.chat_url, data=body, proxy=endpoint.proxy) as response:
                reply = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {reply[:200]!r}")
            json.loads(reply)
            on_latency(time.monotonic() - started)
            done.append(None)

    try:
        await asyncio.gather(*[worker() for _ in range(in_flight)])
    finally:
        await endpoint.aclose()


def run_http_only(images: Path, base_url: str, in_flight: int, items: int) -> tuple[int, Watcher, float, float]:
    """(requests, watcher, wall seconds, CPU seconds) of the HTTP-only client; gc frozen first, and the same paced
    event loop, as the CLI has."""
    bodies = request_bodies(images, items)
    loop = synthesize_module.PacedLoop()
    done: list = []
    watcher = Watcher(done=done)
    watcher.start()
    gc.freeze()
    started, cpu = time.monotonic(), time.process_time()
    try:
        loop.run(send_all(base_url, in_flight, bodies, done, loop.observe))
    finally:
        gc.unfreeze()
        watcher.stopped.set()
        watcher.join()
    return len(done), watcher, time.monotonic() - started, time.process_time() - cpu - watcher.own_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--median", type=float, default=8.0, help="median latency in seconds, before scaling")
    parser.add_argument("--p95", type=float, default=30.0, help="95th percentile latency in seconds, before scaling")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every latency by this (1 = real)")
    parser.add_argument("--levels", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--waves", type=int, default=3, help="items per level = waves x in-flight (default: 3)")
    parser.add_argument("--http-only", action="store_true", help="the same requests, aiohttp alone: the CPU floor")
    parser.add_argument("--loop", choices=("paced", "asyncio", "uvloop"), default="paced",
                        help="the event loop: the CLI's paced loop (default), stock asyncio, or uvloop")  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "bench-key")
    sigma = math.log(args.p95 / args.median) / 1.645
    median = args.median * args.time_scale
    mean = median * math.exp(sigma**2 / 2)
    teacher, base_url = start_teacher(median, sigma)
    try:
        with tempfile.TemporaryDirectory(prefix="allava-bench-") as tmp, event_loop(args.loop):
            workdir = Path(tmp)
            images = workdir / "images"
            shapes_world.write_scenes(images, args.waves * max(args.levels), seed=0)
            machine = f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
            print(
                f"latency log-normal: median {args.median:g} s, p95 {args.p95:g} s (sigma {sigma:.3f}), time scale "
                f"x{args.time_scale:g} -> median {median:.3g} s, mean {mean:.3g} s; caption-qa one-call; {machine}"
                + f"; event loop: {args.loop}"
                + ("; HTTP only (aiohttp session, no client work)\n" if args.http_only else "\n")
            )
            print(HEADER)
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for level in args.levels:
                items = args.waves * level
                if args.http_only:
                    requests, watcher, wall, cpu_s = run_http_only(images, base_url, level, items)
                    cpu_ms = cpu_s * 1000 / requests
                else:
                    cpu = time.process_time()
                    summary, watcher = run_level(images, base_url, level, items, workdir)
                    requests = summary["requests"]
                    cpu_ms = (time.process_time() - cpu - watcher.own_cpu) * 1000 / requests
                    wall = summary["this_run"]["wall_time_s"]
                rate, steady_cpu_ms = watcher.between(int(0.3 * items), int(0.6 * items))
                ideal = level / mean
                cells = [level, items, f"{wall:.1f}", f"{rate:.1f}", f"{ideal:.1f}", f"{rate / ideal:.2f}"]
                cells += [f"{steady_cpu_ms:.1f}", f"{cpu_ms:.1f}", f"{os.getloadavg()[0]:.1f}"]
                cells.append(f"{watcher.own_cpu * 1000 / requests:.2f}")
                print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    finally:
        teacher.terminate()
        teacher.wait()


if __name__ == "__main__":
    main()
