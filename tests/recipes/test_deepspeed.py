"""DeepSpeed ZeRO-2 and ZeRO-3 with two CPU processes (DeepSpeed's CPU accelerator, gloo), launched as on GPUs.

Each must reproduce the DDP run on the same data and seed: same losses, a checkpoint (gathered weights, processor,
remote code) with the same logits in a fresh process, the frozen vision tower unchanged and outside the optimiser,
and `--resume_from_checkpoint latest` continuing the same loss curve.
"""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes.conftest import logits_in_fresh_process
from tests.recipes.sharded import launch_tiny_stage1, losses


pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra: pip install 'allava[deepspeed]'")
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("config", ["zero2.yaml", "zero3.yaml"])
def test_zero_checkpoint_matches_ddp_and_resumes(config, tiny_backbones, shapes_dataset, ddp_reference, tmp_path):
    zero = tmp_path / "zero"
    launch_tiny_stage1(config, tiny_backbones, shapes_dataset, zero)

    auto_map = json.loads((zero / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForImageTextToText"] == "modeling_allava.AllavaForConditionalGeneration"
    assert (zero / "modeling_allava.py").is_file() and (zero / "processor_config.json").is_file()

    # The frozen vision tower: saved unchanged, and not among the parameters the ZeRO optimiser partitions.
    vision_source = load_file(tiny_backbones[0] / "model.safetensors")
    vision = {k: v for k, v in load_file(zero / "model.safetensors").items() if k.startswith("model.vision_tower.")}
    assert vision
    for key, value in vision.items():
        torch.testing.assert_close(value, vision_source[key.replace("model.vision_tower.", "vision_model.")])
    states = sorted((zero / "checkpoint-3/global_step3").glob("*mp_rank_00_model_states.pt"))[0]  # rank 0's
    optimised = [name for group in torch.load(states, weights_only=False)["param_shapes"] for name in group]
    assert any(".language_model." in name for name in optimised)
    assert not [name for name in optimised if "vision_tower" in name]

    # fp32 sums in another order than DDP's all-reduce: equal to ~1e-7.
    assert losses(zero) == pytest.approx(losses(ddp_reference), abs=1e-4)
    zero_logits, ddp_logits = logits_in_fresh_process(tmp_path, zero, ddp_reference)
    torch.testing.assert_close(zero_logits["logits"], ddp_logits["logits"], atol=1e-4, rtol=1e-4)

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(zero / "checkpoint-2", resumed / "checkpoint-2")
    launch_tiny_stage1(config, tiny_backbones, shapes_dataset, resumed, "--resume_from_checkpoint", "latest")
    assert losses(resumed)[-1] == pytest.approx(losses(zero)[-1], abs=1e-4)
