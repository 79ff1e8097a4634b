"""The packing benchmarks run end to end (tiny sizes): every variant trains and the table comes out."""

import pytest

from bench.common import ModelShape, phi_clip_config
from modeling_allava import AllavaForConditionalGeneration
from recipes.tiny.models import build_tiny_tokenizer
from tests.recipes.conftest import REPO, run_script


pytestmark = pytest.mark.slow


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Markdown table rows by variant name -> their cells."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| ("):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_gpu_packing_smoke_mode_runs_every_variant_on_cpu():
    result = run_script(["-m", "bench.gpu_packing", "--device", "cpu", "--tiny"], cwd=REPO, timeout=400)
    rows = table_rows(result.stdout)
    assert list(rows) == [
        "(a) TRL + transformers Llava, padded [sdpa]",
        "(b) ours, padded [sdpa]",
        "(e) ours, packed [sdpa]",
        "(d) ours, packed [sdpa_per_sample]",
    ]
    assert rows["(a) TRL + transformers Llava, padded [sdpa]"][-1] == "1.00x"
    padding = [float(cells[1].rstrip("%")) for cells in rows.values()]
    assert padding[2] == padding[3] <= padding[1] == padding[0]  # same batches: packed never pads more
    idle = [float(cells[4].rstrip("%")) for cells in rows.values()]
    assert all(0 < share < 100 for share in idle)  # with --workers 0 every step waits for its own collation


def test_cpu_packing_bench_prints_its_table():
    args = ["--samples", "4", "--batch-size", "2", "--hidden", "64", "--layers", "1", "--vision-layers", "1"]
    result = run_script(["-m", "bench.bench_packing", *args, "--variants", "abd"], cwd=REPO, timeout=400)
    rows = table_rows(result.stdout)
    assert [name[:3] for name in rows] == ["(a)", "(b)", "(d)"]
    assert rows["(a) TRL + transformers Llava, padded"][-2:] == ["1.00x", "1.00x"]
    # Memory counts from before the model is built: its fp32 weights, and AdamW's two moments per trained weight.
    tokenizer = build_tiny_tokenizer(text_backbone="phi")
    model = AllavaForConditionalGeneration(phi_clip_config(tokenizer, ModelShape.phi_layout(64, 1, 64, 1)))
    model.set_trainable_modules("allava")
    floor = sum(4 * p.numel() * (3 if p.requires_grad else 1) for p in model.parameters()) / 2**20
    peak_mib = [float(cells[4].split()[0]) for cells in rows.values()]
    assert all(peak >= round(floor) for peak in peak_mib)
