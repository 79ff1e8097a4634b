"""Checkpoint code runs only when asked: ALLaVA loads with the installed classes, anything else needs
--trust-remote-code (generation / eval_benchmarks.py, merge_lora.py, shapes_eval.py)."""

import json

import pytest
from transformers import AutoModelForImageTextToText

from modeling_allava import AllavaForConditionalGeneration
from recipes import eval_benchmarks, merge_lora
from recipes.benchmarks.generation import load_model
from recipes.remote_code import RemoteCodeRefusedError, load_pretrained
from recipes.tiny import shapes_eval
from recipes.tiny.models import build_tiny_model_and_processor


def _tamper(module_file, marker) -> None:
    """Make a shipped module leave a marker file when it is imported."""
    code = module_file.read_text() if module_file.exists() else ""
    module_file.write_text(f"open({str(marker)!r}, 'w').close()\n{code}")


@pytest.fixture
def foreign_checkpoint(tmp_path):
    """A checkpoint that is not ALLaVA and names its own classes in auto_map."""
    folder, marker = tmp_path / "foreign", tmp_path / "ran.txt"
    folder.mkdir()
    auto_map = {"AutoConfig": "custom.CustomConfig", "AutoModelForImageTextToText": "custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "custom_vlm", "auto_map": auto_map}))
    _tamper(folder / "custom.py", marker)
    return folder, marker


def test_allava_checkpoints_load_with_the_installed_classes_even_when_trusted(tmp_path):
    model, processor = build_tiny_model_and_processor()
    folder, marker = tmp_path / "allava", tmp_path / "ran.txt"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert "AutoModelForImageTextToText" in json.loads((folder / "config.json").read_text())["auto_map"]
    _tamper(folder / "modeling_allava.py", marker)
    _tamper(folder / "processing_allava.py", marker)
    for trust in (False, True):
        loaded, loaded_processor = load_model(str(folder), device="cpu", trust_remote_code=trust)
        assert type(loaded) is AllavaForConditionalGeneration and loaded_processor.chat_template
    assert not marker.exists()


def test_foreign_code_is_refused_without_the_flag(foreign_checkpoint):
    folder, marker = foreign_checkpoint
    with pytest.raises(RemoteCodeRefusedError, match="model_type 'custom_vlm' is not ALLaVA.*--trust-remote-code"):
        load_pretrained(AutoModelForImageTextToText, str(folder))
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 (what the foreign code does is its business; it did run)
        load_pretrained(AutoModelForImageTextToText, str(folder), trust_remote_code=True)
    assert marker.exists()


def exit_code(run) -> int | None:
    """A CLI's exit code, whether its `main` returns it or raises SystemExit."""
    try:
        return run()
    except SystemExit as exit_info:
        return exit_info.code


def test_scripts_refuse_foreign_code_with_exit_2(foreign_checkpoint, tmp_path, capsys):
    folder, marker = foreign_checkpoint
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(folder)}))
    runs = [
        lambda: eval_benchmarks.main(
            ["--model", str(folder), "--benchmarks", "gqa", "--output", str(tmp_path / "eval")]
        ),
        lambda: merge_lora.main([str(adapter), str(tmp_path / "merged")]),
        lambda: shapes_eval.main(["--model", str(folder), "--images", str(tmp_path)]),
    ]
    for run in runs:
        assert exit_code(run) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"error: {folder}: model_type 'custom_vlm' is not ALLaVA") and "\n" not in error
    assert not marker.exists()
