"""The training benches run (the GPU script in its CPU smoke mode) and both arms train on the same tokens."""

import pytest

from bench import bench_training, gpu_training
from bench.common import ModelShape, phi_clip_config
from modeling_allava import AllavaForConditionalGeneration
from recipes.tiny.models import build_tiny_tokenizer


pytestmark = pytest.mark.slow


def trained_bytes(config) -> int:
    """fp32 bytes of what both arms train (projector + LM; the vision tower is frozen)."""
    model = AllavaForConditionalGeneration(config)
    model.model.vision_tower.requires_grad_(False)
    return 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_gpu_script_smoke_mode_and_label_agreement_with_trl():
    args = ["--device", "cpu", "--tiny", "--steps", "2", "--warmup", "1", "--batch_size", "2", "--max_words", "20"]
    baseline, ours = gpu_training.main([*args, "--repeats", "1"])
    assert baseline["arm"] == "baseline" and ours["arm"] == "ours"
    # Memory is measured from the start of training: AdamW's two moments per trained weight stay resident throughout.
    floor = 2 * trained_bytes(phi_clip_config(build_tiny_tokenizer(), ModelShape()))
    assert baseline["peak_mib"] >= floor / 2**20 and ours["peak_mib"] >= floor / 2**20
    # Same rows, same template: our collator's labels and TRL's assistant masks train exactly as many tokens.
    assert ours["tokens_per_step"] == baseline["tokens_per_step"]
    assert ours["label_tokens_per_step"] == baseline["label_tokens_per_step"] > 0
    table = bench_training.format_table([baseline, ours])
    assert table.count("\n") == 3 and "| ours |" in table
