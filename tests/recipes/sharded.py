"""Two-process CPU launches of the tiny stage 1 through `accelerate launch`, for comparing training engines."""

import socket
from pathlib import Path

from tests.recipes.conftest import REPO, log_history, mixture_args, quick_args, run_script


CONFIGS = REPO / "recipes/accelerate_configs"
# accelerate runs DeepSpeed on CPU only without --use_cpu, over gloo (recipes/distributed.py).
CPU_FLAGS = {"deepspeed": ["--ddp_backend", "gloo"], "torch": ["--use_cpu", "true"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_tiny_stage1(config: str, backbones, dataset: Path, output_dir: Path, *extra: str) -> None:
    """Two CPU processes of recipes/sft.py (tiny stage 1, vision tower frozen): 3 steps, a checkpoint at step 2."""
    vision, text = backbones
    cpu = CPU_FLAGS["deepspeed" if config.startswith("zero") else "torch"]
    launch = ["-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config)]
    launch += ["--num_processes", "2", "--main_process_port", str(free_port()), str(REPO / "recipes/sft.py")]
    run_script(
        launch
        + ["--config", str(REPO / "recipes/tiny/pretrain.yaml"), *cpu, "--trainable", "allava"]
        + ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
        + mixture_args(dataset, "caption_shapes", "text")
        + quick_args(output_dir, 3, per_device_train_batch_size=4, save_steps=2, learning_rate=1e-3)
        + list(extra),
        cwd=output_dir.parent,
        timeout=400,
    )


def losses(folder: Path) -> list[float]:
    return [entry["loss"] for entry in log_history(folder) if "loss" in entry]
