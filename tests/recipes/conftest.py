"""Shared fixtures for the recipe tests: tiny backbones and a small shapes-world dataset in the published layout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import AutoProcessor

from dataset_scripts.schema import FEATURES
from recipes import sft
from recipes.tiny import shapes_world
from recipes.tiny.models import save_tiny_backbones


REPO = Path(__file__).resolve().parents[2]
PROVENANCE = {"teacher_model": "offline-teacher", "prompt_version": "v1", "prompt_hash": "0" * 8, "origin": "test"}


def shapes_rows(kind: str, count: int, seed: int) -> list[dict]:
    """Rows in the dataset_scripts.schema format: captions, one-question instructions or text-only puzzles."""
    return shapes_world.dataset_rows(kind, count, seed, image_size=56, **PROVENANCE)


def write_dataset_folder(folder: Path, subsets: dict[str, list[dict]]) -> Path:
    """One parquet file per subset plus a README declaring the configs: `load_dataset(folder, subset)` opens it."""
    configs = []
    for name, rows in subsets.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        Dataset.from_list(rows, features=FEATURES).to_parquet(folder / name / "train-00000-of-00001.parquet")
        configs.append(f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {name}/train-*\n")
    (folder / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n# shapes-world test data\n")
    return folder


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shapes-dataset")
    return write_dataset_folder(
        folder,
        {
            "caption_shapes": shapes_rows("caption", 48, seed=1),
            "instruct_shapes": shapes_rows("instruct", 48, seed=2),
            "text": shapes_rows("text", 24, seed=3),
        },
    )


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_backbones(tmp_path_factory.mktemp("backbones"), "phi")


def run_script(args: list[str], cwd: Path, timeout: int = 240, check: bool = True) -> subprocess.CompletedProcess:
    """Run a Python script in a fresh process with the repo importable (as an installed package would be)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


# Loads checkpoint folders the way a user would (remote code) and saves their logits for a fixed image question.
LOGITS_SCRIPT = """
import sys, torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
*folders, out = sys.argv[1:]
results = {}
for folder in folders:
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    content = [{"type": "image"}, {"type": "text", "text": "What colour are the shapes?"}]
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True, return_dict=True,
        return_tensors="pt", processor_kwargs={"images": [Image.new("RGB", (56, 56), (215, 30, 30))]},
    )
    with torch.no_grad():
        results[folder] = {"logits": model(**inputs).logits, "input_ids": inputs["input_ids"]}
torch.save(results, out)
"""


def logits_in_fresh_process(tmp_path: Path, *folders: Path) -> list[dict]:
    """Logits of each folder's model on a fixed image question, computed by one new Python process."""
    out = tmp_path / "fresh-logits.pt"
    run_script(["-c", LOGITS_SCRIPT, *map(str, folders), str(out)], cwd=tmp_path)
    results = torch.load(out)
    return [results[str(folder)] for folder in folders]


def red_pixels(folder: Path) -> torch.Tensor:
    """pixel_values of the image LOGITS_SCRIPT uses, from `folder`'s processor."""
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    return processor.image_processor(Image.new("RGB", (56, 56), (215, 30, 30)), return_tensors="pt").pixel_values


def run_sft(args: list[str]) -> None:
    """recipes/sft.py in this process (same parser, same pipeline) to save a Python start-up per run."""
    sft.train(args)


def quick_args(output_dir: Path, steps: int, **overrides) -> list[str]:
    """Flags that keep a test run to seconds: few steps, small batches, no progress bar, no report."""
    flags = {
        "output_dir": output_dir,
        "max_steps": steps,
        "per_device_train_batch_size": 8,
        "logging_steps": 1,
        "save_steps": steps,
        "report_to": "none",
        "disable_tqdm": "true",
        "warmup_steps": 0,
        **overrides,
    }
    return [item for key, value in flags.items() for item in (f"--{key}", str(value))]


def mixture_args(dataset: Path, *subsets: str) -> list[str]:
    return ["--dataset_mixture", *(json.dumps({"path": str(dataset), "name": name}) for name in subsets)]


def log_history(checkpoint: Path) -> list[dict]:
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


@pytest.fixture(scope="session")
def stage1(tmp_path_factory, tiny_backbones, shapes_dataset) -> Path:
    """A short tiny stage-1 run of recipes/tiny/pretrain.yaml on the test backbones and data."""
    output_dir = tmp_path_factory.mktemp("stage1")
    vision, text = tiny_backbones
    run_sft(
        ["--config", str(REPO / "recipes/tiny/pretrain.yaml")]
        + ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
        + mixture_args(shapes_dataset, "caption_shapes", "text")
        + quick_args(output_dir, 12, save_steps=6, learning_rate=1e-3)
    )
    return output_dir


@pytest.fixture(scope="session")
def ddp_reference(tmp_path_factory, tiny_backbones, shapes_dataset) -> Path:
    """The tiny stage 1 on two CPU processes with DDP: what every sharded engine must reproduce."""
    from tests.recipes.sharded import launch_tiny_stage1

    output_dir = tmp_path_factory.mktemp("ddp-reference") / "ddp"
    launch_tiny_stage1("ddp.yaml", tiny_backbones, shapes_dataset, output_dir)
    return output_dir
