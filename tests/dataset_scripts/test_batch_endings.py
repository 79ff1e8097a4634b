"""How a `--api batch` run ends, against the offline teacher's Batch API (recipes/tiny/offline_batches.py, which
follows OpenAI's documented files + batches API): validation failures, per-request errors, expiry, unknown batches,
the budget, Ctrl-C. Each case of docs/failure-behaviour.md's Batch API table is one test here."""

import json
import os
import signal
import subprocess
import sys
import time

from dataset_scripts.shards import iter_jsonl
from recipes.tiny.offline_teacher import OfflineTeacher
from tests.dataset_scripts.helpers_synthesis import API_KEY, REPO, records
from tests.dataset_scripts.test_batch_mode import BATCH, assert_nothing_paid_twice, store


def ending(capsys) -> tuple[dict, str, str]:
    """(the JSON line on stdout, the last line on stderr, all of stderr)."""
    captured = capsys.readouterr()
    return json.loads(captured.out.splitlines()[-1]), captured.err.splitlines()[-1], captured.err


def test_expired_batches_resubmit_only_the_unanswered_and_an_unfinished_run_says_stopped_early(
    teacher, shapes_dir, tmp_path, monkeypatch, capsys
):
    from dataset_scripts import synthesize

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    teacher.batches.expire = {0, 1}  # each answers its first half only
    out = tmp_path / "out"
    argv = ["--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "20", "--output", str(out)]
    argv += ["--base-url", teacher.base_url, "--max-retries", "1", *BATCH]
    assert synthesize.main(argv) == 3
    summary = json.loads((out / "summary-00000-of-00001.json").read_text())
    stdout, last, err = ending(capsys)
    assert len(records(out)) == summary["done"] == 15 and summary["inputs_left"] == 5
    assert summary["outcome"] == stdout["outcome"] == last and stdout["stopped"] == summary["stopped"] == "failures"
    assert last.startswith(f"stopped early: 5 of 20 inputs left: 5 failed at {teacher.base_url}; last: no answer ")
    assert "batch_expired" in last and last.endswith("rerun the same command to continue")
    assert sum(teacher.batches.submissions.values()) == 20 + 10  # only the unanswered went again (then given up)
    assert_nothing_paid_twice(teacher)
    bars = [line for line in err.replace("\r", "\n").splitlines() if "/20 [" in line]
    assert bars[-1].split("/20", 1)[0].rsplit(" ", 1)[-1] == "15" and "failed=5" in bars[-1]
    sent = summary["this_run"]["by_endpoint"][teacher.base_url]["sent"]
    assert sent == summary["this_run"]["batch"]["requests"] == 30


def test_a_cancelled_batch_is_sent_again(synth, teacher, shapes_dir, tmp_path):
    teacher.batches.cancel = {0}
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "6", *BATCH, output=out)
    assert summary["done"] == 6 and summary["this_run"]["batch"]["cancelled"] == 1
    assert set(teacher.batches.submissions.values()) == {2}
    assert_nothing_paid_twice(teacher)


def test_a_create_whose_answer_is_lost_is_found_not_repeated_and_failing_polls_stop_early(
    synth, teacher, shapes_dir, tmp_path, capsys
):
    teacher.batches.control_faults.update({"create_lost": 1})
    out = tmp_path / "out"
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "6", *BATCH]
    _, summary = synth(*args, output=out)
    assert summary["done"] == 6 and len(teacher.batches.batches) == 1  # one create reached the server, one batch
    assert set(teacher.batches.submissions.values()) == {1}
    assert teacher.batches.control_faults["create_lost"] == 0  # its answer was lost; the batch list found it
    teacher.batches.control_faults.update({"retrieve": 100})
    out = tmp_path / "polls"
    code, summary = synth(*args, "--max-retries", "1", output=out, check=3)
    _, last, _ = ending(capsys)
    assert last.startswith(
        f"stopped early: 6 of 6 inputs left: the batch API at {teacher.base_url} failed (batch API:"
    )
    assert "a rerun polls the same batches" in last and summary["this_run"]["api_retries"] == {"http_500": 1}
    teacher.batches.control_faults.clear()
    _, summary = synth(*args, output=out)
    assert summary["done"] == 6 and len(teacher.batches.batches) == 2  # the rerun polled the batch it had made
    assert set(teacher.batches.billed.values()) == {2}  # the same six requests, once for each output folder


def test_a_batch_that_fails_validation_is_told_once_and_never_resubmitted(
    synth, teacher, shapes_dir, tmp_path, capsys
):
    teacher.batches.validation_error = {
        "code": "model_not_found",
        "message": "The model `gpt-4o` does not exist or you do not have access to it.",
        "param": "body.model",
        "line": 1,
    }
    out = tmp_path / "out"
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), *BATCH]
    code, summary = synth(*args, output=out, check=1)
    stdout, last, _ = ending(capsys)
    assert len(teacher.batches.batches) == 1 and len(teacher.batches.files) == 1  # one upload, one create
    assert summary["ended"] == "failed" and summary["outcome"] == stdout["outcome"] == last
    assert last.startswith("failed: batch batch-") and "failed validation: model_not_found: The model `gpt-4o`" in last
    assert "(line 1)" in last and f"(at {teacher.base_url}); 24 of 24 inputs left" in last and "--input" not in last
    teacher.batches.validation_error = None  # fixed: a rerun submits the inputs again and finishes
    _, summary = synth(*args, output=out)
    assert summary["done"] == 24 and len(teacher.batches.batches) == 2


def test_per_request_4xx_become_rejects_with_the_reason_and_5xx_are_retried(
    synth, teacher, shapes_dir, tmp_path, capsys
):
    refused, failed_once = set(), set()

    def line_status(line: dict) -> tuple[int, str] | None:
        key = line["custom_id"].split(".")[0]
        if int(key, 16) % 4 == 0:
            refused.add(key)
            return 400, f"Invalid image. (key {API_KEY})"
        if int(key, 16) % 4 == 1 and teacher.batches.submissions[line["custom_id"]] == 1:
            failed_once.add(key)
            return 500, "The server had an error."
        return None

    teacher.batches.line_status = line_status
    out = tmp_path / "out"
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), *BATCH]
    _, summary = synth(*args, output=out)
    rejects = records(out, "rejects")
    assert refused and failed_once and {row["key"] for row in rejects} == refused
    assert summary["rejected"] == {"http_400": len(refused)} and summary["done"] == 24 - len(refused)
    assert all(row["detail"] == "HTTP 400: Invalid image. (key ***)" for row in rejects)
    assert all(teacher.batches.submissions[f"{key}.0.0"] == 1 for key in refused)  # a 400 is not sent again
    assert all(teacher.batches.submissions[f"{key}.0.0"] == 2 for key in failed_once)
    assert summary["ended"] == "finished" and API_KEY not in (out / "rejects-00000-of-00001.jsonl").read_text()
    teacher.batches.line_status = None
    _, summary = synth(*args, "--retry-rejects", output=out)
    assert summary["done"] == 24 and summary["rejected"] == {}


def test_cost_agrees_everywhere_including_inputs_given_up_between_rounds(synth, teacher, shapes_dir, tmp_path, capsys):
    """Two-call: every caption is billed; half the question-answer requests expire and are given up."""
    teacher.batches.expire = {1}
    out = tmp_path / "out"
    args = ["--mode", "caption-qa", "--strategy", "two-call", "--input", str(shapes_dir), "--limit", "20", *BATCH]
    _, first = synth(*args, "--max-retries", "0", output=out, check=3)
    stdout, _, _ = ending(capsys)
    assert first["done"] == 10 and first["inputs_left"] == 10
    assert first["cost_usd"] == first["this_run"]["cost_usd"] > 0 and stdout["cost_this_run"] == first["cost_usd"]
    assert stdout["cost"] == first["cost"] and first["by_subset"]["(inputs not finished)"]["requests"] == 10
    teacher.batches.expire = set()
    _, second = synth(*args, output=out)
    assert second["done"] == 20
    both = first["this_run"]["cost_usd"] + second["this_run"]["cost_usd"]
    assert abs(second["cost_usd"] - both) < 1e-5 and "(inputs not finished)" not in second["by_subset"]


def test_the_budget_keeps_submitting_as_batches_settle_and_gives_one_hint(
    synth, teacher, shapes_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    prices = ["--price-input", "1000", "--price-output", "1000", "--max-tokens", "300"]
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), *prices, *BATCH]
    _, summary = synth(*args, "--max-cost", "5", output=out, check=3)
    _, last, _ = ending(capsys)
    # A request reserves its worst case (as in chat mode); what a settled batch did not use is spent on the next one
    assert 0.6 * 5 < summary["cost_usd"] <= 5 and summary["this_run"]["batch"]["batches"] > 2
    assert last.startswith(f"stopped early: {24 - summary['done']} of 24 inputs left: --max-cost 5.0 reached")
    assert last.endswith("; rerun with a higher --max-cost to continue") and last.count("rerun") == 1


def start(images, out, base_url):
    command = [
        sys.executable, "-m", "dataset_scripts.synthesize", "--mode", "caption-qa", "--input", str(images),
        "--output", str(out), "--base-url", base_url, "--quiet", *BATCH,
    ]  # fmt: skip
    env = {"OPENAI_API_KEY": API_KEY, "PATH": os.environ.get("PATH", "")}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_writes_the_summary_and_a_batch_unknown_to_the_endpoint_is_named(teacher, shapes_dir, tmp_path):
    teacher.batches.seconds = 60
    out = tmp_path / "out"
    process = start(shapes_dir, out, teacher.base_url)
    deadline = time.monotonic() + 60
    while (
        process.poll() is None and time.monotonic() < deadline and not any(r["event"] == "created" for r in store(out))
    ):
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr
    summary = json.loads((out / "summary-00000-of-00001.json").read_text())
    assert summary["ended"] == "interrupted" and stderr.splitlines()[-1] == summary["outcome"]
    assert summary["outcome"].startswith("interrupted: 24 of 24 inputs left; finished records are kept; rerun")
    with OfflineTeacher(api_key=API_KEY) as other:  # another endpoint (or project) over the same folder
        process = start(shapes_dir, out, other.base_url)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1 and len(stderr.strip().splitlines()) == 2  # the summary's path, then the ending
    last = stderr.splitlines()[-1]
    assert (
        last.startswith("failed: batch batch-") and "batches-00000-of-00001.jsonl is unknown to this endpoint" in last
    )
    assert "No such batch" in last and "another --base-url" in last and "Traceback" not in stderr
    teacher.batches.seconds = 0
    process = start(shapes_dir, out, teacher.base_url)
    assert process.wait(timeout=120) == 0
    assert len(records(out)) == 24
    assert_nothing_paid_twice(teacher)


def test_an_upload_that_never_became_a_batch_is_looked_up_once(synth, teacher, shapes_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    row = {"event": "uploaded", "file_id": "file-never-batched", "custom_ids": ["0" * 32 + ".0.0"]}
    (out / "batches-00000-of-00001.jsonl").write_text(json.dumps(row) + "\n")
    args = ["--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "4", *BATCH]
    _, summary = synth(*args, output=out)
    assert summary["done"] == 4 and teacher.batches.list_pages == 1
    assert {"event": "never_created", "file_id": "file-never-batched"} in store(out)
    synth(*args, output=out)
    synth(*args, output=out)
    assert teacher.batches.list_pages == 1  # the answer was written down: no rerun pages through the list again
    assert len(list(iter_jsonl(out / "records-00000-of-00001.jsonl"))) == 4
