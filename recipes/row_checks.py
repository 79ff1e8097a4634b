"""Every training row checked before the first step, so a bad one stops the run at once, not when its batch comes up.

Each row goes through the training collator's own `encode` (chat template, roles, image parts against images, image
decoding, length against `max_length`): what passes here passes in training. Rows are checked in batches, in
parallel with `num_proc`, and the result is cached by `datasets` like any map of a file-backed dataset, so a rerun
over the same data and settings checks nothing again. Every bad row is reported at once; `--drop_bad_rows` drops
them instead, counted and listed, never silently.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from datasets import Dataset
from datasets.fingerprint import Hasher

from recipes.collator import AllavaCollator
from recipes.lengths import collator_fingerprint
from toolkit.cli import InputError


logger = logging.getLogger("allava.sft")
PROBLEM = "problem"
SHOWN = 50  # rows printed in the error; all of them go to the report file
REPORT_FILE = "bad_rows.jsonl"
_CHECK_VERSION = 1  # bump when what `check_rows` records changes


def check_rows(dataset: Dataset, collator: AllavaCollator, num_proc: int | None = None) -> list[str]:
    """One entry per row: "" for a usable row, else the collator's error (which names the row id)."""

    def check(batch: dict[str, list[Any]]) -> dict[str, list[str]]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        try:
            collator.encode(rows)
            return {PROBLEM: [""] * len(rows)}
        except ValueError:  # at least one bad row: find which, one by one
            return {PROBLEM: [_problem(collator, row) for row in rows]}

    if num_proc is None and len(dataset) >= 20_000:
        num_proc = min(8, os.cpu_count() or 1)
    fingerprint = Hasher.hash([dataset._fingerprint, "row-check", _CHECK_VERSION, *collator_fingerprint(collator)])
    checked = dataset.map(
        check,
        batched=True,
        batch_size=128,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        new_fingerprint=fingerprint,
        desc="checking every training row",
    )
    return checked.data.column(PROBLEM).to_pylist()


def _problem(collator: AllavaCollator, row: dict[str, Any]) -> str:
    try:
        collator.encode([row])
    except ValueError as error:
        return str(error)
    return ""


def drop_or_refuse(
    dataset: Dataset, problems: list[str], drop: bool, report_dir: str | Path | None
) -> tuple[Dataset, int]:
    """Refuse a dataset with bad rows (an error listing them) or, with `drop`, return it without them.

    Returns the dataset and the number of rows dropped. The full list goes to `<report_dir>/bad_rows.jsonl` (not
    written when `report_dir` is None: the other processes of a distributed run).
    """
    bad = [index for index, problem in enumerate(problems) if problem]
    if not bad:
        return dataset, 0
    by_id: dict[str, str] = {}  # a row repeated by `epochs` is listed once (the mixture's rows all have an `id`)
    for row_id, index in zip(dataset.select_columns(["id"])[bad]["id"], bad):
        by_id.setdefault(row_id, problems[index])
    unique = list(by_id.values())
    report = Path(report_dir) / REPORT_FILE if report_dir is not None else None
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        with report.open("w", encoding="utf-8") as handle:
            for row_id, problem in by_id.items():
                handle.write(json.dumps({"id": row_id, "problem": problem}) + "\n")
    listed = f"listed in {report}" if report is not None else "listed by the main process"
    if drop:
        logger.warning(
            "--drop_bad_rows: dropped %d of %d training rows (%d distinct, %s); first: %s",
            len(bad), len(dataset), len(unique), listed, unique[0],
        )  # fmt: skip
        keep = sorted(set(range(len(dataset))) - set(bad))
        return dataset.select(keep), len(bad)
    shown = "\n".join(f"  {problem}" for problem in unique[:SHOWN])
    more = f"\n  ... and {len(unique) - SHOWN} more" if len(unique) > SHOWN else ""
    raise InputError(
        f"{len(unique)} training row(s) cannot be used (all {listed}); fix them, or pass --drop_bad_rows true to "
        f"train without them:\n{shown}{more}"
    )
