"""The GPT step of a rule-scored benchmark's official protocol, run only when --judge-model is given.

MMBench (GPT answer matching), MathVista (GPT answer extraction), HallusionBench and MMVP (GPT grading) end their
official scoring with a GPT call; without a judge our modules score the deterministic part alone and count the
answers the GPT step would have decided. A benchmark describes its step in `Benchmark.judge_step` (benchmark.py):
the template in prompts/ (its hash is stored with the score), which answers need the call, its messages and the
reading of the reply.
Verdicts have their own append-only cache (cache/<name>.judge.jsonl, first line the judge settings), so the
generation cache is untouched, a rerun asks only about answers without a verdict (or whose verdict failed or was
given for another answer), and a run without a judge scores the deterministic path.
"""

from pathlib import Path

from .benchmark import JudgeStep
from .cache import SampleCache
from .judge import Judge, load_prompt


def run_judge_step(
    judge: Judge | None, step: JudgeStep | None, name: str, records: list[dict], cache_dir: Path
) -> dict | None:
    """Attach `record["judge"]` to the records the benchmark's GPT step applies to; the judge description or None."""
    if judge is None or step is None:
        return None
    template, prompt_hash = load_prompt(step.prompt)
    info = judge.describe(prompt_hash)
    cache = SampleCache(cache_dir / f"{name}.judge.jsonl", info)
    needed = [r for r in records if step.applies(r["target"], r["raw_answer"])]

    def settled(record: dict) -> bool:
        verdict = cache.records.get(record["id"])
        return verdict is not None and not verdict["error"] and verdict["raw_answer"] == record["raw_answer"]

    todo = [record for record in needed if not settled(record)]
    requests = [
        (
            step.messages(record["target"], record["raw_answer"], template),
            lambda reply, target=record["target"]: step.parse(reply, target),
        )
        for record in todo
    ]
    for record, verdict in zip(todo, judge.ask_many(requests)):
        fields = {key: verdict.get(key) for key in ("parsed", "reply", "attempts", "error")}
        cache.append({"id": record["id"], "raw_answer": record["raw_answer"], **fields})
    for record in needed:
        record["judge"] = {key: cache.records[record["id"]][key] for key in ("parsed", "reply", "attempts", "error")}
    return info


def judge_verdict(record: dict):
    """The judge step's parsed verdict for this record, or None (no judge, not needed, or the call failed)."""
    verdict = record.get("judge")
    return verdict["parsed"] if verdict and not verdict.get("error") else None
