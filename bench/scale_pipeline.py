"""The synthesis pipeline at several row counts, for bench/bench_scale.py: synthesize -> build -> sft pre-flight.

Each stage is the CLI a user runs, in its own process (scale_measure.measure). At a size of N rows, synthesize reads
N / 2 shapes-world PNGs (the offline teacher reads each scene from the PNG's metadata; with an image side, JPEGs
carrying it in their comment) and writes a caption row and a question row per image; build_dataset.py merges them
with every quality filter on (the near-duplicate index drops some of the repeated random scenes); sft.py runs the
tiny recipe for one step over the built dataset, map-style (every row checked with the real collator, the length
column for group_by_length) and streaming. The teacher (the offline stand-in, no latency) and the tiny backbones
are set up once, outside the clock.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.scale_measure import REPO, folder_bytes, measure
from recipes.tiny import shapes_world


STAGES = ("synthesize", "build", "sft", "sft-streaming")
IMAGE_SIZE = 84  # the tiny recipe's image side (a 3x3 grid of 28 px patches)


@contextlib.contextmanager
def offline_teacher() -> Iterator[str]:
    """The offline teacher in its own process (no latency); yields its base URL."""
    command = [sys.executable, "-m", "recipes.tiny.offline_teacher", "--port", "0"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait()


def synthesize(workdir: Path, rows: int, base_url: str, image_side: int | None = None) -> dict:
    """caption-qa over rows / 2 scenes: 84 px PNGs, or with `image_side` photo-like JPEGs of that side."""
    images, output = workdir / f"images-{rows}", workdir / f"synthesis-{rows}"
    grain = shapes_world.PHOTO_GRAIN if image_side else None
    shapes_world.write_scenes(images, rows // 2, seed=rows, size=image_side or IMAGE_SIZE, grain=grain)
    script = str(REPO / "dataset_scripts" / "synthesize.py")
    options = ["--mode", "caption-qa", "--input", str(images), "--output", str(output), "--model", "bench"]
    result = measure(
        [sys.executable, script, *options, "--base-url", base_url, "--concurrency", "16", "--quiet"],
        OPENAI_API_KEY="bench",
    )
    summary = json.loads(next(output.glob("summary-*.json")).read_text())
    done, skipped = summary["done"], sum(summary["skipped"].values())  # skipped: near-duplicate images
    if done + skipped != rows // 2 or summary["rejected"]:
        raise RuntimeError(f"synthesize finished {done} of {rows // 2} images ({summary['outcome']})")
    return {**result, "stage": "synthesize", "rows": 2 * done, "disk": folder_bytes(output)}


def build(workdir: Path, rows: int) -> dict:
    synthesis, output = workdir / f"synthesis-{rows}", workdir / f"built-{rows}"
    script = str(REPO / "dataset_scripts" / "build_dataset.py")
    result = measure([sys.executable, script, "--input", str(synthesis), "--output", str(output)])
    built = sum(json.loads((output / "stats.json").read_text())["subsets"].values())
    return {**result, "stage": "build", "rows": built, "disk": folder_bytes(output)}


def sft(workdir: Path, rows: int, streaming: bool) -> dict:
    """One step of the tiny recipe over the built dataset; disk is the datasets cache plus the saved model."""
    stage = "sft-streaming" if streaming else "sft"
    dataset, output, cache = workdir / f"built-{rows}", workdir / f"{stage}-{rows}", workdir / f"hf-{stage}-{rows}"
    subsets = json.loads((dataset / "stats.json").read_text())["subsets"]
    mixture = [json.dumps({"path": str(dataset), "name": name, "split": "train"}) for name in subsets]
    backbones = workdir / "backbones"
    command = [
        sys.executable, str(REPO / "recipes" / "sft.py"), "--config", str(REPO / "recipes/tiny/pretrain.yaml"),
        "--vision_model_name_or_path", str(backbones / "vision"), "--text_model_name_or_path", str(backbones / "text"),
        "--dataset_mixture", *mixture, "--output_dir", str(output), "--max_steps", "1", "--save_strategy", "no",
        "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    command += ["--streaming", "true"] if streaming else ["--train_sampling_strategy", "group_by_length"]
    result = measure(command, HF_HOME=str(cache))
    disk = folder_bytes(cache) + folder_bytes(output)
    return {**result, "stage": stage, "rows": sum(subsets.values()), "disk": disk}


def run_stage(stage: str, workdir: Path, rows: int, base_url: str, image_side: int | None = None) -> dict:
    if stage == "synthesize":
        return synthesize(workdir, rows, base_url, image_side)
    if stage == "build":
        return build(workdir, rows)
    return sft(workdir, rows, streaming=stage == "sft-streaming")


def run(
    workdir: Path, sizes: list[int], stages: list[str], keep: bool = False, image_side: int | None = None
) -> list[dict]:
    """`stages` at each size, after the stages whose output they read (synthesize, build: run but not reported
    unless asked for); one result per reported stage and size."""
    training = {"sft", "sft-streaming"} & set(stages)
    needed = [s for s in STAGES if s in stages or s == "synthesize" or (s == "build" and training)]
    if training:
        command = [sys.executable, "-m", "recipes.tiny.models", "--output", str(workdir / "backbones")]
        measure([*command, "--image-size", str(IMAGE_SIZE), "--patch-size", "28", "--text-width", "128"])
    results = []
    with offline_teacher() as base_url:
        for rows in sizes:
            for stage in needed:
                result = run_stage(stage, workdir, rows, base_url, image_side)
                if stage in stages:
                    results.append(result)
            if not keep:
                for name in ("images", "synthesis", "built", "sft", "sft-streaming", "hf-sft", "hf-sft-streaming"):
                    shutil.rmtree(workdir / f"{name}-{rows}", ignore_errors=True)
    if not keep:
        shutil.rmtree(workdir / "backbones", ignore_errors=True)
    return results
