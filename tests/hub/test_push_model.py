"""hub/push_model.py against a loopback fake Hub: push, re-push, download back, run the card's snippet."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from PIL import Image
from transformers import TrainerState
from trl import ModelConfig, SFTConfig

from hub import checkpoint_files
from hub.model_card import USAGE_IMAGE_URL
from hub.push_model import build_upload_folder, main
from hub.upload import upload_folder
from recipes.script_arguments import AllavaScriptArguments
from recipes.tiny.models import build_tiny_model_and_processor
from recipes.training_summary import summary_of_run, write_summary_and_card
from tests.hub.fake_hub import FakeHub, check_model_index
from tests.hub.processes import run_python


REPO = Path(__file__).resolve().parents[2]
TOKEN = "hf_FakeTokenForTests0123456789abcdef"
REPO_ID = "tester/allava-tiny"
RESULTS = {
    "model": "runs/tiny",
    "benchmarks": {
        "gqa": {"metric": "accuracy", "value": 48.8, "dataset_id": "lmms-lab/GQA", "split": "testdev_balanced",
                "dataset_config": "testdev_balanced_instructions", "num_samples": 12578, "prompt_variant": "short",
                "judge": None, "limit": None, "dataset_source": "hub"},
        "mmvet": {"metric": "gpt_score", "value": 32.2, "dataset_id": "lmms-lab/MMVet", "split": "test",
                  "judge": {"model": "gpt-4-0613"}, "limit": None},
        "mmmu_val": {"metric": "accuracy", "value": None, "dataset_id": "lmms-lab/MMMU", "split": "validation"},
        # A smoke test: MME-P summed over the 1 of 10 subtasks its first 6 questions cover, from a local copy.
        "mme_perception": {"metric": "mme_score", "value": 116.7, "dataset_id": "/data/mme", "split": "test",
                           "limit": 6, "dataset_source": "local", "num_samples": 6},
    },
}  # fmt: skip
ALLAVA_4V = "FreedomIntelligence/ALLaVA-4V"


def write_training_summaries(root: Path, checkpoint: Path, processor) -> None:
    """Stage 1's and stage 2's training_summary.json written by sft.py's own writer (`recipes.training_summary`) from
    the run's argument objects and trainer state, so the card is tested on what training really writes."""
    stage1 = root / "stage1"
    for folder, argv, batch in ((stage1, "pretrain", 32), (checkpoint, "finetune", 16)):
        config = ["--config", f"recipes/allava-phi2/{argv}.yaml", "--hub_token", TOKEN]
        if folder == stage1:
            script = AllavaScriptArguments(
                vision_model_name_or_path="openai/clip-vit-large-patch14-336",
                text_model_name_or_path="microsoft/phi-2",
            )
            model_args = ModelConfig()
        else:
            script, model_args = AllavaScriptArguments(), ModelConfig(model_name_or_path=str(stage1))
        training = SFTConfig(
            output_dir=str(folder), learning_rate=2e-5, per_device_train_batch_size=batch,
            gradient_accumulation_steps=8, max_length=2048, use_cpu=True, bf16=False,
        )  # fmt: skip
        state = TrainerState(global_step=40, epoch=1.0, num_input_tokens_seen=5120, log_history=[{"loss": 1.25}])
        name = "allava_laion" if folder == stage1 else "allava_vflan"
        sources = [{"path": ALLAVA_4V, "name": name, "split": "instruct", "revision": "main", "take_fraction": 1.0,
                    "epochs": 1, "rows": 640}]  # fmt: skip
        summary = summary_of_run(script, training, model_args, state, sources, 0, config)
        folder.mkdir(exist_ok=True)
        write_summary_and_card(str(folder), summary, json.loads((checkpoint / "config.json").read_text()), processor)
# Download the pushed repo, run the card's snippet (repo id and image URL swapped for local paths) in this fresh
# process without our package, and keep what it computed for the parent to compare.
DRIVER = """
import runpy, sys, torch
from huggingface_hub import snapshot_download
snapshot_download(sys.argv[1], local_dir=sys.argv[2])
namespace = runpy.run_path(sys.argv[3])
model, inputs = namespace["model"], namespace["inputs"]
with torch.no_grad():
    logits = model(**inputs).logits
torch.save({"logits": logits, "inputs": dict(inputs), "module": type(model).__module__}, sys.argv[4])
"""


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A tiny checkpoint with results, pushed twice to a fake Hub, then downloaded and run in a fresh process."""
    root = tmp_path_factory.mktemp("push")
    model, processor = build_tiny_model_and_processor("phi", seed=3)
    checkpoint = root / "checkpoint"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    (checkpoint / "results.json").write_text(json.dumps(RESULTS))
    write_training_summaries(root, checkpoint, processor)
    state = {"global_step": 40, "num_train_epochs": 1, "train_batch_size": 4, "log_history": [{"loss": 1.25}]}
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    image = root / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(image)

    with FakeHub(TOKEN) as hub:
        # Debug verbosity: the most the libraries ever log; the token must not be in it.
        env = {**hub.client_env(root / "hf_home"), "HF_HUB_VERBOSITY": "debug"}
        push = ["hub/push_model.py", str(checkpoint), "--repo-id", REPO_ID, "--max-shard-size", "200KB"]
        first = run_python(push, env=env)
        commits_after_first = len(hub.commits(REPO_ID))
        second = run_python(push, env=env)
        readme = hub.commits(REPO_ID)[-1].files["README.md"].decode()
        snippet = re.search(r"```python\n(.*?)```", readme, re.DOTALL).group(1)
        snippet = snippet.replace(f'"{REPO_ID}"', repr(str(root / "download"))).replace(USAGE_IMAGE_URL, str(image))
        (root / "snippet.py").write_text(snippet)
        outputs = root / "outputs.pt"
        download = run_python(
            ["-c", DRIVER, REPO_ID, str(root / "download"), str(root / "snippet.py"), str(outputs)], env=env, cwd=root
        )
        yield {
            "hub": hub,
            "model": model,
            "checkpoint": checkpoint,
            "root": root,
            "runs": [first, second, download],
            "commits_after_first": commits_after_first,
            "fresh": torch.load(outputs, weights_only=False),
        }


def test_push_uploads_weights_code_processor_and_card(pushed):
    head = pushed["hub"].commits(REPO_ID)[-1]
    expected = {
        "README.md", "config.json", "configuration_allava.py", "modeling_allava.py", "processing_allava.py",
        "generation_config.json", "processor_config.json", "chat_template.jinja", "tokenizer.json",
        "tokenizer_config.json", "model.safetensors.index.json", "results.json", "training_summary.json",
    }  # fmt: skip
    assert expected <= set(head.files)
    shards = {path for path in head.files if path.endswith(".safetensors")}
    assert len(shards) > 1 and shards <= head.lfs  # sharded by --max-shard-size, uploaded through LFS
    config = json.loads(head.files["config.json"])
    auto_classes = {"AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForImageTextToText"}
    assert set(config["auto_map"]) == auto_classes
    assert "Pushed model tester/allava-tiny@main" in pushed["runs"][0].stdout


def test_repush_of_the_same_checkpoint_creates_no_commit(pushed):
    # initial commit + one upload; the second push finds every file unchanged and skips the commit entirely
    assert pushed["commits_after_first"] == 2
    assert len(pushed["hub"].commits(REPO_ID)) == 2
    assert "No changes" in pushed["runs"][1].stdout


def test_downloaded_repo_runs_the_card_snippet_through_remote_code(pushed):
    fresh = pushed["fresh"]
    assert fresh["module"].startswith("transformers_modules.")  # the shipped code, not this repo's package
    inputs = fresh["inputs"]
    assert (inputs["input_ids"] == pushed["model"].config.image_token_index).sum() == 16
    with torch.no_grad():
        expected = pushed["model"](**inputs).logits
    torch.testing.assert_close(fresh["logits"], expected, atol=1e-5, rtol=0)
    assert pushed["runs"][2].stdout.strip()  # the snippet printed its generated answer


def test_card_yaml_validates_and_model_index_round_trips(pushed, tmp_path):
    hub = pushed["hub"]
    assert any(method == "POST" and path == "/api/validate-yaml" for method, path, _ in hub.requests)
    readme = hub.commits(REPO_ID)[-1].files["README.md"].decode()
    assert check_model_index(yaml.safe_load(readme.split("---")[1])["model-index"]) == []
    (tmp_path / "README.md").write_text(readme)
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.pipeline_tag == "image-text-to-text" and data.library_name == "transformers"
    assert data.base_model == ["openai/clip-vit-large-patch14-336", "microsoft/phi-2"]
    assert data.datasets == ["FreedomIntelligence/ALLaVA-4V"] and data.license == "apache-2.0"
    fields = ("dataset_name", "dataset_type", "dataset_split", "metric_type", "metric_value")
    loaded = {tuple(getattr(result, field) for field in fields) for result in data.eval_results}
    assert loaded == {
        ("gqa", "lmms-lab/GQA", "testdev_balanced", "accuracy", 48.8),
        ("mmvet", "lmms-lab/MMVet", "test", "gpt_score", 32.2),
    }  # mmmu_val has no score and is left out; the --limit 6 smoke test is not a benchmark result
    header = "| name | recipe | trainable | steps | epochs | learning_rate | global_batch_size | max_length |"
    pretrain = "| pretrain | recipes/allava-phi2/pretrain.yaml | allava | 40 | 1.0 | 2e-05 | 256 | 2048 | 5120 |"
    finetune = "| finetune | recipes/allava-phi2/finetune.yaml | allava | 40 | 1.0 | 2e-05 | 128 | 2048 | 5120 |"
    for expected in (header, pretrain, finetune, "judge gpt-4-0613", "loss 1.2500", "[INST] <image>"):
        assert expected in readme, expected
    assert "mme_score = 116.7 (**partial**; 6 samples; rule-scored)" in readme
    assert "**Warning: partial results.**" in readme
    assert "- mme_perception: scored on the first 6 questions only (--limit 6)" in readme
    warning = "warning: results.json: mme_perception is listed as partial, not in model-index: scored on the first 6"
    assert warning in pushed["runs"][0].stderr


def test_token_is_used_but_never_written_or_printed(pushed):
    hub = pushed["hub"]
    sent = [headers.get("authorization") for method, path, headers in hub.requests if "/commit/" in path]
    assert sent and all(header == f"Bearer {TOKEN}" for header in sent)
    for run in pushed["runs"]:
        assert TOKEN not in run.stdout and TOKEN not in run.stderr
    for commit in hub.commits(REPO_ID):
        assert all(TOKEN.encode() not in content for content in commit.files.values())
    downloaded = [path for path in (pushed["root"] / "download").rglob("*") if path.is_file()]
    assert downloaded and all(TOKEN.encode() not in path.read_bytes() for path in downloaded)


def test_dry_run_writes_exactly_the_pushed_folder(pushed, tmp_path, capsys):
    folder = tmp_path / "dry"
    # In-process, where HF_HUB_OFFLINE=1 and no token exist: any attempt to reach a Hub would raise.
    main([str(pushed["checkpoint"]), "--repo-id", REPO_ID, "--dry-run", "--upload-dir", str(folder),
          "--max-shard-size", "200KB"])  # fmt: skip
    written = {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert written == pushed["hub"].commits(REPO_ID)[-1].files
    assert f"{len(written)} files that would be uploaded" in capsys.readouterr().out


def test_push_without_a_token_stops_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="HF_TOKEN"):
        upload_folder(tmp_path, REPO_ID, commit_message="x")


def test_bad_checkpoints_are_refused_with_the_file_named(tmp_path):
    original = tmp_path / "original"
    original.mkdir()
    (original / "config.json").write_text(json.dumps({"model_type": "llava_phi"}))
    with pytest.raises(ValueError, match=r"original/config.json: model_type is 'llava_phi'.*convert_allava_"):
        build_upload_folder(original, tmp_path / "up", repo_id=REPO_ID, license="mit")
    (original / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"original/config.json: invalid JSON"):
        build_upload_folder(original, tmp_path / "up", repo_id=REPO_ID, license="mit")


def test_lora_adapter_folders_point_to_merge_lora(tmp_path, capsys):
    adapter = tmp_path / "phi2-lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/runs/stage1"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    assert main([str(adapter), "--repo-id", REPO_ID, "--dry-run", "--upload-dir", str(tmp_path / "up")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {adapter} holds a LoRA adapter (adapter_config.json), not full weights: merge it first with "
        f"python recipes/merge_lora.py {adapter} <output_dir>\n"
    )
    assert not (tmp_path / "up").exists()


def test_repo_ids_are_validated_before_anything_is_built(tmp_path, capsys):
    assert main([str(tmp_path), "--repo-id", "not a repo id", "--dry-run", "--upload-dir", str(tmp_path / "up")]) == 2
    assert capsys.readouterr().err.startswith("error: --repo-id: 'not a repo id' is not a Hub repo id")
    assert main([str(tmp_path), "--repo-id", REPO_ID, "--dataset", "./data/mine", "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("error: --dataset: './data/mine' is not a Hub repo id")
    assert not (tmp_path / "up").exists()
    with pytest.raises(ValueError, match="repo id: 'a/b/c' is not a Hub repo id"):
        upload_folder(tmp_path, "a/b/c", commit_message="x")


def test_push_model_is_only_the_command():
    """The converter and exporter share checkpoint helpers with the pusher through hub/checkpoint_files.py, never by
    importing the push command (whose module would then be both a CLI and a library)."""
    importers = []
    for path in sorted((REPO / "hub").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if "hub.push_model" in names:
                importers.append(path.name)
    assert importers == []
    assert {"read_json", "read_allava_config", "check_upload_folder"} <= set(vars(checkpoint_files))
