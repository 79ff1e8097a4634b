"""The lmms-eval plugin, against a stand-in for the part of lmms-eval 0.7's API it uses (lmms-eval is not installed).

The stand-in mirrors: `lmms_eval.api.model.lmms` (abstract base; sets rank/world size/task_dict in __init__;
abstract loglikelihood, generate_until, generate_until_multi_round; `is_simple`), and
`lmms_eval.models.registry_v2.ModelManifest` (model_id, simple_class_path, chat_class_path, aliases). lmms-eval
resolves `simple_class_path` with importlib and checks the class subclasses `lmms` with `is_simple` True.
"""

import abc
import importlib
import math
import sys
import types
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from recipes.benchmarks.common import Sample
from recipes.benchmarks.generation import generate
from tests.recipes.benchmark_fixtures import save_tiny_model
from tests.recipes.fixture_media import picture


class StandInLmms(abc.ABC):
    is_simple = True

    def __init__(self) -> None:
        self._rank = 0
        self._world_size = 1
        self.task_dict = {}

    @classmethod
    def create_from_arg_string(cls, arg_string, additional_config=None):
        # As lmms_eval.api.model.lmms does: model_args and lmms-eval's own settings both become keyword arguments.
        args = dict(part.split("=", 1) for part in arg_string.split(",")) if arg_string else {}
        args2 = {key: value for key, value in (additional_config or {}).items() if value is not None}
        return cls(**args, **args2)

    @abc.abstractmethod
    def loglikelihood(self, requests): ...

    @abc.abstractmethod
    def generate_until(self, requests): ...

    @abc.abstractmethod
    def generate_until_multi_round(self, requests): ...


@dataclass(frozen=True)
class StandInManifest:
    model_id: str
    simple_class_path: str | None = None
    chat_class_path: str | None = None
    aliases: tuple = ()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("lmms") / "model")


@pytest.fixture
def plugin(monkeypatch):
    modules = {
        name: types.ModuleType(name)
        for name in (
            "lmms_eval",
            "lmms_eval.api",
            "lmms_eval.api.model",
            "lmms_eval.models",
            "lmms_eval.models.registry_v2",
        )
    }
    modules["lmms_eval.api.model"].lmms = StandInLmms
    modules["lmms_eval.models.registry_v2"].ModelManifest = StandInManifest
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    plugin = importlib.import_module("recipes.lmms_eval_plugin")
    monkeypatch.delitem(plugin.__dict__, "Allava", raising=False)
    return plugin


def resolve(manifest):
    """What lmms-eval's registry does with the manifest our entry point returns."""
    module_name, class_name = manifest.simple_class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)


def request(context, gen_kwargs, doc_id, task="demo", split="test"):
    docs_visual = lambda doc: [doc["image"]] if doc["image"] is not None else []  # noqa: E731
    return SimpleNamespace(args=(context, gen_kwargs, docs_visual, doc_id, task, split))


def test_entry_point_manifest_resolves_to_an_lmms_model(plugin):
    manifest = plugin.manifest()
    assert manifest.model_id == "allava"
    cls = resolve(manifest)
    assert issubclass(cls, StandInLmms) and issubclass(cls, plugin.AllavaLmms) and cls.is_simple
    assert cls is resolve(manifest)  # built once
    with pytest.raises(AttributeError):
        plugin.Missing  # noqa: B018


def test_generate_until_matches_our_generation_and_applies_stop_strings(plugin, model_dir):
    model = resolve(plugin.manifest())(pretrained=str(model_dir), batch_size=2, max_new_tokens=6)
    assert model._rank == 0  # the lmms base class was initialised
    docs = [{"image": picture(0)}, {"image": None}, {"image": picture(1)}]
    model.task_dict = {"demo": {"test": docs}}
    contexts = ["<image>\nWhat colour is this?", "Tell me a story.", "Is it blue?"]
    answers = model.generate_until([request(c, {"max_new_tokens": 6}, i) for i, c in enumerate(contexts)])
    expected = generate(
        model.model,
        model.processor,
        [
            Sample(id="0", prompt="What colour is this?", images=[picture(0)]),
            Sample(id="1", prompt="Tell me a story."),
            Sample(id="2", prompt="Is it blue?", images=[picture(1)]),
        ],
        6,
    )
    assert answers == expected and all(answers)
    stop = answers[0][len(answers[0]) // 2 :][:2]
    cut = model.generate_until([request(contexts[0], {"max_new_tokens": 6, "until": [stop]}, 0)])
    assert cut == [answers[0].split(stop)[0].strip()]
    with pytest.raises(NotImplementedError):
        model.generate_until_multi_round([])


def test_generate_until_batches_by_budget_and_length_and_answers_in_request_order(plugin, model_dir):
    model = resolve(plugin.manifest())(pretrained=str(model_dir), batch_size=2)
    docs = [{"image": picture(i)} for i in range(4)]
    model.task_dict = {"demo": {"test": docs}}
    # Two tasks' requests as lmms-eval hands them over together: budgets 2 and 6, prompts of different lengths.
    contexts = ["Is it blue?", "What colour is the large shape in this picture?", "Why?", "What is it made of?"]
    budgets = [2, 6, 2, 6]
    requests = [request(c, {"max_new_tokens": b}, i) for i, (c, b) in enumerate(zip(contexts, budgets))]
    assert model._batches([r.args for r in requests]) == [[0, 2], [1, 3]]  # one budget per batch, longest first
    answers = model.generate_until(requests)
    for i, (context, budget) in enumerate(zip(contexts, budgets)):
        sample = [Sample(id=str(i), prompt=context, images=[picture(i)])]
        (own,) = generate(model.model, model.processor, sample, budget)
        assert answers[i] == own  # in request order, with its own budget
        if budget == 2:  # not the other task's longer one
            assert len(own) < len(generate(model.model, model.processor, sample, 6)[0])


def test_loglikelihood_is_highest_and_greedy_for_the_models_own_continuation(plugin, model_dir):
    model = resolve(plugin.manifest())(pretrained=str(model_dir))
    model.task_dict = {"demo": {"test": [{"image": picture(2)}]}}
    tokenizer = model.processor.tokenizer
    sample = Sample(id="0", prompt="Which shape?", images=[picture(2)])
    inputs = model.processor.apply_chat_template(
        sample.messages(), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        greedy_ids = model.model.generate(**inputs, max_new_tokens=1, do_sample=False)[
            0, inputs["input_ids"].shape[1] :
        ]
    greedy = tokenizer.decode(greedy_ids)
    assert tokenizer(greedy, add_special_tokens=False)["input_ids"] == greedy_ids.tolist()
    other = next(text for text in (" circle", " red", " yes") if text != greedy)
    args = [(greedy, 0), (other, 0)]
    results = model.loglikelihood(
        [
            SimpleNamespace(args=("Which shape?", text, lambda doc: [doc["image"]], doc, "demo", "test"))
            for text, doc in args
        ]
    )
    (greedy_logprob, greedy_flag), (other_logprob, other_flag) = results
    assert greedy_flag is True and other_flag is False
    # No continuation can beat the greedy first token: its log-prob bounds every continuation's sum from above.
    assert math.isfinite(other_logprob) and other_logprob < greedy_logprob < 0


def test_batch_size_in_model_args_and_from_lmms_eval_both_accepted(plugin, model_dir):
    # `lmms-eval --model allava --model_args pretrained=...,batch_size=2` also passes its own --batch_size (1).
    cls = resolve(plugin.manifest())
    config = {"batch_size": 1, "max_batch_size": None, "device": "cpu"}
    model = cls.create_from_arg_string(f"pretrained={model_dir},batch_size=2", config)
    assert model.batch_size == 2
    assert cls.create_from_arg_string(f"pretrained={model_dir}", {**config, "batch_size": 3}).batch_size == 3
    # Without a launcher: one process, on the device asked for (lmms-eval gathers per-rank counts on `device`).
    assert (model.rank, model.world_size, model.device) == (0, 1, torch.device("cpu"))


def test_unsupported_batch_size(plugin, model_dir):
    with pytest.raises(ValueError, match="batch_size"):
        resolve(plugin.manifest())(pretrained=str(model_dir), batch_size="auto")
