import json
import random
import shutil
import subprocess
import sys

import datasets
import pytest

from dataset_scripts import shapes_world as world
from dataset_scripts.build_dataset import BuildError, build, main
from dataset_scripts.dataset_writer import DatasetFolderError
from dataset_scripts.schema import FEATURES, validate_row
from tests.dataset_scripts.helpers_synthesis import API_KEY, REPO, records


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
    shutil.rmtree(synthesis_out / "images")
    assert main(["--input", str(synthesis_out), "--output", str(tmp_path / "ds3")]) == 2
    assert "copy the images/ folder" in capsys.readouterr().err


def test_push_to_hub_uploads_the_folder(synthesis_out, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: calls.append(("create", a, k)))
    monkeypatch.setattr(
        huggingface_hub.HfApi, "upload_folder", lambda self, **k: calls.append(("upload", k)) or "https://hub/commit"
    )
    out = tmp_path / "ds"
    assert main(["--input", str(synthesis_out), "--output", str(out), "--push-to-hub", "org/name", "--private"]) == 0
    assert calls[0] == ("create", ("org/name",), {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(out) and calls[1][1]["repo_type"] == "dataset"
    assert 'load_dataset("org/name"' in (out / "README.md").read_text()


@pytest.mark.parametrize("script", ["build_dataset", "import_allava4v"])
@pytest.mark.parametrize("as_module", [False, True])
def test_cli_runs_as_script_and_module(script, as_module):
    command = ["-m", f"dataset_scripts.{script}"] if as_module else [f"dataset_scripts/{script}.py"]
    result = subprocess.run([sys.executable, *command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--output" in result.stdout, result.stderr
