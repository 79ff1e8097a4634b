"""recipes/eval_benchmarks.py end to end, in-process: tiny random model, fixture datasets, loopback judge.

The tiny model's answers are noise, so these tests prove the pipeline (loading, prompting, batching, caching,
judging, scoring, reporting), not accuracy; scoring itself is pinned by scripted answers and the unit tests.
"""

import hashlib
import json
from pathlib import Path

import pytest

from recipes import eval_benchmarks
from recipes.benchmarks.common import PROMPTS_DIR
from recipes.benchmarks.judge import model_is_first
from recipes.benchmarks.paper import paper_scores
from tests.recipes import benchmark_fixtures, benchmark_rows_choice
from tests.recipes.fake_judge import FakeJudge, prompt_text
from tests.recipes.sharded import free_port


SECRET = "sk-test-DO-NOT-LEAK-42"
ENTRY_KEYS = {
    "metric",
    "limit",
    "value",
    "dataset_id",
    "dataset_revision",
    "dataset_config",
    "dataset_source",
    "dataset_fingerprint",
    "split",
    "prompt_variant",
    "prompt_variant_description",
    "judge",
    "judge_failures",
    "num_samples",
    "max_new_tokens",
    "details",
    "unconfirmed",
    "paper_column",
    "paper",
}
UNCONFIRMED = {"vicuna80", "touchstone", "mllm_bench"}
EXPECTED_SAMPLES = {
    "vicuna80": 3,
    "gqa": 3,
    "hallusionbench": 3,
    "mme_perception": 4,
    "mmvp": 4,
    "touchstone": 2,
    "textvqa": 2,
    "mme_cognition": 4,
    "mathvista": 2,
    "mmvet": 2,
    "mmmu_val": 2,
    "scienceqa_img": 2,
    "llava_w": 2,
    "mllm_bench": 2,
    "mmbench_en": 6,
    "mmbench_cn": 6,
    "seed_bench": 2,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    return {
        "model": benchmark_fixtures.save_tiny_model(root / "model"),
        "data": benchmark_fixtures.write_all(root / "data"),
    }


@pytest.fixture(autouse=True)
def judge_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


def run(workspace, output: Path, names: list[str], *extra: str, judge: FakeJudge | None = None) -> dict:
    argv = [*benchmark_fixtures.evaluator_args(workspace, output, names, 4, judge), *extra]
    assert eval_benchmarks.main(argv) == 0
    return json.loads((output / "results.json").read_text())


def error_lines(capsys) -> list[str]:
    """The `error:` lines on stderr (tqdm's progress bars share it)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_all_seventeen_benchmarks(workspace, tmp_path):
    with FakeJudge() as judge:
        results = run(workspace, tmp_path, list(eval_benchmarks.BENCHMARKS), "--batch-size", "3", judge=judge)

    assert set(results) == {"model", "benchmarks", "versions", "generation", "stopped"}
    assert results["stopped"] is None
    assert results["model"] == str(workspace["model"])
    assert list(results["benchmarks"]) == list(eval_benchmarks.BENCHMARKS)
    assert results["versions"]["transformers"] and results["versions"]["evaluate"]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    markdown = (tmp_path / "results.md").read_text()
    for name, entry in results["benchmarks"].items():
        benchmark = eval_benchmarks.BENCHMARKS[name]
        assert set(entry) == ENTRY_KEYS, name
        assert entry["num_samples"] == EXPECTED_SAMPLES[name], name
        assert entry["paper"] == paper_scores(benchmark.paper_column)
        assert bool(entry["unconfirmed"]) == (name in UNCONFIRMED), name
        assert entry["prompt_variant"] == benchmark.default_variant
        assert entry["dataset_id"] == str(workspace["data"][name].resolve())
        assert entry["dataset_source"] == "local" and entry["dataset_revision"] is None
        assert f"| {name} | {entry['metric']} |" in markdown
        samples = read_jsonl(tmp_path / "samples" / f"{name}.jsonl")
        assert len(samples) == entry["num_samples"]
        for sample in samples:
            assert {"id", "prompt", "raw_answer", "parsed_answer", "score", "target"} <= set(sample)
            assert ("<image>" in sample["prompt"]) == (name != "vicuna80")
        if benchmark.kind == "judged":
            template_hash = hashlib.sha256((PROMPTS_DIR / benchmark.judge.prompt).read_bytes()).hexdigest()[:16]
            assert entry["judge"] == {"model": "fake-judge", "temperature": 0.0, "prompt_hash": template_hash}
            assert entry["judge_failures"] == 0
        else:
            # Rule-scored benchmarks run the GPT step of their official protocol when a judge is given.
            step = benchmark.judge_step
            if step:
                template_hash = hashlib.sha256((PROMPTS_DIR / step.prompt).read_bytes()).hexdigest()[:16]
            expected = {"model": "fake-judge", "temperature": 0.0, "prompt_hash": template_hash} if step else None
            assert entry["judge"] == expected, name
            for sample in samples:
                if "judge" not in sample:  # else the judge's verdict decided the parsed answer
                    assert sample["parsed_answer"] == benchmark.parse_answer(sample["target"], sample["raw_answer"])
                assert 0.0 <= sample["score"] <= 1.0
    # The judge's fixed replies give known scores: grade 0.4; scores "8 6" (reference 8, answer 6); "[[A]]".
    benchmarks = results["benchmarks"]
    assert benchmarks["mmvet"]["value"] == pytest.approx(40.0)
    assert benchmarks["llava_w"]["value"] == pytest.approx(75.0)
    assert benchmarks["touchstone"]["value"] == pytest.approx(600.0)
    for name, ids in {"vicuna80": ["1", "2", "3"], "mllm_bench": ["1", "2"]}.items():
        expected = 100 * sum(model_is_first(i) for i in ids) / len(ids)
        assert benchmarks[name]["value"] == pytest.approx(expected), name
    assert "648" not in markdown and "1316.2" in markdown  # paper numbers, not ours, in the paper columns
    # The judge got the key, the right prompts and (for the vision judge only) the image; outputs never hold the key.
    step_paths = {"gpt_matched", "gpt_extracted", "gpt_graded"}
    step_calls = sum(
        count
        for entry in benchmarks.values()
        for path, count in entry["details"].get("scoring_paths", {}).items()
        if path in step_paths
    )
    assert step_calls >= 3 + 4  # HallusionBench and MMVP grade every answer
    assert len(judge.requests) == 3 + 2 + 2 + 2 + 2 + step_calls
    assert {headers["authorization"] for headers in judge.headers} == {f"Bearer {SECRET}"}
    with_images = [r for r in judge.requests if not isinstance(r["messages"][0]["content"], str)]
    assert len(with_images) == 2
    assert with_images[0]["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="ignore"), path


def _scripted(answers: dict):
    """A stand-in for generation that answers from a table keyed by sample id."""

    def generate(model, processor, samples, max_new_tokens):
        return [answers[sample.id] for sample in samples]

    return generate


def test_scores_from_scripted_answers(workspace, tmp_path, monkeypatch):
    answers = {
        # GQA: 1 of 3 right (exact match after lower-casing and dropping a trailing period: "the box" is not "box").
        "201307251": "Red.",
        "201640614": "yes",
        "20968078": "the box",
        # TextVQA: the 3-annotator answer scores 0.9, the unanimous one 1.0.
        "34602": "nous les gosses",
        "34603": "Copenhagen",
        # MMBench: question 0 right in all four rotations, question 1 wrong in its second.
        "0/shift0": "A",
        "0/shift1": "red",
        "0/shift2": "C",
        "0/shift3": "The answer is B",
        "1/shift0": "B",
        "1/shift1": "B",
    }
    monkeypatch.setattr(eval_benchmarks, "generate", _scripted(answers))
    results = run(workspace, tmp_path, ["gqa", "textvqa", "mmbench_en"])
    assert results["benchmarks"]["gqa"]["value"] == pytest.approx(100 * 1 / 3)
    assert results["benchmarks"]["textvqa"]["value"] == pytest.approx(95.0)
    assert results["benchmarks"]["mmbench_en"]["value"] == pytest.approx(50.0)
    assert results["benchmarks"]["mmbench_en"]["details"]["single_pass_accuracy"] == pytest.approx(100.0)
    prompts = {s["id"]: s["prompt"] for s in read_jsonl(tmp_path / "samples" / "textvqa.jsonl")}
    assert "Reference OCR token: dakota, digital, nous" in prompts["34602"]

    other = tmp_path / "no_ocr"
    results = run(workspace, other, ["textvqa"], "--prompt-variant", "textvqa=no_ocr")
    assert results["benchmarks"]["textvqa"]["prompt_variant"] == "no_ocr"
    assert all("OCR" not in s["prompt"] for s in read_jsonl(other / "samples" / "textvqa.jsonl"))


def test_resume_after_a_crash_recomputes_nothing_finished(workspace, tmp_path, monkeypatch):
    names = ["gqa", "mmbench_en"]
    real_generate = eval_benchmarks.generate
    clean = run(workspace, tmp_path / "clean", names, "--batch-size", "1")

    calls = []

    def crashing(model, processor, samples, max_new_tokens):
        if len(calls) == 5:  # 3 GQA samples and 2 MMBench samples are done
            raise RuntimeError("simulated crash")
        calls.append([s.id for s in samples])
        return real_generate(model, processor, samples, max_new_tokens)

    monkeypatch.setattr(eval_benchmarks, "generate", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(workspace, tmp_path / "crashed", names, "--batch-size", "1")
    assert json.loads((tmp_path / "crashed" / "results.json").read_text())["benchmarks"].keys() == {"gqa"}

    calls.clear()
    monkeypatch.setattr(
        eval_benchmarks, "generate", lambda *args: calls.append([s.id for s in args[2]]) or real_generate(*args)
    )
    resumed = run(workspace, tmp_path / "crashed", names, "--batch-size", "1")
    assert calls == [["0/shift2"], ["0/shift3"], ["1/shift0"], ["1/shift1"]]
    for name in names:
        assert resumed["benchmarks"][name]["value"] == clean["benchmarks"][name]["value"]
        assert read_jsonl(tmp_path / "crashed" / "samples" / f"{name}.jsonl") == read_jsonl(
            tmp_path / "clean" / "samples" / f"{name}.jsonl"
        )


def test_judge_errors_and_unparsable_replies_are_counted_then_rejudged_on_resume(workspace, tmp_path, monkeypatch):
    seen = set()

    def flaky(request, call_number):
        text = prompt_text(request)
        if text not in seen:  # the first try of every prompt fails; the client retries it
            seen.add(text)
            return 503, "overloaded"
        if "What colour is the box?" in text:
            return "Looks fine to me."  # never a number: unparsable every time
        return "0.4"

    with FakeJudge(flaky) as judge:
        results = run(workspace, tmp_path, ["mmvet"], "--judge-retries", "2", judge=judge)
    entry = results["benchmarks"]["mmvet"]
    assert entry["judge_failures"] == 1
    assert entry["value"] == pytest.approx(40.0)  # over the one judged sample
    failed = [s for s in read_jsonl(tmp_path / "samples" / "mmvet.jsonl") if s["judge"]["error"]]
    assert [s["id"] for s in failed] == ["v1_1"] and failed[0]["score"] is None
    assert failed[0]["judge"]["attempts"] == 3 and "unparsable" in failed[0]["judge"]["error"]
    assert "1 failed" in (tmp_path / "results.md").read_text()

    generated = []
    monkeypatch.setattr(eval_benchmarks, "generate", lambda *args: generated.append(args[2]) or [])
    with FakeJudge(lambda request, n: "1.0") as judge:
        results = run(workspace, tmp_path, ["mmvet"], judge=judge)
    assert generated == [] and len(judge.requests) == 1
    assert results["benchmarks"]["mmvet"]["judge_failures"] == 0
    assert results["benchmarks"]["mmvet"]["value"] == pytest.approx(70.0)


def test_persistent_http_errors_are_recorded_then_the_run_fails_when_no_sample_was_judged(workspace, tmp_path, capsys):
    with FakeJudge(lambda request, n: (500, "boom")) as judge, pytest.raises(SystemExit) as exit_info:
        run(workspace, tmp_path, ["llava_w"], "--judge-http-retries", "1", judge=judge)
    assert exit_info.value.code == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and f"the judge at {judge.url} gave no verdict for any of the 2 samples" in failed[0]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["stopped"] == failed[0].removeprefix("failed: ")
    entry = results["benchmarks"]["llava_w"]
    assert entry["judge_failures"] == 2 and entry["value"] is None
    assert len(judge.requests) == 4  # two samples, each tried twice
    assert "InternalServerError" in read_jsonl(tmp_path / "samples" / "llava_w.jsonl")[0]["judge"]["error"]


def test_a_rejected_key_stops_the_run(workspace, tmp_path, capsys):
    with FakeJudge(lambda request, n: (401, "invalid api key")) as judge, pytest.raises(SystemExit) as exit_info:
        run(workspace, tmp_path, ["mmvet"], judge=judge)
    assert exit_info.value.code == 2
    message = error_lines(capsys)
    assert len(message) == 1 and "mmvet: The judge refused the request: AuthenticationError" in message[0]
    assert SECRET not in message[0]
    assert json.loads((tmp_path / "results.json").read_text())["stopped"] == message[0].removeprefix("error: ")


def test_results_accumulate_across_runs_for_the_same_model_only(workspace, tmp_path, capsys):
    run(workspace, tmp_path, ["gqa"], "--limit", "2")
    results = run(workspace, tmp_path, ["mmvp"])
    assert list(results["benchmarks"]) == ["gqa", "mmvp"]
    assert results["benchmarks"]["gqa"]["num_samples"] == 2
    assert results["benchmarks"]["gqa"]["limit"] == 2 and results["benchmarks"]["mmvp"]["limit"] is None
    results_file = tmp_path / "results.json"
    results_file.write_text(results_file.read_text().replace(str(workspace["model"]), "someone/else"))
    with pytest.raises(SystemExit) as exit_info:
        run(workspace, tmp_path, ["gqa"])
    assert exit_info.value.code == 2
    assert error_lines(capsys) == [
        f"error: --output {tmp_path}: {results_file} holds results for model 'someone/else', not "
        f"{str(workspace['model'])!r}; use another --output."
    ]
    results_file.write_text("{")
    with pytest.raises(SystemExit):
        run(workspace, tmp_path, ["gqa"])
    assert error_lines(capsys)[0].startswith(f"error: {results_file}: not valid JSON (")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--benchmarks", "gqa,nope"], "unknown benchmark"),
        (["--benchmarks", "mmvet"], "mmvet need a judge"),
        (["--benchmarks", "gqa", "--prompt-variant", "textvqa=loud"], "choose from"),
        (["--benchmarks", "gqa", "--dataset-path", "gqa"], "NAME=VALUE"),
        (["--benchmarks", "gqa", "--judge-concurrency", "0"], "--judge-concurrency and --judge-timeout must be"),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_benchmarks.main(["--model", "m", "--output", "out", *argv])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_bad_data_gives_errors_naming_the_place(workspace, tmp_path, monkeypatch, capsys):
    def refused(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as exit_info:
            eval_benchmarks.main(argv)
        assert exit_info.value.code == 2
        message = error_lines(capsys)
        assert len(message) == 1
        return message[0]

    base = ["--model", str(workspace["model"]), "--output", str(tmp_path / "o")]
    missing = refused([*base, "--benchmarks", "gqa", "--dataset-path", "gqa=/no/such/folder"])
    assert missing == "error: --dataset-path gqa=/no/such/folder: no such folder"
    broken = tmp_path / "broken"
    benchmark_rows_choice.mmvp(broken)
    from datasets import load_from_disk

    load_from_disk(str(broken))["train"].remove_columns("Correct Answer").save_to_disk(str(tmp_path / "mmvp2"))
    message = refused([*base, "--benchmarks", "mmvp", "--dataset-path", f"mmvp={tmp_path / 'mmvp2'}"])
    assert message.startswith("error: mmvp row 0: missing field(s) ['Correct Answer']; the row has [")
    assert json.loads((tmp_path / "o" / "results.json").read_text())["stopped"] == message.removeprefix("error: ")
    empty = tmp_path / "empty"
    empty.mkdir()
    message = refused(["--model", str(empty), "--output", str(tmp_path / "o2"), "--benchmarks", "gqa"])
    assert message.startswith(f"error: --model {empty}: ") and "config.json" in message
    monkeypatch.delenv("OPENAI_API_KEY")
    message = refused([*base, "--benchmarks", "mmvet", "--judge-model", "fake-judge"])
    assert "$OPENAI_API_KEY" in message


def test_an_unreachable_judge_is_named_without_credentials_and_fails_the_run(workspace, tmp_path, capsys):
    port = free_port()  # a loopback port nothing listens on
    url = f"http://judge-user:judge-password@127.0.0.1:{port}/v1?api-key=query-secret#frag"
    argv = ["--judge-model", "m", "--judge-base-url", url, "--judge-http-retries", "0", "--judge-timeout", "5"]
    with pytest.raises(SystemExit) as exit_info:
        run(workspace, tmp_path, ["mmvet"], *argv)
    assert exit_info.value.code == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1, failed
    assert f"mmvet: the judge at http://127.0.0.1:{port}/v1 gave no verdict for any of the 2 samples" in failed[0]
    assert "APIConnectionError" in failed[0]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["stopped"] == failed[0].removeprefix("failed: ")
    assert results["benchmarks"]["mmvet"]["judge_failures"] == 2
    for path in [*tmp_path.rglob("*.json*"), *tmp_path.rglob("*.md")]:
        text = path.read_text()
        assert "judge-password" not in text and "query-secret" not in text and SECRET not in text, path


def test_list_benchmarks_says_what_is_unconfirmed(capsys):
    eval_benchmarks.main(["--list-benchmarks"])
    listing = capsys.readouterr().out.splitlines()
    starts = [index for index, line in enumerate(listing) if not line.startswith(" ")]
    for index, start in enumerate(starts):
        name = listing[start].split()[0]
        block = listing[start : starts[index + 1] if index + 1 < len(starts) else None]
        marked = [line for line in block if line.strip().startswith("unconfirmed: ")]
        assert bool(marked) == (name in UNCONFIRMED), name
    assert len(starts) == len(eval_benchmarks.BENCHMARKS)
