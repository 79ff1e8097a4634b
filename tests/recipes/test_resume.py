"""A run killed after a checkpoint resumes with --resume_from_checkpoint and follows the uninterrupted trajectory."""

import os
import subprocess
import sys
import time

import pytest

from tests.recipes.conftest import REPO, log_history, mixture_args, quick_args, run_sft


STEPS = 6


def losses(checkpoint) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in log_history(checkpoint) if "loss" in entry}


def test_killed_run_resumes_where_it_stopped(tiny_backbones, shapes_dataset, tmp_path):
    vision, text = tiny_backbones

    def args(output_dir):
        return (
            ["--config", str(REPO / "recipes/tiny/pretrain.yaml")]
            + ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
            + mixture_args(shapes_dataset, "caption_shapes", "text")
            + quick_args(output_dir, STEPS, save_steps=2, learning_rate=1e-3, seed=0)
        )

    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    run_sft(args(reference_dir))
    reference = losses(reference_dir / f"checkpoint-{STEPS}")

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "recipes/sft.py"), *args(killed_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not list(killed_dir.glob("checkpoint-*/trainer_state.json")):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    process.kill()  # SIGKILL: no clean-up, possibly in the middle of writing the next checkpoint
    process.wait()
    assert not (killed_dir / "model.safetensors").exists()
    completed = sorted(int(p.parent.name.split("-")[1]) for p in killed_dir.glob("checkpoint-*/trainer_state.json"))

    run_sft(args(killed_dir) + ["--resume_from_checkpoint", "latest"])
    resumed = losses(killed_dir / f"checkpoint-{STEPS}")
    assert completed[-1] < STEPS and sorted(resumed) == list(range(1, STEPS + 1))
    # Same seed, same data order, restored optimiser / scheduler / RNG state: the same losses up to float noise.
    assert resumed == pytest.approx(reference, abs=1e-4)
