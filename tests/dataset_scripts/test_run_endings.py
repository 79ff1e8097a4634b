"""How a chat-mode synthesis run ends, told the same way in the summary, on stdout, on stderr and in the exit code."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dataset_scripts.shards import iter_jsonl
from recipes.tiny import shapes_world as world
from recipes.tiny.offline_teacher import OfflineTeacher
from tests.dataset_scripts.helpers_synthesis import API_KEY, REPO, records


PRICES = ["--price-input", "1", "--price-output", "2"]


def ending(capsys) -> tuple[dict, str]:
    """(the JSON line on stdout, the last line on stderr)."""
    captured = capsys.readouterr()
    return json.loads(captured.out.splitlines()[-1]), captured.err.splitlines()[-1]


def assert_told_the_same(summary: dict, stdout: dict, last_line: str, code: int) -> None:
    assert summary["outcome"] == stdout["outcome"] == last_line and summary["exit_code"] == code
    assert summary["stopped"] == stdout["stopped"] and summary["ended"] == stdout["ended"]


@pytest.mark.parametrize("fault", ["server_error", "drop"])
def test_a_teacher_that_fails_every_request_is_named_and_the_input_is_not_blamed(
    synth, shapes_dir, tmp_path, fault, capsys
):
    with OfflineTeacher(api_key=API_KEY, faults={fault: 1.0}) as broken:
        args = ["--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "6", "--max-retries", "2"]
        code, summary = synth(*args, output=tmp_path / "out", base_url=broken.base_url, check=3)
    stdout, last = ending(capsys)
    assert_told_the_same(summary, stdout, last, code)
    assert last.startswith(f"stopped early: 6 of 6 inputs left: 6 failed at {broken.base_url}; last: gave up after 3")
    assert "--input" not in last and "skipped" not in last
    assert summary["ended"] == "stopped early" and summary["inputs_left"] == 6 and summary["stopped"] == "failures"


def test_an_unfinished_chat_run_says_stopped_early_and_its_progress_counts_only_settled_inputs(
    teacher, shapes_dir, tmp_path, monkeypatch, capsys
):
    from dataset_scripts import synthesize

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    teacher.set_faults({"server_error": 0.5})
    out = tmp_path / "out"
    argv = ["--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "10", "--output", str(out)]
    argv += ["--base-url", teacher.base_url, "--model", "m", "--max-retries", "0", "--concurrency", "1"]
    assert synthesize.main(argv) == 3
    summary = json.loads((out / "summary-00000-of-00001.json").read_text())
    captured = capsys.readouterr()
    stdout, last = json.loads(captured.out), captured.err.splitlines()[-1]
    assert_told_the_same(summary, stdout, last, 3)
    done = len(records(out))
    assert 0 < done < 10 and summary["inputs_left"] == 10 - done and stdout["stopped"] == "failures"
    assert last.startswith(f"stopped early: {10 - done} of 10 inputs left: {10 - done} failed at {teacher.base_url}")
    bars = [line for line in captured.err.replace("\r", "\n").splitlines() if "/10 [" in line]
    assert bars[-1].split("/10", 1)[0].rsplit(" ", 1)[-1] == str(done)  # not 10/10: only settled inputs count
    assert f"failed={10 - done}" in bars[-1]


def test_cost_agrees_everywhere_including_inputs_given_up(synth, teacher, shapes_dir, tmp_path, capsys):
    """Billed replies of an input that is then given up count in the totals, on stdout and in the rerun's budget."""
    teacher.set_faults({"malformed": 0.4, "server_error": 0.3})
    out = tmp_path / "out"
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), *PRICES, "--max-retries", "0"]
    args += ["--max-parse-retries", "4", "--max-consecutive-failures", "100"]
    _, first = synth(*args, output=out, check=3)
    stdout, _ = ending(capsys)
    spent = list(iter_jsonl(out / "spent-00000-of-00001.jsonl"))
    assert spent and all(row["usage"]["requests"] for row in spent)  # billed, but no record or reject carries it
    assert first["cost_usd"] == first["this_run"]["cost_usd"] > 0
    assert stdout["cost"] == first["cost"] and stdout["cost_this_run"] == first["this_run"]["cost_usd"]
    assert first["by_subset"]["(inputs not finished)"]["requests"] == sum(row["usage"]["requests"] for row in spent)
    teacher.set_faults({})
    _, second = synth(*args, "--retry-rejects", output=out)  # an input whose every parse retry met a malformed reply
    assert second["done"] == 24
    both = first["this_run"]["cost_usd"] + second["this_run"]["cost_usd"]
    assert abs(second["cost_usd"] - both) < 1e-5


def test_a_budget_stop_gives_one_hint(synth, teacher, shapes_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), "--price-input", "1000", "--price-output", "1000"]
    code, summary = synth(*args, "--max-tokens", "300", "--max-cost", "5", output=out, check=3)
    stdout, last = ending(capsys)
    assert_told_the_same(summary, stdout, last, code)
    assert last.startswith("stopped early: ") and "--max-cost 5.0 reached" in last
    assert 0.75 * 5 < summary["cost_usd"] <= 5  # a request that does not fit waits for those in flight to settle
    assert last.endswith("rerun with a higher --max-cost to continue") and last.count("rerun") == 1


def test_a_refusing_teacher_fails_naming_its_endpoint(synth, shapes_dir, tmp_path, capsys):
    with OfflineTeacher(api_key="another-key") as other:
        code, summary = synth("--mode", "caption-qa", "--input", str(shapes_dir), output=tmp_path / "o",
                              base_url=other.base_url, check=1)  # fmt: skip
    stdout, last = ending(capsys)
    assert_told_the_same(summary, stdout, last, code)
    assert last.startswith("failed: teacher answered 401 authentication failed") and f"(at {other.base_url})" in last
    assert summary["ended"] == "failed" and API_KEY not in last


def start_slow_run(images, out, base_url, *extra):
    command = [
        sys.executable, "-m", "dataset_scripts.synthesize", "--mode", "caption-qa", "--input", str(images),
        "--output", str(out), "--base-url", base_url, "--model", "gpt-4o", "--quiet", "--concurrency", "2", *extra,
    ]  # fmt: skip
    env = {"OPENAI_API_KEY": API_KEY, "PATH": os.environ.get("PATH", "")}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt_when(process, ready) -> tuple[str, str]:
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=60)


def test_ctrl_c_still_writes_the_summary(tmp_path):
    images = tmp_path / "images"
    world.write_scenes(images, 12, seed=5, size=112)
    out = tmp_path / "out"
    with OfflineTeacher(api_key=API_KEY, latency=0.3) as slow:
        process = start_slow_run(images, out, slow.base_url)
        stdout, stderr = interrupt_when(process, lambda: len(records(out)) >= 2)
    assert process.returncode == 3, stderr
    summary = json.loads((out / "summary-00000-of-00001.json").read_text())
    left = 12 - len(records(out))
    assert summary["ended"] == "interrupted" and summary["inputs_left"] == left > 0
    assert stderr.splitlines()[-1] == summary["outcome"] == json.loads(stdout)["outcome"]
    assert summary["outcome"].startswith(f"interrupted: {left} of 12 inputs left; finished records are kept; rerun")


def test_errors_before_the_run_go_through_the_toolkit_runner(synth, shapes_dir, tmp_path, monkeypatch, capsys):
    """toolkit.cli.run, as every tool: one `error:` (2) or `failed:` (1) line; LOGLEVEL=DEBUG adds the traceback."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    for level, traceback in (("", False), ("DEBUG", True)):
        monkeypatch.setenv("LOGLEVEL", level)
        synth("--mode", "caption-qa", "--input", str(bad), output=tmp_path / "o", check=2)
        err = capsys.readouterr().err
        assert err.splitlines()[-1].startswith(f"error: {bad}:1: not valid JSON") and ("Traceback" in err) == traceback
    monkeypatch.setenv("LOGLEVEL", "")
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    synth("--mode", "caption-qa", "--input", str(shapes_dir), output=blocker / "out", check=1)
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"failed: cannot write {blocker / 'out'}")
