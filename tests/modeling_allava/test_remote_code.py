"""A saved checkpoint must load in a process that never imports `modeling_allava`, through every Auto class."""

import json
import os
import subprocess
import sys
import textwrap

import torch
from PIL import Image

from recipes.tiny.models import build_tiny_model_and_processor


LOADER = textwrap.dedent(
    """
    import json, sys
    import torch
    from PIL import Image
    from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText,
                              AutoProcessor, pipeline)

    folder = sys.argv[1]
    image = Image.new("RGB", (80, 40), (255, 0, 0))
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Colour?"}]}]
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    report = {
        "config": type(AutoConfig.from_pretrained(folder, trust_remote_code=True)).__name__,
        "processor": type(processor).__name__,
        "input_ids": inputs["input_ids"].tolist(),
        "models": {},
    }
    for auto in (AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText):
        model = auto.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        report["models"][auto.__name__] = {
            "class": type(model).__name__,
            "logits": logits[0, -3:].tolist(),
            "generated": generated[0].tolist(),
        }
    pipe = pipeline("image-text-to-text", model=folder, trust_remote_code=True)
    result = pipe(text=messages, max_new_tokens=6, min_new_tokens=6, do_sample=False, return_full_text=False)
    report["pipeline"] = result[0]["generated_text"]
    report["imported_package"] = "modeling_allava" in sys.modules
    print("REPORT" + json.dumps(report))
    """
)


def test_checkpoint_loads_through_every_auto_class_in_a_fresh_process(tmp_path):
    model, processor = build_tiny_model_and_processor("phi", seed=5, lm_head_bias=True)
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    auto_map = json.loads((tmp_path / "ckpt" / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_allava.AllavaConfig",
        "AutoModel": "modeling_allava.AllavaForConditionalGeneration",
        "AutoModelForCausalLM": "modeling_allava.AllavaForConditionalGeneration",
        "AutoModelForImageTextToText": "modeling_allava.AllavaForConditionalGeneration",
    }
    for name in ("configuration_allava.py", "modeling_allava.py", "processing_allava.py", "chat_template.jinja"):
        assert (tmp_path / "ckpt" / name).exists(), name

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    # Run from an empty folder so the repo's package is not importable from the working directory.
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(tmp_path / "ckpt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("REPORT", 1)[1])
    assert report["config"] == "AllavaConfig"
    assert report["processor"] == "AllavaProcessor"
    assert report["imported_package"] is False

    image = Image.new("RGB", (80, 40), (255, 0, 0))
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Colour?"}]}]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert report["input_ids"] == inputs["input_ids"].tolist()
    with torch.no_grad():
        expected_logits = model(**inputs).logits[0, -3:]
    expected_ids = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)[0]
    for auto_class, loaded in report["models"].items():
        assert loaded["class"] == "AllavaForConditionalGeneration", auto_class
        torch.testing.assert_close(torch.tensor(loaded["logits"]), expected_logits, rtol=0, atol=1e-6)
        assert loaded["generated"] == expected_ids.tolist(), auto_class
    new_tokens = expected_ids[inputs["input_ids"].shape[1] :]
    assert report["pipeline"] == processor.decode(new_tokens, skip_special_tokens=True)


def test_importing_the_package_registers_every_auto_class(tmp_path):
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    from modeling_allava import AllavaForConditionalGeneration, AllavaProcessor

    model, processor = build_tiny_model_and_processor("phi")
    for auto_class in (AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText):
        assert type(auto_class.from_config(model.config)) is AllavaForConditionalGeneration
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert type(AutoProcessor.from_pretrained(tmp_path)) is AllavaProcessor  # no remote code needed when installed
