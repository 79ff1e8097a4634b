"""One timed evaluation run of bench/bench_eval.py, in a process of its own (one torch thread).

    python -m bench.eval_worker lmms --model llava_hf --pretrained DIR --tasks TASK_DIR --out run.json
    python -m bench.eval_worker ours --pretrained DIR --parquet docs.parquet --out run.json   # or under torchrun

`lmms`: lmms-eval's own evaluation (`simple_evaluate`) of the local parquet task with one of its models: `llava_hf`
on the native Llava export, or `allava` (our plugin) on the ALLaVA checkpoint; both answer the task's requests
exactly as `lmms-eval --model ...` does. `ours`: the generation path of recipes/eval_benchmarks.py (prompts and
length-ordered batches, this process's share of them, batched greedy `generate`) on the same documents; under
`torchrun`/`accelerate launch` each process generates its share and the answers are gathered on rank 0. Every run
first warms up on two documents, then times the whole evaluation; it writes {"seconds", "cpu_seconds" (this
process's CPU time; of 2 processes, the larger), "answers": {doc_id: text}}.
"""

import argparse
import json
import time
from pathlib import Path

import torch


# The task bench_eval.py writes (TASK_YAML there).
TASK = "allava_bench"


def lmms_answers(samples: list[dict]) -> dict[str, str]:
    """doc_id -> answer from lmms-eval's logged samples (the filtered response: a string, or a one-item list)."""
    answers = {}
    for sample in samples:
        response = sample["filtered_resps"]
        answers[str(sample["doc_id"])] = (response[0] if isinstance(response, list) else response).strip()
    return answers


def run_lmms(args: argparse.Namespace) -> dict:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.models import get_model
    from lmms_eval.tasks import TaskManager

    model_args = f"pretrained={args.pretrained},batch_size={args.batch_size}"
    if args.model == "llava_hf":  # its default device_map "" is refused by transformers 5 ("found .")
        model_args += ",device_map=cpu"
    lm = get_model(args.model).create_from_arg_string(model_args, {"device": "cpu"})
    lm.clean = lambda: None  # lmms-eval frees the model after evaluating; keep it for the timed run after warm-up
    tasks = TaskManager(include_path=args.tasks, verbosity="WARNING")

    def evaluate(limit: int | None) -> dict:
        return simple_evaluate(model=lm, tasks=[TASK], task_manager=tasks, limit=limit, verbosity="WARNING")

    evaluate(2)
    start, cpu = time.perf_counter(), time.process_time()
    results = evaluate(None)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "answers": lmms_answers(results["samples"][TASK])}


def parquet_samples(path: str) -> list:
    """The task's documents as our evaluator's samples: the question as the prompt, the image."""
    import datasets

    from recipes.benchmarks.common import Sample

    rows = datasets.Dataset.from_parquet(path)
    return [Sample(id=str(i), prompt=row["question"], images=[row["image"]]) for i, row in enumerate(rows)]


def run_ours(args: argparse.Namespace) -> dict | None:
    from recipes.benchmarks.batching import share
    from recipes.benchmarks.generation import generate, load_model, prompts_and_batches
    from recipes.benchmarks.shares import process_state

    state = process_state("cpu")
    model, processor = load_model(args.pretrained, device="cpu")
    samples = parquet_samples(args.parquet)
    _, batches = prompts_and_batches(processor, samples, args.batch_size)
    mine = share(batches, state.process_index, state.num_processes)
    generate(model, processor, samples[:2], 2)  # warm-up
    state.wait_for_everyone()
    start, cpu = time.perf_counter(), time.process_time()
    answers = {}
    for batch in mine:
        batch_samples = [samples[position] for position in batch.positions]
        for sample, answer in zip(batch_samples, generate(model, processor, batch_samples, args.max_new_tokens)):
            answers[sample.id] = answer
    cpu = time.process_time() - cpu  # before the barrier: a process that waits for the other spins in gloo
    state.wait_for_everyone()
    seconds = time.perf_counter() - start
    if state.num_processes > 1:
        shares = [None] * state.num_processes
        torch.distributed.all_gather_object(shares, (answers, cpu))
        answers = {doc: answer for part, _ in shares for doc, answer in part.items()}
        cpu = max(part_cpu for _, part_cpu in shares)
    return {"seconds": seconds, "cpu_seconds": cpu, "answers": answers} if state.is_main_process else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("harness", choices=["lmms", "ours"])
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--model", default="llava_hf", help="lmms: the lmms-eval model name")
    parser.add_argument("--tasks", help="lmms: the folder with the task's yaml")
    parser.add_argument("--parquet", help="ours: the task's documents")
    parser.add_argument("--max-new-tokens", type=int, help="ours: the task's generation budget")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = run_lmms(args) if args.harness == "lmms" else run_ours(args)
    if result is not None:
        args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
