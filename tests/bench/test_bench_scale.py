"""bench/bench_scale.py at 10^3 rows: every stage runs through its CLI in its own process and is measured."""

import json
import sys

import pytest
from PIL import Image

from bench.bench_scale import main, write_release
from bench.scale_eval import write_textvqa
from bench.scale_measure import measure


def test_a_stage_peak_excludes_the_bench_own_memory():
    """The kernel adds a process's pre-exec memory (the bench's, under vfork) to the peak wait4() reports: a stage
    started straight from a bench holding 400 MB measured over 400 MB, however little it used itself."""
    held = bytearray(400 * 2**20)
    held[::4096] = b"\x01" * len(held[::4096])  # touched: resident
    result = measure([sys.executable, "-c", "x = bytearray(100 * 2**20); x[::4096] = b'1' * len(x[::4096])"])
    assert 100 * 2**20 < result["rss"] < 300 * 2**20 and result["cpu"] > 0
    with pytest.raises(RuntimeError, match="exited 3"):
        measure([sys.executable, "-c", "raise SystemExit(3)"])
    del held


def test_release_has_the_real_schema(tmp_path):
    counts = write_release(tmp_path, 10)
    assert counts == {"caption_laion": 4, "instruct_laion": 4, "text": 2}
    caption = json.loads((tmp_path / "allava_laion" / "ALLaVA-Caption-LAION-4V.json").read_text())
    assert caption[0]["id"] == "allava_laion_cap_0" and caption[0]["image"] == "allava_laion/images/0.jpeg"
    assert [turn["from"] for turn in caption[0]["conversations"]] == ["human", "gpt"]
    assert (tmp_path / caption[0]["image"]).stat().st_size > 0


def test_release_with_photo_like_images(tmp_path):
    write_release(tmp_path, 5, image_side=120)
    image = Image.open(tmp_path / "allava_laion" / "images" / "1.jpeg")
    assert image.format == "JPEG" and image.size == (120, 90)


def test_smoke_at_a_thousand_rows(tmp_path):
    report = main(["--sizes", "300", "1000", "--stages", "import", "load", "--workdir", str(tmp_path)])
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith(("| import", "| load"))]
    stages = [(cells[0].strip("| "), cells[1]) for cells in rows[:4]]
    assert stages == [("import", "300"), ("load", "300"), ("import", "1,000"), ("load", "1,000")]
    for cells in rows[:4]:
        assert float(cells[3]) > 0 and float(cells[4]) > 0  # CPU per row, peak RSS
    assert [cells[0].strip("| ") for cells in rows[4:]] == ["import", "load"]  # the ratio rows
    assert not any(tmp_path.iterdir())  # releases, datasets and caches are removed


def test_pipeline_stages_run_through_their_clis(tmp_path):
    """synthesize -> build -> sft (map-style and streaming) at one tiny size: each measured, the rows they saw."""
    report = main(
        ["--sizes", "40", "--stages", "synthesize", "build", "sft", "sft-streaming", "--workdir", str(tmp_path)]
    )
    lines = [[cell.strip() for cell in line.strip("|").split("|")] for line in report.splitlines()[2:6]]
    rows = {cells[0]: cells for cells in lines}
    assert list(rows) == ["synthesize", "build", "sft", "sft-streaming"]
    assert rows["synthesize"][1] == "40"  # 20 images, a caption row and a question row each
    built = int(rows["build"][1])
    assert 0 < built <= 40  # the near-duplicate filter may drop repeated random scenes
    assert rows["sft"][1] == rows["sft-streaming"][1] == str(built)  # one step over the built dataset's rows
    for cells in rows.values():
        assert float(cells[3]) > 0 and float(cells[4]) > 0  # CPU per row, peak RSS
    assert not any(tmp_path.iterdir())  # images, synthesis output, datasets, caches and backbones are removed


def test_eval_stage_runs_the_cli_on_a_simulated_benchmark(tmp_path):
    """eval_benchmarks.py on a 30-row TextVQA copy (parquet, one JPEG per row): every row scored, the files removed."""
    report = main(["--sizes", "30", "--stages", "eval", "--workdir", str(tmp_path)])
    cells = [cell.strip() for cell in report.splitlines()[2].strip("|").split("|")]
    assert cells[:2] == ["eval", "30"]  # the stage checks the samples file has a line per row
    assert float(cells[3]) > 0 and float(cells[4]) > 0 and float(cells[5]) > 0  # CPU per row, peak RSS, disk
    assert not any(tmp_path.iterdir())


def test_textvqa_copy_has_the_schema_the_loader_reads(tmp_path):
    from recipes.benchmarks.data import load_rows
    from recipes.benchmarks.textvqa import BENCHMARK, make_samples

    folder = write_textvqa(tmp_path / "textvqa", 3, side=40)
    rows, provenance = load_rows(BENCHMARK, str(folder), None, None)
    samples = make_samples(rows, "ocr_tokens")
    assert [sample.id for sample in samples] == ["0", "1", "2"] and provenance["source"] == "local"
    assert samples[2].images[0]().size == (40, 30) and len(samples[0].target["answers"]) == 10
