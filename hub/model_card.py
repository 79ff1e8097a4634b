"""The model card of a trained ALLaVA checkpoint: usage snippet, architecture, training and evaluation sections.

Built from the training summary (recipes/training_summary.py) and an evaluation's results.json; rendered into the
checkpoint folder by the training recipe and uploaded by hub/push_model.py. Like hub/cards.py (dataset cards), free of
heavy imports at module level.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hub.cards import markdown_listing, markdown_table


if TYPE_CHECKING:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData


ALLAVA_CITATION = """@article{chen2024allava,
  title={ALLaVA: Harnessing GPT4V-Synthesized Data for Lite Vision-Language Models},
  author={Chen, Guiming Hardy and Chen, Shunian and Zhang, Ruifei and Chen, Junying and Wu, Xiangbo and Zhang, Zhiyi
          and Chen, Zhihong and Li, Jianquan and Wan, Xiang and Wang, Benyou},
  journal={arXiv preprint arXiv:2402.11684},
  year={2024}
}"""
# Stand-in image for the usage snippet; tests swap it (and the repo id) for local paths.
USAGE_IMAGE_URL = "http://images.cocodataset.org/val2017/000000039769.jpg"
_BENCHMARK_FIELDS = ("metric", "value", "dataset_id", "split")
_INTRO = (
    'An ALLaVA vision-language model (arXiv 2402.11684): a LLaVA-1.5-shaped "lite" VLM — '
    "vision tower, projector, small\n"
    "language model — trained on caption-then-QA data synthesised by a strong teacher. The weights load with plain\n"
    "`transformers` through the remote code shipped in this repo (`trust_remote_code=True`); "
    "no fork, no custom `.chat()`."
)
_LIMITATIONS = """- Small language models hallucinate objects, counts and text in images; check answers that matter.
- Trained with one image per conversation: multi-image prompts are untested.
- Synthetic training data inherits the teacher's errors and biases; the base models' licences and the teacher
  provider's terms of use also apply."""


def usage_snippet(repo_id: str) -> str:
    """Python that loads the pushed repo through its remote code and answers a question about an image."""
    return f'''from transformers import AutoModelForImageTextToText, AutoProcessor

repo_id = "{repo_id}"
model = AutoModelForImageTextToText.from_pretrained(repo_id, trust_remote_code=True, dtype="auto")
processor = AutoProcessor.from_pretrained(repo_id, trust_remote_code=True)

messages = [
    {{
        "role": "user",
        "content": [
            {{"type": "image", "url": "{USAGE_IMAGE_URL}"}},
            {{"type": "text", "text": "What is in this image?"}},
        ],
    }}
]
inputs = processor.apply_chat_template(
    messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
).to(model.device)
output = model.generate(**inputs, max_new_tokens=64, do_sample=False)
print(processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))'''


def scored_benchmarks(results: Mapping[str, Any], source: str = "results.json") -> dict[str, Mapping[str, Any]]:
    """The benchmarks of `results.json` that have a score, validated; a malformed entry is an error naming it.

    Shape (what `recipes/eval_benchmarks.py` writes): `{"model": ..., "benchmarks": {"<name>": {"metric": "accuracy",
    "value": 0.5, "dataset_id": "...", "split": "..."}}}`; optional per benchmark: `dataset_config`,
    `dataset_revision`, `num_samples`, `prompt_variant`, `judge` (`{"model": ...}` or null), `limit`,
    `dataset_source` (see `incomplete_benchmarks`). A `value` of null (nothing could be scored) leaves the benchmark
    out.
    """
    benchmarks = results.get("benchmarks")
    if not isinstance(benchmarks, Mapping):
        raise ValueError(f"{source}: expected a 'benchmarks' object mapping benchmark names to scores.")
    scored = {}
    for name, score in benchmarks.items():
        if not isinstance(score, Mapping):
            raise ValueError(f"{source}: benchmarks.{name} must be an object.")
        missing = [key for key in _BENCHMARK_FIELDS if key not in score]
        if missing:
            raise ValueError(f"{source}: benchmarks.{name} lacks {', '.join(missing)}.")
        value = score["value"]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{source}: benchmarks.{name}.value must be a number or null, got {value!r}.")
        scored[name] = score
    return scored


def incomplete_benchmarks(benchmarks: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Why each score that is not a full-benchmark result on a Hub dataset falls short; only the others may go into
    `model-index`, where the Hub shows them next to published numbers.

    A full run records `"limit": null` (eval_benchmarks.py's `--limit N` records N); a score without the field cannot
    be told apart from a smoke test, so it counts as partial too.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    reasons = {}
    for name, score in benchmarks.items():
        if "limit" not in score:
            reasons[name] = "results.json does not record `limit`, so a full run cannot be told from a --limit one"
        elif score["limit"] is not None:
            reasons[name] = f"scored on the first {score['limit']} questions only (--limit {score['limit']})"
        elif score.get("dataset_source", "hub") != "hub":
            reasons[name] = f"scored on a local copy ({score['dataset_id']}), not a Hub dataset"
        else:
            try:
                validate_repo_id(score["dataset_id"])
            except HFValidationError:
                reasons[name] = f"dataset_id {score['dataset_id']!r} is not a Hub dataset id"
    return reasons


def eval_results_from(benchmarks: Mapping[str, Mapping[str, Any]]) -> list[EvalResult]:
    """`model-index` entries (EvalResults) for the output of `scored_benchmarks`."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="image-text-to-text",
            dataset_type=score["dataset_id"],
            dataset_name=name,
            dataset_config=score.get("dataset_config"),
            dataset_split=score["split"],
            dataset_revision=score.get("dataset_revision"),
            metric_type=score["metric"],
            metric_value=score["value"],
        )
        for name, score in benchmarks.items()
    ]


def _architecture_section(config: Mapping[str, Any], prompt_example: str) -> str:
    vision, text = config["vision_config"], config["text_config"]
    tokens = config.get("image_seq_length", "?")
    padded = config.get("image_aspect_ratio") == "pad"
    padding = "padded to a square with the CLIP mean colour, then " if padded else ""
    return "\n".join(
        [
            f"- Vision tower: `{vision['model_type']}`, {vision.get('num_hidden_layers')} layers, width "
            f"{vision.get('hidden_size')}, {vision.get('image_size')} px input, patch {vision.get('patch_size')} "
            f"-> {tokens} image tokens from layer {config.get('vision_feature_layer')} "
            f"(strategy `{config.get('vision_feature_select_strategy')}`); the ALLaVA recipe keeps it frozen.",
            f"- Projector: `{config.get('projector_type', 'mlp2x_gelu')}`.",
            f"- Language model: `{text['model_type']}`, {text.get('num_hidden_layers')} layers, width "
            f"{text.get('hidden_size')}, vocabulary {text.get('vocab_size')}"
            + (" (LM head with bias)." if config.get("lm_head_bias") else "."),
            f"- Images are {padding}resized and centre-cropped. ALLaVA trains with one image per conversation.",
            "",
            "Prompt format (the processor's chat template renders it):",
            "",
            f"```text\n{prompt_example}\n```",
        ]
    )


def _training_section(training: Mapping[str, Any] | None, trainer_state: Mapping[str, Any] | None) -> str:
    lines = []
    for key, value in (training or {}).items():
        if key == "stages" and isinstance(value, list) and value and all(isinstance(s, Mapping) for s in value):
            columns = list(dict.fromkeys(column for stage in value for column in stage))
            lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(str(stage.get(c, "")) for c in columns) + " |" for stage in value]
            lines.append("")
        elif key not in ("base_models", "datasets"):
            lines.append(f"- {key}: {json.dumps(value) if isinstance(value, (Mapping, list)) else value}")
    if trainer_state:
        losses = [entry["loss"] for entry in trainer_state.get("log_history", []) if "loss" in entry]
        steps, epochs, batch = (trainer_state.get(k) for k in ("global_step", "num_train_epochs", "train_batch_size"))
        lines.append(
            f"- Last run (trainer_state.json): {steps} steps over {epochs} epoch(s), per-device batch {batch}"
            + (f", final logged loss {losses[-1]:.4f}." if losses else ".")
        )
    if not lines:
        return "No training summary was found next to this checkpoint."
    return "\n".join(lines).strip()


def _evaluation_section(benchmarks: Mapping[str, Mapping[str, Any]], partial: Mapping[str, str]) -> str:
    if not benchmarks:
        return "No evaluation results were recorded for this checkpoint (no scored benchmark in results.json)."
    rows = {}
    for name, score in benchmarks.items():
        judge = score.get("judge")
        notes = [
            "**partial**" if name in partial else None,
            f"{score['num_samples']} samples" if score.get("num_samples") else None,
            f"prompt variant `{score['prompt_variant']}`" if score.get("prompt_variant") else None,
            f"judge {judge.get('model') if isinstance(judge, Mapping) else judge}" if judge else "rule-scored",
        ]
        notes = "; ".join(note for note in notes if note)
        rows[f"{name} (`{score['dataset_id']}`, {score['split']})"] = (
            f"{score['metric']} = {score['value']:.4g} ({notes})"
        )
    warning = ""
    if partial:
        reasons = "\n".join(f"- {name}: {reason}" for name, reason in partial.items())
        warning = (
            "\n\n**Warning: partial results.** These scores are not known to cover the whole benchmark on its Hub "
            "dataset, so they are not comparable to published numbers and are left out of the "
            f"`model-index` metadata:\n\n{reasons}"
        )
    return (
        "Scores from this repo's evaluation harness (`recipes/eval_benchmarks.py`, see results.json in this repo); "
        "they are only comparable to numbers produced with the same prompts, answer parsing and judge.\n\n"
        + markdown_table(("benchmark", "score"), rows)
        + warning
    )


def _card_data(
    name: str,
    license: str,
    base_models: list[str] | None,
    datasets: list[str] | None,
    complete: Mapping[str, Mapping[str, Any]],
) -> ModelCardData:
    """The card's YAML header; only `complete` benchmarks go into `model-index`."""
    from huggingface_hub import ModelCardData

    return ModelCardData(
        base_model=base_models or None,
        datasets=datasets or None,
        eval_results=eval_results_from(complete) if complete else None,
        language=["en"],
        library_name="transformers",
        license=license,
        model_name=name,
        pipeline_tag="image-text-to-text",
        tags=["allava", "llava", "vision-language", "custom_code"],
    )


def build_model_card(
    config: Mapping[str, Any],
    *,
    repo_id: str,
    license: str,
    prompt_example: str,
    base_models: list[str] | None = None,
    datasets: list[str] | None = None,
    benchmarks: Mapping[str, Mapping[str, Any]] | None = None,
    training: Mapping[str, Any] | None = None,
    trainer_state: Mapping[str, Any] | None = None,
) -> ModelCard:
    """A ModelCard for an ALLaVA checkpoint: Hub metadata (base models, datasets, pipeline, `model-index` from
    `benchmarks`, the output of `scored_benchmarks`), what the model is (read from `config`, its config.json), the
    training recipe, a usage snippet that runs as written, evaluation scores and limitations. Partial scores (see
    `incomplete_benchmarks`) appear in the body with a warning, never in `model-index`."""
    from huggingface_hub import ModelCard

    name = repo_id.split("/")[-1]
    benchmarks = benchmarks or {}
    partial = incomplete_benchmarks(benchmarks)
    complete = {key: score for key, score in benchmarks.items() if key not in partial}
    data = _card_data(name, license, base_models, datasets, complete)
    body = f"""
# {name}

{_INTRO}

## Architecture

{_architecture_section(config, prompt_example)}

## Usage

```python
{usage_snippet(repo_id)}
```

Base models: {markdown_listing(base_models)}. Training data: {markdown_listing(datasets)}.

## Training

{_training_section(training, trainer_state)}

## Evaluation

{_evaluation_section(benchmarks, partial)}

## Limitations

{_LIMITATIONS}

## Citation

```bibtex
{ALLAVA_CITATION}
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
