"""The `eval` stage of bench/bench_scale.py: recipes/eval_benchmarks.py on a simulated N-row TextVQA.

The benchmark is a local copy in the schema TextVQA's loader reads (`lmms-lab/textvqa`, split `validation`: a parquet
file of `question_id`, `question`, `image`, 10 `answers`, `ocr_tokens`), one distinct JPEG per row, so a loader that
kept every sample's image would show in the peak RSS. The model is a random tiny ALLaVA checkpoint
(`recipes.tiny.models`, the phi text backbone); both are written outside the clock. The stage runs the CLI a user runs,
rule-scored (no judge), with its cache and samples files, and a generation budget of 2 tokens: this measures the
stage's per-row overhead (data, batching, cache, samples, scoring), not a real model's decode.
"""

from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from bench.scale_measure import REPO, folder_bytes, measure
from recipes.tiny.shapes_world import PHOTO_GRAIN, with_grain


BATCH_ROWS = 1000  # parquet row group: the writer holds this many rows' images at a time
WORDS = ("open", "shop", "sale", "coffee", "street", "exit", "bus", "stop", "city", "book")


def jpeg(rng: random.Random, side: int, grain: float = PHOTO_GRAIN) -> bytes:
    """A quality-85 JPEG of `side` x 3/4 side, distinct per call: a colour over a gradient, with noise (`grain`,
    its sigma) so it compresses like a photograph (~70 KB at 500 px)."""
    width, height = side, side * 3 // 4
    colour = tuple(rng.randrange(256) for _ in range(3))
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = with_grain(Image.blend(image, Image.new("RGB", (width, height), colour), 0.5), grain)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def textvqa_features():
    """The columns of TextVQA's Hub copy that recipes/benchmarks/textvqa.py reads (also the tests' fixture)."""
    from datasets import Features, List, Value
    from datasets import Image as ImageFeature

    return Features(
        {
            "question_id": Value("int64"),
            "question": Value("string"),
            "image_id": Value("string"),
            "image": ImageFeature(),
            "answers": List(Value("string")),
            "ocr_tokens": List(Value("string")),
        }
    )


def write_textvqa(folder: Path, rows: int, side: int = 64, seed: int = 0) -> Path:
    """`rows` questions in TextVQA's schema as `folder/data/validation-00000-of-00001.parquet`, written in row groups
    (with the `datasets` feature metadata, so `image` reads as an Image column)."""
    rng = random.Random(seed)
    schema = textvqa_features().arrow_schema
    (folder / "data").mkdir(parents=True)
    with pq.ParquetWriter(folder / "data" / "validation-00000-of-00001.parquet", schema) as writer:
        for start in range(0, rows, BATCH_ROWS):
            batch = []
            for n in range(start, min(rows, start + BATCH_ROWS)):
                answer = rng.choice(WORDS)
                batch.append(
                    {
                        "question_id": n,
                        "question": f"what does the sign say in picture {n}?",
                        "image_id": f"{n:016x}",
                        "image": {"bytes": jpeg(rng, side), "path": None},
                        "answers": [answer] * 7 + [rng.choice(WORDS) for _ in range(3)],
                        "ocr_tokens": rng.sample(WORDS, 3),
                    }
                )
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return folder


def save_model(folder: Path) -> Path:
    """The random tiny ALLaVA checkpoint the eval tests use (remote code, loadable with trust_remote_code=True)."""
    from recipes.tiny.models import build_tiny_model_and_processor

    model, processor = build_tiny_model_and_processor("phi", seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def evaluate(workdir: Path, rows: int, side: int = 64) -> dict:
    """recipes/eval_benchmarks.py over a fresh `rows`-row TextVQA; disk is the output (results, samples, cache) plus
    the datasets cache of the local copy."""
    model = workdir / "eval-model"
    if not model.is_dir():
        save_model(model)
    data, output, cache = workdir / f"textvqa-{rows}", workdir / f"eval-{rows}", workdir / f"hf-eval-{rows}"
    write_textvqa(data, rows, side)
    command = [
        sys.executable, str(REPO / "recipes" / "eval_benchmarks.py"), "--model", str(model), "--benchmarks", "textvqa",
        "--dataset-path", f"textvqa={data}", "--output", str(output), "--max-new-tokens", "2", "--batch-size", "16",
        "--device", "cpu", "--dtype", "float32", "--trust-remote-code",
    ]  # fmt: skip
    result = measure(command, HF_HOME=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    samples = sum(1 for _ in (output / "samples" / "textvqa.jsonl").open())
    if samples != rows:
        raise RuntimeError(f"eval wrote {samples} samples of {rows}")
    json.loads((output / "results.json").read_text())  # written whole
    return {**result, "stage": "eval", "rows": rows, "disk": folder_bytes(output) + folder_bytes(cache)}
