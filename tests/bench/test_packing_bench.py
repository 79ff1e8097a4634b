"""The packing benchmarks run end to end (tiny sizes): every variant trains and the table comes out."""

from tests.recipes.conftest import REPO, run_script


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
    tokens_per_s = [float(cells[0]) for cells in rows.values()]
    padding = [float(cells[1].rstrip("%")) for cells in rows.values()]
    assert all(speed > 0 for speed in tokens_per_s)
    assert padding[2] == padding[3] <= padding[1] == padding[0]  # same batches: packed never pads more


def test_cpu_packing_bench_prints_its_table():
    args = ["--samples", "4", "--batch-size", "2", "--hidden", "64", "--layers", "1", "--vision-layers", "1"]
    result = run_script(["-m", "bench.bench_packing", *args, "--variants", "abd"], cwd=REPO, timeout=400)
    rows = table_rows(result.stdout)
    assert [name[:3] for name in rows] == ["(a)", "(b)", "(d)"]
    assert rows["(a) TRL + transformers Llava, padded"][-2:] == ["1.00x", "1.00x"]
    peak_mib = [float(cells[4].split()[0]) for cells in rows.values()]
    assert all(peak > 0 for peak in peak_mib)
