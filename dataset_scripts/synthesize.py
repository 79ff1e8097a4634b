"""Caption-then-QA synthesis against any OpenAI-compatible teacher (OpenAI, a gateway, vLLM / SGLang, the offline one).

    OPENAI_API_KEY=... python dataset_scripts/synthesize.py --mode caption-qa --input images/ --output out/ \\
        --model gpt-4o --concurrency 32 --rpm 500 --max-cost 50

Runs are resumable: rerun the same command after any interruption (kill -9 included) and it continues where it
stopped, without losing or duplicating records. `--base-url` may be repeated (requests go to the endpoint with the
fewest outstanding; failing endpoints are taken out and probed back in); `--api batch` uses the Batch API at half
price, and a rerun polls the batches already submitted instead of paying for them again (batch_runner.py).
How a run ended (outcome.py) is the last line on stderr, `outcome` in the summary and on stdout, and the exit code:
0 finished, 1 failed (the teacher refused, the output folder cannot be written, e.g. a full disk), 2 bad arguments or
inputs (every input skipped included), or the output folder in use by another process, 3 stopped early (budget
reached, inputs whose retries ran out) or interrupted (Ctrl-C; the summary is still written): rerun to continue.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
from pathlib import Path

from dataset_scripts.batch_runner import BatchOptions, BatchSynthesis
from dataset_scripts.endpoints import COOLDOWN_SECONDS, FAILURES_TO_EJECT, read_url_file
from dataset_scripts.event_loop import PacedLoop
from dataset_scripts.filters import FilterOptions
from dataset_scripts.inputs import load_items, select_shard
from dataset_scripts.limits import BACKOFF_BASE, BATCH_DISCOUNT, CostMeter, Price, resolve_price
from dataset_scripts.outcome import RERUN
from dataset_scripts.prompt_set import MODES, STRATEGIES, PromptError, load_prompt_set
from dataset_scripts.runner import RunOptions, Synthesis
from dataset_scripts.sections import reply_char_limit
from dataset_scripts.shards import OutputDir, OutputWriteError, ShardLockedError
from dataset_scripts.tasks import TaskSpec
from dataset_scripts.teacher_client import TeacherClient
from modeling_allava.processing_allava import MAX_IMAGE_PIXELS_ENV, max_image_pixels
from toolkit.cli import InputError, Parser, RunFailed, one_line, public_url, run
from toolkit.scrub import scrub


DEFAULT_SOURCE = {"caption-qa": "laion", "vflan": "vflan", "text": "evol"}
RUN, BATCH = RunOptions(), BatchOptions()  # the defaults of the options below: one source each
# The JSON line on stdout: the shard's totals and how the run ended (the same `outcome` as the last stderr line).
REPORTED = (
    "done",
    "rejected",
    "skipped",
    "tokens",
    "cost",
    "near_duplicates",
    "ended",
    "inputs_left",
    "stopped",
    "outcome",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        "Synthesise ALLaVA-style data with an OpenAI-compatible teacher (resumable; rerun to continue).",
        "python dataset_scripts/synthesize.py --mode caption-qa --input images/ --output out/ --model gpt-4o "
        "--base-url https://api.openai.com/v1",
    )
    what = parser.add_argument_group("what to make")
    what.add_argument("--mode", choices=MODES, required=True)
    what.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="one-call",
        help="caption-qa only: one-call (caption+QA in one reply), two-call (caption, then QA given it), "
        "direct (QA without a caption)",
    )
    what.add_argument(
        "--input",
        required=True,
        help="image folder | JSONL/JSON/CSV manifest (image path or URL [+ question]) | TXT of instructions "
        "(text mode) | hf:<dataset>[:<config>]:<split>",
    )
    what.add_argument("--output", required=True, help="output folder (shards, rejects, skipped, summary, images)")
    what.add_argument("--source-name", help="source in subset names/ids (default: laion, vflan or evol by mode)")
    what.add_argument("--image-column", help="hf: inputs: image column (default: the first Image feature)")
    what.add_argument("--limit", type=int, help="process at most this many inputs of this shard")
    what.add_argument(
        "--num-shards", type=int, default=1, help="split the inputs over this many machines (default: %(default)s)"
    )
    what.add_argument(
        "--shard-index", type=int, default=0, help="this machine's shard, 0-based (default: %(default)s)"
    )
    teacher = parser.add_argument_group("teacher")
    teacher.add_argument(
        "--base-url",
        action="append",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM); repeat for several endpoints serving "
        "the same model; default: $OPENAI_BASE_URL or OpenAI",
    )
    teacher.add_argument("--base-url-file", help="a text file of endpoints, one URL a line (added to --base-url)")
    teacher.add_argument(
        "--api",
        choices=("chat", "batch"),
        default="chat",
        help="chat: live requests; batch: the Batch API (files + batches, half price, results within 24 h) "
        "(default: %(default)s)",
    )
    teacher.add_argument("--model", required=True, help="teacher model name as the endpoint knows it")
    teacher.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="NAME of the environment variable holding the key (default: %(default)s)",
    )
    teacher.add_argument(
        "--prompt-version", default="v1", help="prompt set under dataset_scripts/prompts/ (default: %(default)s)"
    )
    teacher.add_argument("--prompt-dir", help="a custom prompt folder (its name is the version)")
    teacher.add_argument("--temperature", type=float, default=0.7, help="(default: %(default)s)")
    teacher.add_argument("--top-p", type=float, help="sent only when given")
    teacher.add_argument(
        "--max-tokens",
        type=int,
        default=2048,
        help="completion cap per request (also budgeting) (default: %(default)s)",
    )
    teacher.add_argument("--seed", type=int, help="sampling seed sent to the API, where supported")
    teacher.add_argument(
        "--image-detail", choices=("low", "high", "auto"), default="auto", help="(default: %(default)s)"
    )
    batch = parser.add_argument_group("--api batch")
    batch.add_argument(
        "--batch-poll-interval",
        type=float,
        default=BATCH.poll_interval,
        help="seconds between polls (default: %(default)s)",
    )
    batch.add_argument(
        "--batch-max-requests",
        type=int,
        default=BATCH.max_requests,
        help="requests per batch at most (default: %(default)s)",
    )
    batch.add_argument(
        "--batch-max-bytes",
        type=int,
        default=BATCH.max_bytes,
        help="bytes per batch input file at most (default: %(default)s, under the 200 MB limit)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--concurrency", type=int, default=RUN.concurrency, help="requests in flight at once (default: %(default)s)"
    )
    limits.add_argument("--rpm", type=float, help="requests per minute budget, per endpoint")
    limits.add_argument(
        "--tpm", type=float, help="tokens per minute budget (prompt estimate + max-tokens), per endpoint"
    )
    limits.add_argument(
        "--endpoint-failures",
        type=int,
        default=FAILURES_TO_EJECT,
        help="take an endpoint out after this many failures in a row (default: %(default)s)",
    )
    limits.add_argument(
        "--endpoint-cooldown",
        type=float,
        default=COOLDOWN_SECONDS,
        help="seconds an endpoint stays out before one probe request (doubling while probes fail) "
        "(default: %(default)s)",
    )
    limits.add_argument(
        "--max-cost",
        type=float,
        help="USD; no request is started that could exceed it (billed usage above the estimate can overshoot it by "
        "at most --concurrency requests)",
    )
    limits.add_argument(
        "--prices", help='JSON price table {"model": [input, output, cached input]} in USD per 1M tokens'
    )
    limits.add_argument("--price-input", type=float, help="USD per 1M input tokens (overrides the table)")
    limits.add_argument("--price-output", type=float, help="USD per 1M output tokens (overrides the table)")
    limits.add_argument(
        "--price-cached-input",
        type=float,
        help="USD per 1M prompt tokens served from the provider's prefix cache (default: the table's, else the "
        "input price)",
    )
    limits.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="deadline in seconds for a whole request, reply included (default: %(default)s)",
    )
    limits.add_argument(
        "--max-retries",
        type=int,
        default=6,
        help="retries of 429/5xx/timeouts/dropped connections (default: %(default)s)",
    )
    limits.add_argument(
        "--backoff-base",
        type=float,
        default=BACKOFF_BASE,
        help="seconds; backoff is U(0, base * 2^attempt) (default: %(default)s)",
    )
    limits.add_argument(
        "--max-parse-retries",
        type=int,
        default=RUN.max_parse_retries,
        help="new requests after an invalid reply (default: %(default)s)",
    )
    limits.add_argument("--retry-rejects", action="store_true", help="try again the inputs rejected by earlier runs")
    limits.add_argument(
        "--max-consecutive-failures",
        type=int,
        default=RUN.max_consecutive_failures,
        help="stop after this many in a row (default: %(default)s)",
    )
    images = parser.add_argument_group("images")
    images.add_argument(
        "--max-side",
        type=int,
        default=RUN.max_side,
        help="downscale larger images to this side (default: %(default)s)",
    )
    images.add_argument(
        "--max-pixels",
        type=int,
        help=f"skip larger images as oversized, before decoding (default: ${MAX_IMAGE_PIXELS_ENV} or "
        f"{RUN.max_pixels})",
    )
    images.add_argument(
        "--max-image-bytes",
        type=int,
        default=RUN.max_image_bytes,
        help="skip larger files as oversized (default: %(default)s)",
    )
    images.add_argument(
        "--fetch-timeout",
        type=float,
        default=RUN.fetch_timeout,
        help="seconds to download an image URL, redirects included (default: %(default)s)",
    )
    images.add_argument(
        "--no-dedup-images",
        action="store_true",
        help="send every picture, also another file of one already sent (by default it is skipped as near_duplicate "
        "before any request)",
    )
    images.add_argument(
        "--image-hash-distance",
        type=int,
        default=RUN.image_hash_distance,
        help="near-duplicates: dHash bits (of 256) apart, and the same colours, as in build_dataset "
        "(default: %(default)s)",
    )
    images.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="let image URLs reach loopback, private and link-local addresses (refused by default)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def sampling_parameters(args: argparse.Namespace) -> dict:
    """The sampling fields every chat request of a run carries (also what bench/bench_synthesis.py sends)."""
    sampling = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    if args.top_p is not None:
        sampling["top_p"] = args.top_p
    if args.seed is not None:
        sampling["seed"] = args.seed
    return sampling


def main(argv: list[str] | None = None) -> int:
    """The command line: bad input is one `error:` line (2), a failed run `failed:` (1), Ctrl-C before the run
    started `interrupted:` (3), all through toolkit.cli.run; a run that started ends as outcome.py decides."""
    # What is alive now (~400k objects, torch included) is left out of garbage collection while inputs are listed and
    # requests are in flight: each full collection would walk it all (measured in docs/benchmarks.md).
    gc.freeze()
    try:
        return run(_main, argv, expected=(ShardLockedError,), on_ctrl_c=f"finished records are kept; {RERUN}")
    finally:
        gc.unfreeze()  # an in-process caller (the bench, tests) gets ordinary collection back


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.strategy != "one-call" and args.mode != "caption-qa":
        parser.error(f"--strategy {args.strategy} only applies to --mode caption-qa")
    if args.num_shards < 1 or not 0 <= args.shard_index < args.num_shards:
        parser.error("need --num-shards >= 1 and 0 <= --shard-index < --num-shards")
    api_key = os.environ.get(args.api_key_env, "")
    if not api_key:
        parser.error(f"no API key: set the environment variable {args.api_key_env} (any value for keyless servers)")
    try:
        base_urls = list(args.base_url or [])
        if args.base_url_file:
            base_urls += read_url_file(args.base_url_file)
        base_urls = base_urls or [os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")]
        if args.api == "batch" and len(base_urls) > 1:
            parser.error("--api batch sends its batches to one endpoint: give one --base-url")
        price = resolve_price(args.model, args.prices, args.price_input, args.price_output, args.price_cached_input)
        if price is not None and args.api == "batch":
            price = price.scaled(BATCH_DISCOUNT)
        if args.max_cost is not None and price is None:
            parser.error(f"--max-cost needs a price for {args.model!r}: give --price-input/--price-output or --prices")
        FilterOptions(hash_distance=args.image_hash_distance)  # its range is checked as build_dataset checks it
        prompts = load_prompt_set(args.prompt_version, args.prompt_dir)
        source = args.source_name or DEFAULT_SOURCE[args.mode]
        max_pixels = args.max_pixels or max_image_pixels()
        items = load_items(args.input, args.mode, source, args.image_column, args.allow_private_urls)
        items = select_shard(items, args.num_shards, args.shard_index, args.limit)
    except (PromptError, OSError, ValueError) as error:  # InputError included
        raise InputError(one_line(error)) from None
    spec = TaskSpec(args.mode, args.strategy, args.model, prompts, sampling_parameters(args), args.image_detail)
    loop = PacedLoop()
    client = _teacher_client(args, base_urls, api_key, spec, loop)
    options = RunOptions(
        concurrency=args.concurrency,
        max_parse_retries=args.max_parse_retries,
        max_side=args.max_side,
        max_pixels=max_pixels,
        max_image_bytes=args.max_image_bytes,
        fetch_timeout=args.fetch_timeout,
        retry_rejects=args.retry_rejects,
        max_consecutive_failures=args.max_consecutive_failures,
        progress=not args.quiet,
        image_hash_distance=None if args.no_dedup_images else args.image_hash_distance,
    )
    out = OutputDir(args.output, args.shard_index, args.num_shards)
    meter = CostMeter(price, args.max_cost)
    describe_run = _describe_run(args, base_urls, spec, price)
    if args.api == "batch":
        limits = BatchOptions(args.batch_poll_interval, args.batch_max_requests, args.batch_max_bytes)
        synthesis = BatchSynthesis(spec, items, out, client, meter, options, describe_run, batch=limits)
    else:
        synthesis = Synthesis(spec, items, out, client, meter, options, describe_run)
    try:
        summary = loop.run(synthesis.run())  # Ctrl-C while it runs still returns its summary (interrupted)
    except OutputWriteError as error:  # the folder cannot be opened for writing
        raise RunFailed(str(error)) from None
    return _report(summary, out.path("summary") if synthesis.summary_written else None, api_key)


def _teacher_client(
    args: argparse.Namespace, base_urls: list[str], api_key: str, spec: TaskSpec, loop: PacedLoop
) -> TeacherClient:
    return TeacherClient(
        base_url=base_urls,
        api_key=api_key,
        model=args.model,
        sampling=spec.sampling,
        timeout=args.timeout,
        max_retries=args.max_retries,
        backoff_base=args.backoff_base,
        concurrency=args.concurrency,
        rpm=args.rpm,
        tpm=args.tpm,
        rng=random.Random(),
        max_reply_chars=reply_char_limit(args.max_tokens),
        failures_to_eject=args.endpoint_failures,
        eject_seconds=args.endpoint_cooldown,
        on_latency=loop.observe,
    )


def _describe_run(args: argparse.Namespace, base_urls: list[str], spec: TaskSpec, price: Price | None) -> dict:
    """The recipe of the run, at the top of its summary (URLs without credentials)."""
    return {
        "shard_index": args.shard_index,
        "num_shards": args.num_shards,
        "mode": args.mode,
        "strategy": args.strategy,
        "teacher_model": args.model,
        "base_url": [public_url(url) for url in base_urls],
        "api": args.api,
        "prompt_version": spec.prompts.version,
        "prompt_hash": spec.prompt_hash,
        "prompts": spec.prompts.texts_for(args.mode, args.strategy),
        "sampling": spec.sampling,
        "image_detail": args.image_detail,
        "max_side": args.max_side,
        "price_usd_per_1m": price.as_list() if price else None,
    }


def _report(summary: dict, summary_path: Path | None, api_key: str) -> int:
    """The JSON line on stdout, where the summary is, then how the run ended as the last line on stderr."""
    report = {key: summary[key] for key in REPORTED}
    report["cost_this_run"] = summary["this_run"]["cost_usd"]
    print(scrub(json.dumps(report), (api_key,)))
    if summary_path is not None:
        print(f"summary: {summary_path}", file=sys.stderr)
    print(one_line(scrub(summary["outcome"], (api_key,))), file=sys.stderr)  # outcome.py
    return summary["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
