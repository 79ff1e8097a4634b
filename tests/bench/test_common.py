"""The benches' shared parts: the memory meter, the Llava baseline, and the scripts run as plain files."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.common import (
    ModelShape,
    PeakMemory,
    baseline_model,
    baseline_processor,
    phi_clip_config,
    resident_bytes,
    training_flops,
)
from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor
from recipes.tiny.models import build_tiny_tokenizer


REPO = Path(__file__).resolve().parents[2]


def test_cpu_meter_counts_a_block_freed_before_it_stops_and_nothing_from_before_it_started():
    before = torch.ones(32 * 2**18)  # 32 MiB resident before the meter: not counted
    memory = PeakMemory("cpu")
    with memory:
        block = torch.ones(64 * 2**18)  # 64 MiB, every page written
        deadline = time.monotonic() + 30
        while memory.peak - memory.base < block.nbytes and time.monotonic() < deadline:
            time.sleep(0.01)  # the sampler runs every 2 ms; a loaded machine may delay it
        del block
    assert 64 <= memory.mib < 64 + 32
    assert resident_bytes() - memory.base < 32 * 2**20  # the freed block went back to the OS
    del before


def test_baseline_is_transformers_llava_with_our_weights_and_image_tokens():
    tokenizer = build_tiny_tokenizer(text_backbone="phi")
    config = phi_clip_config(tokenizer, ModelShape.phi_layout(64, 1, 64, 1, image_size=112))
    processor = AllavaProcessor.from_config(config, tokenizer)
    ours = AllavaForConditionalGeneration(config)
    theirs = baseline_model(config)
    assert type(theirs).__name__ == "LlavaForConditionalGeneration"
    theirs.load_state_dict(ours.state_dict())  # strict: the same modules, names and shapes
    assert not any(p.requires_grad for p in theirs.model.vision_tower.parameters())
    assert all(p.requires_grad for p in theirs.model.multi_modal_projector.parameters())
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    image = Image.new("RGB", (90, 60), (10, 200, 30))
    counts = []
    for each in (processor, baseline_processor(processor)):
        prompt = each.apply_chat_template(conversation, add_generation_prompt=True)
        input_ids = each(images=[image], text=prompt, return_tensors="pt")["input_ids"]
        counts.append(int((input_ids == config.image_token_index).sum()))
    assert counts == [(112 // 14) ** 2] * 2  # CLS counted and dropped: one token per patch in both


def test_flops_count_the_projector_on_image_tokens_and_the_tower_on_every_position():
    config = phi_clip_config(build_tiny_tokenizer(), ModelShape())
    text, vision = config.text_config, config.vision_config
    one_image = training_flops(config, [], 1)
    positions = (vision.image_size // vision.patch_size) ** 2 + 1  # patches and the CLS token
    v = vision.hidden_size
    per_layer = 2 * positions * (4 * v * v + 2 * v * vision.intermediate_size) + 4 * v * positions**2
    tower = vision.num_hidden_layers * per_layer
    projector = 6 * (positions - 1) * (v + text.hidden_size) * text.hidden_size
    assert one_image == tower + projector
    # 2 samples of 3 tokens: 6 FLOPs per weight and token, causal attention over 3 x 3 each
    weights = text.num_hidden_layers * (4 * text.hidden_size**2 + 2 * text.hidden_size * text.intermediate_size)
    weights += text.hidden_size * text.vocab_size
    attention = 6 * text.num_hidden_layers * text.hidden_size * 2 * 9
    assert training_flops(config, [3, 3], 0) == 6 * weights * 6 + attention


@pytest.mark.slow
@pytest.mark.parametrize(
    "script", ["bench_training", "gpu_training", "bench_packing", "gpu_packing", "bench_synthesis"]
)
def test_scripts_run_as_plain_files(script):
    """`python bench/<script>.py` imports `bench.common` through the installed package (here: PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, f"bench/{script}.py", "--help"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage:")
