"""Evaluate a model on the 17 benchmarks of the ALLaVA paper; every score says how it was made.

    python recipes/eval_benchmarks.py --model FreedomIntelligence/ALLaVA-Phi2-2_7B \
        --benchmarks gqa,textvqa,mme_perception --output eval/phi2
    python recipes/eval_benchmarks.py --model ./checkpoints/stage2 --benchmarks mmvet,llava_w --output eval/stage2 \
        --judge-model gpt-4-0613 --judge-base-url https://my-endpoint/v1      # key from $OPENAI_API_KEY
    python recipes/eval_benchmarks.py --list
    accelerate launch --multi_gpu --num_processes 8 recipes/eval_benchmarks.py ...   # or torchrun: same results

Writes OUTPUT/results.json (scores, prompt variants, judge, dataset revisions, package versions; read by the
model card), OUTPUT/results.md (ours next to the paper's numbers), OUTPUT/samples/<benchmark>.jsonl (prompt, raw
answer, parsed answer, score per sample) and OUTPUT/cache/<benchmark>.jsonl (process R of N: .rank<R>.jsonl), the
resumable log: rerun the same command, with any number of processes, after a crash and finished samples are not
recomputed.
"""

import argparse
import importlib
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

from recipes.remote_code import RemoteCodeRefusedError, add_trust_remote_code_argument
from toolkit.cli import InputError, Parser, RunFailed, check_local_path, one_line, public_url, run


# Benchmark name -> its `Benchmark` description in recipes/benchmarks/ (module.ATTRIBUTE), in the paper's column
# order. Only names are needed to check the arguments; the descriptions (and torch, transformers, datasets with
# them) are imported after that, into BENCHMARKS.
BENCHMARK_SOURCES = {
    "vicuna80": "vicuna80.BENCHMARK",
    "gqa": "gqa.BENCHMARK",
    "hallusionbench": "hallusionbench.BENCHMARK",
    "mme_perception": "mme.MME_PERCEPTION",
    "mmvp": "mmvp.BENCHMARK",
    "touchstone": "touchstone.BENCHMARK",
    "textvqa": "textvqa.BENCHMARK",
    "mme_cognition": "mme.MME_COGNITION",
    "mathvista": "mathvista.BENCHMARK",
    "mmvet": "mmvet.BENCHMARK",
    "mmmu_val": "mmmu.BENCHMARK",
    "scienceqa_img": "scienceqa_img.BENCHMARK",
    "llava_w": "llava_w.BENCHMARK",
    "mllm_bench": "mllm_bench.BENCHMARK",
    "mmbench_en": "mmbench.MMBENCH_EN",
    "mmbench_cn": "mmbench.MMBENCH_CN",
    "seed_bench": "seed_bench.BENCHMARK",
}
EXAMPLE = (
    "python recipes/eval_benchmarks.py --model ./checkpoints/stage2 --benchmarks gqa,textvqa --output eval/stage2"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked without heavy imports: flags, benchmark names, NAME=VALUE pairs, local paths."""
    parser = Parser(__doc__.split("\n")[0], EXAMPLE)
    parser.add_argument("--model", help="Local folder or Hub id (AutoModelForImageTextToText + AutoProcessor).")
    parser.add_argument("--benchmarks", help=f"Comma-separated, or 'all': {', '.join(BENCHMARK_SOURCES)}.")
    parser.add_argument("--output", type=Path, help="Folder for results.json, results.md, samples/ and cache/.")
    parser.add_argument(
        "--list", "--list-benchmarks", action="store_true", help="List the benchmarks with their data and prompts."
    )
    parser.add_argument(
        "--dataset-path",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="Read a benchmark from a local copy instead of the Hub (repeatable).",
    )
    parser.add_argument(
        "--dataset-revision",
        action="append",
        default=[],
        metavar="NAME=REVISION",
        help="Pin a Hub dataset to a commit (repeatable).",
    )
    parser.add_argument(
        "--prompt-variant",
        action="append",
        default=[],
        metavar="NAME=VARIANT",
        help="Use another prompt variant, e.g. textvqa=no_ocr (repeatable).",
    )
    parser.add_argument("--limit", type=int, help="Only the first N questions of each benchmark (smoke tests).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, help="Override every benchmark's own generation budget.")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--device", help="Default: cuda when available, else cpu.")
    add_trust_remote_code_argument(parser)
    judge = parser.add_argument_group(
        "judge (vicuna80, touchstone, mmvet, llava_w, mllm_bench; optional for the official GPT step of mmbench_en/cn,"
        " mathvista, hallusionbench, mmvp)"
    )
    judge.add_argument("--judge-model", help="Judge model name, e.g. gpt-4-0613 (a vision model for mllm_bench).")
    judge.add_argument("--judge-base-url", help="Any OpenAI-compatible endpoint; default: OpenAI's.")
    judge.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="Environment variable holding the key.")
    judge.add_argument("--judge-temperature", type=float, default=0.0)
    judge.add_argument("--judge-concurrency", type=int, default=4)
    judge.add_argument("--judge-retries", type=int, default=2, help="Re-asks after an unparsable judge reply.")
    judge.add_argument("--judge-http-retries", type=int, default=3, help="Client retries on 429/5xx/timeouts.")
    judge.add_argument("--judge-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.list:
        return args
    for flag in ("model", "benchmarks", "output"):
        if getattr(args, flag) is None:
            parser.error(f"--{flag.replace('_', '-')} is required")
    names = (
        list(BENCHMARK_SOURCES)
        if args.benchmarks == "all"
        else [n.strip() for n in args.benchmarks.split(",") if n.strip()]
    )
    unknown = [name for name in names if name not in BENCHMARK_SOURCES]
    if unknown or not names:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARK_SOURCES)} or 'all'")
    args.names = names
    for flag in ("dataset_path", "dataset_revision", "prompt_variant"):
        pairs = {}
        for item in getattr(args, flag):
            name, sep, value = item.partition("=")
            if not sep or name not in BENCHMARK_SOURCES or not value:
                parser.error(f"--{flag.replace('_', '-')} {item!r}: expected NAME=VALUE with NAME a benchmark")
            pairs[name] = value
        setattr(args, flag, pairs)
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch-size and --limit must be positive")
    if args.judge_concurrency < 1 or args.judge_retries < 0 or args.judge_http_retries < 0 or args.judge_timeout <= 0:
        parser.error("--judge-concurrency and --judge-timeout must be positive, the --judge-*retries not negative")
    if args.judge_base_url:
        url = urlsplit(args.judge_base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise InputError("--judge-base-url: expected http(s)://host[:port]/... (the value is not shown: keys)")
    # A mistyped local path is named now, not after minutes of imports and Hub retries.
    args.model = check_local_path(args.model, "--model")
    for name, folder in args.dataset_path.items():
        if not Path(folder).expanduser().is_dir():
            problem = "is a file, not a folder" if Path(folder).expanduser().exists() else "no such folder"
            raise InputError(f"--dataset-path {name}={folder}: {problem}")
    if args.output.exists() and not args.output.is_dir():
        raise InputError(f"--output {args.output}: is a file, not a folder")
    return args


if __name__ == "__main__":
    # Usage errors and mistyped paths end here, before the imports below (several seconds).
    run(parse_args, sys.argv[1:], exit_now=True)

from recipes.benchmarks.batching import BATCHING, length_batches, prompt_lengths, share  # noqa: E402
from recipes.benchmarks.benchmark import Benchmark  # noqa: E402
from recipes.benchmarks.cache import SharedCache, weights_fingerprint  # noqa: E402
from recipes.benchmarks.data import load_rows  # noqa: E402
from recipes.benchmarks.fallback import run_judge_step  # noqa: E402
from recipes.benchmarks.generation import GREEDY, generate, load_model, render_prompt  # noqa: E402
from recipes.benchmarks.judge import Judge, JudgeConfigError, JudgeSettings, load_prompt  # noqa: E402
from recipes.benchmarks.paper import paper_scores  # noqa: E402
from recipes.benchmarks.progress import Progress  # noqa: E402
from recipes.benchmarks.report import package_versions, read_results, write_results  # noqa: E402
from recipes.benchmarks.shares import Plan, gathered_records, generate_share, process_state  # noqa: E402
from toolkit.jsonl_store import atomic_write  # noqa: E402


def load_benchmark(name: str) -> Benchmark:
    """The description BENCHMARK_SOURCES names for `name`."""
    module, attribute = BENCHMARK_SOURCES[name].split(".")
    benchmark = getattr(importlib.import_module(f"recipes.benchmarks.{module}"), attribute)
    if benchmark.name != name:
        raise ImportError(f"BENCHMARK_SOURCES[{name!r}] describes {benchmark.name!r}")
    return benchmark


BENCHMARKS = {name: load_benchmark(name) for name in BENCHMARK_SOURCES}


def check_benchmark_options(args: argparse.Namespace) -> None:
    """The checks that need the benchmark modules: prompt variants exist, judged benchmarks have a judge."""
    for name, variant in args.prompt_variant.items():
        if variant not in BENCHMARKS[name].prompt_variants:
            raise InputError(
                f"--prompt-variant {name}={variant}: choose from {', '.join(BENCHMARKS[name].prompt_variants)}"
            )
    judged = [name for name in args.names if BENCHMARKS[name].judged]
    if judged and not args.judge_model:
        raise InputError(f"{', '.join(judged)} need a judge: pass --judge-model (and --judge-base-url for non-OpenAI)")


def list_benchmarks() -> str:
    lines = []
    for name, benchmark in BENCHMARKS.items():
        source = benchmark.dataset_id or "local copy only (--dataset-path)"
        config = f" [{benchmark.dataset_config}]" if benchmark.dataset_config else ""
        scorer = "judge" if benchmark.judged else "rule"
        lines.append(f"{name:15} {source}{config} split={benchmark.split} metric={benchmark.metric} ({scorer})")
        if benchmark.unconfirmed:
            lines.append(f"{'':15}   unconfirmed: {benchmark.unconfirmed}")
        for variant, description in benchmark.prompt_variants.items():
            default = " (default)" if variant == benchmark.default_variant else ""
            lines.append(f"{'':15}   variant {variant}{default}: {description}")
    return "\n".join(lines)


def prepare(name: str, args: argparse.Namespace, processor, judge: Judge | None, run_key: dict, state) -> Plan:
    """Load the rows, build and batch the samples, open the cache.

    `run_key` holds the model-wide settings that decide an answer (model, weights fingerprint, dtype, decoding,
    batch size); the cache refuses to mix answers made under other ones.
    """
    benchmark = BENCHMARKS[name]
    rows, provenance = load_rows(benchmark, args.dataset_path.get(name), args.dataset_revision.get(name), args.limit)
    variant = args.prompt_variant.get(name, benchmark.default_variant)
    samples = benchmark.samples(rows, variant)
    if len({sample.id for sample in samples}) != len(samples):
        raise ValueError(f"{name}: sample ids are not unique in {provenance['dataset_id']}.")
    template, prompt_hash = load_prompt(benchmark.judge.prompt) if benchmark.judged else (None, None)
    judge_info = judge.describe(prompt_hash) if benchmark.judged else None
    max_new_tokens = args.max_new_tokens or benchmark.max_new_tokens
    settings = {
        **run_key,
        "prompt_variant": variant,
        "max_new_tokens": max_new_tokens,
        "judge": judge_info,
        **{key: provenance[key] for key in ("dataset_id", "dataset_revision", "dataset_config", "split")},
    }
    prompts = [render_prompt(processor, sample) for sample in samples]
    batches = length_batches(samples, prompt_lengths(processor.tokenizer, prompts), args.batch_size)
    cache = SharedCache(args.output / "cache", name, settings, state.process_index)
    mine = share(batches, state.process_index, state.num_processes)
    return Plan(
        benchmark, samples, prompts, batches, mine, cache, provenance, variant, template, judge_info, max_new_tokens
    )


def score(plan: Plan, args: argparse.Namespace, judge: Judge | None) -> dict:
    """Gather, judge or run the judge step, score; write samples/<name>.jsonl; return the results.json entry."""
    benchmark, name, provenance = plan.benchmark, plan.benchmark.name, plan.provenance
    records = gathered_records(plan, judge)
    judge_step = run_judge_step(judge, benchmark.judge_step, name, records, args.output / "cache")  # rule: GPT step
    summary = benchmark.aggregate(records)
    lines = [
        json.dumps({**record, "score": score}, ensure_ascii=False, sort_keys=True) + "\n"
        for record, score in zip(records, summary["per_sample"])
    ]
    atomic_write(args.output / "samples" / f"{name}.jsonl", "".join(lines))
    failures = sum(1 for record in records if benchmark.judged and record["judge"]["error"])
    return {
        "metric": benchmark.metric,
        "value": summary["value"],
        "dataset_id": provenance["dataset_id"],
        "dataset_revision": provenance["dataset_revision"],
        "dataset_config": provenance["dataset_config"],
        "dataset_source": provenance["source"],
        "dataset_fingerprint": provenance["dataset_fingerprint"],
        "split": provenance["split"],
        "prompt_variant": plan.variant,
        "prompt_variant_description": benchmark.prompt_variants[plan.variant],
        "judge": plan.judge_info if benchmark.judged else judge_step,
        "judge_failures": failures,
        "num_samples": len(plan.samples),
        "limit": args.limit,  # None for a full run: the model card puts only full runs into model-index
        "max_new_tokens": plan.max_new_tokens,
        "details": summary["details"],
        "unconfirmed": benchmark.unconfirmed,
        "paper_column": benchmark.paper_column,
        "paper": paper_scores(benchmark.paper_column),
    }


def main(argv: list[str] | None = None) -> int:
    """`python recipes/eval_benchmarks.py` and `allava-eval` (module docstring): 0 once every benchmark is scored
    into OUTPUT/results.json. What a user can fix ends in one line on stderr and SystemExit(2); a run whose judge
    answered no call ends in SystemExit(1); both reasons also go into results.json as `stopped`."""
    return run(lambda argv: evaluate_all(parse_args(argv)), argv, exit_now=True)


def make_judge(args: argparse.Namespace) -> Judge | None:
    """The judge client, when --judge-model is given (required for the judged benchmarks, optional for the GPT step
    of rule-scored ones)."""
    if not args.judge_model:
        return None
    try:
        return Judge(
            JudgeSettings(
                model=args.judge_model,
                base_url=args.judge_base_url,
                api_key_env=args.judge_api_key_env,
                temperature=args.judge_temperature,
                parse_retries=args.judge_retries,
                http_retries=args.judge_http_retries,
                timeout=args.judge_timeout,
                concurrency=args.judge_concurrency,
            )
        )
    except JudgeConfigError as error:  # no key in the environment
        raise InputError(str(error)) from error


def evaluate_all(args: argparse.Namespace) -> None:
    """Every process generates its share of every benchmark; after each benchmark the main process gathers the
    answers from the cache files, judges and scores them, and writes the results (see recipes/benchmarks/batching.py).
    """
    if args.list:
        print(list_benchmarks())
        return
    check_benchmark_options(args)
    judge = make_judge(args)
    state = process_state(args.device)
    main_process = state.is_main_process
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        results = read_results(args.output, args.model)
    except json.JSONDecodeError as error:
        raise InputError(f"{args.output / 'results.json'}: not valid JSON ({error}); move it away") from error
    except (OSError, ValueError) as error:  # results of another model, or a folder we cannot write
        raise InputError(f"--output {args.output}: {one_line(error)}") from error
    try:
        model, processor = load_model(args.model, args.dtype, args.device or str(state.device), args.trust_remote_code)
    except RemoteCodeRefusedError as error:
        raise InputError(str(error)) from None
    except (OSError, ValueError) as error:  # no such Hub repo or Hub unreachable, no config.json, no chat template
        raise InputError(f"--model {args.model}: {one_line(error)}") from error
    results["generation"] = {**GREEDY, "batch_size": args.batch_size, "batching": BATCHING, "dtype": str(model.dtype)}
    results["versions"] = package_versions()
    results["stopped"] = None
    run_key = {"model": args.model, "weights": weights_fingerprint(args.model), **results["generation"]}
    with ExitStack() as open_caches:
        plans = {}
        for name in args.names:
            try:
                plans[name] = prepare(name, args, processor, judge, run_key, state)
            except (InputError, ValueError, OSError) as error:  # CacheError, rows or images that do not fit, bad data
                raise stop(results, args.output, name, InputError(one_line(error)), main_process) from error
            open_caches.callback(plans[name].cache.close)
        counts = {name: (len(plan.samples), plan.todo(plan.batches)) for name, plan in plans.items()}
        share_total = sum(plan.todo(plan.mine) for plan in plans.values())
        with Progress(counts, share_total, state.num_processes, main_process) as progress:
            for plan in plans.values():
                generate_share(plan, generate, model, processor, progress)
                state.wait_for_everyone()  # every share of this benchmark is in the cache files
                if main_process:
                    score_and_report(plan, args, judge, results, progress)


def score_and_report(plan: Plan, args: argparse.Namespace, judge: Judge | None, results: dict, progress) -> None:
    """Score one gathered benchmark into results.json and results.md; stop the run when its judge answered nothing."""
    name = plan.benchmark.name
    try:
        results["benchmarks"][name] = score(plan, args, judge)
    except (InputError, JudgeConfigError, ValueError, OSError) as error:
        # CacheError, rows or images that do not fit the benchmark, unreadable data, a refused judge key
        raise stop(results, args.output, name, InputError(one_line(error))) from error
    write_results(args.output, results)
    progress.bar.write(summary_line(name, results["benchmarks"][name]))
    if judge is not None and judge.asked and judge.failed == judge.asked:
        endpoint = public_url(args.judge_base_url or str(judge.client.base_url))
        failure = RunFailed(
            f"the judge at {endpoint} gave no verdict for any of the {judge.asked} samples asked (last error: "
            f"{judge.last_error}); the answers are cached: rerun the same command once the judge "
            "(--judge-base-url, --judge-model, the key) works to score them"
        )
        raise stop(results, args.output, name, failure)


def stop(
    results: dict, output: Path, name: str, error: InputError | RunFailed, write: bool = True
) -> InputError | RunFailed:
    """`error`, its message naming the benchmark, after recording it in results.json (`write`: by the main process
    only) as why the run stopped."""
    message = str(error) if name in str(error) else f"{name}: {error}"
    results["stopped"] = message
    if write:
        write_results(output, results)
    return type(error)(message)


def summary_line(name: str, entry: dict) -> str:
    """One console line per finished benchmark: score, sample count and, if any, samples the judge did not score."""
    value = "n/a" if entry["value"] is None else f"{entry['value']:.2f}"
    failed = f", {entry['judge_failures']} not scored: judge failed" if entry.get("judge_failures") else ""
    return f"{name}: {entry['metric']} = {value} ({entry['num_samples']} samples{failed})"


if __name__ == "__main__":
    main()
