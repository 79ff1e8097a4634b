"""Which checkpoint a training run starts from, so that rerunning the same command continues instead of starting over.

- `--resume_from_checkpoint <folder>`: that folder. `latest` (or `true`): the newest complete checkpoint.
- Neither, and the output folder holds complete checkpoints: resume from the newest one (logged).
- `--overwrite_output_dir true`: start from step 0; the folder's earlier checkpoints are deleted just before the
  first step (after every check passed), so that they never mix with the new run's.
- An output folder holding a finished model but no checkpoint to resume from is refused, never silently replaced.

A checkpoint is complete when its `trainer_state.json` parses: a run killed while saving leaves a folder without it,
or with half of it.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from toolkit.cli import InputError


logger = logging.getLogger("allava.sft")
LATEST = ("latest", "true", "True")
# What a finished run leaves at the top of its output folder (full model or LoRA adapter).
FINISHED_MARKERS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def checkpoint_step(folder: Path) -> int | None:
    suffix = folder.name.removeprefix("checkpoint-")
    return int(suffix) if folder.name.startswith("checkpoint-") and suffix.isdigit() else None


def is_complete(folder: Path) -> bool:
    """Whether the checkpoint's trainer state was written whole (parses as a JSON object)."""
    try:
        return isinstance(json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")), dict)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete `checkpoint-N`; incomplete ones are skipped with a warning naming them."""
    folders = sorted(
        (p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) is not None),
        key=checkpoint_step,
        reverse=True,
    )
    for folder in folders:
        if is_complete(folder):
            return str(folder)
        logger.warning("skipping %s: its trainer_state.json is missing or unreadable (an interrupted save)", folder)
    return None


def resume_point(output_dir: str, resume_from_checkpoint: str | None, overwrite: bool) -> str | None:
    """The checkpoint to resume from (None: start at step 0), by the rules of the module docstring."""
    if resume_from_checkpoint not in (None, *LATEST):
        folder = Path(resume_from_checkpoint)
        if not is_complete(folder):
            raise InputError(
                f"resume_from_checkpoint: {folder} is not a complete checkpoint (no readable trainer_state.json)"
            )
        logger.info("resuming from %s", folder)
        return str(folder)
    latest = last_complete_checkpoint(output_dir)
    if resume_from_checkpoint in LATEST:
        if latest is None:
            raise InputError(f"resume_from_checkpoint=latest: {output_dir} has no complete checkpoint")
        logger.info("resuming from %s", Path(latest).name)
        return latest
    if overwrite:
        return None
    if latest is not None:
        logger.info("resuming from %s (%s holds an earlier run; --overwrite_output_dir true starts over)",
                    Path(latest).name, output_dir)  # fmt: skip
        return latest
    finished = [name for name in FINISHED_MARKERS if (Path(output_dir) / name).is_file()]
    if finished:
        raise InputError(
            f"output_dir {output_dir} already holds a trained model ({finished[0]}) and no checkpoint to resume "
            "from; pass --overwrite_output_dir true to replace it, --resume_from_checkpoint <folder> to continue "
            "from a checkpoint elsewhere, or pick another --output_dir"
        )
    return None


def discard_checkpoints(output_dir: str) -> None:
    """`--overwrite_output_dir`: delete the earlier run's checkpoints (called right before training starts)."""
    for folder in Path(output_dir).glob("checkpoint-*"):
        logger.warning("--overwrite_output_dir: deleting %s of the earlier run", folder)
        shutil.rmtree(folder)
