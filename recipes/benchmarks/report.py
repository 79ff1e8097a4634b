"""results.json (read by the model card's model-index) and results.md (our scores next to the paper's)."""

import importlib.metadata
import json
import platform
from pathlib import Path

from toolkit.jsonl_store import atomic_write

from .paper import PAPER_MODELS


PACKAGES = (
    "allava",
    "torch",
    "transformers",
    "datasets",
    "evaluate",
    "openai",
    "huggingface_hub",
    "accelerate",
    "pillow",
)


def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def read_results(output: Path, model: str) -> dict:
    """The results.json already in `output` (a run that adds benchmarks keeps the earlier ones) or a new one."""
    path = output / "results.json"
    if not path.exists():
        return {"model": model, "benchmarks": {}}
    results = json.loads(path.read_text(encoding="utf-8"))
    if results.get("model") != model:
        raise ValueError(
            f"{path} holds results for model {results.get('model')!r}, not {model!r}; use another --output."
        )
    return results


def _cell(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def results_markdown(results: dict) -> str:
    lines = [
        f"# Evaluation of `{results['model']}`",
        "",
        "| Benchmark | Metric | Ours | " + " | ".join(PAPER_MODELS) + " | Samples | Prompt variant | Judge |",
        "|---|---|---|" + "---|" * len(PAPER_MODELS) + "---|---|---|",
    ]
    for name, entry in results["benchmarks"].items():
        paper = [_cell(entry["paper"].get(model)) for model in PAPER_MODELS]
        judge = entry["judge"]["model"] if entry["judge"] else "rule"
        if entry.get("judge_failures"):
            judge += f" ({entry['judge_failures']} failed)"
        lines.append(
            f"| {name} | {entry['metric']} | **{_cell(entry['value'])}** | "
            + " | ".join(paper)
            + f" | {entry['num_samples']} | {entry['prompt_variant']} | {judge} |"
        )
    lines += ["", "Data:", ""]
    for name, entry in results["benchmarks"].items():
        revision = entry["dataset_revision"] or "unpinned"
        config = f" ({entry['dataset_config']})" if entry.get("dataset_config") else ""
        lines.append(f"- {name}: `{entry['dataset_id']}`{config} split `{entry['split']}` @ {revision}")
    scored = {name: entry["details"] for name, entry in results["benchmarks"].items() if "scorer" in entry["details"]}
    if scored:
        lines += ["", "Scorers (the paper's numbers come from each paper's own harness):", ""]
    for name, details in scored.items():
        paths = ", ".join(f"{path} {count}" for path, count in details.get("scoring_paths", {}).items())
        lines.append(f"- {name}: {details['scorer']}" + (f" ({paths})" if paths else ""))
    return "\n".join(lines) + "\n"


def write_results(output: Path, results: dict) -> None:
    """Rewritten after every benchmark, atomically, so a later crash leaves the finished scores readable."""
    atomic_write(output / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    atomic_write(output / "results.md", results_markdown(results))
