import asyncio
import gc
import json
import random
import shutil
import socket
import subprocess
import sys

import pytest

from dataset_scripts import event_loop, runner, thread_batches
from dataset_scripts.synthesize import main
from recipes.tiny import shapes_world as world
from recipes.tiny.offline_teacher import OfflineTeacher
from tests.dataset_scripts.helpers_synthesis import API_KEY, REPO, records, scene_of_record


def check_caption_qa_record(output, record, with_caption=True):
    scene = scene_of_record(output, record)
    if with_caption:
        assert record["description"] == world.describe(scene)
        assert record["caption_request"]
    else:
        assert record["description"] is None and record["caption_request"] is None
    qtype = world.question_type(record["question"])
    assert world.match_keyword(record["answer"], qtype) == world.answer_keyword(scene, qtype)
    assert len(record["candidates"]) == 5


@pytest.mark.parametrize("strategy", ["one-call", "two-call", "direct"])
def test_caption_qa_strategies(synth, shapes_dir, tmp_path, strategy):
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--strategy", strategy, "--input", str(shapes_dir), output=out)
    rows = records(out)
    assert summary["done"] == len(rows) == 24 and summary["stopped"] is None
    assert summary["requests"] == 24 * (2 if strategy == "two-call" else 1)
    for record in rows:
        check_caption_qa_record(out, record, with_caption=strategy != "direct")
        assert record["prompt_version"] == "v1" and len(record["prompt_hash"]) == 16
        assert record["teacher_model"] == "teacher-x" and record["source"] == "laion"
        assert record["usage"]["prompt_tokens"] > 0 and record["sampling"]["max_tokens"] == 2048
    assert len({record["prompt_hash"] for record in rows}) == 1
    assert set(summary["prompts"]) >= {"caption_qa", "caption", "qa_from_caption", "qa_direct"} & set(
        summary["prompts"]
    )


def test_each_answered_request_paces_the_runs_event_loop(synth, shapes_dir, tmp_path, monkeypatch):
    reported: list[float] = []
    observe = event_loop.PacedLoop.observe

    def recording(self, seconds):
        reported.append(seconds)
        observe(self, seconds)

    monkeypatch.setattr(event_loop.PacedLoop, "observe", recording)
    _, summary = synth("--mode", "caption-qa", "--input", str(shapes_dir), output=tmp_path / "out")
    assert len(reported) == summary["requests"] == 24 and all(seconds > 0 for seconds in reported)


def test_vflan_mode(synth, shapes_dir, tmp_path):
    rng = random.Random(0)
    manifest = tmp_path / "vflan.jsonl"
    with manifest.open("w") as handle:
        for path in sorted(shapes_dir.glob("*.png"))[:10]:
            question = world.QUESTIONS[rng.choice(world.QUESTION_TYPES)]
            handle.write(json.dumps({"image": path.name, "question": question}) + "\n")
    shutil.copytree(shapes_dir, tmp_path, dirs_exist_ok=True)
    out = tmp_path / "out"
    _, summary = synth("--mode", "vflan", "--input", str(manifest), "--source-name", "shapes", output=out)
    assert summary["done"] == 10
    for record in records(out):
        scene = scene_of_record(out, record)
        qtype = world.question_type(record["question"])
        assert record["instruction"] == record["question"] and record["source"] == "shapes"
        assert world.match_keyword(record["answer"], qtype) == world.answer_keyword(scene, qtype)
        assert record["description"] == world.describe(scene)


def test_text_mode_with_a_named_key_variable(synth, tmp_path, monkeypatch):
    rng = random.Random(1)
    pairs = dict(world.text_instruction(rng) for _ in range(12))
    (tmp_path / "instructions.txt").write_text("\n".join([*pairs, "Explain why the sky is blue."]) + "\n")
    out = tmp_path / "out"
    monkeypatch.setenv("MY_TEACHER_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "not-this-one")
    _, summary = synth(
        "--mode", "text", "--input", str(tmp_path / "instructions.txt"), "--api-key-env", "MY_TEACHER_KEY", output=out
    )
    rows = records(out)
    assert summary["done"] == len(pairs) + 1 == len(rows)
    for record in rows:
        assert record["image"] is None and record["source"] == "evol"
        if record["question"] in pairs:
            assert record["answer"] == pairs[record["question"]]


def test_identical_images_are_synthesised_once(synth, shapes_dir, tmp_path):
    folder = tmp_path / "imgs"
    shutil.copytree(shapes_dir, folder)
    first = sorted(folder.glob("*.png"))[0]
    shutil.copy(first, folder / "copy-a.png")
    shutil.copy(first, folder / "sub" / "copy-b.png") if (folder / "sub").mkdir() is None else None
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--input", str(folder), output=out)
    assert summary["done"] == 24 and summary["skipped"] == {"duplicate": 2}
    assert len({r["key"] for r in records(out)}) == 24


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        ({"rate_limit": 0.3}, "rate_limit"),
        ({"server_error": 0.3}, "http_500"),
        ({"timeout": 0.15}, "timeout"),
        ({"drop": 0.3}, "connection"),
        ({"slow": 0.3}, None),
        ({"html": 0.3}, "invalid_response"),
        ({"not_json": 0.3}, "invalid_response"),
        ({"not_utf8": 0.3}, "invalid_response"),
        ({"trickle": 0.15}, "timeout"),  # a byte every 50 ms: the 0.5 s deadline covers the whole request
    ],
)
def test_transient_faults_are_retried_to_completion(synth, teacher, shapes_dir, tmp_path, faults, kind):
    teacher.set_faults(faults)
    teacher.hang_seconds = 1.5
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--input", str(shapes_dir), "--timeout", "0.5", output=out)
    assert summary["done"] == 24 and summary["this_run"]["failed"] == {}
    retries = summary["this_run"]["api_retries"]
    if kind is None:
        assert retries == {} and teacher.stats["slow"] > 0
    else:
        assert retries.get(kind, 0) + retries.get("http_503", 0) > 0
    if kind == "rate_limit":
        assert summary["this_run"]["retry_after_honoured"] == retries["rate_limit"]
        assert summary["this_run"]["backoff_seconds"] >= 0.05 * retries["rate_limit"]


@pytest.mark.parametrize("fault", ["malformed", "refusal", "leak"])
def test_bad_replies_are_retried_then_rejected(synth, teacher, shapes_dir, tmp_path, fault):
    teacher.set_faults({fault: 1.0})
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "4", output=out)
    rejects = records(out, "rejects")
    assert summary["done"] == 0 and sum(summary["rejected"].values()) == 4 == len(rejects)
    assert all(r["raw"] and r["reason"] for r in rejects) and teacher.stats["requests"] == 4 * 3
    assert sum(summary["this_run"]["parse_retries"].values()) == 12
    # One request at a time: which scene draws which of the teacher's seeded faults no longer depends on thread timing
    # (at 30% a scene concurrently handed three faulty draws in a row was rejected again, now and then).
    teacher.set_faults({fault: 0.3})
    retry = ["--retry-rejects", "--concurrency", "1"]
    _, summary = synth("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "4", *retry, output=out)
    assert summary["done"] == 4 and summary["rejected"] == {}
    assert sum(summary["this_run"]["parse_retries"].values()) > 0  # the faults were met, and retried


def test_bodies_that_are_no_chat_completion_end_as_rejects_with_the_reason(synth, teacher, shapes_dir, tmp_path):
    teacher.set_faults({"html": 1.0})
    out = tmp_path / "out"
    args = ("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "3", "--max-retries", "1")
    _, summary = synth(*args, output=out)
    rejects = records(out, "rejects")
    assert summary["rejected"] == {"invalid_response": 3} and summary["this_run"]["failed"] == {}
    assert all("text/html" in row["detail"] for row in rejects) and teacher.stats["requests"] == 3 * 2
    teacher.set_faults({})
    _, summary = synth(*args, "--retry-rejects", output=out)
    assert summary["done"] == 3 and summary["rejected"] == {}


def test_runaway_replies_are_rejected_and_never_stored_whole(synth, teacher, shapes_dir, tmp_path):
    teacher.set_faults({"huge": 1.0})
    teacher.huge_chars = 20_000  # small enough to arrive, 4x the cap of --max-tokens 300
    out = tmp_path / "out"
    args = ("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "2", "--max-tokens", "300")
    _, summary = synth(*args, output=out)
    assert summary["done"] == 0 and summary["rejected"] == {"too_long": 2}
    assert all(len(row["raw"]) <= 300 * 16 for row in records(out, "rejects"))


def test_budget_holds_when_the_teacher_bills_more_than_estimated(synth, teacher, shapes_dir, tmp_path):
    teacher.billing_factor = 10  # prompt tokens billed ~6x the client's estimate
    teacher.latency = 0.02
    prices = ["--price-input", "1000", "--price-output", "1000", "--max-tokens", "300", "--concurrency", "4"]
    out = tmp_path / "out"
    code, summary = synth(
        "--mode", "caption-qa", "--input", str(shapes_dir), *prices, "--max-cost", "60", output=out, check=3
    )
    one_request = max(record["usage"]["cost_usd"] for record in records(out))
    assert summary["stopped"] == "budget" and 4 * one_request < 60  # the first wave alone cannot reach the cap
    assert summary["cost_usd"] <= 60


def test_budget_stops_cleanly_and_resumes(synth, teacher, shapes_dir, tmp_path):
    teacher.latency = 0.02
    out = tmp_path / "out"
    prices = ["--price-input", "1000", "--price-output", "1000", "--max-tokens", "300", "--concurrency", "4"]
    code, summary = synth(
        "--mode", "caption-qa", "--input", str(shapes_dir), *prices, "--max-cost", "5", output=out, check=3
    )
    assert summary["stopped"] == "budget" and 0 < summary["done"] < 24
    assert summary["cost_usd"] <= 5.0
    code, summary = synth("--mode", "caption-qa", "--input", str(shapes_dir), *prices, "--max-cost", "100", output=out)
    assert summary["done"] == 24 and summary["this_run"]["resumed"] > 0 and summary["cost_usd"] <= 100
    assert len(records(out)) == 24


def test_max_cost_needs_a_price(synth, shapes_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        synth("--mode", "caption-qa", "--input", str(shapes_dir), "--max-cost", "1", output=tmp_path / "o")
    assert "--price-input" in capsys.readouterr().err


def test_401_stops_at_once_and_never_prints_the_key(synth, shapes_dir, tmp_path, monkeypatch, capsys):
    with OfflineTeacher(api_key="the-real-key") as other:
        out = tmp_path / "out"
        code, summary = synth(
            "--mode", "caption-qa", "--input", str(shapes_dir), "--concurrency", "4",
            output=out, base_url=other.base_url, check=1,
        )  # fmt: skip
        assert other.stats["requests"] <= 4
    captured = capsys.readouterr()
    assert "401" in captured.err and "authentication" in captured.err
    assert summary["stopped"] == "fatal" and summary["done"] == 0
    assert_no_key(out, captured)


def test_400_stops_at_once(synth, teacher, shapes_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, summary = synth(
        "--mode", "caption-qa", "--input", str(shapes_dir), "--max-side", "64", output=out, check=1
    )  # downscaled copies lose the scene metadata: the teacher answers 400
    assert "400" in capsys.readouterr().err and teacher.stats["requests"] <= 16


def assert_no_key(out, captured=None):
    texts = [path.read_bytes() for path in out.rglob("*") if path.is_file()]
    if captured is not None:
        texts += [captured.out.encode(), captured.err.encode()]
    assert texts and not any(API_KEY.encode() in text for text in texts)


def test_key_never_lands_in_outputs(synth, teacher, shapes_dir, tmp_path, capsys):
    teacher.set_faults({"rate_limit": 0.2, "server_error": 0.1, "refusal": 0.1, "drop": 0.1})
    out = tmp_path / "out"
    synth("--mode", "caption-qa", "--input", str(shapes_dir), output=out, check=None)
    assert_no_key(out, capsys.readouterr())


def test_bad_images_are_skipped_and_counted(synth, shapes_dir, tmp_path):
    folder = tmp_path / "imgs"
    shutil.copytree(shapes_dir, folder)
    good = sorted(folder.glob("*.png"))
    (folder / "garbage.png").write_bytes(b"no image here")
    (folder / "cut.png").write_bytes(good[0].read_bytes()[:300])
    world.save_png(world.random_scene(random.Random(0)), folder / "big.png", size=200)
    manifest = tmp_path / "m.jsonl"
    rows = [{"image": str(p)} for p in good[:3]] + [
        {"image": str(folder / "garbage.png")},
        {"image": str(folder / "cut.png")},
        {"image": str(folder / "big.png")},
        {"image": str(folder / "missing.png")},
        {"image": "http://127.0.0.1:9/unreachable.png"},
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    args = ("--mode", "caption-qa", "--input", str(manifest), "--fetch-timeout", "2", "--max-pixels", "20000",
            "--allow-private-urls")  # fmt: skip
    _, summary = synth(*args, output=out)
    assert summary["done"] == 3
    assert summary["skipped"] == {"unreadable": 1, "truncated": 1, "missing": 1, "unreachable": 1, "oversized": 1}
    skipped = records(out, "skipped")
    assert {row["reason"] for row in skipped} == set(summary["skipped"]) and all(row["detail"] for row in skipped)
    _, again = synth(*args, output=out)
    assert again["this_run"]["resumed"] == 3 and again["skipped"] == summary["skipped"]
    assert len(records(out, "skipped")) == 5  # a rerun does not repeat skip lines


def test_bad_arguments_and_inputs_exit_2(synth, tmp_path, capsys, monkeypatch):
    (tmp_path / "bad.jsonl").write_text("{nope\n")
    code, _ = synth("--mode", "caption-qa", "--input", str(tmp_path / "bad.jsonl"), output=tmp_path / "o", check=2)
    assert "bad.jsonl:1: not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synth("--mode", "text", "--strategy", "two-call", "--input", "x", output=tmp_path / "o")
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(SystemExit):
        main(["--mode", "text", "--input", "x", "--output", str(tmp_path), "--model", "m"])
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_shards_partition_the_work(synth, shapes_dir, tmp_path):
    out = tmp_path / "merged"
    total = []
    for index in range(3):
        _, summary = synth(
            "--mode", "caption-qa", "--input", str(shapes_dir), "--num-shards", "3", "--shard-index", str(index),
            output=out,
        )  # fmt: skip
        total.append(summary["done"])
    keys = [record["key"] for record in records(out)]
    assert sum(total) == 24 == len(keys) == len(set(keys)) and all(total)
    single = tmp_path / "single"
    synth("--mode", "caption-qa", "--input", str(shapes_dir), output=single)
    assert sorted(keys) == sorted(record["key"] for record in records(single))


def test_rate_limits_are_accepted(synth, shapes_dir, tmp_path):
    _, summary = synth(
        "--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "6", "--rpm", "6000", "--tpm", "10000000",
        output=tmp_path / "out",
    )  # fmt: skip
    assert summary["done"] == 6


@pytest.mark.parametrize("form", [["dataset_scripts/synthesize.py"], ["-m", "dataset_scripts.synthesize"]])
def test_cli_forms_run_64_images(tmp_path, form):
    images = tmp_path / "imgs"
    world.write_scenes(images, 64, seed=3)
    with OfflineTeacher(api_key=API_KEY) as teacher:
        result = subprocess.run(
            [sys.executable, *form, "--mode", "caption-qa", "--input", str(images), "--output", str(tmp_path / "out"),
             "--base-url", teacher.base_url, "--model", "m", "--concurrency", "8", "--source-name", "shapes"],
            cwd=REPO, capture_output=True, text=True, timeout=120, env={"OPENAI_API_KEY": API_KEY, "PATH": ""},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["done"] == 64
    assert API_KEY not in result.stdout + result.stderr


def test_hf_dataset_input(synth, shapes_dir, tmp_path):
    import datasets

    paths = sorted(shapes_dir.glob("*.png"))[:4]
    table = datasets.Dataset.from_dict(
        {"picture": [{"bytes": p.read_bytes(), "path": None} for p in paths], "caption": ["alt"] * 4},
        features=datasets.Features({"picture": datasets.Image(), "caption": datasets.Value("string")}),
    )
    (tmp_path / "hf").mkdir()
    table.to_parquet(str(tmp_path / "hf" / "train.parquet"))
    out = tmp_path / "out"
    _, summary = synth("--mode", "caption-qa", "--input", f"hf:{tmp_path / 'hf'}:train", output=out)
    assert summary["done"] == 4
    assert {r["original_caption"] for r in records(out)} == {"alt"}
    assert all(r["origin"].startswith("hf:") for r in records(out))


def test_a_run_that_keeps_nothing_fails_with_the_reasons(synth, shapes_dir, tmp_path, capsys):
    """Empty results are failures: every input skipped is bad input (exit 2), with the reasons counted."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"image": str(tmp_path / f"missing{i}.png")}) + "\n" for i in range(3)))
    _, summary = synth("--mode", "caption-qa", "--input", str(manifest), output=tmp_path / "skipped", check=2)
    assert summary["done"] == 0 and summary["skipped"] == {"missing": 3}
    err = capsys.readouterr().err
    assert "error: no records: every input was skipped" in err and "'missing': 3" in err


def test_the_summary_says_how_the_run_ended_and_names_an_unreachable_teacher(synth, shapes_dir, tmp_path, capsys):
    _, summary = synth("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "2", output=tmp_path / "ok")
    assert summary["stopped"] is None and summary["outcome"].startswith("finished")
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://user:pw@127.0.0.1:{port}/v1?key=secret"
    args = ("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "3", "--max-retries", "0")
    _, summary = synth(*args, "--max-consecutive-failures", "2", output=tmp_path / "down", base_url=url, check=3)
    assert summary["stopped"] == "failures" and summary["outcome"].startswith("stopped early: 3 of 3 inputs left: ")
    assert f"at http://127.0.0.1:{port}/v1;" in summary["message"] and summary["message"] in summary["outcome"]
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == summary["outcome"]
    text = json.dumps(summary) + err
    assert "pw" not in text and "secret" not in text


def test_a_run_spends_little_per_input_outside_the_request(synth, shapes_dir, tmp_path, monkeypatch):
    """Image reads and record writes go to threads in batches (a hop carries many), start-up objects are frozen."""
    hops, frozen = [], []
    to_thread, run = asyncio.to_thread, runner.Synthesis.run

    async def counted(function, *args, **kwargs):
        hops.append((function.__name__, len(args[0])))
        return await to_thread(function, *args, **kwargs)

    async def watched(self):
        frozen.append(gc.get_freeze_count())
        return await run(self)

    monkeypatch.setattr(thread_batches.asyncio, "to_thread", counted)
    monkeypatch.setattr(runner.Synthesis, "run", watched)
    args = ("--mode", "caption-qa", "--input", str(shapes_dir), "--limit", "5", "--concurrency", "64")
    _, summary = synth(*args, output=tmp_path / "out")
    reads = [size for name, size in hops if name == "_read_images"]
    writes = [size for name, size in hops if name == "_write_rows"]
    assert summary["done"] == 5 and reads == [5]  # the five workers ask at once: one hop reads all five images
    assert sum(writes) == 5 and len(hops) == 1 + len(writes)
    assert frozen[0] > 0 and gc.get_freeze_count() == 0
