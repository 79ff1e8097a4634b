"""bench/bench_memory.py's accounting and table, cheaply (the full-depth run itself is a manual bench: minutes and
~7 GB; its figures are in docs/training.md)."""

import pytest
import torch

from bench.bench_memory import GIB, SavedTensors, extrapolate, table
from tests.modeling_allava.paper_costs import activation_bytes, memory_bytes
from tests.modeling_allava.real_models import real_config


def test_saved_tensors_count_activations_once_and_no_weights():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    saved = SavedTensors(model)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
        model(torch.ones(5, 8)).sum().backward()
    # the input (5 x 8) and the ReLU's output (5 x 16, saved by ReLU and by the second Linear: one storage), float32
    assert saved.bytes == (5 * 8 + 5 * 16) * 4


def test_prediction_is_the_docs_accounting():
    paper = memory_bytes(real_config("allava-stablelm2"), batch=1, tokens=1000)  # full depth, on the meta device
    assert paper["weights"] - paper["grads"] == 2 * 303_507_456  # the frozen CLIP-L/336 tower, weights only
    assert paper["activations"] == 2 * 1000 * 2048 * 24 + 34 * 1000 * 2048
    assert activation_bytes(real_config("allava-phi2").text_config, 8, 2048) / GIB == pytest.approx(3.83, abs=0.005)


def test_table_puts_measured_next_to_predicted():
    runs = [
        {
            "length": n,
            "weights": 5 * GIB,
            "grads": 4 * GIB,
            "saved": n * 1000,
            "built_rss": 6 * GIB,
            "step_peak_rss": 7 * GIB,
            "process_rss": 8 * GIB,
        }
        for n in (600, 1000)
    ]
    lines = table("allava-stablelm2", runs, layers=2).splitlines()
    paper = memory_bytes(real_config("allava-stablelm2", layers=2), batch=1, tokens=1000)
    assert f"| 1000 | weights 2·(Ψ+Φ) | {paper['weights'] / GIB:.2f} | 5.00 | 6.00 |" in lines
    assert f"| 1000 | gradients 2·Ψ | {paper['grads'] / GIB:.2f} | 4.00 |  |" in lines
    assert f"| 1000 | process peak (wait4) | {sum(paper.values()) / GIB:.2f} |  | 8.00 |" in lines
    assert len([line for line in lines if line.startswith("| 600 |")]) == 5
    assert extrapolate(runs, 4096) == pytest.approx(4096 * 1000)
