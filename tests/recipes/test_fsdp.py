"""FSDP2 (`fully_shard`) with two CPU processes over gloo, launched as on GPUs: accelerate launch + fsdp.yaml.

One short run per engine on the same data and seed; the FSDP checkpoint must be a plain ALLaVA checkpoint (weights,
processor, remote code) whose logits equal the DDP run's, with the frozen vision tower untouched and absent from the
optimiser state; resuming from its first checkpoint must continue the same loss curve.
"""

import json
import shutil

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from modeling_allava import AllavaForConditionalGeneration
from tests.recipes.conftest import logits_in_fresh_process, red_pixels
from tests.recipes.sharded import launch_tiny_stage1, losses


pytestmark = pytest.mark.slow


def test_fsdp_checkpoint_matches_ddp_and_resumes(tiny_backbones, shapes_dataset, ddp_reference, tmp_path):
    ddp, fsdp = ddp_reference, tmp_path / "fsdp"
    launch_tiny_stage1("fsdp.yaml", tiny_backbones, shapes_dataset, fsdp)

    # A plain ALLaVA checkpoint: this repo's remote code, not the FSDP2 wrapper class torch generates.
    config = json.loads((fsdp / "config.json").read_text())
    assert set(config["auto_map"].values()) >= {"modeling_allava.AllavaForConditionalGeneration"}
    assert not list(fsdp.glob("_fsdp*.py")) and (fsdp / "modeling_allava.py").is_file()
    assert (fsdp / "processor_config.json").is_file()

    # The frozen vision tower: saved unchanged, and never in the sharded optimiser state.
    vision_source = load_file(tiny_backbones[0] / "model.safetensors")
    saved = load_file(fsdp / "model.safetensors")
    vision = {k: v for k, v in saved.items() if k.startswith("model.vision_tower.")}
    assert vision
    for key, value in vision.items():
        torch.testing.assert_close(value, vision_source[key.replace("model.vision_tower.", "vision_model.")])
    optimizer_state = torch.load(fsdp / "checkpoint-3/optimizer.bin", weights_only=False)["state"]
    assert any(".language_model." in name for name in optimizer_state)
    assert not [name for name in optimizer_state if "vision_tower" in name]

    # Same data, seed and updates as DDP: fp32 sums in another order (reduce-scatter vs all-reduce) differ ~1e-7.
    assert losses(fsdp) == pytest.approx(losses(ddp), abs=1e-4)
    fsdp_logits, ddp_logits = logits_in_fresh_process(tmp_path, fsdp, ddp)
    torch.testing.assert_close(fsdp_logits["logits"], ddp_logits["logits"], atol=1e-4, rtol=1e-4)

    # Resume: only the step-2 checkpoint left, `latest` continues to the same step-3 loss.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(fsdp / "checkpoint-2", resumed / "checkpoint-2")
    launch_tiny_stage1("fsdp.yaml", tiny_backbones, shapes_dataset, resumed, "--resume_from_checkpoint", "latest")
    assert losses(resumed)[-1] == pytest.approx(losses(fsdp)[-1], abs=1e-4)
    (resumed_logits,) = logits_in_fresh_process(tmp_path, resumed)
    torch.testing.assert_close(resumed_logits["logits"], fsdp_logits["logits"], atol=1e-4, rtol=1e-4)


def test_lora_under_fsdp_saves_a_loadable_adapter(tiny_backbones, shapes_dataset, tmp_path):
    output_dir = tmp_path / "lora"
    lora = ["--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0"]
    launch_tiny_stage1("fsdp.yaml", tiny_backbones, shapes_dataset, output_dir, *lora)

    base = AllavaForConditionalGeneration.from_pretrained(output_dir / "base_model").eval()
    (fresh,) = logits_in_fresh_process(tmp_path, output_dir / "base_model")
    inputs = {"input_ids": fresh["input_ids"], "pixel_values": red_pixels(output_dir / "base_model")}
    with torch.no_grad():
        base_logits = base(**inputs).logits
        adapted = PeftModel.from_pretrained(base, output_dir).eval()
        adapted_logits = adapted(**inputs).logits
    lora_b = {name: p for name, p in adapted.named_parameters() if "lora_B" in name}
    assert lora_b and all(".language_model." in name for name in lora_b)
    assert all(p.shape[1] == 8 for p in lora_b.values())  # whole matrices, not one rank's shard
    assert any(p.abs().sum() > 0 for p in lora_b.values())  # trained (LoRA's B starts at zero)
    assert not torch.allclose(base_logits, adapted_logits, atol=1e-4)
