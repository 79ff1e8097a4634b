"""Model loading and batched greedy generation (left padding, so every prompt ends where generation starts)."""

from collections.abc import Sequence

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from recipes.remote_code import load_pretrained

from .batching import Batch, length_batches, prompt_lengths
from .common import Sample


def load_model(name_or_path: str, dtype: str = "auto", device: str | None = None, trust_remote_code: bool = False):
    """Any AutoModelForImageTextToText checkpoint with a chat-templated processor. ALLaVA loads with the installed
    classes; a checkpoint that needs its own code runs it only with `trust_remote_code`."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    model = load_pretrained(
        AutoModelForImageTextToText, name_or_path, trust_remote_code, dtype=getattr(torch, dtype)
    )
    processor = load_pretrained(AutoProcessor, name_or_path, trust_remote_code)
    if not hasattr(processor, "tokenizer") or getattr(processor, "chat_template", None) is None:
        raise ValueError(f"{name_or_path}: the processor has no tokenizer or no chat template; cannot prompt it.")
    processor.tokenizer.padding_side = "left"
    return model.to(device).eval(), processor


def render_prompt(processor, sample: Sample) -> str:
    """The exact text the model sees (image placeholder before expansion), for the per-sample log."""
    messages = sample.messages(with_pixels=False)
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prompts_and_batches(processor, samples: Sequence[Sample], batch_size: int) -> tuple[list[str], list[Batch]]:
    """Each sample's rendered prompt, and the samples cut into batches of similar prompt length (batching.py)."""
    prompts = [render_prompt(processor, sample) for sample in samples]
    return prompts, length_batches(samples, prompt_lengths(processor.tokenizer, prompts), batch_size)


# The decoding every answer is made with; recorded in results.json and in each cache's settings.
GREEDY = {"do_sample": False, "num_beams": 1}


def fixed_batches(samples: Sequence[Sample], batch_size: int) -> list[list[Sample]]:
    """Batches by position (samples 0..B-1, B..2B-1, ...). Left padding makes a greedy answer depend slightly on its
    batch mates, so batches must not depend on which samples an earlier, interrupted run already finished."""
    return [list(samples[start : start + batch_size]) for start in range(0, len(samples), batch_size)]


@torch.inference_mode()
def generate(model, processor, samples: Sequence[Sample], max_new_tokens: int) -> list[str]:
    """Greedy answers for one batch of samples (text-only and image samples may share a batch)."""
    inputs = processor.apply_chat_template(
        [sample.messages() for sample in samples],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    ).to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    tokenizer = processor.tokenizer
    output = model.generate(
        **inputs,
        **GREEDY,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
