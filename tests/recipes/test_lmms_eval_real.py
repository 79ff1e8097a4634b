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

from tests.recipes.benchmark_fixtures import save_tiny_model
from tests.recipes.fixture_media import picture


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


TASK_YAML = """
task: allava_tiny
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: {parquet}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: "{{{{question}}}}"
doc_to_target: "answer"
generation_kwargs:
  max_new_tokens: 4
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  - version: 0.0
"""
TASK_UTILS = """
def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]
"""


def test_one_local_task_end_to_end_through_the_command_line(model_dir, tmp_path):
    import datasets

    rows = [{"question": f"What is shown {i}?", "answer": "cat", "image": picture(i)} for i in range(3)]
    features = datasets.Features(
        {"question": datasets.Value("string"), "answer": datasets.Value("string"), "image": datasets.Image()}
    )
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / "tiny.parquet"))
    (tasks / "allava_tiny.yaml").write_text(TASK_YAML.format(parquet=tmp_path / "tiny.parquet"))
    (tasks / "utils.py").write_text(textwrap.dedent(TASK_UTILS))
    command = [
        sys.executable,
        "-m",
        "lmms_eval",
        "--model",
        "allava",
        "--model_args",
        f"pretrained={model_dir},batch_size=2",
        "--tasks",
        "allava_tiny",
        "--include_path",
        str(tasks),
        "--device",
        "cpu",
        "--output_path",
        str(tmp_path / "out"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = [json.loads(path.read_text()) for path in (tmp_path / "out").rglob("*results.json")]
    assert results, finished.stderr[-3000:]
    assert "exact_match,none" in results[0]["results"]["allava_tiny"]
