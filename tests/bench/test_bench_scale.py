"""bench/bench_scale.py at 10^3 rows: every stage runs through its CLI in its own process and is measured."""

import json

from bench.bench_scale import main, write_release


def test_release_has_the_real_schema(tmp_path):
    counts = write_release(tmp_path, 10)
    assert counts == {"caption_laion": 4, "instruct_laion": 4, "text": 2}
    caption = json.loads((tmp_path / "allava_laion" / "ALLaVA-Caption-LAION-4V.json").read_text())
    assert caption[0]["id"] == "allava_laion_cap_0" and caption[0]["image"] == "allava_laion/images/0.jpeg"
    assert [turn["from"] for turn in caption[0]["conversations"]] == ["human", "gpt"]
    assert (tmp_path / caption[0]["image"]).stat().st_size > 0


def test_smoke_at_a_thousand_rows(tmp_path):
    report = main(["--sizes", "300", "1000", "--workdir", str(tmp_path)])
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith(("| import", "| load"))]
    stages = [(cells[0].strip("| "), cells[1]) for cells in rows[:4]]
    assert stages == [("import", "300"), ("load", "300"), ("import", "1,000"), ("load", "1,000")]
    for cells in rows[:4]:
        assert float(cells[3]) > 0 and float(cells[4]) > 0  # CPU per row, peak RSS
    assert [cells[0].strip("| ") for cells in rows[4:]] == ["import", "load"]  # the ratio rows
    assert not any(tmp_path.iterdir())  # releases, datasets and caches are removed
