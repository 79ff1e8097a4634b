"""LoRA on the language model only: train -> merge_lora.py -> reload in a fresh process -> the PEFT model's logits."""

import json
import logging
import re

import torch
from peft import PeftModel

from modeling_allava import AllavaForConditionalGeneration
from recipes import merge_lora
from tests.recipes.conftest import REPO, logits_in_fresh_process, mixture_args, quick_args, red_pixels, run_sft


def test_lora_train_merge_reload_matches_the_peft_model(stage1, shapes_dataset, tmp_path, monkeypatch, caplog):
    adapter_dir, merged_dir = tmp_path / "lora", tmp_path / "merged"
    caplog.set_level(logging.INFO, logger="allava.sft")
    monkeypatch.chdir(stage1.parent)  # the base model typed as a relative path, as on a command line
    run_sft(
        ["--config", str(REPO / "recipes/tiny/finetune.yaml"), "--model_name_or_path", stage1.name]
        + ["--trainable", "allava", "--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0"]
        + mixture_args(shapes_dataset, "instruct_shapes", "text")
        + quick_args(adapter_dir, 4, learning_rate=1e-2)
    )
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["modules_to_save"] == ["multi_modal_projector"]
    assert adapter_config["base_model_name_or_path"] == str(stage1.resolve())  # merges from any folder
    logged = [record.getMessage() for record in caplog.records if record.name == "allava.sft"]
    (trainable,) = [message for message in logged if message.startswith("trainable parameters")]
    parts = re.findall(r"(LoRA adapters|multi_modal_projector|language_model|lm_head|vision_tower) \d", trainable)
    assert set(parts) == {"LoRA adapters", "multi_modal_projector"}  # the base LM is frozen under peft
    assert "recipes/merge_lora.py" in logged[-1] and "AutoModelForImageTextToText" not in logged[-1]
    assert {"processor_config.json", "chat_template.jinja"} <= {
        p.name for p in (adapter_dir / "checkpoint-4").iterdir()
    }

    monkeypatch.chdir(tmp_path)
    merge_lora.main([str(adapter_dir), str(merged_dir)])
    (fresh,) = logits_in_fresh_process(tmp_path, merged_dir)
    assert "peft" not in (merged_dir / "config.json").read_text()

    inputs = {"input_ids": fresh["input_ids"], "pixel_values": red_pixels(stage1)}
    base = AllavaForConditionalGeneration.from_pretrained(stage1).eval()
    with torch.no_grad():
        base_logits = base(**inputs).logits
        peft_model = PeftModel.from_pretrained(base, adapter_dir).eval()
        peft_logits = peft_model(**inputs).logits
    adapted = [name for name, _ in peft_model.named_modules() if name.endswith("lora_A")]
    assert adapted and all(".language_model." in name for name in adapted)  # never the vision tower
    assert not torch.allclose(base_logits, peft_logits, atol=1e-3)  # the adapter and projector did train
    torch.testing.assert_close(fresh["logits"], peft_logits, atol=1e-5, rtol=1e-5)


def test_a_relative_base_path_is_found_from_the_cwd_or_the_adapter_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "lora"
    (run / "base_model").mkdir(parents=True)
    where = "adapter_config.json: base_model_name_or_path"
    assert merge_lora.resolve_base_model(run, "base_model", where) == str(run / "base_model")  # beside the adapter
    (tmp_path / "base_model").mkdir()
    assert merge_lora.resolve_base_model(run, "base_model", where) == "base_model"  # the cwd wins when it has it
    assert merge_lora.resolve_base_model(run, "microsoft/phi-2", where) == "microsoft/phi-2"  # a Hub id
    # A relative path found in neither place: one line naming the file and field, not a Hub download error.
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "../stage1/checkpoint-9"}))
    assert merge_lora.main([str(run), str(tmp_path / "merged")]) == 2
    assert capsys.readouterr().err == (
        f"error: {run / 'adapter_config.json'}: base_model_name_or_path: ../stage1/checkpoint-9: no such folder\n"
    )
    assert merge_lora.main([str(tmp_path / "runs" / "lora-typo"), str(tmp_path / "merged")]) == 2
    assert "adapter_dir: " in capsys.readouterr().err and not (tmp_path / "merged").exists()
