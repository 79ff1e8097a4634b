import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dataset_scripts.audit import RULE, Audit
from dataset_scripts.build_dataset import build
from dataset_scripts.dataset_writer import finish, write_subsets
from dataset_scripts.report import AUDIT_ROWS, REPORT_NAME, collect, main, thumbnail, write_report
from dataset_scripts.schema import IMAGE_TOKEN, make_row
from recipes.tiny import shapes_world as world
from tests.dataset_scripts.helpers_synthesis import REPO
from tests.dataset_scripts.test_audit import FactsEncoder, shapes_dataset


CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no `chromium` on PATH: install the Debian package (apt-get install -y chromium)"
)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'
# The README's docs/data-audit.png is test_audit_section_screenshot's: `ALLAVA_UPDATE_SCREENSHOTS=1 pytest
# tests/dataset_scripts/test_report.py -k screenshot` rewrites it.
DOCS_AUDIT_SCREENSHOT = REPO / "docs" / "data-audit.png"


@pytest.fixture
def built(synth, teacher, shapes_dir, tmp_path):
    """A dataset folder made by build_dataset.py from caption-qa shards (with rejects and a skip) and a text run."""
    folder = tmp_path / "imgs"
    shutil.copytree(shapes_dir, folder)
    (folder / "broken.png").write_bytes(b"nope")
    teacher.set_faults({"refusal": 0.15, "leak": 0.1})
    synth("--mode", "caption-qa", "--input", str(folder), "--source-name", "shapes", "--max-parse-retries", "0",
          output=tmp_path / "out")  # fmt: skip
    teacher.set_faults({})
    rng = random.Random(2)
    (tmp_path / "t.txt").write_text("\n".join(world.text_instruction(rng)[0] for _ in range(6)) + "\n")
    synth("--mode", "text", "--input", str(tmp_path / "t.txt"), output=tmp_path / "out")
    stats = build([tmp_path / "out"], tmp_path / "ds")
    assert set(stats["rejected"]) == {"refusal", "leakage"} and stats["skipped"] == {"unreadable": 1}
    return tmp_path / "ds"


def hand_built(out: Path, rows: list[tuple[str, str, str, bytes | None]], **stats) -> Path:
    """A dataset folder written by the real writer from (subset, question, answer, image bytes) rows."""
    provenance = dict(source="shapes", teacher_model="t", prompt_version="v1", prompt_hash="h", origin="o")
    made = []
    for index, (subset, question, answer, image) in enumerate(rows):
        prompt = f"{IMAGE_TOKEN}\n{question}" if image is not None else question
        conversations = [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]
        made.append((subset, make_row(f"row{index}", conversations, image, **provenance)))
    out.mkdir(parents=True)
    finish(out, {"kind": "synthesized", "subsets": write_subsets(made, out), **stats}, None, "other", None)
    return out


@pytest.fixture
def audited(tmp_path):
    """A shapes-world dataset folder with 32 planted mismatches, audited into <folder>/audit: (folder, planted ids)."""
    folder = tmp_path / "ds"
    planted = shapes_dataset(folder, random.Random(0))
    subsets = {sub.name: pq.ParquetDataset(sub).read(columns=["id"]).num_rows for sub in folder.iterdir()}
    finish(folder, {"kind": "synthesized", "subsets": subsets}, "Shapes world, mismatches planted", "other", None)
    Audit(folder, folder / "audit", batch_size=32).run(FactsEncoder(), "facts", progress=False)
    return folder, planted


class HashEncoder:
    """Features drawn from a hash of the image bytes or text: no meaning, but a score for every row."""

    context = 77

    def images(self, images):
        return np.stack([unit(data) for data in images])

    def texts(self, texts):
        return np.stack([unit(text.encode()) for text in texts]), [len(text.split()) for text in texts]


def unit(data: bytes) -> np.ndarray:
    vector = np.random.default_rng(int.from_bytes(hashlib.sha1(data).digest()[:8])).normal(size=8)
    return vector / np.linalg.norm(vector)


def png(size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *args, page.resolve().as_uri()]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@needs_chromium
def test_build_writes_a_report_that_renders_in_chromium(built, tmp_path):
    page = built / REPORT_NAME  # written by build_dataset.py
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    stats = json.loads((built / "stats.json").read_text())
    for subset in stats["subsets"]:
        assert f'id="{subset}"' in dom.stdout
    captions = [row[1]["value"] for row in pq.read_table(built / "caption_shapes").column("conversations").to_pylist()]
    shown = [caption for caption in captions if caption in dom.stdout]
    assert len(shown) == 8  # the default gallery sample, each caption a real row of the subset
    for reason in ("refusal", "leakage", "unreadable"):
        assert f"<td>{reason}</td>" in dom.stdout
    assert "I'm sorry, but I can't help with that request." in dom.stdout  # a raw reject example
    assert "teacher-x" in dom.stdout and "v1" in dom.stdout
    assert "<svg" in dom.stdout and "data:image/jpeg;base64," in dom.stdout
    shot = tmp_path / "shot.png"
    result = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert result.returncode == 0, result.stderr
    assert png_size(shot) == (1280, 2000)
    assert Image.open(shot).convert("L").getextrema()[0] < 100  # something dark (text) was drawn


def test_untrusted_text_is_escaped_and_the_page_is_self_contained(tmp_path):
    folder = hand_built(
        tmp_path / "ds",
        [
            ("caption_shapes", "Describe it.", HOSTILE, png()),
            ("caption_shapes", "Describe it.", "fine", b"not an image"),
            ("instruct_shapes", f"How many {HOSTILE}?", "two", png()),
            ("text", "Spell the word cat.", "c a t", None),
        ],
        rejected={HOSTILE: 1},
    )
    page = write_report(folder, tmp_path / "r.html").read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert page.count('src="data:image/jpeg;base64,') == 2 and page.count('class="noimg"') == 1
    assert "how many &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img …" in page  # opening, escaped


def test_cost_reads_no_price_configured_without_a_price(tmp_path):
    rows = [("text", "Spell the word cat.", "c a t", None)]
    unpriced = write_report(hand_built(tmp_path / "a", rows, cost_usd=None), tmp_path / "a.html").read_text()
    assert "<b>no price configured</b><span>teacher cost (USD)</span>" in unpriced and "$0" not in unpriced
    priced = write_report(hand_built(tmp_path / "b", rows, cost_usd=0.25), tmp_path / "b.html").read_text()
    assert "<b>$0.2500</b><span>teacher cost (USD)</span>" in priced


def test_gallery_sample_is_capped_and_seeded(tmp_path):
    rows = [("instruct_shapes", f"What is item {i}?", f"answer {i}", png(8)) for i in range(30)]
    folder = hand_built(tmp_path / "ds", rows)
    ids = lambda report: [s["id"] for s in report.subsets[0].samples]  # noqa: E731
    three = collect(folder, samples=3, seed=1)
    assert len(ids(three)) == 3 and ids(three) == ids(collect(folder, samples=3, seed=1))
    assert ids(three) != ids(collect(folder, samples=3, seed=2))
    assert len(collect(folder, samples=100).subsets[0].samples) == 30
    assert sorted(three.subsets[0].lengths["answer"]) == [2] * 30  # every row counted, not just the sample


def test_tokenizer_lengths(tmp_path):
    from recipes.tiny.models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tok")
    answer = "The shapes are three small, bright-red circles."
    folder = hand_built(tmp_path / "ds", [("text", "Count the shapes.", answer, None)])
    words = collect(folder)
    tokens = collect(folder, tokenizer=str(tmp_path / "tok"))
    assert words.subsets[0].lengths["answer"] == [len(answer.split())]
    assert tokens.subsets[0].lengths["answer"] == [len(tokenizer(answer, add_special_tokens=False)["input_ids"])]
    page = write_report(folder, tmp_path / "r.html", tokenizer=str(tmp_path / "tok")).read_text()
    assert f"tokens of {tmp_path / 'tok'}" in page


def test_raw_examples_come_from_synthesis_folders_given(built, tmp_path):
    stats = json.loads((built / "stats.json").read_text())
    moved = tmp_path / "moved"
    shutil.move(stats["inputs"][0], moved)
    assert collect(built).examples["rejected"] == {}
    page = collect(built, synthesis=[moved])
    assert set(page.examples["rejected"]) == {"refusal", "leakage"}
    assert all(1 <= len(examples) <= 3 for examples in page.examples["rejected"].values())


def test_report_is_replaced_atomically(tmp_path, monkeypatch):
    folder = hand_built(tmp_path / "ds", [("text", "Spell cat.", "c a t", None)])
    target = write_report(folder, tmp_path / "r.html")
    before = target.read_text()
    real_write = os.write

    def torn(fd, data):
        real_write(fd, bytes(data)[:100])
        raise OSError("disk full")

    monkeypatch.setattr(os, "write", torn)
    with pytest.raises(OSError, match="disk full"):
        write_report(folder, target, seed=5)
    assert target.read_text() == before


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "stats.json" in err and err.count("\n") == 1
    (tmp_path / "stats.json").write_text('{"subsets": {"text": 3}}')
    assert main([str(tmp_path)]) == 2
    assert "no train-*.parquet files for subset 'text'" in capsys.readouterr().err
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train-00000-of-00001.parquet").write_bytes(b"not parquet")
    assert main([str(tmp_path)]) == 2
    assert "train-00000-of-00001.parquet: not a readable parquet file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--samples", "-1"])
    assert exit_info.value.code == 2


def test_cli_runs_as_script(tmp_path):
    folder = hand_built(tmp_path / "ds", [("text", "Spell cat.", "c a t", None)])
    command = [sys.executable, "dataset_scripts/report.py", str(folder), "--output", str(tmp_path / "r.html")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Spell cat." in (tmp_path / "r.html").read_text()


def audit_section(page: str) -> str:
    start = page.index('<section id="audit">')
    return page[start : page.index("</section>", start)]


def test_audit_section_shows_the_lowest_rows_next_to_their_own_images(audited, tmp_path):
    folder, planted = audited
    summary = json.loads((folder / "audit" / "audit.json").read_text())
    report = collect(folder)
    rows = report.audit.rows
    assert [row["id"] for row in rows] == [row["id"] for row in summary["lowest"][:AUDIT_ROWS]]
    assert len(rows) == AUDIT_ROWS and {row["id"] for row in rows} <= planted  # the planted mismatches, lowest first
    dataset = {}
    for subset in ("caption_shapes", "instruct_shapes"):
        for row in pq.read_table(folder / subset, columns=["id", "image", "conversations"]).to_pylist():
            dataset[row["id"]] = row
    for row in rows:  # each row next to its own (planted, wrong) image and its own text
        assert row["thumbnail"] == thumbnail(dataset[row["id"]]["image"]["bytes"]) is not None
        assert row["response"] == dataset[row["id"]]["conversations"][1]["value"]
    section = audit_section(write_report(folder, tmp_path / "r.html").read_text())
    assert section.count('<div class="card">') == AUDIT_ROWS and section.count('src="data:image/jpeg;base64,') == 12
    assert section.count('<span class="badge">flagged</span>') == AUDIT_ROWS
    for name, counts in summary["subsets"].items():
        cells = (name, counts["rows"], counts["scored"], counts["no_image"], counts["flagged"], 0, counts["truncated"])
        assert "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>" in section
    assert RULE.replace("<=", "&lt;=") in section and "<b>facts</b>" in section
    for row in rows:
        assert f"{row['subset']} · {row['id']}" in section and f"margin <b>{row['margin']:+.3f}</b>" in section


def test_the_audit_section_shows_only_for_an_audited_dataset(audited, tmp_path, capsys):
    folder, _ = audited
    shutil.move(folder / "audit", tmp_path / "elsewhere")
    page = write_report(folder, tmp_path / "r.html").read_text()
    assert 'id="audit"' not in page and collect(folder).audit is None
    assert 'id="audit"' in write_report(folder, tmp_path / "r.html", audit=tmp_path / "elsewhere").read_text()
    assert main([str(folder), "--audit", str(tmp_path / "nope")]) == 2
    assert "--audit " in capsys.readouterr().err


def test_audit_section_escapes_untrusted_text(tmp_path):
    rows = [
        ("caption_shapes", "Describe it.", HOSTILE, png(40)),
        ("instruct_shapes", f"Is {HOSTILE}?", "yes", png(44)),
        ("caption_shapes", "Describe it.", "a red square", png(52)),
    ]
    folder = hand_built(tmp_path / "ds", rows)
    Audit(folder, folder / "audit", batch_size=3).run(HashEncoder(), f"model {HOSTILE}", progress=False)
    page = write_report(folder, tmp_path / "r.html").read_text()
    section = audit_section(page)
    assert "<script" not in page and "<img src=x" not in page
    assert section.count('<div class="card">') == 3
    assert section.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;") == 3


@needs_chromium
def test_audit_section_screenshot(audited, tmp_path):
    """The audit section in headless Chromium; with ALLAVA_UPDATE_SCREENSHOTS=1 the shot is docs/data-audit.png."""
    from playwright.sync_api import sync_playwright

    folder, _ = audited
    page_path = write_report(folder, tmp_path / "r.html")
    shot = DOCS_AUDIT_SCREENSHOT if os.environ.get("ALLAVA_UPDATE_SCREENSHOTS") == "1" else tmp_path / "audit.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_path.resolve().as_uri())
        section = page.locator("#audit")
        assert section.locator("img").count() == AUDIT_ROWS
        assert all(section.locator("img").nth(i).evaluate("i => i.naturalWidth > 0") for i in range(AUDIT_ROWS))
        section.screenshot(path=str(shot))
        browser.close()
    width, height = png_size(shot)
    assert width > 1000 and height > 400
    assert Image.open(shot).convert("L").getextrema()[0] < 100  # text drawn
