"""The training benches run (the GPU script in its CPU smoke mode) and both arms train on the same tokens."""

import importlib.util

from tests.recipes.conftest import REPO


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_script_smoke_mode_and_label_agreement_with_trl():
    gpu_training = load("gpu_training")
    args = ["--device", "cpu", "--tiny", "--steps", "2", "--warmup", "1", "--batch_size", "2", "--max_words", "20"]
    baseline, ours = gpu_training.main([*args, "--repeats", "1"])
    assert baseline["arm"] == "baseline" and ours["arm"] == "ours"
    assert ours["tokens_per_s"] > 0 and baseline["tokens_per_s"] > 0 and ours["peak_mib"] >= 0
    # Same rows, same template: our collator's labels and TRL's assistant masks train exactly as many tokens.
    assert ours["tokens_per_step"] == baseline["tokens_per_step"]
    assert ours["label_tokens_per_step"] == baseline["label_tokens_per_step"] > 0
    table = gpu_training.bench_training.format_table([baseline, ours])
    assert table.count("\n") == 3 and "| ours |" in table
