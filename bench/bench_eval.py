"""Evaluation throughput on CPU against the harness users know: lmms-eval's `llava_hf` on the same model and documents.

    python -m bench.bench_eval [--docs 64] [--max-new-tokens 16] [--batch-size 8] [--rounds 3]   # in .venv-lmms

One random model (bench/common.py's ModelShape: Phi text model, CLIP tower) is saved as an ALLaVA checkpoint and
exported to native Llava (hub/export_llava_hf.py, logits checked equal). The documents are shapes-world questions
with an image, written as a local parquet task for lmms-eval (as tests/recipes/test_lmms_eval_real.py builds one).
Each run is a process of its own with one torch thread (bench/eval_worker.py), timed from after model loading and a
warm-up to the last answer; rounds interleave the runs, the median is reported:
- lmms-eval llava_hf: `lmms-eval --model llava_hf` on the Llava export (that model answers one request at a time).
- lmms-eval + allava: `lmms-eval --model allava` (our plugin) on the ALLaVA checkpoint: the same harness, requests
  and documents as llava_hf, so the like-for-like comparison of the model code and batching.
- our evaluator: recipes/eval_benchmarks.py's generation path (prompts, length-ordered batches, the process's share,
  batched greedy generation) on the same documents; its per-sample files and judge are left out (no I/O timed).
- our evaluator, 2 processes: the same under torchrun, one thread each (gloo), answers gathered on rank 0.
Prints one markdown table: generations per second, the ratios, how many greedy answers equal llava_hf's, and each
run's CPU seconds (of 2 processes, the busier one's): on a loaded machine two processes may not get two cores, and
a 2-process CPU time of about half the 1-process one shows the work itself splits evenly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch

from bench.common import ModelShape, bench_rows, phi_clip_config
from bench.eval_worker import TASK
from hub.export_llava_hf import export
from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor
from modeling_allava.configuration_allava import end_of_turn_ids
from recipes.tiny.models import build_tiny_tokenizer


REPO = Path(__file__).resolve().parents[1]
TASK_YAML = """
task: {task}
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: {parquet}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: "{{{{question}}}}"
doc_to_target: "answer"
generation_kwargs:
  max_new_tokens: {max_new_tokens}
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  - version: 0.0
"""
TASK_UTILS = """
def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]
"""
GOAL_PER_PROCESS, GOAL_TWO_PROCESSES = 1.2, 1.8


@dataclass(frozen=True)
class Run:
    """One measured configuration: what bench/eval_worker.py runs, in how many processes."""

    name: str
    harness: str
    model: str  # lmms-eval model name ("" for ours)
    checkpoint: str  # "allava" or "llava"
    batch_size: int
    processes: int = 1


def write_models(folder: Path, shape: ModelShape) -> None:
    """folder/allava (our checkpoint) and folder/llava (its native Llava export): the same random weights."""
    tokenizer = build_tiny_tokenizer()
    config = phi_clip_config(tokenizer, shape)
    processor = AllavaProcessor.from_config(config, tokenizer)
    torch.manual_seed(0)
    model = AllavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = end_of_turn_ids("phi", tokenizer, tokenizer.eos_token_id)
    model.save_pretrained(folder / "allava")
    processor.save_pretrained(folder / "allava")
    export(folder / "allava", folder / "llava")


def write_task(folder: Path, docs: int, image_size: int, max_new_tokens: int) -> None:
    """folder/docs.parquet (question, answer, image) and the lmms-eval task reading it, in folder/tasks."""
    rows = [row for row in bench_rows(2 * docs + 8, 0, image_size, max_words=20) if row["images"]][:docs]
    table = [
        {
            "question": row["messages"][0]["content"][-1]["text"],
            "answer": row["messages"][1]["content"][0]["text"],
            "image": {"bytes": row["images"][0]["bytes"], "path": None},
        }
        for row in rows
    ]
    features = datasets.Features(
        {"question": datasets.Value("string"), "answer": datasets.Value("string"), "image": datasets.Image()}
    )
    datasets.Dataset.from_list(table, features=features).to_parquet(str(folder / "docs.parquet"))
    (folder / "tasks").mkdir()
    yaml = TASK_YAML.format(task=TASK, parquet=folder / "docs.parquet", max_new_tokens=max_new_tokens)
    (folder / "tasks" / f"{TASK}.yaml").write_text(yaml)
    (folder / "tasks" / "utils.py").write_text(textwrap.dedent(TASK_UTILS))


def measure(run: Run, folder: Path, max_new_tokens: int, port: int) -> dict:
    """One run of `run` in its own process(es) of one thread: {"seconds", "answers"}."""
    out = folder / "run.json"
    out.unlink(missing_ok=True)
    command = [sys.executable]
    if run.processes > 1:
        command += ["-m", "torch.distributed.run", "--nproc_per_node", str(run.processes), "--master_port", str(port)]
        command += ["--module", "bench.eval_worker"]
    else:
        command += ["-m", "bench.eval_worker"]
    command += [run.harness, "--pretrained", str(folder / run.checkpoint), "--out", str(out)]
    command += ["--batch-size", str(run.batch_size)]
    if run.harness == "lmms":
        command += ["--model", run.model, "--tasks", str(folder / "tasks")]
    else:
        command += ["--parquet", str(folder / "docs.parquet"), "--max-new-tokens", str(max_new_tokens)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"{run.name} failed:\n{finished.stderr[-3000:]}")
    return json.loads(out.read_text())


def runs(batch_size: int) -> list[Run]:
    return [
        Run("lmms-eval llava_hf", "lmms", "llava_hf", "llava", 1),
        Run("lmms-eval + allava plugin", "lmms", "allava", "allava", batch_size),
        Run("our evaluator", "ours", "", "allava", batch_size),
        Run("our evaluator, 2 processes", "ours", "", "allava", batch_size, processes=2),
    ]


def table(results: dict[str, dict], docs: int) -> str:
    """The markdown table: generations/s (median), ratios, answers equal to llava_hf's."""
    baseline, single = results["lmms-eval llava_hf"], results["our evaluator"]
    lines = [
        "| run | processes x threads | batch | generations/s | vs llava_hf | vs 1 process | answers = llava_hf "
        "| CPU s (per process, max) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        run = result["run"]
        versus_one = f"{result['rate'] / single['rate']:.2f}x" if run.processes > 1 else ""
        equal = sum(result["answers"][doc] == answer for doc, answer in baseline["answers"].items())
        lines.append(
            f"| {name} | {run.processes} x 1 | {run.batch_size} | {result['rate']:.2f} | "
            f"{result['rate'] / baseline['rate']:.2f}x | {versus_one} | {equal}/{docs} | {result['cpu_seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8, help="ours and the plugin (llava_hf takes 1 only)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each configuration, interleaved")
    parser.add_argument("--port", type=int, default=29561, help="torchrun's rendezvous port")
    args = parser.parse_args(argv)
    shape = ModelShape()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        folder = Path(tmp)
        write_models(folder, shape)
        write_task(folder, args.docs, shape.image_size, args.max_new_tokens)
        every = runs(args.batch_size)
        seconds = {run.name: [] for run in every}
        cpu_seconds = {run.name: [] for run in every}
        for round_index in range(args.rounds):
            for run in every[round_index % len(every) :] + every[: round_index % len(every)]:
                result = measure(run, folder, args.max_new_tokens, args.port)
                seconds[run.name].append(result["seconds"])
                cpu_seconds[run.name].append(result["cpu_seconds"])
                results.setdefault(run.name, {"run": run, "answers": result["answers"]})
                if result["answers"] != results[run.name]["answers"]:
                    raise RuntimeError(f"{run.name}: greedy answers changed between rounds")
    for name, result in results.items():
        result["seconds"] = statistics.median(seconds[name])
        result["cpu_seconds"] = statistics.median(cpu_seconds[name])
        result["rate"] = args.docs / result["seconds"]
    print(f"{args.docs} documents, at most {args.max_new_tokens} new tokens, median of {args.rounds} rounds")
    print(table(results, args.docs))
    return results


if __name__ == "__main__":
    main()
