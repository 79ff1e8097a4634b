"""The whole ALLaVA loop, offline, with tiny models: the same scripts a user runs with real ones.

    python recipes/tiny/demo.py          # full demo (about 9.5 minutes on 2 CPU cores), everything under outputs/tiny/
    python recipes/tiny/demo.py --quick  # fewer scenes and steps, every step run (about 5 minutes; learns colour and
                                         # count, not reliably shape and position)
    python recipes/tiny/demo.py --seed 1 # another training seed (projector init, data order); same images and data

1. shapes-world images: a training set and a held-out set (other seeds, other scenes)
2. caption-then-QA synthesis with dataset_scripts/synthesize.py against the offline teacher over loopback (the real
   `openai` client), plus a small text-only instruction set
3. the HF dataset with its card (dataset_scripts/build_dataset.py)
4. tiny random backbones (python -m recipes.tiny.models), then stage 1 and stage 2 training of a tiny model
   (recipes/sft.py with recipes/tiny/*.yaml, --seed)
5. held-out evaluation (recipes/tiny/shapes_eval.py): accuracy per question type against chance, caption facts named vs
   invented, text-only answers (the forgetting check)
6. a Hub-ready folder (hub/push_model.py --dry-run: weights, remote code, processor, card with these results) and a
   loss-curve PNG
7. a fresh process loads that folder through AutoModelForImageTextToText + trust_remote_code and answers questions
   about a new image (python -m recipes.tiny.answer)
"""

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from recipes.tiny import shapes_world
from recipes.tiny.loss_curve import plot_loss_curves
from recipes.tiny.offline_teacher import OfflineTeacher
from toolkit.cli import Parser


REPO = Path(__file__).resolve().parents[2]
DEMO = "recipes/tiny/demo.py"
PYTHON = sys.executable


# (train scenes, held-out scenes, text instructions, stage-1 steps, stage-2 steps)
SIZES = {"full": (6000, 200, 400, 2600, 3200), "quick": (3000, 100, 60, 1600, 1200)}
# 84 px cut into 28 px patches: a 3x3 grid whose columns are the scene's left / centre / right thirds and whose rows
# are its three shape slots, so every shape sits inside one image token (at 56 px / 14 px, shape and count stayed
# near chance within the time budget; docs/benchmarks.md).
IMAGE_SIZE, PATCH_SIZE = 84, 28
# The tiny Phi is 128 wide: at 64 (measured with a normal(0, 0.02) projector init) it learned colour and count, then
# shape or position but rarely both within the time budget; at 128 it learns all four in fewer steps, each ~30%
# dearer (docs/benchmarks.md).
TEXT_WIDTH = 128
DEMO_KEY = "sk-offline-demo-not-a-secret"
# Marks a folder this demo made, so the next run may clear it (and only it).
MARKER = ".allava-demo"


def run(step: str, command: list[str], timings: dict, env: dict | None = None) -> None:
    """Run one stage as its own process, the way a user would, and stop the demo if it fails."""
    print(f"\n=== {step}\n$ {' '.join(command)}", flush=True)
    started = time.time()
    result = subprocess.run(command, cwd=REPO, env={**os.environ, **(env or {})})
    timings[step] = time.time() - started
    if result.returncode != 0:
        raise SystemExit(f"demo step '{step}' failed with exit code {result.returncode}")


def prepare_output(out: Path) -> None:
    """Start every run from an empty folder: an earlier run's leftovers (a resumable synthesis, a larger image set,
    the Hub folder) would leak into this one. Only a folder an earlier demo made is cleared; anything else stops."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise SystemExit(f"--output {out} is not empty and was not made by {DEMO}; pick a new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(f"Made by {DEMO}, which clears this folder at the start of its next run.\n")


def scenes_command(folder: Path, num: int, seed: int) -> list[str]:
    scenes = ["--output", str(folder), "--num", str(num), "--seed", str(seed), "--size", str(IMAGE_SIZE)]
    return [PYTHON, "-m", "recipes.tiny.shapes_world", *scenes]


def write_text_instructions(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(shapes_world.text_instruction(rng)[0] + "\n" for _ in range(count)))


def synthesise(out: Path, timings: dict) -> None:
    """Captions and questions for the training images, answers to the text instructions: the real synthesis client
    against the offline teacher on loopback."""
    with OfflineTeacher(api_key=DEMO_KEY) as teacher:
        synth = [PYTHON, "dataset_scripts/synthesize.py", "--base-url", teacher.base_url, "--model", "offline-teacher"]
        # distinct shapes-world scenes at 84 px can share a dHash: every scene is sent (the check is for photos)
        synth += ["--concurrency", "16", "--quiet", "--no-dedup-images"]
        images = ["--mode", "caption-qa", "--source-name", "shapes", "--input", str(out / "images/train")]
        key = {"OPENAI_API_KEY": DEMO_KEY}
        run("2. caption-then-QA synthesis", [*synth, *images, "--output", str(out / "synth/shapes")], timings, key)
        text = ["--mode", "text", "--input", str(out / "text_instructions.txt"), "--output", str(out / "synth/text")]
        run("2. text synthesis", [*synth, *text], timings, key)


def build_dataset_command(out: Path) -> list[str]:
    return [
        PYTHON,
        "dataset_scripts/build_dataset.py",
        "--input",
        str(out / "synth/shapes"),
        str(out / "synth/text"),
        "--output",
        str(out / "dataset"),
        "--overwrite",
        # distinct shapes-world scenes at 84 px can share a dHash (a few pixels apart); the filter is for photos
        "--no-dedup-images",
        "--pretty-name",
        "ALLaVA shapes-world demo",
    ]


def backbones_command(folder: Path) -> list[str]:
    sizes = ["--image-size", str(IMAGE_SIZE), "--patch-size", str(PATCH_SIZE), "--text-width", str(TEXT_WIDTH)]
    return [PYTHON, "-m", "recipes.tiny.models", "--output", str(folder), *sizes]


def training_commands(demo: Path, out: Path, steps: tuple[int, int], seed: int) -> tuple[list[str], list[str]]:
    """Stage 1 and stage 2 of the tiny recipe on the backbones and dataset under `demo`, into `out`/stage1, stage2."""
    dataset = str(demo / "dataset")
    common = ["--seed", str(seed), "--disable_tqdm", "true"]
    stage1 = [
        PYTHON,
        "recipes/sft.py",
        "--config",
        "recipes/tiny/pretrain.yaml",
        "--vision_model_name_or_path",
        str(demo / "backbones/vision"),
        "--text_model_name_or_path",
        str(demo / "backbones/text"),
        "--dataset_mixture",
        json.dumps({"path": dataset, "name": "caption_shapes"}),
        json.dumps({"path": dataset, "name": "text", "epochs": 2}),
        "--output_dir",
        str(out / "stage1"),
        "--max_steps",
        str(steps[0]),
        *common,
    ]
    stage2 = [
        PYTHON,
        "recipes/sft.py",
        "--config",
        "recipes/tiny/finetune.yaml",
        "--model_name_or_path",
        str(out / "stage1"),
        "--dataset_mixture",
        json.dumps({"path": dataset, "name": "instruct_shapes"}),
        json.dumps({"path": dataset, "name": "caption_shapes", "take_fraction": 0.3}),
        json.dumps({"path": dataset, "name": "text"}),
        "--output_dir",
        str(out / "stage2"),
        "--max_steps",
        str(steps[1]),
        *common,
    ]
    return stage1, stage2


def evaluation_command(demo: Path, out: Path) -> list[str]:
    """Score `out`/stage2 on the held-out scenes under `demo`; writes `out`/stage2/results.json."""
    images = str(demo / "images/heldout")
    return [PYTHON, "recipes/tiny/shapes_eval.py", "--model", str(out / "stage2"), "--images", images]


def publish_command(out: Path) -> list[str]:
    upload = ["--repo-id", "your-org/allava-tiny-demo", "--dry-run", "--upload-dir", str(out / "hub")]
    return [PYTHON, "hub/push_model.py", str(out / "stage2"), *upload]


def main(argv: list[str] | None = None) -> dict:
    parser = Parser("Run the whole ALLaVA loop offline with tiny models.", f"python {DEMO} --quick")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer scenes and steps: a smoke run of every step (learns colour and count only)",
    )
    parser.add_argument("--output", type=Path, default=REPO / "outputs" / "tiny", help="where everything goes")
    parser.add_argument("--seed", type=int, default=0, help="both training stages' seed: projector init, data order")
    args = parser.parse_args(argv)
    num_train, num_heldout, num_text, steps_1, steps_2 = SIZES["quick" if args.quick else "full"]
    out = args.output.resolve()
    timings: dict[str, float] = {}
    started = time.time()
    prepare_output(out)

    run("1. shapes-world images", scenes_command(out / "images/train", num_train, seed=1), timings)
    run("1. held-out images", scenes_command(out / "images/heldout", num_heldout, seed=2), timings)
    write_text_instructions(out / "text_instructions.txt", num_text, seed=3)
    synthesise(out, timings)
    run("3. build the HF dataset", build_dataset_command(out), timings)
    run("4. tiny backbones", backbones_command(out / "backbones"), timings)
    stage1, stage2 = training_commands(out, out, (steps_1, steps_2), args.seed)
    run("4. stage 1 (pretrain)", stage1, timings)
    run("4. stage 2 (finetune)", stage2, timings)
    run("5. held-out evaluation", evaluation_command(out, out), timings)
    plot_loss_curves({"stage 1": out / "stage1", "stage 2": out / "stage2"}, out / "stage2" / "loss_curve.png")
    run("6. Hub-ready folder", publish_command(out), timings)

    new_image = out / "images" / "new-scene.png"
    shapes_world.save_png(shapes_world.random_scene(random.Random(2026)), new_image, IMAGE_SIZE)
    print("\n=== 7. a fresh process loads the Hub folder and answers about a new image", flush=True)
    answer = [PYTHON, "-m", "recipes.tiny.answer", "--model", str(out / "hub"), "--image", str(new_image)]
    run("7. reload + answer", answer, timings, {"HF_HUB_OFFLINE": "1"})

    results = json.loads((out / "stage2" / "results.json").read_text())
    results["timings_s"] = {**timings, "total": time.time() - started}
    (out / "stage2" / "results.json").write_text(json.dumps(results, indent=2))
    print_summary(results, out)
    print(f"chat with it in a browser (pip install -e '.[space]'): python hub/space/app.py --model {out / 'hub'}")
    return results


def print_summary(results: dict, out: Path) -> None:
    print("\n=== summary (held-out scenes)")
    print(f"| {'measure':28s} | {'value':>7s} | {'chance':>7s} |")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 9}|")
    for name, entry in results["benchmarks"].items():
        chance = f"{entry['chance']:.3f}" if "chance" in entry else "-"
        print(f"| {name:28s} | {entry['value']:7.3f} | {chance:>7s} |")
    print(f"| {'wall time (s)':28s} | {results['timings_s']['total']:7.0f} | {'-':>7s} |")
    print(
        f"\nmodel + results.json: {out / 'stage2'}\nHub-ready folder: {out / 'hub'}\n"
        f"loss curve: {out / 'stage2' / 'loss_curve.png'}\ndataset (load_dataset): {out / 'dataset'}"
    )


if __name__ == "__main__":
    main()
