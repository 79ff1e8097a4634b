"""Small images and the save helper shared by the benchmark fixture writers."""

import base64
import io
from pathlib import Path

from datasets import Dataset, DatasetDict, Features
from PIL import Image as PILImage


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (128, 128, 128)]


def picture(index: int, size: tuple[int, int] = (24, 18)) -> PILImage.Image:
    return PILImage.new("RGB", size, COLOURS[index % len(COLOURS)])


def png_base64(image: PILImage.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def save_split(folder: Path, split: str, rows: list[dict], features: dict) -> None:
    """A `save_to_disk` DatasetDict with one split, as a local copy of a Hub dataset would be kept."""
    DatasetDict({split: Dataset.from_list(rows, features=Features(features))}).save_to_disk(str(folder))
