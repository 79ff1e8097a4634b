"""A benchmark's work under data parallelism: the processes of a launch, this process's share of the batches, and the
gathering of all shares.

Every process generates its own batches (batching.py) into its own cache file; after all have finished, the main
process reads every file, judges the judged benchmarks' answers (once per sample, not once per process) and scores.
"""

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
from accelerate import PartialState

from .batching import Batch
from .benchmark import Benchmark
from .cache import SharedCache
from .common import Sample
from .judge import Judge
from .progress import Progress


# The other processes wait at each benchmark's end while the main process judges: hence a generous timeout.
BARRIER_TIMEOUT_HOURS = 12
# Verdicts asked for (concurrently) and saved together: this many per concurrent call.
JUDGE_CHUNK_PER_CALL = 4
# generate(model, processor, samples, max_new_tokens) -> answers: recipes/benchmarks/generation.py's, or a test's.
Generate = Callable[[object, object, Sequence[Sample], int], list[str]]


def process_state(device: str | None) -> PartialState:
    """This process's place in the launch: one process without a launcher; under `accelerate launch` or torchrun,
    one per GPU (NCCL), or per CPU process (gloo) on machines without GPUs or with --device cpu."""
    cpu = not torch.cuda.is_available() or (device or "").startswith("cpu")
    cpu = cpu or os.environ.get("ACCELERATE_USE_CPU", "false").lower() == "true"
    return PartialState(cpu=cpu, timeout=timedelta(hours=BARRIER_TIMEOUT_HOURS))


def judge_records(judge: Judge, benchmark: Benchmark, template: str, samples: list, records: list[dict]) -> None:
    """Ask the judge about each (sample, record) pair and store verdict, score and any failure in the record."""
    requests = [
        (
            benchmark.judge.messages(sample, record["raw_answer"], template),
            lambda reply, sample=sample: benchmark.judge.parse(reply, sample),
        )
        for sample, record in zip(samples, records)
    ]
    for record, verdict in zip(records, judge.ask_many(requests)):
        record["score"] = verdict.get("score")
        record["judge"] = {key: verdict.get(key) for key in ("parsed", "reply", "attempts", "error")}


@dataclass
class Plan:
    """One benchmark, ready to generate: its samples, their prompts, all batches and this process's share."""

    benchmark: Benchmark
    samples: list
    prompts: list[str]
    batches: list[Batch]
    mine: list[Batch]
    cache: SharedCache
    provenance: dict
    variant: str
    template: str | None
    judge_info: dict | None
    max_new_tokens: int

    def todo(self, batches: list[Batch]) -> int:
        """Generations still to make in `batches`: every sample of a batch whose answers are not all cached."""
        return sum(len(batch.positions) for batch in batches if not self.complete(batch))

    def complete(self, batch: Batch) -> bool:
        return all(self.cache.record(self.samples[i].id, batch.key) for i in batch.positions)


def generate_share(plan: Plan, generate: Generate, model, processor, progress: Progress) -> None:
    """Generate this process's batches that the cache lacks, each batch whole.

    A batch that an interrupted run finished only in part is generated again whole, so each sample keeps the batch
    mates (and padding) of an uninterrupted run and gets its answer exactly; saved answers that come out the same are
    kept as they are, and only new or changed ones are appended (unscored: the main process judges after gathering).
    """
    benchmark = plan.benchmark
    for batch in plan.mine:
        if plan.complete(batch):
            continue
        samples = [plan.samples[position] for position in batch.positions]
        answers = generate(model, processor, samples, plan.max_new_tokens)
        records = []
        for position, sample, answer in zip(batch.positions, samples, answers):
            kept = plan.cache.record(sample.id, batch.key)
            if kept is not None and kept["raw_answer"] == answer:
                continue
            earlier = plan.cache.record(sample.id)
            if earlier is not None and earlier["raw_answer"] == answer:  # made in another batch, same text: its
                records.append({**earlier, "batch": batch.key})  # verdict still holds
                continue
            records.append(
                {
                    "id": sample.id,
                    "prompt": plan.prompts[position],
                    "raw_answer": answer,
                    "parsed_answer": answer if benchmark.judged else benchmark.parse_answer(sample.target, answer),
                    "score": None,
                    "judge": None,
                    "target": sample.target,
                    "batch": batch.key,
                }
            )
        plan.cache.append_many(records)
        progress.update(len(samples), benchmark.name)


def gathered_records(plan: Plan, judge: Judge | None) -> list[dict]:
    """Every sample's record in sample order, read from all processes' cache files; judged benchmarks get their
    verdicts now, once per sample (an earlier failure is asked again)."""
    plan.cache.refresh()
    records: list[dict | None] = [None] * len(plan.samples)
    for batch in plan.batches:
        for position in batch.positions:
            records[position] = plan.cache.record(plan.samples[position].id, batch.key)
    missing = [plan.samples[i].id for i, record in enumerate(records) if record is None]
    if missing:
        raise RuntimeError(f"{plan.benchmark.name}: no answer for samples {missing[:5]} after all processes finished")
    if plan.benchmark.judged:
        todo = [i for i, record in enumerate(records) if not record["judge"] or record["judge"]["error"]]
        size = JUDGE_CHUNK_PER_CALL * judge.settings.concurrency
        for start in range(0, len(todo), size):  # saved chunk by chunk: a kill loses at most one chunk
            chunk = todo[start : start + size]
            fresh = [dict(records[i]) for i in chunk]
            judge_records(judge, plan.benchmark, plan.template, [plan.samples[i] for i in chunk], fresh)
            plan.cache.append_many(fresh)
            for i, record in zip(chunk, fresh):
                records[i] = record
    return records
