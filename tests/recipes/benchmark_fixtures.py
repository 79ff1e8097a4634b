"""Tiny local copies of the 17 benchmarks, in each public dataset's row schema, plus a saved tiny model.

Each writer makes a folder that `--dataset-path NAME=FOLDER` reads the way the Hub copy would be read:
`save_to_disk` DatasetDicts keyed by split, `<config>/` sub-folders for datasets with configs, parquet files for
TextVQA and JSON lines for Vicuna-80 (the other layouts users keep local copies in).
"""

from pathlib import Path

from recipes.tiny.models import build_tiny_model_and_processor
from tests.recipes import benchmark_rows_choice as choice
from tests.recipes import benchmark_rows_open as open_rows


def save_tiny_model(folder: Path) -> Path:
    """A random tiny ALLaVA checkpoint with remote code, loadable with trust_remote_code=True."""
    model, processor = build_tiny_model_and_processor("phi", seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


WRITERS = {
    "vicuna80": open_rows.vicuna80,
    "gqa": open_rows.gqa,
    "hallusionbench": open_rows.hallusionbench,
    "mme_perception": open_rows.mme,
    "mmvp": choice.mmvp,
    "touchstone": open_rows.touchstone,
    "textvqa": open_rows.textvqa,
    "mme_cognition": open_rows.mme,
    "mathvista": choice.mathvista,
    "mmvet": open_rows.mmvet,
    "mmmu_val": choice.mmmu,
    "scienceqa_img": choice.scienceqa,
    "llava_w": open_rows.llava_w,
    "mllm_bench": open_rows.mllm_bench,
    "mmbench_en": lambda folder: choice.mmbench(folder, "en"),
    "mmbench_cn": lambda folder: choice.mmbench(folder, "cn"),
    "seed_bench": choice.seed_bench,
}


def write_all(root: Path, names=None) -> dict[str, Path]:
    """Every (or the named) benchmark's fixture under `root`, as {name: folder}."""
    return {name: WRITERS[name](root / name) for name in (names or WRITERS)}


def dataset_path_args(folders: dict[str, Path]) -> list[str]:
    return [arg for name, folder in folders.items() for arg in ("--dataset-path", f"{name}={folder}")]


def evaluator_args(workspace: dict, output: Path, names: list[str], max_new_tokens: int, judge=None) -> list[str]:
    """recipes/eval_benchmarks.py arguments for the tiny model over the named fixtures (with `judge`: a FakeJudge)."""
    argv = ["--model", str(workspace["model"]), "--benchmarks", ",".join(names), "--output", str(output)]
    argv += ["--max-new-tokens", str(max_new_tokens)]
    argv += dataset_path_args({name: workspace["data"][name] for name in names})
    return argv + (["--judge-model", "fake-judge", "--judge-base-url", judge.url] if judge is not None else [])
