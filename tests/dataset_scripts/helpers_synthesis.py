"""Helpers shared by the dataset_scripts tests (imported explicitly; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from dataset_scripts.shards import iter_jsonl, read_image
from recipes.tiny import shapes_world


REPO = Path(__file__).resolve().parents[2]
API_KEY = "sk-allava-TESTKEY-7d3f9c2b1a"  # distinctive, so a leak anywhere is found by grep


def records(output: Path, kind: str = "records") -> list[dict]:
    rows = []
    for path in sorted(output.glob(f"{kind}-*.jsonl")):
        rows.extend(iter_jsonl(path))
    return rows


def scene_of_record(output: Path, record: dict) -> shapes_world.Scene:
    scene = shapes_world.scene_from_image(read_image(output, record))
    assert scene is not None
    return scene
