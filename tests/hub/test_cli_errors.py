"""The shared command-line behaviour: help that opens with a summary and an example, one-line errors with exit code 2
(traceback only with LOGLEVEL=DEBUG), and mistyped local paths named before any Hub lookup."""

import subprocess
import sys

import pytest

from hub.cli import UsageError, check_repo_id, folder_or_repo_id, run
from tests.hub.processes import REPO_ROOT


# (command, summary start, example start): every tool that publishes, builds data or merges adapters.
CLIS = [
    (["hub/push_model.py"], "Publish an ALLaVA checkpoint", "python hub/push_model.py "),
    (["hub/export_llava_hf.py"], "Export an ALLaVA checkpoint", "python hub/export_llava_hf.py "),
    (["hub/convert_allava_checkpoint.py"], "Convert a released", "python hub/convert_allava_checkpoint.py "),
    (["recipes/merge_lora.py"], "Merge a LoRA adapter", "python recipes/merge_lora.py "),
    (["recipes/loss_curve.py"], "Plot the training-loss curves", "python recipes/loss_curve.py "),
    (["dataset_scripts/build_dataset.py"], "Merge synthesis output", "python dataset_scripts/build_dataset.py"),
    (["dataset_scripts/import_allava4v.py"], "Import the ALLaVA-4V release", "python dataset_scripts/import_allava4v"),
    (["-m", "dataset_scripts.offline_teacher"], "Serve the offline", "python -m dataset_scripts.offline_teacher "),
]
# A mistyped local folder for each tool that reads one: one line, exit 2, no traceback.
TYPOS = [
    (["hub/push_model.py", "runs/tiny/finetun", "--repo-id", "me/x", "--dry-run"], "checkpoint: runs/tiny/finetun"),
    (["hub/export_llava_hf.py", "runs/tiny/finetun", "out"], "checkpoint: runs/tiny/finetun: no such folder"),
    (["hub/convert_allava_checkpoint.py", "ALLaVA-Phi2", "out"], "original: ALLaVA-Phi2: no such folder"),
    (["recipes/merge_lora.py", "outputs/lora", "merged"], "adapter_dir: outputs/lora: no such folder"),
    (["recipes/loss_curve.py", "outputs/stage1", "--output", "x.png"], "runs: outputs/stage1: no such folder"),
    (["dataset_scripts/build_dataset.py", "--input", "ou/", "--output", "ds"], "ou: no records-*-of-*.jsonl shards"),
]


def _run(args, cwd, env=None):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.parametrize(("command", "summary", "example"), CLIS, ids=lambda value: str(value)[:40])
def test_help_opens_with_what_the_tool_does_and_an_example(command, summary, example):
    result = _run([*command, "--help"], REPO_ROOT)
    assert result.returncode == 0, result.stderr
    after_usage = result.stdout.split("\n\n")[1:]
    assert after_usage[0].startswith(summary) and "\n" not in after_usage[0].strip()
    assert after_usage[1].startswith("example:\n  " + example)


@pytest.mark.parametrize(("command", "message"), TYPOS, ids=lambda value: str(value)[:40])
def test_a_mistyped_folder_is_one_line_and_exit_2(command, message, tmp_path):
    script = str(REPO_ROOT / command[0])
    result = _run([script, *command[1:]], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "huggingface.co" not in result.stderr


def test_expected_errors_print_one_line_and_a_traceback_only_with_debug(capsys, monkeypatch):
    def main(argv):
        raise UsageError("rows.jsonl: row 3: field 'image'\nis missing")

    monkeypatch.delenv("LOGLEVEL", raising=False)
    assert run(main, ["x"]) == 2
    assert capsys.readouterr().err == "error: rows.jsonl: row 3: field 'image' is missing\n"
    monkeypatch.setenv("LOGLEVEL", "DEBUG")
    assert run(main) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("error: rows.jsonl: row 3: field 'image' is missing\n")

    def buggy(argv):
        raise KeyError("a bug, not bad input")

    with pytest.raises(KeyError):  # unexpected errors keep their traceback
        run(buggy)


def test_folders_and_repo_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "stage1").mkdir(parents=True)
    assert folder_or_repo_id("runs/stage1", "--base_model") == "runs/stage1"
    assert folder_or_repo_id("microsoft/phi-2", "--base_model") == "microsoft/phi-2"
    for typo in ("./runs/stage2", "runs/stage1/checkpoint-5", "/data/models/phi-2", "~/phi-2"):
        with pytest.raises(UsageError, match=f"--base_model: {typo}: no such folder"):
            folder_or_repo_id(typo, "--base_model")
    with pytest.raises(UsageError, match=r"runs/stage2: no such folder \(read as a local path because runs/ exists"):
        folder_or_repo_id("runs/stage2", "--base_model")  # shaped like a repo id, but `runs/` is local
    with pytest.raises(UsageError, match="--base_model: 'phi 2' is not a Hub repo id and no such local folder"):
        folder_or_repo_id("phi 2", "--base_model")
    assert check_repo_id("my-org/allava.tiny_2", "--repo-id") == "my-org/allava.tiny_2"
    for bad in ("not a repo id", "a/b/c", "org/-name"):
        with pytest.raises(UsageError, match="--repo-id: .* is not a Hub repo id"):
            check_repo_id(bad, "--repo-id")
