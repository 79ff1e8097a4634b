"""Evaluate a model on the 17 benchmarks of the ALLaVA paper; every score says how it was made.

    python recipes/evaluate.py --model FreedomIntelligence/ALLaVA-Phi2-2_7B --benchmarks gqa,textvqa,mme_perception \
        --output eval/phi2
    python recipes/evaluate.py --model ./checkpoints/stage2 --benchmarks mmvet,llava_w --output eval/stage2 \
        --judge-model gpt-4-0613 --judge-base-url https://my-endpoint/v1      # key from $OPENAI_API_KEY
    python recipes/evaluate.py --list

Writes OUTPUT/results.json (scores, prompt variants, judge, dataset revisions, package versions; read by the
model card), OUTPUT/results.md (ours next to the paper's numbers), OUTPUT/samples/<benchmark>.jsonl (prompt, raw
answer, parsed answer, score per sample) and OUTPUT/cache/<benchmark>.jsonl, the resumable log: rerun the same
command after a crash and finished samples are not recomputed.
"""

import argparse
import sys
from pathlib import Path


if __name__ == "__main__" and not __package__:
    # Run as a script: drop recipes/ from the path (this file would shadow the `evaluate` library) and add the root.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import json  # noqa: E402

from tqdm.auto import tqdm  # noqa: E402

from recipes.benchmarks import (  # noqa: E402
    gqa,
    hallusionbench,
    llava_w,
    mathvista,
    mllm_bench,
    mmbench_cn,
    mmbench_en,
    mme_cognition,
    mme_perception,
    mmmu,
    mmvet,
    mmvp,
    scienceqa_img,
    seed_bench,
    textvqa,
    touchstone,
    vicuna80,
)
from recipes.benchmarks.cache import SampleCache  # noqa: E402
from recipes.benchmarks.data import load_rows  # noqa: E402
from recipes.benchmarks.fallback import run_judge_step  # noqa: E402
from recipes.benchmarks.generation import generate, load_model, render_prompt  # noqa: E402
from recipes.benchmarks.judge import Judge, JudgeSettings, load_prompt  # noqa: E402
from recipes.benchmarks.paper import paper_scores  # noqa: E402
from recipes.benchmarks.report import package_versions, read_results, write_results  # noqa: E402


# In the paper's column order.
BENCHMARKS = {
    "vicuna80": vicuna80,
    "gqa": gqa,
    "hallusionbench": hallusionbench,
    "mme_perception": mme_perception,
    "mmvp": mmvp,
    "touchstone": touchstone,
    "textvqa": textvqa,
    "mme_cognition": mme_cognition,
    "mathvista": mathvista,
    "mmvet": mmvet,
    "mmmu_val": mmmu,
    "scienceqa_img": scienceqa_img,
    "llava_w": llava_w,
    "mllm_bench": mllm_bench,
    "mmbench_en": mmbench_en,
    "mmbench_cn": mmbench_cn,
    "seed_bench": seed_bench,
}


def is_judged(module) -> bool:
    return hasattr(module, "JUDGE_PROMPT")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="Local folder or Hub id (AutoModelForImageTextToText + AutoProcessor).")
    parser.add_argument("--benchmarks", help=f"Comma-separated, or 'all': {', '.join(BENCHMARKS)}.")
    parser.add_argument("--output", type=Path, help="Folder for results.json, results.md, samples/ and cache/.")
    parser.add_argument("--list", action="store_true", help="List the benchmarks with their data and prompts.")
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
        list(BENCHMARKS) if args.benchmarks == "all" else [n.strip() for n in args.benchmarks.split(",") if n.strip()]
    )
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)} or 'all'")
    args.names = names
    for flag in ("dataset_path", "dataset_revision", "prompt_variant"):
        pairs = {}
        for item in getattr(args, flag):
            name, sep, value = item.partition("=")
            if not sep or name not in BENCHMARKS or not value:
                parser.error(f"--{flag.replace('_', '-')} {item!r}: expected NAME=VALUE with NAME a benchmark")
            pairs[name] = value
        setattr(args, flag, pairs)
    for name, variant in args.prompt_variant.items():
        if variant not in BENCHMARKS[name].PROMPT_VARIANTS:
            parser.error(f"--prompt-variant {name}={variant}: choose from {list(BENCHMARKS[name].PROMPT_VARIANTS)}")
    if any(is_judged(BENCHMARKS[name]) for name in names) and not args.judge_model:
        judged = [name for name in names if is_judged(BENCHMARKS[name])]
        parser.error(f"{', '.join(judged)} need a judge: pass --judge-model (and --judge-base-url for non-OpenAI)")
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch-size and --limit must be positive")
    return args


def list_benchmarks() -> str:
    lines = []
    for name, module in BENCHMARKS.items():
        source = module.DATASET_ID or "local copy only (--dataset-path)"
        config = f" [{module.DATASET_CONFIG}]" if module.DATASET_CONFIG else ""
        scorer = "judge" if is_judged(module) else "rule"
        lines.append(f"{name:15} {source}{config} split={module.SPLIT} metric={module.METRIC} ({scorer})")
        for variant, description in module.PROMPT_VARIANTS.items():
            default = " (default)" if variant == module.DEFAULT_VARIANT else ""
            lines.append(f"{'':15}   variant {variant}{default}: {description}")
    return "\n".join(lines)


def judge_records(judge: Judge, module, template: str, samples: list, records: list[dict]) -> None:
    """Ask the judge about each (sample, record) pair and store verdict, score and any failure in the record."""
    requests = [
        (
            module.judge_messages(sample, record["raw_answer"], template),
            lambda reply, sample=sample: module.parse_judgement(reply, sample),
        )
        for sample, record in zip(samples, records)
    ]
    for record, verdict in zip(records, judge.ask_many(requests)):
        record["score"] = verdict.get("score")
        record["judge"] = {key: verdict.get(key) for key in ("parsed", "reply", "attempts", "error")}


def run_benchmark(name: str, args: argparse.Namespace, model, processor, judge: Judge | None, output: Path) -> dict:
    """Generate (resuming from the cache), judge or parse, score; return the results.json entry."""
    module = BENCHMARKS[name]
    rows, provenance = load_rows(module, args.dataset_path.get(name), args.dataset_revision.get(name), args.limit)
    variant = args.prompt_variant.get(name, module.DEFAULT_VARIANT)
    samples = module.make_samples(rows, variant)
    if len({sample.id for sample in samples}) != len(samples):
        raise ValueError(f"{name}: sample ids are not unique in {provenance['dataset_id']}.")
    template, prompt_hash = load_prompt(module.JUDGE_PROMPT) if is_judged(module) else (None, None)
    judge_info = judge.describe(prompt_hash) if is_judged(module) else None
    max_new_tokens = args.max_new_tokens or module.MAX_NEW_TOKENS
    settings = {
        "model": args.model,
        "prompt_variant": variant,
        "max_new_tokens": max_new_tokens,
        "judge": judge_info,
        **{key: provenance[key] for key in ("dataset_id", "dataset_revision", "dataset_config", "split")},
    }
    cache = SampleCache(output / "cache" / f"{name}.jsonl", settings)

    if is_judged(module):  # samples whose judging failed in an earlier run get another chance; answers are kept
        failed = [s for s in samples if s.id in cache.records and cache.records[s.id]["judge"]["error"]]
        if failed:
            records = [dict(cache.records[sample.id]) for sample in failed]
            judge_records(judge, module, template, failed, records)
            for record in records:
                cache.append(record)

    pending = [sample for sample in samples if sample.id not in cache.records]
    progress = tqdm(total=len(samples), initial=len(samples) - len(pending), desc=name, unit="sample")
    for start in range(0, len(pending), args.batch_size):
        batch = pending[start : start + args.batch_size]
        answers = generate(model, processor, batch, max_new_tokens)
        records = [
            {
                "id": sample.id,
                "prompt": render_prompt(processor, sample),
                "raw_answer": answer,
                "parsed_answer": answer if is_judged(module) else module.parse_answer(sample.target, answer),
                "score": None,
                "target": sample.target,
            }
            for sample, answer in zip(batch, answers)
        ]
        if is_judged(module):
            judge_records(judge, module, template, batch, records)
        for record in records:
            cache.append(record)
        progress.update(len(batch))
    progress.close()

    records = [cache.records[sample.id] for sample in samples]
    judge_step = run_judge_step(judge, module, name, records, output / "cache")  # rule benchmarks' GPT step
    summary = module.aggregate(records)
    (output / "samples").mkdir(exist_ok=True)
    with (output / "samples" / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
        for record, score in zip(records, summary["per_sample"]):
            handle.write(json.dumps({**record, "score": score}, ensure_ascii=False) + "\n")
    failures = sum(1 for record in records if is_judged(module) and record["judge"]["error"])
    return {
        "metric": module.METRIC,
        "value": summary["value"],
        "dataset_id": provenance["dataset_id"],
        "dataset_revision": provenance["dataset_revision"],
        "dataset_config": provenance["dataset_config"],
        "dataset_source": provenance["source"],
        "dataset_fingerprint": provenance["dataset_fingerprint"],
        "split": provenance["split"],
        "prompt_variant": variant,
        "prompt_variant_description": module.PROMPT_VARIANTS[variant],
        "judge": judge_info if is_judged(module) else judge_step,
        "judge_failures": failures,
        "num_samples": len(samples),
        "max_new_tokens": max_new_tokens,
        "details": summary["details"],
        "paper_column": module.PAPER_COLUMN,
        "paper": paper_scores(module.PAPER_COLUMN),
    }


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.list:
        print(list_benchmarks())
        return None
    judge = None
    if args.judge_model:  # required for the judged benchmarks, optional for the rule-scored ones' GPT step
        judge = Judge(
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
    args.output.mkdir(parents=True, exist_ok=True)
    results = read_results(args.output, args.model)
    model, processor = load_model(args.model, dtype=args.dtype, device=args.device)
    results["generation"] = {
        "do_sample": False,
        "num_beams": 1,
        "batch_size": args.batch_size,
        "dtype": str(model.dtype),
    }
    results["versions"] = package_versions()
    for name in args.names:
        results["benchmarks"][name] = run_benchmark(name, args, model, processor, judge, args.output)
        write_results(args.output, results)
        entry = results["benchmarks"][name]
        value = "n/a" if entry["value"] is None else f"{entry['value']:.2f}"
        print(f"{name}: {entry['metric']} = {value} ({entry['num_samples']} samples)", flush=True)
    return results


if __name__ == "__main__":
    main()
