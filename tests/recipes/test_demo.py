"""The README's main job, reduced: the whole loop must run offline and the model must really learn."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image


REPO = Path(__file__).resolve().parents[2]


def test_quick_demo_learns_the_shapes_world(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "recipes/demo.py", "--quick", "--output", str(tmp_path / "demo")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "demo"
    results = json.loads((out / "stage2" / "results.json").read_text())
    benchmarks = results["benchmarks"]
    # A real learning test of the whole pipeline: every question type clearly above chance on held-out scenes.
    for qtype in ("colour", "shape", "count", "position"):
        entry = benchmarks[f"shapes-{qtype}"]
        assert entry["value"] >= entry["chance"] + 0.25, (qtype, entry)
    assert benchmarks["shapes-colour"]["value"] >= 0.8
    assert benchmarks["shapes-caption-facts"]["value"] > 0.5
    assert benchmarks["shapes-caption-invented"]["value"] < benchmarks["shapes-caption-facts"]["value"]
    assert benchmarks["text-well-formed"]["value"] > 0.5

    # The Hub-ready folder: weights, remote code, processor, card with the results; the loss curve.
    hub = out / "hub"
    for name in ("config.json", "modeling_allava.py", "processor_config.json", "README.md", "model.safetensors"):
        assert (hub / name).exists(), name
    card = (hub / "README.md").read_text()
    assert "model-index" in card and "shapes-colour" in card
    assert Image.open(out / "stage2" / "loss_curve.png").size == (720, 420)
    # The fresh-process reload answered about a new image, and the summary table was printed.
    assert "Q: Describe this image in detail." in result.stdout
    assert "| shapes-colour" in result.stdout
    assert "sk-offline-demo" not in result.stdout + result.stderr
