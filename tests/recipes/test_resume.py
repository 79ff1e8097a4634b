"""A run killed after a checkpoint resumes with --resume_from_checkpoint and follows the uninterrupted trajectory."""

import logging
import os
import subprocess
import sys
import time

import pytest

from recipes import sft
from recipes.checkpoints import discard_checkpoints, resume_point
from tests.recipes.conftest import REPO, log_history, mixture_args, quick_args, run_sft
from toolkit.cli import EXIT_INCOMPLETE, InputError


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


def tiny_args(tiny_backbones, shapes_dataset, output_dir, steps: int) -> list[str]:
    vision, text = tiny_backbones
    return (
        ["--config", str(REPO / "recipes/tiny/pretrain.yaml")]
        + ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
        + mixture_args(shapes_dataset, "text")
        + quick_args(output_dir, steps, save_steps=1, per_device_train_batch_size=2, seed=0)
    )


def test_ctrl_c_is_one_line_and_rerunning_the_same_command_resumes(
    tiny_backbones, shapes_dataset, tmp_path, monkeypatch, capsys, caplog
):
    """Rerun = continue, as for synthesis and evaluation: the earlier checkpoints are kept and training goes on."""
    output_dir = tmp_path / "run"
    argv = tiny_args(tiny_backbones, shapes_dataset, output_dir, 3)
    steps = []
    original_step = sft.AllavaSFTTrainer.training_step

    def press_ctrl_c_at_step_3(self, *args, **kwargs):
        steps.append(self.state.global_step)
        if self.state.global_step == 2 and len(steps) == 3:
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(sft.AllavaSFTTrainer, "training_step", press_ctrl_c_at_step_3)
    assert sft.main(argv) == EXIT_INCOMPLETE
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == (
        f"interrupted: stopped at step 2; checkpoint-2 in {output_dir} is kept; rerun the same command to resume "
        "from it"
    )
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]

    caplog.set_level(logging.INFO, logger="allava.sft")
    assert sft.main(argv) == 0
    assert any(record.getMessage().startswith("resuming from checkpoint-2") for record in caplog.records)
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]  # limit 2
    assert steps[3:] == [2]  # the rerun trained step 3 only
    assert sorted(losses(output_dir / "checkpoint-3")) == [1, 2, 3]


def write_checkpoint(folder, state: str = '{"global_step": 1}'):
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(state)


def test_resume_point_rules(tmp_path, caplog):
    empty = tmp_path / "empty"
    assert resume_point(str(empty), None, overwrite=False) is None  # a new folder starts at step 0
    with pytest.raises(InputError, match="no complete checkpoint"):
        resume_point(str(empty), "latest", overwrite=False)

    run = tmp_path / "run"
    write_checkpoint(run / "checkpoint-2")
    write_checkpoint(run / "checkpoint-4", '{"global_step": 4, "log_hi')  # killed while writing its state
    (run / "checkpoint-6").mkdir()  # killed before writing it
    for requested in (None, "latest"):
        assert resume_point(str(run), requested, overwrite=False) == str(run / "checkpoint-2")
    assert "checkpoint-4" in caplog.text and "checkpoint-6" in caplog.text
    with pytest.raises(InputError, match="checkpoint-4 is not a complete checkpoint"):
        resume_point(str(run), str(run / "checkpoint-4"), overwrite=False)
    assert resume_point(str(run), None, overwrite=True) is None
    assert len(list(run.glob("checkpoint-*"))) == 3  # kept until every check has passed and training starts
    discard_checkpoints(str(run))
    assert not list(run.glob("checkpoint-*"))  # an explicit start-over leaves nothing to mix with

    finished = tmp_path / "finished"  # a run saved without checkpoints (save_strategy: no)
    finished.mkdir()
    (finished / "model.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="--overwrite_output_dir"):
        resume_point(str(finished), None, overwrite=False)
