"""The plugin against the real lmms-eval package (runs where the `lmms-eval` extra is installed).

Instantiates the model the way lmms-eval does (`create_from_arg_string` with its own batch_size/device next to
`--model_args`), runs `generate_until` and `loglikelihood` on real `Instance` objects, and runs one local task end to
end through the `lmms-eval` command line (`--include_path`, a tiny parquet task the test writes).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.bench_eval import TASK_UTILS, TASK_YAML
from tests.recipes.benchmark_fixtures import save_tiny_model
from tests.recipes.fixture_media import picture
from tests.recipes.sharded import free_port


lmms_eval = pytest.importorskip("lmms_eval", reason="the lmms-eval extra is not installed (pip install .[lmms-eval])")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("lmms_real") / "model")


def test_filelock_is_one_lmms_eval_can_use():
    # lmms-eval 0.7's evaluator imports filelock._api, which filelock 4 removed (the extra pins filelock<4).
    import filelock._api  # noqa: F401


def test_create_generate_and_loglikelihood_through_lmms_eval(model_dir):
    from lmms_eval.api.instance import Instance

    from recipes.lmms_eval_plugin import Allava

    config = {"batch_size": 1, "max_batch_size": None, "device": "cpu"}  # what lmms-eval's evaluator passes
    model = Allava.create_from_arg_string(f"pretrained={model_dir},batch_size=2,max_new_tokens=4", config)
    assert model.batch_size == 2
    docs = [{"image": picture(0)}, {"image": picture(1)}]
    model.task_dict = {"demo": {"test": docs}}
    visual = lambda doc: [doc["image"]]  # noqa: E731
    def instance(kind, arguments, doc_id):
        return Instance(kind, arguments, doc_id, {"task": "demo", "doc_id": doc_id, "repeats": 1})

    requests = [
        instance("generate_until", (f"Question {i}?", {"max_new_tokens": 4}, visual, i, "demo", "test"), i)
        for i in range(2)
    ]
    answers = model.generate_until(requests)
    assert len(answers) == 2 and all(isinstance(answer, str) for answer in answers)
    scored = model.loglikelihood([instance("loglikelihood", ("Which?", " red", visual, 0, "demo", "test"), 0)])
    (logprob, greedy), = scored
    assert logprob < 0 and isinstance(greedy, bool)


DOCS = 5  # odd: with 2 processes, lmms-eval pads rank 1 with a copy of a request, whose answer it must drop


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """The local parquet task: DOCS questions with an image each."""
    import datasets

    folder = tmp_path_factory.mktemp("lmms_task")
    rows = [{"question": f"What is shown {i}?", "answer": "cat", "image": picture(i)} for i in range(DOCS)]
    features = datasets.Features(
        {"question": datasets.Value("string"), "answer": datasets.Value("string"), "image": datasets.Image()}
    )
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / "tiny.parquet"))
    (folder / "tasks").mkdir()
    yaml = TASK_YAML.format(task="allava_tiny", parquet=folder / "tiny.parquet", max_new_tokens=4)
    (folder / "tasks" / "allava_tiny.yaml").write_text(yaml)
    (folder / "tasks" / "utils.py").write_text(textwrap.dedent(TASK_UTILS))
    return folder / "tasks"


def run_cli(launcher: list[str], model_dir: Path, tasks: Path, output: Path) -> tuple[dict, list[dict], str]:
    """`lmms-eval --model allava` on the local task (under `launcher`): its results.json, logged samples and log."""
    command = [sys.executable, *launcher, "-m", "lmms_eval", "--model", "allava"]
    command += ["--model_args", f"pretrained={model_dir},batch_size=2", "--tasks", "allava_tiny"]
    command += ["--include_path", str(tasks), "--device", "cpu", "--output_path", str(output), "--log_samples"]
    # One thread per process: two processes on a 2-core runner stay fast.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    finished = subprocess.run(command, cwd=output.parent, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = [json.loads(path.read_text()) for path in output.rglob("*results.json")]
    assert len(results) == 1, finished.stderr[-3000:]
    samples = [json.loads(line) for path in output.rglob("*samples_allava_tiny.jsonl") for line in path.open()]
    return results[0], samples, finished.stdout + finished.stderr


@pytest.fixture(scope="module")
def one_process(model_dir, tasks):
    return run_cli([], model_dir, tasks, tasks.parent / "one")


def test_one_local_task_end_to_end_through_the_command_line(one_process):
    results, samples, _ = one_process
    assert "exact_match,none" in results["results"]["allava_tiny"]
    assert sorted(sample["doc_id"] for sample in samples) == list(range(DOCS))


def test_two_gloo_processes_under_accelerate_launch_give_the_one_process_scores(model_dir, tasks, one_process):
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    results, samples, log = run_cli(launcher, model_dir, tasks, tasks.parent / "two")
    one_results, one_samples, _ = one_process
    # Rank 0 answered its share only: two processes really ran (`--cpu` would make accelerate start just one).
    assert f"Postprocessed {(DOCS + 1) // 2} docs for allava_tiny" in log
    # Every document answered exactly once (not once per process, and lmms-eval's padding copy dropped).
    assert sorted(sample["doc_id"] for sample in samples) == list(range(DOCS))
    answers = {sample["doc_id"]: sample["filtered_resps"] for sample in samples}
    assert answers == {sample["doc_id"]: sample["filtered_resps"] for sample in one_samples}
    assert results["results"]["allava_tiny"] == one_results["results"]["allava_tiny"]
