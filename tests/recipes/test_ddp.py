"""Two processes on CPU (gloo) through `accelerate launch` with the DDP config the real recipes use."""

import pytest

from tests.recipes.conftest import REPO, log_history, mixture_args, quick_args, run_script
from tests.recipes.sharded import free_port


pytestmark = pytest.mark.slow


def test_two_process_ddp_training_on_cpu(tiny_backbones, shapes_dataset, tmp_path):
    vision, text = tiny_backbones
    output_dir = tmp_path / "ddp"
    launch = ["-m", "accelerate.commands.launch", "--config_file", str(REPO / "recipes/accelerate_configs/ddp.yaml")]
    launch += ["--num_processes", "2", "--main_process_port", str(free_port()), str(REPO / "recipes/sft.py")]
    run_script(
        launch
        + ["--config", str(REPO / "recipes/tiny/pretrain.yaml"), "--use_cpu", "true"]
        + ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
        + mixture_args(shapes_dataset, "caption_shapes", "text")
        + quick_args(output_dir, 3, per_device_train_batch_size=4),
        cwd=tmp_path,
        timeout=300,
    )
    # 72 rows, 4 per process per step: two processes finish an epoch in 9 steps (one process would need 18).
    assert log_history(output_dir / "checkpoint-3")[-1]["epoch"] == pytest.approx(3 / 9)
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "processor_config.json").is_file()
