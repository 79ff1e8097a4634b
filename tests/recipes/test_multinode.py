"""The multi-node launch of docs/training.md, rehearsed on one machine: two launchers (machine ranks 0 and 1, one CPU
process each) that meet on loopback and train one model together."""

import os
import subprocess
import sys

import pytest

from tests.recipes.conftest import REPO, log_history, mixture_args, quick_args
from tests.recipes.sharded import free_port


pytestmark = pytest.mark.slow


def test_two_machines_on_loopback(tiny_backbones, shapes_dataset, tmp_path):
    vision, text = tiny_backbones
    output_dir, port = tmp_path / "two-machines", str(free_port())
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}

    def machine(rank: int) -> subprocess.Popen:
        config = REPO / "recipes/accelerate_configs/ddp.yaml"
        launch = ["-m", "accelerate.commands.launch", "--config_file", str(config)]
        launch += ["--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank)]
        launch += ["--main_process_ip", "127.0.0.1", "--main_process_port", port, str(REPO / "recipes/sft.py")]
        args = ["--config", str(REPO / "recipes/tiny/pretrain.yaml"), "--use_cpu", "true"]
        args += ["--vision_model_name_or_path", str(vision), "--text_model_name_or_path", str(text)]
        args += mixture_args(shapes_dataset, "caption_shapes", "text")
        args += quick_args(output_dir, 2, per_device_train_batch_size=4)
        log = open(tmp_path / f"machine-{rank}.log", "w")
        return subprocess.Popen([sys.executable, *launch, *args], cwd=tmp_path, env=env, stdout=log, stderr=log)

    machines = [machine(0), machine(1)]
    try:
        codes = [process.wait(timeout=400) for process in machines]
    finally:
        for process in machines:
            process.kill()
    logs = "\n".join((tmp_path / f"machine-{rank}.log").read_text()[-3000:] for rank in (0, 1))
    assert codes == [0, 0], logs
    # 72 rows, 4 per process per step: a two-process world finishes an epoch in 9 steps (one process: 18).
    assert log_history(output_dir / "checkpoint-2")[-1]["epoch"] == pytest.approx(2 / 9)
    assert (output_dir / "model.safetensors").is_file()
