"""Data stages at several row counts, each through the CLI a user runs, each in its own process.

    python bench/bench_scale.py [--sizes 1000 10000 100000] [--stages import load ...] [--workdir /tmp/allava-scale]
                                [--keep] [--image-side 500]

Stages: `import` (dataset_scripts/import_allava4v.py on a simulated ALLaVA-4V release of the real schema: ids,
`allava_laion/images/...` paths, human/gpt conversations; caption and instruct LAION rows share their images as in the
release, 20% text rows) and `load` (`datasets.load_dataset` of every subset the import wrote, reading every row).
Images are small generated JPEGs (64x48), so the table measures the per-row cost, not the per-image decode.

Then the synthesis pipeline (bench/scale_pipeline.py): `synthesize` (caption-qa against the offline teacher with no
latency: real image reads and checks, the image pack; one image makes two rows), `build` (build_dataset.py with its
quality filters and near-duplicate index), `sft` (recipes/sft.py on the tiny recipe, --max_steps 1: the pre-flight's
row checks with the real collator and the length column, then one step) and `sft-streaming` (the same, streaming).
Their images are small shapes-world PNGs (84 px): the offline teacher reads each scene from the PNG's metadata.
Last, `eval` (bench/scale_eval.py: recipes/eval_benchmarks.py on a simulated N-row TextVQA, tiny model).

`--image-side 500` runs the image-touching stages on photo-like ~500 px JPEGs instead (import's LAION images and
eval's 500x375, the pipeline's shapes-world scenes 500x500 with their scene in the JPEG comment), for the per-image
cost.

Prints one markdown row per stage and size (rows, wall, CPU per row, peak RSS of the stage's process, disk written)
and, per stage, the largest size's CPU per row and peak RSS over the smallest's (the goals: within 1.2x and 1.3x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
from pathlib import Path

from PIL import Image

from bench import scale_eval, scale_pipeline
from bench.scale_measure import REPO, folder_bytes, measure


STAGES = ("import", "load", *scale_pipeline.STAGES, "eval")
LOAD = """
import sys, datasets
datasets.disable_progress_bars()
folder = sys.argv[1]
rows = 0
for subset in sys.argv[2:]:
    for row in datasets.load_dataset(folder, subset, split="train"):
        rows += 1
print(rows)
"""


def write_release(root: Path, rows: int, seed: int = 0, image_side: int | None = None) -> dict[str, int]:
    """A release of `rows` rows: 40% caption LAION, 40% instruct LAION (same images), 20% text. Images are 64x48
    one-colour JPEGs, or with `image_side` photo-like ones (scale_eval.jpeg)."""
    rng = random.Random(seed)
    images = root / "allava_laion" / "images"
    images.mkdir(parents=True)
    (root / "allava_text").mkdir()
    pictures = int(rows * 0.4)
    for n in range(pictures):
        if image_side:
            (images / f"{n}.jpeg").write_bytes(scale_eval.jpeg(rng, image_side))
            continue
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        Image.new("RGB", (64, 48), colour).save(images / f"{n}.jpeg", quality=85)

    def answer(n: int) -> str:
        return " ".join(
            rng.choice(("a", "red", "large", "circle", "left", "of", "the", "image")) for _ in range(60 + n % 40)
        )

    def image_row(kind: str, n: int, question: str) -> dict:
        return {
            "id": f"allava_laion_{kind}_{n}",
            "image": f"allava_laion/images/{n}.jpeg",
            "conversations": [
                {"from": "human", "value": f"<image>\n{question}"},
                {"from": "gpt", "value": answer(n)},
            ],
            "original_caption": f"alt text {n}",
            "url": f"http://example.com/{n}.jpg",
        }

    caption = [image_row("cap", n, "Describe the image in detail.") for n in range(pictures)]
    instruct = [image_row("inst", n, f"What is left of object {n}?") for n in range(pictures)]
    texts = rows - 2 * pictures
    text = [
        {
            "idx": n,
            "conversations": [{"from": "human", "value": f"Question {n}?"}, {"from": "gpt", "value": answer(n)}],
        }
        for n in range(texts)
    ]
    (root / "allava_laion" / "ALLaVA-Caption-LAION-4V.json").write_text(json.dumps(caption))
    (root / "allava_laion" / "ALLaVA-Instruct-LAION-4V.json").write_text(json.dumps(instruct))
    (root / "allava_text" / "Evol-Instruct-GPT4-Turbo-143K.json").write_text(json.dumps(text))
    return {"caption_laion": pictures, "instruct_laion": pictures, "text": texts}


def run_size(workdir: Path, rows: int, image_side: int | None = None) -> list[dict]:
    """The import and load stages at one size; returns one result per stage."""
    root, output = workdir / f"release-{rows}", workdir / f"dataset-{rows}"
    for folder in (root, output):
        shutil.rmtree(folder, ignore_errors=True)
    subsets = write_release(root, rows, image_side=image_side)
    script = str(REPO / "dataset_scripts" / "import_allava4v.py")
    imported = measure([sys.executable, script, "--root", str(root), "--output", str(output)])
    imported.update(stage="import", rows=rows, disk=folder_bytes(output))
    cache = workdir / f"hf-{rows}"  # load_dataset's own copy (arrow files) goes to the cache: its disk cost
    shutil.rmtree(cache, ignore_errors=True)
    loaded = measure([sys.executable, "-c", LOAD, str(output), *subsets], HF_HOME=str(cache))
    if int(loaded["stdout"].strip()) != rows:
        raise RuntimeError(f"load read {loaded['stdout'].strip()} rows of {rows}")
    loaded.update(stage="load", rows=rows, disk=folder_bytes(cache))
    return [imported, loaded]


def run_eval(workdir: Path, rows: int, image_side: int | None, keep: bool) -> dict:
    """The eval stage at one size (scale_eval.py); the benchmark, output and model are removed unless `keep`."""
    result = scale_eval.evaluate(workdir, rows, image_side or 64)
    if not keep:
        for name in (f"textvqa-{rows}", f"eval-{rows}", f"hf-eval-{rows}", "eval-model"):
            shutil.rmtree(workdir / name, ignore_errors=True)
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| stage | rows | wall s | CPU ms/row | peak RSS MiB | disk written MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['stage']} | {r['rows']:,} | {r['wall']:.1f} | {1000 * r['cpu'] / r['rows']:.3f} "
            f"| {r['rss'] / 2**20:.0f} | {r['disk'] / 2**20:.1f} |"
        )
    lines += [
        "",
        "| stage | CPU/row, largest / smallest | peak RSS, largest / smallest | CPU ms per added row |",
        "|---|---|---|---|",
    ]
    for stage in dict.fromkeys(r["stage"] for r in results):
        runs = sorted((r for r in results if r["stage"] == stage), key=lambda r: r["rows"])
        small, large = runs[0], runs[-1]
        per_row = (large["cpu"] / large["rows"]) / (small["cpu"] / small["rows"])
        # The start-up (imports, models) is paid once: the cost of each row beyond the smallest size excludes it.
        added = 1000 * (large["cpu"] - small["cpu"]) / max(large["rows"] - small["rows"], 1)
        lines.append(f"| {stage} | {per_row:.2f}x | {large['rss'] / small['rss']:.2f}x | {added:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/allava-scale"))
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--keep", action="store_true", help="keep the releases and datasets written")
    parser.add_argument(
        "--image-side",
        type=int,
        help="photo-like JPEGs of this side (e.g. 500: 500x375, ~70 KB) instead of the small images, for the "
        "per-image cost",
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    if {"import", "load"} & set(args.stages):
        for rows in args.sizes:
            results += [r for r in run_size(args.workdir, rows, args.image_side) if r["stage"] in args.stages]
            if not args.keep:
                for name in ("release", "dataset", "hf"):
                    shutil.rmtree(args.workdir / f"{name}-{rows}", ignore_errors=True)
    pipeline = [stage for stage in args.stages if stage in scale_pipeline.STAGES]
    if pipeline:
        results += scale_pipeline.run(args.workdir, args.sizes, pipeline, keep=args.keep, image_side=args.image_side)
    if "eval" in args.stages:
        results += [run_eval(args.workdir, rows, args.image_side, args.keep) for rows in args.sizes]
    report = f"{table(results)}\n\n{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    print(report)
    return report


if __name__ == "__main__":
    main()
