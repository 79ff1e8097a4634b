import json
import os
import random
import shutil
import subprocess
import sys

import datasets
import pytest

from dataset_scripts.build_dataset import BuildError, build, main, record_rows
from dataset_scripts.dataset_writer import DatasetFolderError
from dataset_scripts.schema import FEATURES, validate_row
from recipes.tiny import shapes_world as world
from tests.dataset_scripts.helpers_synthesis import API_KEY, REPO, records
from tests.hub.fake_hub import FakeHub
from tests.hub.processes import run_python


HUB_TOKEN = "hf_BuildDatasetPushToken0123456789"


@pytest.fixture
def synthesis_out(synth, teacher, shapes_dir, tmp_path):
    """caption-qa on shapes (with a rejected and a skipped input) plus a text run, in one output folder."""
    folder = tmp_path / "imgs"
    shutil.copytree(shapes_dir, folder)
    (folder / "broken.png").write_bytes(b"nope")
    out = tmp_path / "out"
    teacher.set_faults({"refusal": 0.05})
    synth("--mode", "caption-qa", "--input", str(folder), "--source-name", "shapes", "--max-parse-retries", "0",
          output=out)  # fmt: skip
    teacher.set_faults({})
    rng = random.Random(2)
    (tmp_path / "t.txt").write_text("\n".join(world.text_instruction(rng)[0] for _ in range(6)) + "\n")
    synth("--mode", "text", "--input", str(tmp_path / "t.txt"), output=out)
    return out


def test_build_writes_a_loadable_documented_dataset(synthesis_out, tmp_path):
    stats = build([synthesis_out], tmp_path / "ds", rows_per_file=7)
    image_records = [r for r in records(synthesis_out) if r["mode"] == "caption-qa"]
    assert stats["subsets"] == {
        "caption_shapes": len(image_records),
        "instruct_shapes": len(image_records),
        "text": len(records(synthesis_out)) - len(image_records),
    }
    assert sum(stats["rejected"].values()) == 24 - len(image_records) > 0
    assert stats["skipped"] == {"unreadable": 1}
    files = -(-len(image_records) // 7)
    assert (tmp_path / "ds" / "caption_shapes" / f"train-00000-of-{files:05d}.parquet").exists()
    for subset, count in stats["subsets"].items():
        ds = datasets.load_dataset(str(tmp_path / "ds"), subset, split="train")
        assert ds.num_rows == count and ds.features == FEATURES
        raw = ds.cast_column("image", datasets.Image(decode=False))
        for index, row in enumerate(raw):
            validate_row(row, f"{subset}#{index}")
            assert row["mode"] == ("text" if subset == "text" else "caption-qa")
            if subset == "text":
                assert row["image"] is None and row["images"] == [] and row["source"] == "evol"
            else:
                assert row["image"]["bytes"] and row["image"]["path"] is None  # embedded, portable
                assert row["teacher_model"] == "teacher-x" and row["prompt_version"] == "v1"
                scene = world.scene_from_image(row["image"]["bytes"])  # the bytes sent to the teacher
                if subset == "caption_shapes":
                    assert row["conversations"][1]["value"] == world.describe(scene)
        first = ds[0]
        assert first["messages"][0]["role"] == "user" and first["id"].startswith("allava_")
    saved = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert saved["subsets"] == stats["subsets"] and saved["prompts"]
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "config_name: caption_shapes" in card and "Shapes-world data" in card and "refusal" in card
    assert API_KEY not in card and API_KEY not in json.dumps(saved)


def test_cost_is_unknown_without_a_price_and_summed_with_one(synth, synthesis_out, shapes_dir, tmp_path):
    unpriced = build([synthesis_out], tmp_path / "ds")
    assert unpriced["cost_usd"] is None and "cost: no price configured" in (tmp_path / "ds" / "README.md").read_text()
    out = tmp_path / "priced"
    synth("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "3", "--price-input", "2", "--price-output",
          "8", output=out)  # fmt: skip
    priced = build([out], tmp_path / "ds2")
    cost = sum(record["usage"]["cost_usd"] for record in records(out))
    assert cost > 0 and priced["cost_usd"] == round(cost, 6)
    assert f"cost: ${cost:.4f} (from the configured price table)" in (tmp_path / "ds2" / "README.md").read_text()


def test_merging_shard_folders_drops_duplicates(synthesis_out, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(synthesis_out, copy)
    stats = build([synthesis_out, copy], tmp_path / "ds")
    assert stats["duplicates_dropped"] == len(records(synthesis_out))
    assert stats["subsets"] == build([synthesis_out], tmp_path / "ds2")["subsets"]


def test_errors_are_clear(synthesis_out, tmp_path, capsys):
    with pytest.raises(BuildError, match="no records"):
        build([tmp_path], tmp_path / "ds")
    build([synthesis_out], tmp_path / "ds")
    with pytest.raises(DatasetFolderError, match="--overwrite"):
        build([synthesis_out], tmp_path / "ds")
    build([synthesis_out], tmp_path / "ds", overwrite=True)
    pack = synthesis_out / "images-00000-of-00001.pack"
    with pack.open("r+b") as handle:  # cut inside the last image
        handle.truncate(pack.stat().st_size - 1)
    assert main(["--input", str(synthesis_out), "--output", str(tmp_path / "ds3")]) == 2
    assert "cut short" in capsys.readouterr().err
    pack.unlink()
    assert main(["--input", str(synthesis_out), "--output", str(tmp_path / "ds3")]) == 2
    assert "copy the image packs (images-*.pack)" in capsys.readouterr().err


def test_push_to_hub_goes_through_the_shared_upload(synthesis_out, tmp_path):
    out = tmp_path / "ds"
    build = ["dataset_scripts/build_dataset.py", "--input", str(synthesis_out), "--output", str(out)]
    with FakeHub(HUB_TOKEN) as hub:
        env = hub.client_env(tmp_path / "hf_home")
        first = run_python([*build, "--push-to-hub", "tester/shapes", "--private"], env=env)
        again = run_python([*build, "--overwrite", "--push-to-hub", "tester/shapes"], env=env)
        commits = hub.commits("tester/shapes", "dataset")
        private = hub.repo("tester/shapes", "dataset").private
        without_token = subprocess.run(
            [sys.executable, *build[:1], "--input", str(synthesis_out), "--output", str(tmp_path / "ds2"),
             "--push-to-hub", "tester/shapes"],
            cwd=REPO, env={**os.environ, **env, "HF_TOKEN": ""}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert private and len(commits) == 2  # repo creation + one upload; the identical rebuild made no commit
    assert "Pushed dataset tester/shapes@main" in first.stdout and "No changes" in again.stdout
    assert {"README.md", "stats.json", "caption_shapes/train-00000-of-00001.parquet"} <= set(commits[-1].files)
    assert 'load_dataset("tester/shapes"' in commits[-1].files["README.md"].decode()
    assert HUB_TOKEN not in first.stdout + first.stderr + again.stdout + again.stderr
    # No token: refused before anything is built.
    assert without_token.returncode != 0 and "HF_TOKEN" in without_token.stderr
    assert not (tmp_path / "ds2").exists()


def test_bad_repo_ids_and_empty_builds_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "records-00000-of-00001.jsonl").write_text("")
    rejects = [{"item_id": f"img{i}", "reason": "refusal"} for i in range(3)]
    (out / "rejects-00000-of-00001.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rejects))
    (out / "skipped-00000-of-00001.jsonl").write_text(json.dumps({"item_id": "x", "reason": "unreadable"}) + "\n")
    args = ["--input", str(out), "--output", str(tmp_path / "ds")]
    assert main([*args, "--push-to-hub", "not a repo id"]) == 2
    assert "--push-to-hub: 'not a repo id' is not a Hub repo id" in capsys.readouterr().err
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no records in {out}: nothing to build") and err.count("\n") == 1
    assert "{'refusal': 3}" in err and "{'unreadable': 1}" in err
    assert not (tmp_path / "ds").exists()  # no empty dataset with a card claiming subsets
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "stats.json").write_text("{}")
    assert main([*args, "--overwrite"]) == 2
    assert (tmp_path / "ds" / "stats.json").exists()  # an earlier build is not thrown away for nothing


def test_vflan_rows_say_how_they_were_made():
    record = {
        "key": "k" * 32, "source": "laion", "mode": "vflan", "teacher_model": "t", "prompt_version": "v1",
        "prompt_hash": "h", "origin": "o", "caption_request": "Describe.", "description": "A cat.",
        "question": "What animal?", "answer": "A cat.",
    }  # fmt: skip
    rows = record_rows(record, b"img")
    assert [subset for subset, _ in rows] == ["caption_laion", "instruct_laion"]
    assert {row["mode"] for _, row in rows} == {"vflan"}


@pytest.mark.parametrize("script", ["build_dataset", "import_allava4v"])
@pytest.mark.parametrize("as_module", [False, True])
def test_cli_runs_as_script_and_module(script, as_module):
    command = ["-m", f"dataset_scripts.{script}"] if as_module else [f"dataset_scripts/{script}.py"]
    result = subprocess.run([sys.executable, *command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--output" in result.stdout, result.stderr
