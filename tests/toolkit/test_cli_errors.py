"""toolkit/cli.py, the one command-line module: help that opens with a summary and an example, one-line errors with
exit codes 2 / 1 / 3 (traceback only with LOGLEVEL=DEBUG), one path rule, mistyped local paths named before any Hub
lookup, URLs safe to print, and the console scripts of setup.cfg."""

import configparser
import importlib
import subprocess
import sys

import pytest

from tests.hub.processes import REPO_ROOT
from toolkit.cli import (
    EXIT_INCOMPLETE,
    EXIT_USAGE,
    InputError,
    Interrupted,
    RunFailed,
    check_local_path,
    check_repo_id,
    folder_or_repo_id,
    is_path_like,
    public_url,
    run,
)


# (command, summary start, example start): every tool that publishes, builds data or merges adapters.
CLIS = [
    (["hub/push_model.py"], "Publish an ALLaVA checkpoint", "python hub/push_model.py "),
    (["hub/export_llava_hf.py"], "Export an ALLaVA checkpoint", "python hub/export_llava_hf.py "),
    (["hub/convert_allava_checkpoint.py"], "Convert a released", "python hub/convert_allava_checkpoint.py "),
    (["hub/push_space.py"], "Create (or update) a Hugging Face Space", "python hub/push_space.py "),
    (["recipes/merge_lora.py"], "Merge a LoRA adapter", "python recipes/merge_lora.py "),
    (["recipes/tiny/loss_curve.py"], "Plot the training-loss curves", "python recipes/tiny/loss_curve.py "),
    (["dataset_scripts/build_dataset.py"], "Merge synthesis output", "python dataset_scripts/build_dataset.py"),
    (["dataset_scripts/import_allava4v.py"], "Import the ALLaVA-4V release", "python dataset_scripts/import_allava4v"),
    (["-m", "recipes.tiny.offline_teacher"], "Serve the offline", "python -m recipes.tiny.offline_teacher "),
    (["recipes/eval_benchmarks.py"], "Evaluate a model on the", "python recipes/eval_benchmarks.py --model "),
    (["dataset_scripts/synthesize.py"], "Synthesise ALLaVA-style data", "python dataset_scripts/synthesize.py --mode"),
    (["dataset_scripts/report.py"], "Write a static HTML report", "python dataset_scripts/report.py "),
    (["-m", "recipes.tiny.shapes_world"], "Write shapes-world scenes", "python -m recipes.tiny.shapes_world "),
    (["-m", "recipes.tiny.models"], "Write tiny random backbones", "python -m recipes.tiny.models "),
    (["-m", "recipes.tiny.answer"], "Answer questions about a shapes", "python -m recipes.tiny.answer "),
    (["recipes/tiny/demo.py"], "Run the whole ALLaVA loop", "python recipes/tiny/demo.py "),
    (["recipes/tiny/shapes_eval.py"], "Held-out evaluation on the", "python recipes/tiny/shapes_eval.py "),
]
# A mistyped local folder for each tool that reads one: one line, exit 2, no traceback.
TYPOS = [
    (["hub/push_model.py", "runs/tiny/finetun", "--repo-id", "me/x", "--dry-run"], "checkpoint: runs/tiny/finetun"),
    (["hub/export_llava_hf.py", "runs/tiny/finetun", "out"], "checkpoint: runs/tiny/finetun: no such folder"),
    (["hub/convert_allava_checkpoint.py", "ALLaVA-Phi2", "out"], "original: ALLaVA-Phi2: no such folder"),
    (["recipes/merge_lora.py", "outputs/lora", "merged"], "adapter_dir: outputs/lora: no such folder"),
    (["recipes/tiny/loss_curve.py", "outputs/stage1", "--output", "x.png"], "runs: outputs/stage1: no such folder"),
    (["dataset_scripts/build_dataset.py", "--input", "ou/", "--output", "ds"], "ou: no records-*-of-*.jsonl shards"),
]


def _run(args, cwd, env=None):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


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
        raise InputError("rows.jsonl: row 3: field 'image'\nis missing")

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
        with pytest.raises(InputError, match=f"--base_model: {typo}: no such folder"):
            folder_or_repo_id(typo, "--base_model")
    with pytest.raises(InputError, match=r"runs/stage2: no such folder \(read as a local path because runs/ exists"):
        folder_or_repo_id("runs/stage2", "--base_model")  # shaped like a repo id, but `runs/` is local
    with pytest.raises(InputError, match="--base_model: 'phi 2' is not a Hub repo id and no such local folder"):
        folder_or_repo_id("phi 2", "--base_model")
    assert check_repo_id("my-org/allava.tiny_2", "--repo-id") == "my-org/allava.tiny_2"
    for bad in ("not a repo id", "a/b/c", "org/-name"):
        with pytest.raises(InputError, match="--repo-id: .* is not a Hub repo id"):
            check_repo_id(bad, "--repo-id")


@pytest.mark.parametrize(
    "value",
    ["gpt2", "org/name", "a.b_c-d", "ünï/cödé", "-lead", "trail.", "a--b", "a..b", "x.git", "a/b/c", "", "a" * 97],
)
def test_repo_id_rule_agrees_with_huggingface_hub(value):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
        hub_accepts = True
    except HFValidationError:
        hub_accepts = False
    try:
        check_repo_id(value, "--repo-id")
        accepted = True
    except InputError:
        accepted = False
    assert accepted == hub_accepts


@pytest.mark.parametrize(
    ("value", "path_like"),
    [
        ("/abs/model", True),
        ("./model", True),
        ("../model", True),
        ("~/model", True),
        ("outputs/tiny/stage1", True),  # more than one '/'
        ("have/stage2", True),  # first component exists here
        ("my.jinja", True),  # a known file extension
        ("t.yaml", True),
        ("C:\\models\\phi", True),
        ("org/name", False),  # a Hub id
        ("gpt2", False),
        ("FreedomIntelligence/ALLaVA-Phi2-2_7B", False),
        ("microsoft/phi-2", False),
        ("openai/clip-vit-large-patch14-336", False),
        ("Qwen/Qwen2.5-0.5B", False),
    ],
)
def test_one_path_rule(value, path_like, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "have").mkdir()
    assert is_path_like(value) == path_like


def test_check_local_path_names_the_flag_and_the_missing_part(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert check_local_path("org/name", "--model") == "org/name"
    assert check_local_path("./runs", "--model") == "./runs"  # as given: it names the model in results and caches
    with pytest.raises(InputError) as error:
        check_local_path("./rnus/tiny/stage2", "--model")
    assert str(error.value) == (
        "--model ./rnus/tiny/stage2: no such local path ('rnus' is not in .); a Hub id looks like org/name"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_local_path("~/runs", "--model") == str(tmp_path / "runs")


def test_public_url_drops_credentials_query_and_fragment():
    assert public_url("https://user:pw@judge.example:8443/v1?key=sk-1#x") == "https://judge.example:8443/v1"
    assert public_url("http://[::1]:9/v1") == "http://[::1]:9/v1"
    assert public_url(None) is None


def test_run_gives_one_line_and_an_exit_code_per_kind_of_failure(capsys, monkeypatch):
    def fail(error):
        def main(argv):
            raise error

        return main

    monkeypatch.delenv("LOGLEVEL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run(fail(InputError("data.jsonl, line 3:\n  bad field")), exit_now=True)
    assert exit_info.value.code == 2 and capsys.readouterr().err == "error: data.jsonl, line 3: bad field\n"
    with pytest.raises(SystemExit) as exit_info:
        run(fail(RunFailed("judge unreachable")), exit_now=True)
    assert exit_info.value.code == 1 and capsys.readouterr().err == "failed: judge unreachable\n"
    assert run(fail(RunFailed("judge unreachable"))) == 1
    capsys.readouterr()
    assert run(fail(Interrupted("stopped at step 2; rerun to resume"))) == EXIT_INCOMPLETE
    assert capsys.readouterr().err == "interrupted: stopped at step 2; rerun to resume\n"
    assert run(fail(KeyboardInterrupt()), on_ctrl_c="nothing to keep") == EXIT_INCOMPLETE
    assert capsys.readouterr().err == "interrupted: nothing to keep\n"
    with pytest.raises(KeyboardInterrupt):  # without a message for it, Ctrl-C is left alone
        run(fail(KeyboardInterrupt()))
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run(fail(KeyError("x")), exit_now=True)
    assert run(fail(OSError("disk full")), expected=(OSError,)) == 2
    assert capsys.readouterr().err == "error: disk full\n"
    monkeypatch.setenv("LOGLEVEL", "DEBUG")
    with pytest.raises(SystemExit):
        run(fail(InputError("bad")), exit_now=True)
    assert "Traceback" in capsys.readouterr().err
    assert run(lambda argv: 7) == 7
    assert run(lambda argv: None) == 0


def test_tracebacks_only_with_loglevel_debug(monkeypatch, capsys, caplog):
    def bad_input(argv):
        raise InputError("max_length (recipe.yaml): must be a whole number >= 1, got -5")

    monkeypatch.delenv("LOGLEVEL", raising=False)
    assert run(bad_input) == EXIT_USAGE
    assert capsys.readouterr().err == "error: max_length (recipe.yaml): must be a whole number >= 1, got -5\n"
    assert not caplog.records
    monkeypatch.setenv("LOGLEVEL", "DEBUG")
    assert run(bad_input) == EXIT_USAGE
    assert "Traceback" in capsys.readouterr().err  # the traceback, for whoever asked for it


def _console_scripts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def test_console_scripts_point_at_callables():
    scripts = _console_scripts()
    assert set(scripts) == {
        "allava-synthesize", "allava-build-dataset", "allava-report", "allava-sft", "allava-eval",
        "allava-merge-lora", "allava-push", "allava-export-llava", "allava-convert",
    }  # fmt: skip
    for name, target in scripts.items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), name


def test_parse_errors_are_one_line_with_exit_2(tmp_path):
    result = _run([str(REPO_ROOT / "hub/push_model.py"), "--no-such-flag"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--help" in result.stderr


@pytest.mark.parametrize(("name", "summary"), [("allava-eval", "Evaluate a model on the"), ("allava-push", "Publish")])
def test_console_script_targets_run_as_commands(name, summary, tmp_path):
    """What the installed `allava-*` wrapper does: set sys.argv, call the target, exit with its value."""
    module, _, attribute = _console_scripts()[name].partition(":")
    wrapper = f"import sys; from {module} import {attribute}; sys.argv = ['{name}', '--help']; sys.exit({attribute}())"
    result = _run(["-c", wrapper], REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {name} ") and result.stdout.split("\n\n")[1].startswith(summary)


def test_scripts_import_the_installed_packages_without_editing_sys_path():
    """No script edits sys.path (the repo is installed; recipes/eval_benchmarks.py does not shadow the `evaluate`
    library), and imports come first except where a script checks its arguments before the heavy imports."""
    folders = ("hub", "recipes", "dataset_scripts", "bench", "modeling_allava")
    sources = {
        path.relative_to(REPO_ROOT).as_posix(): path.read_text()
        for folder in folders
        for path in (REPO_ROOT / folder).rglob("*.py")
    }
    assert [name for name, text in sources.items() if "sys.path" in text] == []
    # E402 in eval_benchmarks.py and sft.py: run as files, they check their arguments before seconds of imports.
    assert sorted(name for name, text in sources.items() if "noqa: E402" in text) == [
        "recipes/eval_benchmarks.py",
        "recipes/sft.py",
    ]
